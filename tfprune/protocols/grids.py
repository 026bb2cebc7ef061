"""The protocol registry: :data:`PROTOCOLS` maps each protocol's name to its instance.

Each protocol lives in a module of its own (spec section 7):

* ``finetune_lr`` (:mod:`tfprune.protocols.finetune_lr`) — M1 (E8/E5/E6): methods × retraining
  LRs × budgets, mean-JSV curves; the default is the README main job (digits, MLP-7-Linear, L1
  vs L1+OrthP, LR 1e-2 vs 1e-3).
* ``scratch_vs_prune`` (:mod:`tfprune.protocols.scratch_vs_prune`) — M2 (E4/E14): Scratch vs
  S4.2 / SX-A / SX-B pipelines (PxFy).
* ``retrain_schedules`` (:mod:`tfprune.protocols.retrain_schedules`) — LEHUA (E15): FT / LRW /
  SLR / CLR at several budgets.
* ``cross_recipe`` (:mod:`tfprune.protocols.cross_recipe`) — WHY's calibration suggestion 4
  (E16): the 2×2 grid and its verdict.
* ``ratio_sweep`` (:mod:`tfprune.protocols.ratio_sweep`) — accuracy and mean JSV versus pruning
  ratio (E7).
* ``setup_check`` (:mod:`tfprune.protocols.setup_check_protocol`) — run given specs and state the
  strictest setup each pair shares (E17).

What they share (the :class:`Protocol` base class, :class:`Summary`, cell summaries, paired
comparisons, verdict wording) is in :mod:`tfprune.protocols.base`. Those names and the protocol
classes are re-exported here, so ``from tfprune.protocols.grids import Protocol, Summary`` keeps
working.
"""

from __future__ import annotations

from tfprune.protocols.base import (
    ROW_COLUMNS,
    SIGNIFICANCE,
    CellComparison,
    Protocol,
    Summary,
    compare_cells,
    method_label,
    outcome,
    summarize_cells,
)
from tfprune.protocols.cross_recipe import CrossRecipe, cross_recipe_verdict
from tfprune.protocols.finetune_lr import FinetuneLR, lengthen_first_stage
from tfprune.protocols.ratio_sweep import RatioSweep
from tfprune.protocols.retrain_schedules import RetrainSchedules
from tfprune.protocols.scratch_vs_prune import ScratchVsPrune
from tfprune.protocols.setup_check_protocol import SetupCheck

__all__ = [
    "PROTOCOLS",
    "ROW_COLUMNS",
    "SIGNIFICANCE",
    "CellComparison",
    "CrossRecipe",
    "FinetuneLR",
    "Protocol",
    "RatioSweep",
    "RetrainSchedules",
    "ScratchVsPrune",
    "SetupCheck",
    "Summary",
    "compare_cells",
    "cross_recipe_verdict",
    "lengthen_first_stage",
    "method_label",
    "outcome",
    "summarize_cells",
]


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        FinetuneLR(),
        ScratchVsPrune(),
        RetrainSchedules(),
        CrossRecipe(),
        RatioSweep(),
        SetupCheck(),
    )
}
"""Protocol name -> protocol."""
