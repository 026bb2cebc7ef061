"""The protocol registry, and configs resolved against it.

:data:`PROTOCOLS` maps each protocol's name to its instance; :func:`resolve_config` resolves a
config against it.

Each protocol lives in a module of its own under :mod:`tfprune.protocols.definitions`:

* ``finetune_lr`` — fine-tuning LR effect: methods × retraining LRs × budgets, mean-JSV curves;
  the default is the README main job (digits, MLP-7-Linear, L1 vs L1+OrthP, LR 1e-2 vs 1e-3).
* ``scratch_vs_prune`` — scratch training vs pruning: Scratch vs S4.2 / SX-A / SX-B pipelines
  (PxFy).
* ``retrain_schedules`` — retraining variants (Le & Hua 2021): FT / LRW / SLR / CLR at several
  budgets.
* ``cross_recipe`` — each of two methods retrained with both methods' recipes: the 2×2 grid and
  its verdict.
* ``ratio_sweep`` — accuracy and mean JSV versus pruning ratio.
* ``setup_check`` — run given specs and state the strictest setup each pair shares.

What they share (the :class:`~tfprune.protocols.base.Protocol` base class,
:class:`~tfprune.protocols.base.Summary`, cell summaries, paired comparisons, verdict wording) is
in :mod:`tfprune.protocols.base`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from tfprune.configs.protocol import ProtocolConfig, resolve_protocol_config
from tfprune.protocols.base import Protocol
from tfprune.protocols.definitions.cross_recipe import CrossRecipe
from tfprune.protocols.definitions.finetune_lr import FinetuneLR
from tfprune.protocols.definitions.ratio_sweep import RatioSweep
from tfprune.protocols.definitions.retrain_schedules import RetrainSchedules
from tfprune.protocols.definitions.scratch_vs_prune import ScratchVsPrune
from tfprune.protocols.definitions.setup_check import SetupCheck

__all__ = ["PROTOCOLS", "resolve_config"]


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
