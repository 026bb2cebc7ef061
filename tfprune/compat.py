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

__all__ = [
    "tf",
    "keras",
    "KerasTensor",
    "functional_class",
    "is_functional",
    "tfmot_prune_wrapper_class",
    "tfmot_quantize_wrapper_class",
]

# TF-MOT's wrapper classes are not in its public API; tfprune's rules need to recognise them.
from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import (  # noqa: E402
    QuantizeWrapper as tfmot_quantize_wrapper_class,
)
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (  # noqa: E402
    PruneLowMagnitude as tfmot_prune_wrapper_class,
)
from tf_keras.src.engine.functional import Functional as functional_class  # noqa: E402
from tf_keras.src.engine.keras_tensor import KerasTensor  # noqa: E402


def is_functional(model: object) -> bool:
    """True for a graph-network model (functional or built Sequential)."""
    return isinstance(model, functional_class) and getattr(model, "_is_graph_network", False)
