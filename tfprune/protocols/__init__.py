"""Comparison protocols: config -> grid of runs -> run store -> results -> report.

:data:`PROTOCOLS` holds the registered protocols (``finetune_lr``, ``scratch_vs_prune``,
``retrain_schedules``, ``cross_recipe``, ``ratio_sweep``, ``setup_check``); a
:class:`RunSpec` is one run of a grid, :func:`execute` runs it and returns a
:class:`RunRecord`; :func:`run_protocol` runs a whole (sharded) grid with a resumable store.
"""

from tfprune.protocols.execute import execute
from tfprune.protocols.grids import PROTOCOLS
from tfprune.protocols.runner import run_protocol
from tfprune.protocols.setups import setup_check
from tfprune.protocols.spec import RetrainRecipe, RunRecord, RunSpec

__all__ = [
    "PROTOCOLS",
    "RetrainRecipe",
    "RunRecord",
    "RunSpec",
    "execute",
    "run_protocol",
    "setup_check",
]
