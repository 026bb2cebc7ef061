"""The trainability-preserving pruning (TPP) callback.

Implemented in :mod:`tfprune.regularization.tpp`; re-exported here with the other Keras
callbacks.
"""

from tfprune.regularization.tpp import TrainabilityPreserving

__all__ = ["TrainabilityPreserving"]
