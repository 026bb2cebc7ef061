"""The one place that imports Keras for tfprune.

tfprune is built on TF-MOT, which only works with Keras 2 (``tf_keras``). Every module imports
``keras`` from here, never ``tf.keras`` (which may resolve to Keras 3). tfprune sets no
environment variable; TF-MOT itself sets ``TF_USE_LEGACY_KERAS=1`` when it is imported.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

# Every helper below reads tf_keras 2 internals; fail at import, with the fix, on anything else.
if not keras.__version__.startswith("2."):
    raise ImportError(
        f"tfprune needs tf_keras 2.x (Keras 2), found tf_keras {keras.__version__}; install the "
        "versions pinned in setup.cfg: pip install 'tf-keras==2.21.0' 'tensorflow==2.21.0'"
    )

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
    "nodes_by_depth",
    "producing_layer",
    "nested_inputs",
    "nested_outputs",
    "inbound_nodes",
    "outbound_nodes",
    "rename_layer",
    "AutoTrackable",
    "conv_base_class",
    "remove_callable_losses",
    "AttentionWithHeadHook",
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

#: Base class of objects whose ``tf.Variable`` attributes checkpoints track (TF's internal
#: ``AutoTrackable``, the base of ``tf.Module`` without its name scope).
AutoTrackable = tf.__internal__.tracking.AutoTrackable

#: tf_keras' private base class ``Conv`` of every convolution layer (Conv1D/2D/3D, transposed,
#: separable, depthwise).
conv_base_class = keras.layers.Conv1D.__mro__[1]


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


def nodes_by_depth(model: object) -> list:
    """A functional model's own nodes in topological order, inputs first.

    Wraps tf_keras' private ``Functional._nodes_by_depth`` (depth 0 = the output nodes).
    """
    table = model._nodes_by_depth  # noqa: SLF001
    return [node for depth in sorted(table, reverse=True) for node in table[depth]]


def producing_layer(tensor: object) -> object | None:
    """The layer that produced a symbolic Keras tensor (None for other tensors).

    Wraps the private ``KerasTensor._keras_history``.
    """
    history = getattr(tensor, "_keras_history", None)
    return history.layer if history is not None else None


def nested_inputs(model: object) -> object:
    """A functional model's inputs in the structure it was built with (a dict, list, ...)."""
    return model._nested_inputs  # noqa: SLF001


def nested_outputs(model: object) -> object:
    """A functional model's outputs in the structure it was built with."""
    return model._nested_outputs  # noqa: SLF001


def inbound_nodes(layer: object) -> list:
    """The nodes at which ``layer`` was called (one per call in a model graph)."""
    return list(layer._inbound_nodes)  # noqa: SLF001


def outbound_nodes(layer: object) -> list:
    """The nodes of the layers that consume ``layer``'s outputs."""
    return list(layer._outbound_nodes)  # noqa: SLF001


def rename_layer(layer: object, name: str) -> None:
    """Give a layer another name before a model is built from it (tf_keras' private ``_name``).

    Used for layers Keras names automatically (``tf.math.add_3``...), to make them readable.
    """
    layer._name = name  # noqa: SLF001


def remove_callable_losses(model: object, fn: object) -> bool:
    """Drop the loss that was added with ``model.add_loss(fn)``; returns whether it was there.

    Keras has no public way to remove a loss; this edits the private ``_callable_losses`` list,
    where Keras keeps each callable wrapped in a ``functools.partial``.
    """
    losses = getattr(model, "_callable_losses", None)
    if losses is None:
        return False
    keep = [c for c in losses if not (c is fn or (getattr(c, "args", None) or (None,))[0] is fn)]
    removed = len(keep) != len(losses)
    losses[:] = keep
    return removed


class AttentionWithHeadHook(keras.layers.MultiHeadAttention):
    """``MultiHeadAttention`` with public hooks around the attention of the projected heads.

    tf_keras computes attention in the overridable (but underscored) ``_compute_attention``,
    from the projected query, key and value, shape ``(batch, positions..., heads, dim)``. This
    class passes them through :meth:`transform_projections` first, and the attention output
    (same layout, ``value_dim`` last) through :meth:`transform_heads` before the output
    projection. Subclasses override the hooks.
    """

    def transform_projections(self, query: object, key: object, value: object) -> tuple:
        """Change the projected query, key and value before attention (default: none)."""
        return query, key, value

    def transform_heads(self, attention_output: object) -> object:
        """Change the per-head attention outputs before the output projection (default: none)."""
        return attention_output

    def _compute_attention(
        self, query: object, key: object, value: object, *args: object, **kwargs: object
    ) -> tuple:
        query, key, value = self.transform_projections(query, key, value)
        attention_output, scores = super()._compute_attention(query, key, value, *args, **kwargs)
        return self.transform_heads(attention_output), scores
