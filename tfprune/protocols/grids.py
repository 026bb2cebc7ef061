"""The protocol registry, and configs resolved against it.

:data:`PROTOCOLS` maps each protocol's name to its instance; :func:`resolve_config` resolves a
config against it.

Each protocol lives in a module of its own:

* ``finetune_lr`` (:mod:`tfprune.protocols.finetune_lr`) — fine-tuning LR effect: methods ×
  retraining LRs × budgets, mean-JSV curves; the default is the README main job (digits,
  MLP-7-Linear, L1 vs L1+OrthP, LR 1e-2 vs 1e-3).
* ``scratch_vs_prune`` (:mod:`tfprune.protocols.scratch_vs_prune`) — scratch training vs pruning:
  Scratch vs S4.2 / SX-A / SX-B pipelines (PxFy).
* ``retrain_schedules`` (:mod:`tfprune.protocols.retrain_schedules`) — retraining variants (Le & Hua
  2021): FT / LRW / SLR / CLR at several budgets.
* ``cross_recipe`` (:mod:`tfprune.protocols.cross_recipe`) — each of two methods retrained with
  both methods' recipes: the 2×2 grid and its verdict.
* ``ratio_sweep`` (:mod:`tfprune.protocols.ratio_sweep`) — accuracy and mean JSV versus pruning
  ratio.
* ``setup_check`` (:mod:`tfprune.protocols.setup_check_protocol`) — run given specs and state the
  strictest setup each pair shares.

What they share (the :class:`Protocol` base class, :class:`Summary`, cell summaries, paired
comparisons, verdict wording) is in :mod:`tfprune.protocols.base`. Those names and the protocol
classes are re-exported here, so ``from tfprune.protocols.grids import Protocol, Summary`` keeps
working.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from tfprune.configs.protocol import ProtocolConfig, resolve_protocol_config
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
    "resolve_config",
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


def resolve_config(
    protocol: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Iterable[str | Mapping[str, Any]] | str | None = None,
    *,
    check_files: bool = True,
) -> ProtocolConfig:
    """The validated config of a registered protocol: its default → ``config_file`` → overrides.

    What ``tfprune-compare --protocol/--config/--params_override`` resolves. ``protocol`` None
    takes the YAML file's ``protocol``, else ``finetune_lr``; ``overrides`` are
    ``"a.b=1,c=x"`` strings or YAML/JSON mappings (or dicts), applied in order; ``check_files``
    also checks that the dataset files exist. Errors name the field and the fix (see
    :func:`tfprune.configs.resolve_protocol_config`, which takes any registry).
    """
    return resolve_protocol_config(
        protocol, config_file, overrides, registry=PROTOCOLS, check_files=check_files
    )
