"""The one place that imports Keras for tfprune.

tfprune is built on TF-MOT, which only works with Keras 2 (``tf_keras``). Every module imports
``keras`` from here, never ``tf.keras`` (which may resolve to Keras 3).
"""

from __future__ import annotations

import os

# Make sure `tf.keras` inside TensorFlow/TF-MOT also resolves to Keras 2 for any code we call.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras", "KerasTensor", "functional_class", "is_functional"]

from tf_keras.src.engine.functional import Functional as functional_class  # noqa: E402
from tf_keras.src.engine.keras_tensor import KerasTensor  # noqa: E402


def is_functional(model: object) -> bool:
    """True for a graph-network model (functional or built Sequential)."""
    return isinstance(model, functional_class) and getattr(model, "_is_graph_network", False)
