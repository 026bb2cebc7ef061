"""The per-channel mask layer that :func:`tfprune.prune_filters` inserts before consumers."""

from __future__ import annotations

import functools
from typing import Any

from tfprune.compat import KERAS3, AttentionWithHeadHook, flavour_of, keras, tf
from tfprune.graph.rules import LayerRule, register_rule, rule_for
from tfprune.layers.keras3_masks import (
    is_keras3_channel_mask,
    is_keras3_mask_layer,
    keras3_mask_classes,
    keras3_twin_tables,
)
from tfprune.layers.policy_config import config_with_policy as _with_policy
from tfprune.layers.policy_config import policy_argument as _policy
from tfprune.layers.tied_masks import TiedMasks
from tfprune.selection import PruningPolicy

__all__ = [
    "ChannelMask",
    "MaskedConv1D",
    "MaskedConv2D",
    "MaskedConv3D",
    "MaskedConvLSTM1D",
    "MaskedConvLSTM2D",
    "MaskedConvLSTM3D",
    "MaskedBidirectional",
    "MaskedDense",
    "MaskedGRU",
    "MaskedLSTM",
    "MaskedLayerNormalization",
    "MaskedMultiHeadAttention",
    "MaskedSimpleRNN",
    "channel_mask_class",
    "is_channel_mask",
    "is_mask_layer",
    "masked_consumer_class",
    "masked_twin_class",
    "mask_variables",
    "stock_class",
]


