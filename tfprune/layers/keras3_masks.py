"""The mask layers of masked Keras 3 models: the Keras 3 twins of :mod:`tfprune.layers.masks`.

They compute what their tf_keras namesakes compute, with Keras 3 ops: ``ChannelMask`` multiplies
the channel axis by a 0/1 mask; ``MaskedConv1D/2D/3D`` and ``MaskedDense`` multiply their
kernel's input rows by one (``conv(x, W * m) == conv(x * m, W)``, as fast as plain ``fit``);
``MaskedLayerNormalization`` takes its statistics over the unmasked channels only;
``MaskedSimpleRNN``/``MaskedGRU``/``MaskedLSTM`` stop a pruned unit's state feeding back into the
gates (``MaskedBidirectional`` in both directions); ``MaskedMultiHeadAttention`` zeroes pruned
heads and key/value dimensions.

The classes are made the first time a Keras 3 model is masked (so Keras 3 is imported only
then) and registered as Keras 3 serializables of package ``tfprune``: a masked model saved as
``.keras`` loads back with ``keras.saving.load_model`` once they exist, e.g. with
``custom_objects=tfprune.custom_objects("keras3")``.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from tfprune.compat import KERAS3, flavour_of, keras3, keras3_attention_with_head_hook
from tfprune.layers.policy_config import config_with_policy, policy_argument
from tfprune.layers.tied_masks import TiedMasks

__all__ = [
    "keras3_mask_classes",
    "is_keras3_channel_mask",
    "is_keras3_mask_layer",
    "keras3_twin_tables",
]


@functools.cache
def keras3_mask_classes() -> types.SimpleNamespace:
    """The Keras 3 mask layer classes, made (and registered) on first use."""
    k3 = keras3()
    ops = k3.ops
    register = k3.saving.register_keras_serializable(package="tfprune")

    def add_mask(layer: Any, channels: Any, name: str = "mask") -> Any:
        if channels is None:
            raise ValueError(f"{type(layer).__name__} {layer.name!r} needs a known channel size.")
        return layer.add_weight(
            name=name,
            shape=(int(channels),),
            initializer="ones",
            trainable=False,
            aggregation="only_first_replica",
        )

    class PolicyMixin:
        """Lets the layer carry the model's pruning policy (one mask layer of a model does)."""

        mask_weight_names: tuple[str, ...] = ("mask",)

        def __init__(self, *args: Any, policy: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.policy = policy_argument(policy)

        def get_config(self) -> dict:
            return config_with_policy(super().get_config(), self.policy)

    @register
    class ChannelMask(PolicyMixin, k3.layers.Layer):
        """Multiplies the last (channel) axis by a 0/1 mask (Keras 3)."""

        mask_role = "ch"

        def __init__(self, policy: Any = None, **kwargs: Any) -> None:
            super().__init__(policy=policy, **kwargs)
            self.supports_masking = True

        def build(self, input_shape: Any) -> None:
            self.mask = add_mask(self, input_shape[-1])

        def call(self, inputs: Any) -> Any:
            return inputs * ops.cast(self.mask, inputs.dtype)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    class InputMasked(PolicyMixin):
        """A consumer whose kernel's input rows are multiplied by a 0/1 mask."""

        mask_role = "in"

        def build(self, input_shape: Any) -> None:
            super().build(input_shape)
            self.mask = add_mask(self, input_shape[-1])

        def masked_kernel(self, kernel: Any) -> Any:
            """``kernel`` with the rows of masked input channels zeroed."""
            m = ops.cast(self.mask, kernel.dtype)
            return kernel * ops.reshape(m, [1] * (len(kernel.shape) - 2) + [-1, 1])

        # The stock layer saves and loads its kernel and bias by position; the mask follows.
        def save_own_variables(self, store: Any) -> None:
            super().save_own_variables(store)
            if self.built:
                store[str(len(self.weights) - 1)] = self.mask

        def load_own_variables(self, store: Any) -> None:
            super().load_own_variables(store)
            if self.built:
                self.mask.assign(store[str(len(self.weights) - 1)])

    class KernelMaskedConv(InputMasked):
        def convolution_op(self, inputs: Any, kernel: Any) -> Any:
            return super().convolution_op(inputs, self.masked_kernel(kernel))

    @register
    class MaskedConv1D(KernelMaskedConv, k3.layers.Conv1D):
        """Conv1D with a tfprune input-channel mask on its kernel (Keras 3)."""

    @register
    class MaskedConv2D(KernelMaskedConv, k3.layers.Conv2D):
        """Conv2D with a tfprune input-channel mask on its kernel (Keras 3)."""

    @register
    class MaskedConv3D(KernelMaskedConv, k3.layers.Conv3D):
        """Conv3D with a tfprune input-channel mask on its kernel (Keras 3)."""

    @register
    class MaskedDense(InputMasked, k3.layers.Dense):
        """Dense with a tfprune input-channel mask on its kernel (Keras 3)."""

        def call(self, inputs: Any, training: Any = None) -> Any:
            x = ops.matmul(inputs, self.masked_kernel(self.kernel))
            if self.bias is not None:
                x = ops.add(x, self.bias)
            return x if self.activation is None else self.activation(x)

    @register
    class MaskedLayerNormalization(PolicyMixin, k3.layers.LayerNormalization):
        """LayerNormalization whose statistics use only unmasked channels (Keras 3)."""

        mask_role = "ch"

        def build(self, input_shape: Any) -> None:
            super().build(input_shape)
            self.mask = add_mask(self, input_shape[-1])

        def call(self, inputs: Any) -> Any:
            x = ops.cast(inputs, self.compute_dtype)
            m = ops.cast(self.mask, x.dtype)
            n = ops.maximum(ops.sum(m), 1.0)
            mean = ops.sum(x * m, axis=-1, keepdims=True) / n
            var = ops.sum(ops.square(x - mean) * m, axis=-1, keepdims=True) / n
            y = (x - mean) * ops.rsqrt(var + self.epsilon)
            if self.scale:
                y = y * ops.cast(self.gamma, y.dtype)
            if self.center:
                y = y + ops.cast(self.beta, y.dtype)
            return y * m

    class MaskedRecurrentCell:
        """Cell mixin: each unit's previous state reaches the gates through a 0/1 mask.

        The cell's ``recurrent_kernel`` reads as the stored kernel with the rows of masked units
        zeroed, so a pruned unit's state no longer feeds the kept units: exactly what the layer
        with that unit cut out computes. Its gradients flow to the stored kernel. The mask is
        the layer's (a Keras 3 cell is locked once built); the cell reads it through
        ``tfprune_mask``, a function the layer sets.
        """

        tfprune_mask = None

        @property
        def recurrent_kernel(self) -> Any:
            kernel = self._tfprune_recurrent_kernel
            if self.tfprune_mask is None:
                return kernel
            return kernel * ops.expand_dims(ops.cast(self.tfprune_mask(), kernel.dtype), 1)

        @recurrent_kernel.setter
        def recurrent_kernel(self, value: Any) -> None:
            self._tfprune_recurrent_kernel = value

    cells: dict[type, type] = {}

    def masked_cell(cell: type) -> type:
        if cell not in cells:
            cells[cell] = type(f"Masked{cell.__name__}", (MaskedRecurrentCell, cell), {})
        return cells[cell]

    class MaskedRecurrent(PolicyMixin):
        """Mixin for SimpleRNN/GRU/LSTM whose cell masks the recurrent kernel by unit."""

        mask_role = "out"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The stock cell, not built yet, becomes its masked twin.
            self.cell.__class__ = masked_cell(type(self.cell))

        def build(self, sequences_shape: Any, initial_state_shape: Any = None) -> None:
            super().build(sequences_shape, initial_state_shape)
            self.mask = add_mask(self, self.cell.units)
            self.cell.tfprune_mask = self._tfprune_read_mask

        def _tfprune_read_mask(self) -> Any:
            return self.mask

    @register
    class MaskedSimpleRNN(MaskedRecurrent, k3.layers.SimpleRNN):
        """SimpleRNN whose pruned units stop feeding their state back (Keras 3)."""

    @register
    class MaskedGRU(MaskedRecurrent, k3.layers.GRU):
        """GRU whose pruned units stop feeding their state back (Keras 3)."""

    @register
    class MaskedLSTM(MaskedRecurrent, k3.layers.LSTM):
        """LSTM whose pruned units stop feeding their state back (Keras 3)."""

    recurrent_twins = {
        k3.layers.SimpleRNN: MaskedSimpleRNN,
        k3.layers.GRU: MaskedGRU,
        k3.layers.LSTM: MaskedLSTM,
    }

    def masked_recurrent_copy(layer: Any) -> Any:
        """A masked copy of a stock SimpleRNN/GRU/LSTM (others are returned as they are)."""
        twin = recurrent_twins.get(type(layer))
        return layer if twin is None else twin.from_config(layer.get_config())

    @register
    class MaskedBidirectional(PolicyMixin, k3.layers.Bidirectional):
        """Bidirectional RNN whose pruned units stop feeding their state back, both ways (Keras 3).

        Both directions are tfprune's masked recurrent layers, written with the same units mask.
        Its config names the stock recurrent layers, so a strip rebuilds stock layers.
        """

        mask_role = "out"
        mask_weight_names = ("forward/mask", "backward/mask")

        def __init__(self, layer: Any, *args: Any, **kwargs: Any) -> None:
            backward = kwargs.get("backward_layer")
            if backward is not None:
                kwargs["backward_layer"] = masked_recurrent_copy(backward)
            super().__init__(masked_recurrent_copy(layer), *args, **kwargs)

        @property
        def mask(self) -> TiedMasks:
            """The per-unit 0/1 mask of both directions."""
            return TiedMasks([self.forward_layer.mask, self.backward_layer.mask])

        def get_config(self) -> dict:
            config = super().get_config()
            stock = {masked: plain for plain, masked in recurrent_twins.items()}
            for key, inner in (
                ("layer", self.forward_layer),
                ("backward_layer", self.backward_layer),
            ):
                plain = stock.get(type(inner))
                if key in config and plain is not None:
                    inner_config = {k: v for k, v in inner.get_config().items() if k != "policy"}
                    config[key] = k3.saving.serialize_keras_object(plain.from_config(inner_config))
            return config

    @register
    class MaskedMultiHeadAttention(PolicyMixin, keras3_attention_with_head_hook()):
        """MultiHeadAttention whose pruned heads output zeros (Keras 3).

        The mask multiplies each head's attention output before the output projection, so a
        pruned head contributes nothing: exactly the layer with that head cut out. Two more
        masks zero pruned key dimensions (in the projected query: their products leave every
        score) and value dimensions (in the projected value).
        """

        mask_role = "head"
        mask_weight_names = ("mask", "key_mask", "value_mask")

        def build(self, query_shape: Any, value_shape: Any, key_shape: Any = None) -> None:
            super().build(query_shape, value_shape, key_shape)
            config = self.get_config()
            self.mask = add_mask(self, config["num_heads"])
            self.key_mask = add_mask(self, config["key_dim"], "key_mask")
            value_dim = config["value_dim"] or config["key_dim"]
            self.value_mask = add_mask(self, value_dim, "value_mask")

        @property
        def masks_by_role(self) -> dict[str, Any]:
            """The 0/1 masks of its heads and of the key and value dimensions of every head."""
            return {"head": self.mask, "key": self.key_mask, "value": self.value_mask}

        def transform_projections(self, query: Any, key: Any, value: Any) -> tuple:
            # A zero in the query's dimension d removes q_d k_d from every score.
            query = query * ops.cast(self.key_mask, query.dtype)
            return query, key, value * ops.cast(self.value_mask, value.dtype)

        def transform_heads(self, attention_output: Any) -> Any:
            m = ops.cast(self.mask, attention_output.dtype)
            return attention_output * ops.reshape(m, [-1, 1])

    L = k3.layers
    return types.SimpleNamespace(
        ChannelMask=ChannelMask,
        MaskedConv1D=MaskedConv1D,
        MaskedConv2D=MaskedConv2D,
        MaskedConv3D=MaskedConv3D,
        MaskedDense=MaskedDense,
        MaskedLayerNormalization=MaskedLayerNormalization,
        MaskedSimpleRNN=MaskedSimpleRNN,
        MaskedGRU=MaskedGRU,
        MaskedLSTM=MaskedLSTM,
        MaskedMultiHeadAttention=MaskedMultiHeadAttention,
        MaskedBidirectional=MaskedBidirectional,
        mask_bases=(
            ChannelMask,
            InputMasked,
            MaskedLayerNormalization,
            MaskedRecurrent,
            MaskedMultiHeadAttention,
            MaskedBidirectional,
        ),
        consumers={
            L.Conv1D: MaskedConv1D,
            L.Conv2D: MaskedConv2D,
            L.Conv3D: MaskedConv3D,
            L.Dense: MaskedDense,
        },
        self_masked={
            L.LayerNormalization: MaskedLayerNormalization,
            L.SimpleRNN: MaskedSimpleRNN,
            L.GRU: MaskedGRU,
            L.LSTM: MaskedLSTM,
            L.MultiHeadAttention: MaskedMultiHeadAttention,
            L.Bidirectional: MaskedBidirectional,
        },
    )


def _is_keras3(layer: Any) -> bool:
    return flavour_of(layer) == KERAS3


def is_keras3_channel_mask(layer: Any) -> bool:
    """Whether ``layer`` is the Keras 3 ``ChannelMask`` (Keras 3 is not imported otherwise)."""
    return _is_keras3(layer) and isinstance(layer, keras3_mask_classes().ChannelMask)


def is_keras3_mask_layer(layer: Any) -> bool:
    """Whether ``layer`` is a Keras 3 layer holding a mask tfprune manages."""
    return _is_keras3(layer) and isinstance(layer, keras3_mask_classes().mask_bases)


def keras3_twin_tables() -> tuple[dict[type, type], dict[type, type]]:
    """Stock Keras 3 class -> its masked twin: kernel-masked consumers, self-masked layers."""
    ns = keras3_mask_classes()
    return ns.consumers, ns.self_masked
