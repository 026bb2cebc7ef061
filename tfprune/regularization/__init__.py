"""Regularization-based pruning on channel groups: GReg-1/2, TPP, network slimming, group lasso.

Each method is a Keras callback for a model from :func:`tfprune.prune_filters` (use
``sparsity=0.0`` to get all-ones masks on every prunable group). It adds its penalty to the
model's losses, follows its schedule during ``fit`` and finally sets the masks, so that
:func:`tfprune.strip_filters` removes the regularized filters.

Also the orthogonality regularizers the TPP paper compares with (:class:`KernelOrthogonality`,
:class:`ConvOrthogonality`): constant-weight penalties for any model, which set no masks.
"""

from tfprune.regularization.greg import GrowingRegularization
from tfprune.regularization.group_lasso import GroupLasso
from tfprune.regularization.orthogonality import (
    ConvOrthogonality,
    KernelOrthogonality,
    OrthogonalityRegularizer,
)
from tfprune.regularization.penalty import GroupRegularizer, SeparationWarning
from tfprune.regularization.slimming import NetworkSlimming
from tfprune.regularization.state import RegularizationState
from tfprune.regularization.tpp import TrainabilityPreserving

__all__ = [
    "ConvOrthogonality",
    "GroupLasso",
    "GroupRegularizer",
    "GrowingRegularization",
    "KernelOrthogonality",
    "NetworkSlimming",
    "OrthogonalityRegularizer",
    "RegularizationState",
    "SeparationWarning",
    "TrainabilityPreserving",
]
