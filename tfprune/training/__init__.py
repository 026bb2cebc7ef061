"""tfprune.training: the one training pipeline (recipe -> optimizer and LR schedule -> fit).

:func:`fit` trains with a :class:`TrainingRecipe` and an :class:`LRSchedule`;
:func:`make_optimizer` builds the recipe's optimizer with PyTorch's coupled weight decay by
default (:class:`CoupledSGD`).
"""

from tfprune.training.optimizers import (
    WEIGHT_DECAY_MODES,
    CoupledAdam,
    CoupledSGD,
    make_optimizer,
)
from tfprune.training.pipeline import compile_model, evaluate, fit, scope, steps_per_execution
from tfprune.training.recipe import TrainingRecipe
from tfprune.training.schedules import LRSchedule, parse_schedule

__all__ = [
    "WEIGHT_DECAY_MODES",
    "CoupledAdam",
    "CoupledSGD",
    "LRSchedule",
    "TrainingRecipe",
    "compile_model",
    "evaluate",
    "fit",
    "make_optimizer",
    "parse_schedule",
    "scope",
    "steps_per_execution",
]
