"""Rules of layers whose kernels hold the filters.

Convolutions (plain, transposed, depthwise, separable), ``Dense``, ``Embedding`` and
``LocallyConnected``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tfprune.compat import keras
from tfprune.graph.rules.base import (
    ChannelContext,
    LayerRule,
    Role,
    Shape,
    block_channels_first,
    describe_layer,
    is_channels_last,
    last_axis_size,
    numel,
    spatial,
    variable_size,
    with_kept_count,
)

__all__ = [
    "ConvRule",
    "ConvTransposeRule",
    "DenseRule",
    "DepthwiseRule",
    "EmbeddingRule",
    "LocallyConnectedRule",
    "SeparableRule",
]

L = keras.layers


class ConvRule(LayerRule):
    """Conv1D/2D/3D (grouped too): input channels are consumed, filters are produced."""

    layer_types = (L.Conv1D, L.Conv2D, L.Conv3D)
    stock_methods = ("call", "convolution_op", "build")

    def applies(self, layer: Any) -> bool:
        return isinstance(layer, self.layer_types) and not isinstance(
            layer,
            (
                L.Conv1DTranspose,
                L.Conv2DTranspose,
                L.Conv3DTranspose,
                L.DepthwiseConv2D,
                L.SeparableConv1D,
                L.SeparableConv2D,
            )
            + ((L.DepthwiseConv1D,) if hasattr(L, "DepthwiseConv1D") else ()),
        )

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if block_channels_first(ctx, call):
            return
        x, y = call.inputs[0], call.outputs[0]
        groups = getattr(layer, "groups", 1) or 1
        din = ctx.layer_dim(layer, "in", last_axis_size(x))
        dout = ctx.layer_dim(layer, "out", last_axis_size(y))
        ctx.identity(ctx.tensor_dim(x), din)
        ctx.identity(ctx.tensor_dim(y), dout)
        if groups > 1 and last_axis_size(x) == groups:
            # One input channel per group (a depthwise conv written as Conv2D(groups=C)):
            # input channel c passes through to its group of outputs; whole groups go.
            ctx.expand(din, dout, (last_axis_size(y) or 0) // groups)
        elif groups > 1:
            # Keep every group the same size: position i of all groups is removed together.
            ctx.tie_blocks(din, groups)
            ctx.tie_blocks(dout, groups)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        # "mask" exists on tfprune's kernel-masked consumers (MaskedConv2D...).
        return {"kernel": {"in": -2, "out": -1}, "bias": {"out": 0}, "mask": {"in": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        config = with_kept_count(config, "filters", kept, "out")
        groups = config.get("groups", 1) or 1
        if groups > 1 and "in" in kept and layer.kernel.shape[-2] == 1:
            config = dict(config, groups=len(kept["in"]))  # depthwise-style: groups go
        return config

    def slice_weights(self, layer, weights, kept):
        groups = getattr(layer, "groups", 1) or 1
        if groups > 1 and "in" in kept:
            per_block = weights["kernel"].shape[-2]
            kept = dict(kept, **{"in": np.unique(np.asarray(kept["in"]) % per_block)})
        return super().slice_weights(layer, weights, kept)

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("kernel", "conv")]

    def filters(self, layer: Any) -> int:
        return int(layer.filters)

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        # kernel = (k..., in_channels / groups, filters): one MAC per weight per output position.
        return spatial(layer, outs[0], describe_layer(layer)) * variable_size(layer.kernel)

    def input_mask(self, layer: Any) -> str | None:
        plain = (getattr(layer, "groups", 1) or 1) == 1 and is_channels_last(layer)
        return "kernel" if plain and getattr(layer, "padding", "") != "causal" else "tensor"


class ConvTransposeRule(ConvRule):
    """Conv1D/2D/3DTranspose: kernel is (..., out, in)."""

    layer_types = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)

    def applies(self, layer: Any) -> bool:
        return isinstance(layer, self.layer_types)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"kernel": {"in": -1, "out": -2}, "bias": {"out": 0}}

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("kernel", "conv_transpose")]

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        # Every input position scatters one full (k..., filters) slice per input channel.
        return spatial(layer, ins[0], describe_layer(layer)) * variable_size(layer.kernel)

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"


class DenseRule(LayerRule):
    """Dense on the last axis of any-rank input."""

    layer_types = (L.Dense,)
    stock_methods = ("call", "build")

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", last_axis_size(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", last_axis_size(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"kernel": {"in": 0, "out": 1}, "bias": {"out": 0}, "mask": {"in": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        return with_kept_count(config, "units", kept, "out")

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("kernel", "dense")]

    def filters(self, layer: Any) -> int:
        return int(layer.units)

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return int(layer.kernel.shape[0]) * numel(outs[0], describe_layer(layer))

    def input_mask(self, layer: Any) -> str | None:
        return "kernel"


class DepthwiseRule(LayerRule):
    """DepthwiseConv1D/2D: channel c passes through to outputs c*dm .. c*dm+dm-1."""

    layer_types = (L.DepthwiseConv2D,) + (
        (L.DepthwiseConv1D,) if hasattr(L, "DepthwiseConv1D") else ()
    )

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if block_channels_first(ctx, call):
            return
        x, y = call.inputs[0], call.outputs[0]
        din = ctx.layer_dim(layer, "in", last_axis_size(x))
        ctx.identity(ctx.tensor_dim(x), din)
        ctx.expand(din, ctx.tensor_dim(y), layer.depth_multiplier)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"depthwise_kernel": {"in": -2}}

    def slice_weights(self, layer, weights, kept):
        out = super().slice_weights(layer, weights, kept)
        if "in" in kept and "bias" in weights:
            dm = layer.depth_multiplier
            out["bias"] = weights["bias"].reshape(-1, dm)[kept["in"]].reshape(-1)
        return out

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("depthwise_kernel", "depthwise")]

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return spatial(layer, outs[0], describe_layer(layer)) * variable_size(
            layer.depthwise_kernel
        )


class SeparableRule(LayerRule):
    """SeparableConv1D/2D: depthwise on the inputs, then a pointwise producer."""

    layer_types = (L.SeparableConv1D, L.SeparableConv2D)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if block_channels_first(ctx, call):
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", last_axis_size(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", last_axis_size(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {
            "depthwise_kernel": {"in": -2},
            "pointwise_kernel": {"out": -1},
            "bias": {"out": 0},
        }

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        return with_kept_count(config, "filters", kept, "out")

    def slice_weights(self, layer, weights, kept):
        out = super().slice_weights(layer, weights, kept)
        if "in" in kept:
            dm = layer.depth_multiplier
            rows = (np.asarray(kept["in"])[:, None] * dm + np.arange(dm)[None, :]).reshape(-1)
            out["pointwise_kernel"] = np.take(out["pointwise_kernel"], rows, axis=-2)
        return out

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("depthwise_kernel", "depthwise"), ("pointwise_kernel", "conv")]

    def filters(self, layer: Any) -> int:
        return int(layer.filters)

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        n = spatial(layer, outs[0], describe_layer(layer))
        return n * (variable_size(layer.depthwise_kernel) + variable_size(layer.pointwise_kernel))

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"


class EmbeddingRule(LayerRule):
    """Embedding produces ``output_dim`` channels; its integer input is not a channel axis."""

    layer_types = (L.Embedding,)

    def connect(self, ctx: Any, call: Any) -> None:
        y = call.outputs[0]
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(call.layer, "out", last_axis_size(y)))
        for t in call.inputs:
            ctx.block(ctx.tensor_dim(t), f"integer input of embedding {call.path!r}")

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"embeddings": {"out": 1}}

    def new_config(self, layer, config, kept):
        return with_kept_count(config, "output_dim", kept, "out")

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return 0  # a table lookup: no multiply-accumulates (its parameters are counted)

    def filters(self, layer: Any) -> int:
        return int(layer.output_dim)


class LocallyConnectedRule(LayerRule):
    """LocallyConnected1D/2D: an unshared kernel per output position."""

    layer_types = (L.LocallyConnected1D, L.LocallyConnected2D)

    def applies(self, layer: Any) -> bool:
        return type(layer) in self.layer_types

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        if not is_channels_last(layer) or getattr(layer, "implementation", 1) != 1:
            ctx.block_call(
                call,
                f"locally connected layer {call.path!r} is not channels_last with implementation=1",
            )
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", last_axis_size(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", last_axis_size(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        # kernel: (positions, window * in_channels, filters), the input channel varying fastest.
        return {"kernel": {"out": -1}, "bias": {"out": -1}}

    @staticmethod
    def _cin(layer: Any) -> int:
        return int(layer.kernel.shape[1]) // int(math.prod(layer.kernel_size))

    def channel_rows(self, layer, role, arrays, names=None):
        if role != "in":
            return super().channel_rows(layer, role, arrays, names)
        cin = self._cin(layer)
        rows = []
        for name, a in arrays.items():
            if name == "kernel" and (names is None or name in set(names)):
                a = np.asarray(a).reshape(a.shape[0], -1, cin, a.shape[-1])
                rows.append(np.moveaxis(a, 2, 0).reshape(cin, -1))
        return rows

    def new_config(self, layer, config, kept):
        return with_kept_count(config, "filters", kept, "out")

    def slice_weights(self, layer, weights, kept):
        out = super().slice_weights(layer, weights, dict(kept))
        if "in" in kept:
            cin = self._cin(layer)
            window = int(math.prod(layer.kernel_size))
            rows = (np.arange(window)[:, None] * cin + np.asarray(kept["in"])[None, :]).ravel()
            out["kernel"] = np.take(out["kernel"], rows, axis=1)
        return out

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        what = describe_layer(layer)
        positions = spatial(layer, outs[0], what)
        x = ins[0]
        cin = x[1] if getattr(layer, "data_format", "channels_last") == "channels_first" else x[-1]
        window = int(math.prod(layer.kernel_size))
        return positions * window * int(cin) * int(layer.filters)

    def filters(self, layer: Any) -> int:
        return int(layer.filters)
