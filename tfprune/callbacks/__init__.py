"""Keras callbacks: filter masks on a schedule, regularization-based pruning, JSV logging."""

from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.callbacks.masks import UpdateFilterMasks
from tfprune.regularization import GroupLasso, NetworkSlimming
from tfprune.regularization.greg import GrowingRegularization
from tfprune.regularization.tpp import TrainabilityPreserving

__all__ = [
    "GroupLasso",
    "GrowingRegularization",
    "JacobianSingularValues",
    "NetworkSlimming",
    "TrainabilityPreserving",
    "UpdateFilterMasks",
]
