"""Keras callbacks: filter-mask updates on a schedule, Jacobian singular values logging."""

from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.callbacks.masks import UpdateFilterMasks

__all__ = ["JacobianSingularValues", "UpdateFilterMasks"]
