"""Comparison protocols: config -> grid of runs -> run store -> results -> report.

:data:`PROTOCOLS` holds the registered protocols (``finetune_lr``, ``scratch_vs_prune``,
``retrain_schedules``, ``cross_recipe``, ``ratio_sweep``, ``setup_check``) and
:func:`resolve_config` resolves a config against them; a :class:`RunSpec` is one run of a grid
(its method one of :data:`METHODS`), :func:`execute` runs it and returns a :class:`RunRecord`;
:func:`run_protocol` runs a whole (sharded) grid with a resumable store.
"""

from tfprune.protocols.execute import execute
from tfprune.protocols.grids import PROTOCOLS, resolve_config
from tfprune.protocols.methods import METHODS, get_method
from tfprune.protocols.runner import run_protocol
from tfprune.protocols.setups import setup_check
from tfprune.protocols.spec import RunOptions, RunRecord, RunSpec

__all__ = [
    "METHODS",
    "PROTOCOLS",
    "RunOptions",
    "RunRecord",
    "RunSpec",
    "execute",
    "get_method",
    "resolve_config",
    "run_protocol",
    "setup_check",
]
