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
    "saved_input_spec",
    "own_weights",
    "expects_training_arg",
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


def saved_input_spec(model: object) -> object:
    """The input signature (nest of ``tf.TensorSpec``) a subclassed model was first called with.

    None if the model has never been called (or built with ``model.build``). Wraps the private
    ``Model._saved_model_inputs_spec`` of tf_keras.
    """
    return getattr(model, "_saved_model_inputs_spec", None)


def own_weights(layer: object) -> list:
    """The variables a layer created itself, leaving out those of its sublayers.

    Wraps the private ``Layer._trainable_weights``/``_non_trainable_weights`` lists of tf_keras.
    """
    return list(getattr(layer, "_trainable_weights", [])) + list(
        getattr(layer, "_non_trainable_weights", [])
    )


def expects_training_arg(layer: object) -> bool:
    """Whether ``layer.call`` takes a ``training`` argument (tf_keras' private call spec)."""
    return bool(getattr(layer, "_expects_training_arg", False))
