"""The per-channel mask layer that :func:`tfprune.prune_filters` inserts before consumers."""

from __future__ import annotations

from typing import Any

import tensorflow_model_optimization as tfmot

from tfprune.compat import keras, tf
from tfprune.graph.rules import LayerRule, register_rule

__all__ = ["ChannelMask", "MaskedLayerNormalization", "is_mask_layer"]


@keras.utils.register_keras_serializable(package="tfprune")
class ChannelMask(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Multiplies the last (channel) axis by a 0/1 mask.

    tfprune puts one ``ChannelMask`` in front of every layer that *consumes* channels of a
    prunable group (the next conv/dense, a layer norm). A zero therefore removes the channel's
    whole contribution – after the producer's bias and BatchNormalization – so cutting the
    channel out later with :func:`tfprune.strip_filters` changes nothing.

    The mask is a non-trainable variable (aggregated from the first replica under a
    ``tf.distribute`` strategy). ``policy`` is the pruning policy of the model (a JSON-able
    dict), stored here so a reloaded model can keep pruning on its schedule.

    It is a TF-MOT ``PrunableLayer`` with no prunable weights, so
    ``tfmot.sparsity.keras.prune_low_magnitude`` accepts models that contain it.
    """

    def __init__(self, policy: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = dict(policy or {})
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        channels = tf.TensorShape(input_shape)[-1]
        if channels is None:
            raise ValueError(f"ChannelMask {self.name!r} needs a known channel size.")
        self.mask = self.add_weight(
            name="mask",
            shape=(int(channels),),
            initializer="ones",
            trainable=False,
            dtype=self.dtype,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        return inputs * tf.cast(self.mask, inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_prunable_weights(self) -> list:
        """No weights for TF-MOT to sparsify: the mask is managed by tfprune."""
        return []

    def get_config(self) -> dict:
        return {**super().get_config(), "policy": self.policy}


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedLayerNormalization(keras.layers.LayerNormalization):
    """LayerNormalization over the channel axis whose statistics use only unmasked channels.

    tfprune swaps it in for a ``LayerNormalization`` whose channels are being pruned, so the
    mean and variance are those the stripped model (a plain ``LayerNormalization`` over the
    kept channels) will compute. Masked channels come out as zero.
    """

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        channels = tf.TensorShape(input_shape)[-1]
        self.mask = self.add_weight(
            name="mask",
            shape=(int(channels),),
            initializer="ones",
            trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def call(self, inputs: Any) -> Any:
        x = tf.cast(inputs, self.compute_dtype)
        m = tf.cast(self.mask, x.dtype)
        n = tf.maximum(tf.reduce_sum(m), 1.0)
        mean = tf.reduce_sum(x * m, axis=-1, keepdims=True) / n
        var = tf.reduce_sum(tf.square(x - mean) * m, axis=-1, keepdims=True) / n
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        if self.scale:
            y = y * tf.cast(self.gamma, y.dtype)
        if self.center:
            y = y + tf.cast(self.beta, y.dtype)
        return y * m


def is_mask_layer(layer: Any) -> bool:
    """Whether ``layer`` holds a per-channel ``mask`` variable managed by tfprune."""
    return isinstance(layer, (ChannelMask, MaskedLayerNormalization))


class _ChannelMaskRule(LayerRule):
    """A mask passes channels through; its mask variable is a per-channel parameter."""

    layer_types = (ChannelMask,)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        d = ctx.layer_dim(call.layer, "ch", x.shape[-1])
        ctx.identity(ctx.tensor_dim(x), d)
        ctx.identity(d, ctx.tensor_dim(y))

    def weight_axes(self, layer: Any) -> dict[str, dict[str, int]]:
        return {"mask": {"ch": 0}}


register_rule(_ChannelMaskRule())