class _PolicyMixin:
    """Lets the layer carry the model's pruning policy (one mask layer of a model does)."""

    #: Names (as the layer's rule names its weights) of the mask variables tfprune manages.
    mask_weight_names: tuple[str, ...] = ("mask",)

    def __init__(
        self, *args: Any, policy: PruningPolicy | dict | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy = _policy(policy)

    def get_config(self) -> dict:
        return _with_policy(super().get_config(), self.policy)


@keras.utils.register_keras_serializable(package="tfprune")
class ChannelMask(keras.layers.Layer):
    """Multiplies the last (channel) axis by a 0/1 mask.

    tfprune puts one ``ChannelMask`` in front of every layer that *consumes* channels of a
    prunable group (the next conv/dense, a layer norm). A zero therefore removes the channel's
    whole contribution – after the producer's bias and BatchNormalization – so cutting the
    channel out later with :func:`tfprune.strip_filters` changes nothing.

    The mask is a non-trainable variable (aggregated from the first replica under a
    ``tf.distribute`` strategy). ``policy``: the model's :class:`~tfprune.PruningPolicy`, on
    the one mask layer of the model that carries it (None on the others); its config is saved
    with the layer so a reloaded model can keep pruning on its schedule.

    It has TF-MOT's ``get_prunable_weights`` (no prunable weights), so
    ``tfmot.sparsity.keras.prune_low_magnitude`` accepts models that contain it.
    """

    mask_role = "ch"
    mask_weight_names = ("mask",)

    def __init__(self, policy: PruningPolicy | dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = _policy(policy)
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
        return _with_policy(super().get_config(), self.policy)


def _add_mask(layer: Any, channels: int, name: str = "mask") -> Any:
    return layer.add_weight(
        name=name,
        shape=(int(channels),),
        initializer="ones",
        trainable=False,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedLayerNormalization(_PolicyMixin, keras.layers.LayerNormalization):
    """LayerNormalization over the channel axis whose statistics use only unmasked channels.

    tfprune swaps it in for a ``LayerNormalization`` whose channels are being pruned, so the
    mean and variance are those the stripped model (a plain ``LayerNormalization`` over the
    kept channels) will compute. Masked channels come out as zero.
    """

    mask_role = "ch"

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.mask = _add_mask(self, tf.TensorShape(input_shape)[-1])

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


class _InputMasked(_PolicyMixin):
    """Mixin: a consumer whose kernel is multiplied by a 0/1 mask over its input channels.

    ``conv(x, W * m) == conv(x * m, W)`` with identical gradients, but masking the (small)
    kernel instead of the (large) activation keeps the training step as fast as plain
    ``fit``. Only the product is used; the stored kernel is untouched.
    """

    mask_role = "in"

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.mask = _add_mask(self, tf.TensorShape(input_shape)[-1])

    def get_prunable_weights(self) -> list:
        """The kernel, so TF-MOT's ``prune_low_magnitude`` can also sparsify it."""
        return [self.kernel]

    def _masked_kernel(self, kernel: Any) -> Any:
        m = tf.cast(self.mask, kernel.dtype)
        shape = [1] * (kernel.shape.rank - 2) + [-1, 1]
        return kernel * tf.reshape(m, shape)


class _KernelMaskedConv(_InputMasked):
    """Mixin for Conv1D/2D/3D: the convolution sees the masked kernel."""

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        return super().convolution_op(inputs, self._masked_kernel(kernel))


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedConv1D(_KernelMaskedConv, keras.layers.Conv1D):
    """Conv1D with a tfprune input-channel mask on its kernel."""


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedConv2D(_KernelMaskedConv, keras.layers.Conv2D):
    """Conv2D with a tfprune input-channel mask on its kernel."""


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedConv3D(_KernelMaskedConv, keras.layers.Conv3D):
    """Conv3D with a tfprune input-channel mask on its kernel."""


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedDense(_InputMasked, keras.layers.Dense):
    """Dense with a tfprune input-channel mask on its kernel."""

    def call(self, inputs: Any) -> Any:
        if not isinstance(inputs, tf.Tensor) or isinstance(inputs, tf.RaggedTensor):
            return super().call(inputs)  # ragged/sparse: not produced by prunable groups
        inputs = tf.cast(inputs, self.compute_dtype)
        kernel = self._masked_kernel(tf.convert_to_tensor(self.kernel))
        rank = inputs.shape.rank
        if rank == 2:
            outputs = tf.matmul(inputs, kernel)
        else:
            outputs = tf.tensordot(inputs, kernel, [[rank - 1], [0]])
            if not tf.executing_eagerly():
                outputs.set_shape(inputs.shape[:-1].concatenate([self.units]))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


class _MaskedRecurrentCell:
    """Cell mixin: each unit's previous state reaches the gates through a 0/1 mask.

    The cell's ``recurrent_kernel`` reads as the stored kernel with the rows of masked units
    zeroed, so a pruned unit's state no longer feeds the kept units – exactly what the layer
    with that unit cut out computes. Its gradients flow to the stored kernel.
    """

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        # A ConvLSTM cell's units are its filters.
        self.mask = _add_mask(self, getattr(self, "units", None) or self.filters)

    @property
    def recurrent_kernel(self) -> Any:
        kernel = self._tfprune_recurrent_kernel
        mask = getattr(self, "mask", None)
        if mask is None:
            return kernel
        # State rows are the second-to-last axis (also of a ConvLSTM's conv kernel).
        return kernel * tf.cast(mask, kernel.dtype)[:, None]

    @recurrent_kernel.setter
    def recurrent_kernel(self, value: Any) -> None:
        self._tfprune_recurrent_kernel = value


class _MaskedRecurrent(_PolicyMixin):
    """Mixin for SimpleRNN/GRU/LSTM whose cell masks the recurrent kernel by unit."""

    mask_role = "out"
    _cell_class: type | None = None  # None: the masked twin of the layer's own cell class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stock cell, not built yet, becomes its masked twin.
        self.cell.__class__ = self._cell_class or _masked_cell(type(self.cell))

    @property
    def mask(self) -> Any:
        """The per-unit 0/1 mask (held by the cell)."""
        return self.cell.mask


@functools.cache
def _masked_cell(cell: type) -> type:
    return type(f"Masked{cell.__name__}", (_MaskedRecurrentCell, cell), {})


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedSimpleRNN(_MaskedRecurrent, keras.layers.SimpleRNN):
    """SimpleRNN whose pruned units stop feeding their state back (tfprune mask by unit)."""

    _cell_class = _masked_cell(keras.layers.SimpleRNNCell)
    _tfprune_stock = keras.layers.SimpleRNN


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedGRU(_MaskedRecurrent, keras.layers.GRU):
    """GRU whose pruned units stop feeding their state back (tfprune mask by unit)."""

    _cell_class = _masked_cell(keras.layers.GRUCell)
    _tfprune_stock = keras.layers.GRU


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedLSTM(_MaskedRecurrent, keras.layers.LSTM):
    """LSTM whose pruned units stop feeding their state back (tfprune mask by unit)."""

    _cell_class = _masked_cell(keras.layers.LSTMCell)
    _tfprune_stock = keras.layers.LSTM


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedConvLSTM1D(_MaskedRecurrent, keras.layers.ConvLSTM1D):
    """ConvLSTM1D whose pruned filters stop feeding their state back (tfprune mask by filter)."""

    _tfprune_stock = keras.layers.ConvLSTM1D


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedConvLSTM2D(_MaskedRecurrent, keras.layers.ConvLSTM2D):
    """ConvLSTM2D whose pruned filters stop feeding their state back (tfprune mask by filter)."""

    _tfprune_stock = keras.layers.ConvLSTM2D


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedConvLSTM3D(_MaskedRecurrent, keras.layers.ConvLSTM3D):
    """ConvLSTM3D whose pruned filters stop feeding their state back (tfprune mask by filter)."""

    _tfprune_stock = keras.layers.ConvLSTM3D


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedMultiHeadAttention(_PolicyMixin, AttentionWithHeadHook):
    """MultiHeadAttention whose pruned heads output zeros (tfprune mask by head).

    The mask multiplies each head's attention output before the output projection, so a
    pruned head contributes nothing: exactly the layer with that head cut out. Two more masks
    zero pruned key dimensions (in the projected query: their products leave every score) and
    value dimensions (in the projected value).
    """

    mask_role = "head"
    mask_weight_names = ("mask", "key_mask", "value_mask")
    _tfprune_stock = keras.layers.MultiHeadAttention

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.get_config()
        self.mask = _add_mask(self, config["num_heads"])
        self.key_mask = _add_mask(self, config["key_dim"], "key_mask")
        self.value_mask = _add_mask(self, config["value_dim"] or config["key_dim"], "value_mask")

    @property
    def masks_by_role(self) -> dict[str, Any]:
        """The 0/1 masks of its heads and of the key and value dimensions of every head."""
        return {"head": self.mask, "key": self.key_mask, "value": self.value_mask}

    def transform_projections(self, query: Any, key: Any, value: Any) -> tuple:
        # A zero in the query's dimension d removes q_d k_d from every score.
        query = query * tf.cast(self.key_mask, query.dtype)
        return query, key, value * tf.cast(self.value_mask, value.dtype)

    def transform_heads(self, attention_output: Any) -> Any:
        m = tf.cast(self.mask, attention_output.dtype)
        return attention_output * tf.reshape(m, [-1, 1])


@keras.utils.register_keras_serializable(package="tfprune")
class MaskedBidirectional(_PolicyMixin, keras.layers.Bidirectional):
    """Bidirectional RNN whose pruned units stop feeding their state back, in both directions.

    The wrapped SimpleRNN/GRU/LSTM (and the backward copy Keras makes of it) are tfprune's
    masked recurrent layers; both use the same units mask. Its config names the stock layer.
    """

    mask_role = "out"
    mask_weight_names = ("forward/mask", "backward/mask")
    _tfprune_stock = keras.layers.Bidirectional

    def __init__(self, layer: Any, *args: Any, **kwargs: Any) -> None:
        backward = kwargs.get("backward_layer")
        if backward is not None:
            kwargs["backward_layer"] = _masked_recurrent_copy(backward)
        super().__init__(_masked_recurrent_copy(layer), *args, **kwargs)

    @property
    def mask(self) -> TiedMasks:
        """The per-unit 0/1 mask of both directions."""
        return TiedMasks([self.forward_layer.cell.mask, self.backward_layer.cell.mask])

    def get_config(self) -> dict:
        config = super().get_config()
        for key, inner in (("layer", self.forward_layer), ("backward_layer", self.backward_layer)):
            stock = stock_class(inner)
            if key in config and stock is not None:
                inner_config = {k: v for k, v in config[key]["config"].items() if k != "policy"}
                config[key] = {"class_name": stock.__name__, "config": inner_config}
        return config


def _masked_recurrent_copy(layer: Any) -> Any:
    """A tfprune masked copy of a stock SimpleRNN/GRU/LSTM (others are returned as they are)."""
    twin = _MASKED_SELF.get(type(layer))
    if twin is None or not isinstance(layer, keras.layers.RNN):
        return layer
    return twin.from_config(layer.get_config())


# Stock layer class -> its tfprune twin with a mask (on the kernel's input rows for consumers,
# on the statistics of a layer norm, on the recurrent state of an RNN). Whether a layer may use
# its twin is its rule's decision (``input_mask``/``self_mask_role``).
_MASKED_CONSUMERS = {
    keras.layers.Conv1D: MaskedConv1D,
    keras.layers.Conv2D: MaskedConv2D,
    keras.layers.Conv3D: MaskedConv3D,
    keras.layers.Dense: MaskedDense,
}
_MASKED_SELF = {
    keras.layers.LayerNormalization: MaskedLayerNormalization,
    keras.layers.SimpleRNN: MaskedSimpleRNN,
    keras.layers.GRU: MaskedGRU,
    keras.layers.LSTM: MaskedLSTM,
    keras.layers.ConvLSTM1D: MaskedConvLSTM1D,
    keras.layers.ConvLSTM2D: MaskedConvLSTM2D,
    keras.layers.ConvLSTM3D: MaskedConvLSTM3D,
    keras.layers.MultiHeadAttention: MaskedMultiHeadAttention,
    keras.layers.Bidirectional: MaskedBidirectional,
}


def _twin_tables(layer: Any) -> tuple[dict[type, type], dict[type, type]]:
    """The twin tables (consumers, self-masked) of ``layer``'s Keras flavour."""
    if flavour_of(layer) == KERAS3:
        return keras3_twin_tables()
    return _MASKED_CONSUMERS, _MASKED_SELF


def masked_consumer_class(layer: Any) -> type | None:
    """The kernel-masked class for a stock consumer layer, or None (use a ChannelMask)."""
    cls = _twin_tables(layer)[0].get(type(layer))
    if cls is None or rule_for(layer).input_mask(layer) != "kernel":
        return None
    return cls


def masked_twin_class(layer: Any) -> type | None:
    """The class that masks ``layer``'s own channels (its rule's ``self_mask_role``), or None."""
    rule = rule_for(layer)
    if not rule.self_mask_roles(layer):
        return None
    return _twin_tables(layer)[1].get(rule.stock_equivalent(layer)[0])


def stock_class(layer: Any) -> type | None:
    """The stock Keras class a tfprune masked layer stands for (None for ChannelMask)."""
    consumers, self_masked = _twin_tables(layer)
    for stock, masked in list(consumers.items()) + list(self_masked.items()):
        if type(layer) is masked:
            return stock
    return None


def mask_variables(layer: Any) -> dict[str, Any]:
    """The 0/1 mask variables of a tfprune masked layer, by the channel role each one masks."""
    by_role = getattr(layer, "masks_by_role", None)
    return dict(by_role) if by_role is not None else {layer.mask_role: layer.mask}


def channel_mask_class(model: Any) -> type:
    """The ``ChannelMask`` class of ``model``'s Keras flavour."""
    return keras3_mask_classes().ChannelMask if flavour_of(model) == KERAS3 else ChannelMask


def is_channel_mask(layer: Any) -> bool:
    """Whether ``layer`` is a tfprune ``ChannelMask`` (of either Keras flavour)."""
    return isinstance(layer, ChannelMask) or is_keras3_channel_mask(layer)


def is_mask_layer(layer: Any) -> bool:
    """Whether ``layer`` holds a per-channel ``mask`` variable managed by tfprune."""
    if flavour_of(layer) == KERAS3:
        return is_keras3_mask_layer(layer)
    return isinstance(
        layer,
        (
            ChannelMask,
            MaskedLayerNormalization,
            _InputMasked,
            _MaskedRecurrent,
            MaskedMultiHeadAttention,
            MaskedBidirectional,
        ),
    )


class _ChannelMaskRule(LayerRule):
    """A mask passes channels through; its mask variable is a per-channel parameter."""

    layer_types = (ChannelMask,)

    def applies(self, layer: Any) -> bool:
        return is_channel_mask(layer)

    def connect(self, ctx: Any, call: Any) -> None:
        ctx.per_channel(call.layer, call.inputs[0], call.outputs[0])

    def weight_axes(self, layer: Any) -> dict[str, dict[str, int]]:
        return {"mask": {"ch": 0}}


register_rule(_ChannelMaskRule())
