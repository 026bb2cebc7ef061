"""The mask layers of masked Keras 3 models: the Keras 3 twins of :mod:`tfprune.layers.masks`.

They compute what their tf_keras namesakes compute, with Keras 3 ops: ``ChannelMask`` multiplies
the channel axis by a 0/1 mask; ``MaskedConv1D/2D/3D`` and ``MaskedDense`` multiply their
kernel's input rows by one (``conv(x, W * m) == conv(x * m, W)``, as fast as plain ``fit``);
``MaskedLayerNormalization`` takes its statistics over the unmasked channels only.

The classes are made the first time a Keras 3 model is masked (so Keras 3 is imported only
then) and registered as Keras 3 serializables of package ``tfprune``: a masked model saved as
``.keras`` loads back with ``keras.saving.load_model`` once they exist, e.g. with
``custom_objects=tfprune.custom_objects("keras3")``.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from tfprune.compat import KERAS3, flavour_of, keras3
from tfprune.layers.policy_config import config_with_policy, policy_argument

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

    L = k3.layers
    return types.SimpleNamespace(
        ChannelMask=ChannelMask,
        MaskedConv1D=MaskedConv1D,
        MaskedConv2D=MaskedConv2D,
        MaskedConv3D=MaskedConv3D,
        MaskedDense=MaskedDense,
        MaskedLayerNormalization=MaskedLayerNormalization,
        mask_bases=(ChannelMask, InputMasked, MaskedLayerNormalization),
        consumers={
            L.Conv1D: MaskedConv1D,
            L.Conv2D: MaskedConv2D,
            L.Conv3D: MaskedConv3D,
            L.Dense: MaskedDense,
        },
        self_masked={L.LayerNormalization: MaskedLayerNormalization},
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
