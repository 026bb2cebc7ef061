"""The growing-regularization callback (GReg-1/GReg-2).

Implemented in :mod:`tfprune.regularization.greg`; re-exported here with the other Keras
callbacks.
"""

from tfprune.regularization.greg import GrowingRegularization

__all__ = ["GrowingRegularization"]
