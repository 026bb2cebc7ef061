"""Keras callbacks: filter masks on a schedule, regularization-based pruning, JSV logging."""

from tfprune.callbacks.greg import GrowingRegularization
from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.callbacks.masks import UpdateFilterMasks
from tfprune.callbacks.tpp import TrainabilityPreserving
from tfprune.regularization import GroupLasso, NetworkSlimming

__all__ = [
    "GroupLasso",
    "GrowingRegularization",
    "JacobianSingularValues",
    "NetworkSlimming",
    "TrainabilityPreserving",
    "UpdateFilterMasks",
]
