"""Keras callbacks: filter masks on a schedule and JSV logging.

The regularization-based pruning callbacks (GReg, TPP, slimming, group lasso) live in
:mod:`tfprune.regularization`.
"""

from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.callbacks.masks import UpdateFilterMasks

__all__ = [
    "JacobianSingularValues",
    "UpdateFilterMasks",
]
