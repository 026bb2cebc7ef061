"""Learning-rate schedules and scratch budgets (kept here for the protocols' users).

The implementation lives in :mod:`tfprune.training.schedules`; see its documentation for the
schedule syntax.
"""

from tfprune.training.schedules import (
    EpochLRScheduler,
    LRSchedule,
    StepLRScheduler,
    equal_steps,
    format_piecewise,
    halving_schedule,
    lr_rewinding,
    lr_scheduler,
    parse_milestones,
    parse_piecewise,
    parse_schedule,
    rescale_piecewise,
    scratch_b_epochs,
    scratch_e_epochs,
    truncate_piecewise,
)

__all__ = [
    "EpochLRScheduler",
    "LRSchedule",
    "StepLRScheduler",
    "equal_steps",
    "format_piecewise",
    "halving_schedule",
    "lr_rewinding",
    "lr_scheduler",
    "parse_milestones",
    "parse_piecewise",
    "parse_schedule",
    "rescale_piecewise",
    "scratch_b_epochs",
    "scratch_e_epochs",
    "truncate_piecewise",
]
