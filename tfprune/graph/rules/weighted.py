"""Rules of layers with weights: convolutions, dense, embeddings, recurrent, wrappers, attention."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfprune.compat import (
    KerasTensor,
    keras,
    tfmot_prune_wrapper_class,
    tfmot_quantize_wrapper_class,
)
from tfprune.errors import UnsupportedModelError
from tfprune.graph.rules.base import (
    ChannelContext,
    DimKey,
    LayerRule,
    Role,
    Shape,
    _blocked_channels_first,
    _channels,
    _channels_last,
    _size,
    _what,
    _with_count,
    numel,
    rule_for,
    spatial,
    weight_short_name,
)

__all__ = [
    "BidirectionalRule",
    "ConvRule",
    "ConvTransposeRule",
    "DenseRule",
    "DepthwiseRule",
    "DotAttentionRule",
    "EinsumDenseRule",
    "EmbeddingRule",
    "LocallyConnectedRule",
    "MultiHeadAttentionRule",
    "PruneLowMagnitudeRule",
    "QuantizeWrapperRule",
    "RecurrentRule",
    "SeparableRule",
    "TimeDistributedRule",
    "WrapperRule",
    "dense_like_equation",
    "einsum_macs",
]

L = keras.layers


# ---------------------------------------------------------------------------------------------
# Producers / consumers: convolutions and dense layers


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
        if _blocked_channels_first(ctx, call):
            return
        x, y = call.inputs[0], call.outputs[0]
        groups = getattr(layer, "groups", 1) or 1
        din = ctx.layer_dim(layer, "in", _channels(x))
        dout = ctx.layer_dim(layer, "out", _channels(y))
        ctx.identity(ctx.tensor_dim(x), din)
        ctx.identity(ctx.tensor_dim(y), dout)
        if groups > 1 and _channels(x) == groups:
            # One input channel per group (a depthwise conv written as Conv2D(groups=C)):
            # input channel c passes through to its group of outputs; whole groups go.
            ctx.expand(din, dout, (_channels(y) or 0) // groups)
        elif groups > 1:
            # Keep every group the same size: position i of all groups is removed together.
            ctx.tie_blocks(din, groups)
            ctx.tie_blocks(dout, groups)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        # "mask" exists on tfprune's kernel-masked consumers (MaskedConv2D...).
        return {"kernel": {"in": -2, "out": -1}, "bias": {"out": 0}, "mask": {"in": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        config = _with_count(config, "filters", kept, "out")
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
        return spatial(layer, outs[0], _what(layer)) * _size(layer.kernel)

    def input_mask(self, layer: Any) -> str | None:
        plain = (getattr(layer, "groups", 1) or 1) == 1 and _channels_last(layer)
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
        return spatial(layer, ins[0], _what(layer)) * _size(layer.kernel)

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"


class DenseRule(LayerRule):
    """Dense on the last axis of any-rank input."""

    layer_types = (L.Dense,)
    stock_methods = ("call", "build")

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", _channels(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", _channels(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"kernel": {"in": 0, "out": 1}, "bias": {"out": 0}, "mask": {"in": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        return _with_count(config, "units", kept, "out")

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("kernel", "dense")]

    def filters(self, layer: Any) -> int:
        return int(layer.units)

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return int(layer.kernel.shape[0]) * numel(outs[0], _what(layer))

    def input_mask(self, layer: Any) -> str | None:
        return "kernel"


class DepthwiseRule(LayerRule):
    """DepthwiseConv1D/2D: channel c passes through to outputs c*dm .. c*dm+dm-1."""

    layer_types = (L.DepthwiseConv2D,) + (
        (L.DepthwiseConv1D,) if hasattr(L, "DepthwiseConv1D") else ()
    )

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if _blocked_channels_first(ctx, call):
            return
        x, y = call.inputs[0], call.outputs[0]
        din = ctx.layer_dim(layer, "in", _channels(x))
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
        return spatial(layer, outs[0], _what(layer)) * _size(layer.depthwise_kernel)


class SeparableRule(LayerRule):
    """SeparableConv1D/2D: depthwise on the inputs, then a pointwise producer."""

    layer_types = (L.SeparableConv1D, L.SeparableConv2D)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if _blocked_channels_first(ctx, call):
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", _channels(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", _channels(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {
            "depthwise_kernel": {"in": -2},
            "pointwise_kernel": {"out": -1},
            "bias": {"out": 0},
        }

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        return _with_count(config, "filters", kept, "out")

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
        n = spatial(layer, outs[0], _what(layer))
        return n * (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel))

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"


class EmbeddingRule(LayerRule):
    """Embedding produces ``output_dim`` channels; its integer input is not a channel axis."""

    layer_types = (L.Embedding,)

    def connect(self, ctx: Any, call: Any) -> None:
        y = call.outputs[0]
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(call.layer, "out", _channels(y)))
        for t in call.inputs:
            ctx.block(ctx.tensor_dim(t), f"integer input of embedding {call.path!r}")

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"embeddings": {"out": 1}}

    def new_config(self, layer, config, kept):
        return _with_count(config, "output_dim", kept, "out")

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return 0  # a table lookup: no multiply-accumulates (its parameters are counted)

    def filters(self, layer: Any) -> int:
        return int(layer.output_dim)


# ---------------------------------------------------------------------------------------------
# Recurrent layers, wrappers, attention, locally connected layers


def _gate_columns(kept: np.ndarray, units: int, gates: int) -> np.ndarray:
    """Columns of a gate-stacked axis ``(gates * units)`` that belong to the ``kept`` units."""
    return (np.arange(gates)[:, None] * units + np.asarray(kept)[None, :]).reshape(-1)


class RecurrentRule(LayerRule):
    """SimpleRNN/GRU/LSTM: input features are consumed, units are produced.

    The units' gates (columns of ``kernel``, ``recurrent_kernel`` and ``bias``, stacked gate
    by gate) and the rows of ``recurrent_kernel`` (the previous state feeding back) belong to
    the same unit and go together. While pruning trains, the layer masks the rows of its own
    recurrent kernel, so a pruned unit's state no longer reaches the kept units.
    """

    layer_types = (L.SimpleRNN, L.GRU, L.LSTM)

    def applies(self, layer: Any) -> bool:
        # Only the stock classes (and tfprune's masked twins): subclasses may change the cell.
        return type(layer) in self.layer_types or getattr(layer, "_tfprune_stock", None) in (
            self.layer_types
        )

    @staticmethod
    def gates(layer: Any) -> int:
        """Number of gate blocks stacked along the units axis of the weights."""
        if isinstance(layer, L.LSTM):
            return 4
        return 3 if isinstance(layer, L.GRU) else 1

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        if getattr(layer, "stateful", False):
            ctx.block_call(call, f"recurrent layer {call.path!r} is stateful")
            return
        if len(call.inputs) != 1 or not call.outputs:
            ctx.block_call(call, f"recurrent layer {call.path!r} is called with states or masks")
            return
        x = call.inputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", _channels(x)))
        dout = ctx.layer_dim(layer, "out", int(layer.units))
        for y in call.outputs:  # the output and, with return_state, the final states
            ctx.identity(ctx.tensor_dim(y), dout)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        # Only axes whose length is the role's channel count; the gate-stacked columns are
        # handled by channel_rows/slice_weights.
        return {"kernel": {"in": 0}, "recurrent_kernel": {"out": 0}, "mask": {"out": 0}}

    def kernel_names(self, layer: Any) -> tuple[str, ...]:
        return ("kernel", "recurrent_kernel")

    def channel_rows(self, layer, role, arrays, names=None):
        if role != "out":
            return super().channel_rows(layer, role, arrays, names)
        units, gates = int(layer.units), self.gates(layer)
        rows = []
        for name, a in arrays.items():
            if name not in ("kernel", "recurrent_kernel", "bias"):
                continue
            if names is not None and name not in set(names):
                continue
            a = np.asarray(a)  # (..., gates * units): one column per gate per unit
            a = a.reshape(-1, gates, units)
            rows.append(np.moveaxis(a, 2, 0).reshape(units, -1))
        return rows

    def new_config(self, layer, config, kept):
        return _with_count(config, "units", kept, "out")

    def slice_weights(self, layer, weights, kept):
        out = dict(weights)
        if "in" in kept:
            out["kernel"] = np.take(out["kernel"], kept["in"], axis=0)
        if "out" in kept:
            cols = _gate_columns(kept["out"], int(layer.units), self.gates(layer))
            out["kernel"] = np.take(out["kernel"], cols, axis=-1)
            rk = np.take(out["recurrent_kernel"], kept["out"], axis=0)
            out["recurrent_kernel"] = np.take(rk, cols, axis=-1)
            if "bias" in out:
                out["bias"] = np.take(out["bias"], cols, axis=-1)
            if "mask" in out:
                out["mask"] = np.take(out["mask"], kept["out"], axis=0)
        return out

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        x = ins[0]
        time_major = bool(getattr(layer, "time_major", False))
        steps = None if x is None or len(x) < 3 else x[0 if time_major else 1]
        if steps is None:
            raise UnsupportedModelError(
                f"cannot count FLOPs of {_what(layer)}: its sequence length is unknown ({x}). "
                "Build the model with a fixed length or pass input_shapes= to count_flops."
            )
        fan_in = int(layer.cell.kernel.shape[0]) + int(layer.units)
        return int(steps) * fan_in * self.gates(layer) * int(layer.units)

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"

    def self_mask_role(self, layer: Any) -> Role | None:
        return "out"

    def filters(self, layer: Any) -> int:
        return int(layer.units)


class BidirectionalRule(LayerRule):
    """Bidirectional around a SimpleRNN/GRU/LSTM: unit ``u`` of both directions goes together.

    Keras builds the backward layer from the forward one's config, so both directions keep the
    same number of units: tfprune removes the same unit indices from both. Roles: ``"in"`` (the
    input channels, rows of both kernels) and ``"out"`` (the units, in each direction's output
    half with ``merge_mode="concat"``, or the merged output otherwise). Weights are named by
    direction (``forward/kernel``, ``backward/recurrent_kernel``...). While pruning trains, both
    directions mask their recurrent state (a masked twin).
    """

    layer_types = (L.Bidirectional,)
    _DIRECTIONS = ("forward", "backward")

    def applies(self, layer: Any) -> bool:
        stock = getattr(layer, "_tfprune_stock", None)
        return type(layer) is L.Bidirectional or stock is L.Bidirectional

    def _inner(self, layer: Any) -> list[Any]:
        return [layer.forward_layer, layer.backward_layer]

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        inner = self._inner(layer)
        problem = None
        if any(type(rule_for(i)) is not RecurrentRule for i in inner):
            problem = f"wraps {type(layer.forward_layer).__name__}, which has no unit rule"
        elif any(getattr(i, "stateful", False) or getattr(i, "return_state", False) for i in inner):
            problem = "is stateful or returns its states"
        elif len(call.inputs) != 1:
            problem = "is called with states, constants or masks"
        elif inner[0].units != inner[1].units:
            problem = "has directions with different numbers of units"
        if problem is not None:
            ctx.block_call(call, f"Bidirectional {call.path!r} {problem}")
            return
        x = call.inputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", _channels(x)))
        units = ctx.layer_dim(layer, "out", int(inner[0].units))
        merge = layer.merge_mode
        for y in call.outputs:
            if merge == "concat":
                ctx.concat([units, units], ctx.tensor_dim(y))
            else:  # sum, ave, mul, or one output per direction
                ctx.identity(units, ctx.tensor_dim(y))

    def _split(self, layer: Any, arrays: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``arrays`` by direction, with the direction prefix taken off the names."""
        out: list[dict[str, Any]] = [{}, {}]
        for name, a in arrays.items():
            head, _, short = name.partition("/")
            if head in self._DIRECTIONS:
                out[self._DIRECTIONS.index(head)][short] = a
        return out

    def weight_names(self, layer: Any) -> list[str]:
        forward = {id(v) for v in layer.forward_layer.weights}
        return [
            f"{'forward' if id(v) in forward else 'backward'}/{weight_short_name(v)}"
            for v in layer.weights
        ]

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        axes = {}
        for d in self._DIRECTIONS:
            axes.update(
                {
                    f"{d}/kernel": {"in": 0},
                    f"{d}/recurrent_kernel": {"out": 0},
                    f"{d}/mask": {"out": 0},
                }
            )
        return axes

    def kernel_names(self, layer: Any) -> tuple[str, ...]:
        return tuple(f"{d}/{n}" for d in self._DIRECTIONS for n in ("kernel", "recurrent_kernel"))

    def channel_rows(self, layer, role, arrays, names=None):
        if role != "out":
            return super().channel_rows(layer, role, arrays, names)
        wanted = None if names is None else {n.partition("/")[2] for n in names}
        rows = []
        for inner, part in zip(self._inner(layer), self._split(layer, arrays), strict=True):
            rows.extend(rule_for(inner).channel_rows(inner, role, part, wanted))
        return rows

    def new_config(self, layer, config, kept):
        if "out" not in kept:
            return config
        config = dict(config)
        for key in ("layer", "backward_layer"):
            if key in config:
                inner = dict(config[key])
                inner["config"] = dict(inner["config"], units=len(kept["out"]))
                config[key] = inner
        return config

    def slice_weights(self, layer, weights, kept):
        out = {}
        for d, inner, part in zip(
            self._DIRECTIONS, self._inner(layer), self._split(layer, weights), strict=True
        ):
            sliced = rule_for(inner).slice_weights(inner, part, kept)
            out.update({f"{d}/{n}": a for n, a in sliced.items()})
        return out

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        total = 0
        for inner in self._inner(layer):
            m = rule_for(inner).macs(inner, ins[:1], outs[:1])
            if m is None:
                return None
            total += m
        return total

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"

    def self_mask_role(self, layer: Any) -> Role | None:
        return "out"

    def filters(self, layer: Any) -> int:
        # Unit u of both directions is one removable unit (see the class docstring).
        return int(layer.forward_layer.units) if hasattr(layer.forward_layer, "units") else 0


class _FiledUnder(ChannelContext):
    """A context that files the dims of a wrapped layer's weights under its wrapper."""

    def __init__(self, ctx: ChannelContext, inner: Any, outer: Any) -> None:
        self._ctx, self._inner, self._outer = ctx, inner, outer

    def tensor_dim(self, t: Any) -> DimKey:
        return self._ctx.tensor_dim(t)

    def layer_dim(self, layer: Any, role: Role, size: int | None) -> DimKey:
        return self._ctx.layer_dim(self._outer if layer is self._inner else layer, role, size)

    def size(self, key: DimKey) -> int:
        return self._ctx.size(key)

    def identity(self, a: DimKey, b: DimKey) -> None:
        self._ctx.identity(a, b)

    def concat(self, inputs: list[DimKey], out: DimKey) -> None:
        self._ctx.concat(inputs, out)

    def expand(self, a: DimKey, b: DimKey, factor: int) -> None:
        self._ctx.expand(a, b, factor)

    def flatten(self, a: DimKey, b: DimKey) -> None:
        self._ctx.flatten(a, b)

    def tie_blocks(self, key: DimKey, groups: int) -> None:
        self._ctx.tie_blocks(key, groups)

    def per_channel(self, layer: Any, x: Any, y: Any) -> DimKey:
        d = self.layer_dim(layer, "ch", x.shape[-1] if x.shape.rank else None)
        self.identity(self.tensor_dim(x), d)
        self.identity(d, self.tensor_dim(y))
        return d

    def block(self, key: DimKey, reason: str) -> None:
        self._ctx.block(key, reason)

    def block_call(self, call: Any, reason: str) -> None:
        self._ctx.block_call(call, reason)

    def is_used(self, t: Any) -> bool:
        return self._ctx.is_used(t)

    def mark_mixing(self, call: Any) -> None:
        self._ctx.mark_mixing(call)


class WrapperRule(LayerRule):
    """A wrapper that applies its wrapped layer as is: the wrapped layer's rule does the work.

    Channel roles of the wrapped layer's weights are filed under the wrapper (the layer the
    model calls), whose weights have the same short names. A wrapped layer that must mask its
    own channels (a layer norm, an RNN) blocks: no masked twin exists for the wrapper.
    """

    def inner(self, layer: Any) -> Any:
        """The wrapped layer."""
        return layer.layer

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        inner = self.inner(layer := call.layer)
        rule = rule_for(inner)
        if rule.self_mask_roles(inner) or type(rule) is LayerRule:
            ctx.block_call(
                call,
                f"{type(layer).__name__} {call.path!r} wraps {type(inner).__name__}, "
                "which tfprune cannot prune inside this wrapper",
            )
            return
        rule.connect(_FiledUnder(ctx, inner, layer), dataclasses.replace(call, layer=inner))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        inner = self.inner(layer)
        return rule_for(inner).weight_axes(inner)

    def kernel_names(self, layer: Any) -> tuple[str, ...]:
        inner = self.inner(layer)
        return rule_for(inner).kernel_names(inner)

    def channel_rows(self, layer, role, arrays, names=None):
        inner = self.inner(layer)
        return rule_for(inner).channel_rows(inner, role, arrays, names)

    def new_config(self, layer, config, kept):
        inner = self.inner(layer)
        inner_config = rule_for(inner).new_config(inner, dict(config["layer"]["config"]), kept)
        return dict(config, layer=dict(config["layer"], config=inner_config))

    def slice_weights(self, layer, weights, kept):
        inner = self.inner(layer)
        return rule_for(inner).slice_weights(inner, weights, kept)

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        inner = self.inner(layer)
        return rule_for(inner).macs(inner, ins, outs)

    def input_mask(self, layer: Any) -> str | None:
        inner = self.inner(layer)
        return "tensor" if rule_for(inner).input_mask(inner) is not None else None


class TimeDistributedRule(WrapperRule):
    """TimeDistributed: the wrapped layer's rule, once per time step (channels stay last)."""

    layer_types = (L.TimeDistributed,)

    def applies(self, layer: Any) -> bool:
        return type(layer) is L.TimeDistributed

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        x = ins[0]
        if x is None or len(x) < 2 or x[1] is None:
            raise UnsupportedModelError(f"cannot count FLOPs of {_what(layer)}: unknown time steps")
        fold = [None if t is None else (t[0], *t[2:]) for t in ins]
        fold_out = [None if t is None else (t[0], *t[2:]) for t in outs]
        inner = super().macs(layer, fold, fold_out)
        return None if inner is None else int(x[1]) * inner


class PruneLowMagnitudeRule(WrapperRule):
    """TF-MOT's ``prune_low_magnitude`` wrapper: filters are pruned through it.

    Its sparsity ``mask`` has the wrapped kernel's shape and is sliced with it; the smaller
    model keeps the wrapper (and its schedule), so TF-MOT's own ``strip_pruning`` still works.
    """

    layer_types = (tfmot_prune_wrapper_class,)

    def applies(self, layer: Any) -> bool:
        return type(layer) in self.layer_types

    def _kernel_name(self, layer: Any) -> str:
        inner = self.inner(layer)
        prunable = inner.get_prunable_weights() if hasattr(inner, "get_prunable_weights") else []
        return weight_short_name(prunable[0]) if prunable else "kernel"

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        axes = dict(super().weight_axes(layer))
        axes["mask"] = dict(axes.get(self._kernel_name(layer), {}))  # the kernel's sparsity mask
        return axes

    def slice_weights(self, layer, weights, kept):
        weights = dict(weights)
        mask = weights.pop("mask", None)
        out = super().slice_weights(layer, weights, kept)
        if mask is not None:
            name = self._kernel_name(layer)
            like = dict(weights, **{name: mask})
            out["mask"] = super().slice_weights(layer, like, kept)[name]
        return out


class QuantizeWrapperRule(LayerRule):
    """TF-MOT's quantization wrappers: their quantizer state is per channel; they block."""

    layer_types = (tfmot_quantize_wrapper_class,)

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        ctx.block_call(
            call,
            f"layer {call.path!r} is wrapped for quantization-aware training "
            f"({type(call.layer).__name__}); prune the float model first "
            "(tfprune.prune_filters, strip_filters), then quantize the smaller model",
        )

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return rule_for(layer.layer).macs(layer.layer, ins, outs)


_MHA_PROJECTIONS = ("query", "key", "value", "attention_output")
_MHA_ARGUMENTS = ("query", "value", "key", "attention_mask", "return_attention_scores")


def _mha_kernels(layer: Any) -> dict[str, Any]:
    """The projection kernels of a MultiHeadAttention layer, by projection name."""
    out = {}
    for v in layer.weights:
        parts = v.name.split(":")[0].split("/")
        if len(parts) >= 2 and parts[-1] == "kernel":
            out[parts[-2]] = v
    return out


def _mha_arguments(call: Any) -> dict[str, Any]:
    """A MultiHeadAttention call's arguments by name (query, value, key, attention_mask...)."""
    args = dict(zip(_MHA_ARGUMENTS, call.args))
    args.update(call.kwargs)
    return args


def _mha_output_size(config: dict, layer: Any) -> int | None:
    """The last axis of a MultiHeadAttention's output, or None for a multi-axis output shape."""
    shape = config.get("output_shape")
    if shape is None or isinstance(shape, int):
        kernel = _mha_kernels(layer).get("attention_output")
        return (
            int(shape) if shape is not None else (kernel.shape[-1] if kernel is not None else None)
        )
    shape = list(shape)
    return int(shape[0]) if len(shape) == 1 else None


class MultiHeadAttentionRule(LayerRule):
    """MultiHeadAttention: whole heads, and the channels it reads and writes, prune exactly.

    Roles: ``"head"`` (head ``h`` is slice ``h`` of the query/key/value projections and of the
    output projection's input), ``"key"`` and ``"value"`` (dimension ``d`` of every head's
    query and key, or of its value and the output projection's input; removing key dimensions
    rescales the query, as scores are divided by ``sqrt(key_dim)``),
    ``"in"``/``"in_value"``/``"in_key"`` (the channels of the query, value and key inputs: rows
    of the three projections) and ``"out"`` (the output projection's units). While pruning
    trains, the layer's masked twin zeroes pruned heads' attention outputs and pruned key and
    value dimensions, which is exactly what the layer without them computes. Weights are named
    by projection (``query/kernel``, ``attention_output/bias``...).
    """

    layer_types = (L.MultiHeadAttention,)
    stock_methods = ("call", "_compute_attention", "_build_from_signature", "_masked_softmax")

    def applies(self, layer: Any) -> bool:
        stock = getattr(layer, "_tfprune_stock", None)
        return type(layer) is L.MultiHeadAttention or stock is L.MultiHeadAttention

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        args = _mha_arguments(call)
        q, v, k = args.get("query"), args.get("value"), args.get("key")
        k = v if k is None else k
        problem = None
        scores = call.outputs[1:] if args.get("return_attention_scores") else []
        if not all(isinstance(t, KerasTensor) for t in (q, v, k)):
            problem = "is called with inputs that are not tensors of the model"
        elif len(call.outputs) != 1 + len(scores):
            problem = "returns several outputs"
        elif any(ctx.is_used(s) for s in scores):
            # The scores have one slice per head: removing heads would change what reads them.
            problem = "returns its attention scores, and they are used"
        elif _mha_output_size(layer.get_config(), layer) is None:
            problem = "has a multi-axis output_shape"
        if problem is not None:
            ctx.block_call(call, f"MultiHeadAttention {call.path!r} {problem}")
            return
        mask = args.get("attention_mask")
        if isinstance(mask, KerasTensor):
            ctx.block(ctx.tensor_dim(mask), "an attention mask (its last axis is key positions)")
        for t, role in ((q, "in"), (v, "in_value"), (k, "in_key")):
            ctx.identity(ctx.tensor_dim(t), ctx.layer_dim(layer, role, _channels(t)))
        y = call.outputs[0]
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", _channels(y)))
        config = layer.get_config()
        ctx.layer_dim(layer, "head", int(config["num_heads"]))
        ctx.layer_dim(layer, "key", int(config["key_dim"]))
        ctx.layer_dim(layer, "value", int(config["value_dim"] or config["key_dim"]))

    def weight_names(self, layer: Any) -> list[str]:
        names = []
        for v in layer.weights:
            parts = v.name.split(":")[0].split("/")
            sub = len(parts) >= 2 and parts[-2] in _MHA_PROJECTIONS
            names.append("/".join(parts[-2:]) if sub else parts[-1])
        return names

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {
            "query/kernel": {"in": 0, "head": 1, "key": 2},
            "query/bias": {"head": 0, "key": 1},
            "key/kernel": {"in_key": 0, "head": 1, "key": 2},
            "key/bias": {"head": 0, "key": 1},
            "value/kernel": {"in_value": 0, "head": 1, "value": 2},
            "value/bias": {"head": 0, "value": 1},
            "attention_output/kernel": {"head": 0, "value": 1, "out": -1},
            "attention_output/bias": {"out": 0},
            "mask": {"head": 0},
            "key_mask": {"key": 0},
            "value_mask": {"value": 0},
        }

    def kernel_names(self, layer: Any) -> tuple[str, ...]:
        return tuple(f"{p}/kernel" for p in _MHA_PROJECTIONS)

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        config = dict(config)
        if "head" in kept:
            config["num_heads"] = len(kept["head"])
        if "key" in kept:
            config["key_dim"] = len(kept["key"])
        if "value" in kept:
            config["value_dim"] = len(kept["value"])
        for role, key in (
            ("in", "query_shape"),
            ("in_value", "value_shape"),
            ("in_key", "key_shape"),
        ):
            if role in kept and config.get(key) is not None:
                config[key] = [*list(config[key])[:-1], len(kept[role])]
        if "out" in kept or "in" in kept:
            # Without output_shape the output is as wide as the query: say it explicitly.
            size = len(kept["out"]) if "out" in kept else _mha_output_size(config, layer)
            config["output_shape"] = size
        return config

    def slice_weights(self, layer, weights, kept):
        out = super().slice_weights(layer, weights, kept)
        if "key" in kept:
            # Scores are scaled by 1/sqrt(key_dim): with fewer key dimensions, scale the query
            # so every score stays what it was.
            scale = math.sqrt(len(kept["key"]) / int(layer.get_config()["key_dim"]))
            for name in ("query/kernel", "query/bias"):
                if name in out:
                    out[name] = (out[name] * scale).astype(out[name].dtype)
        return out

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"

    def mask_inputs(self, call: Any) -> list[Any]:
        args = _mha_arguments(call)
        out: list[Any] = []
        for name in ("query", "value", "key"):
            t = args.get(name)
            if isinstance(t, KerasTensor) and all(t is not o for o in out):
                out.append(t)
        return out

    def self_mask_roles(self, layer: Any) -> tuple[Role, ...]:
        return ("head", "key", "value")

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        what = _what(layer)
        kernels = _mha_kernels(layer)
        if not {"query", "key", "value", "attention_output"} <= set(kernels):
            return None
        q = ins[0]
        v = ins[1] if len(ins) > 1 else q
        k = (
            ins[2]
            if len(ins) > 2 and ins[2] is not None and ins[2][-1] == kernels["key"].shape[0]
            else v
        )
        q_pos = numel(q, what) // int(q[-1])
        v_pos = numel(v, what) // int(v[-1])
        k_pos = numel(k, what) // int(k[-1])
        axes = layer.get_config().get("attention_axes")
        if axes is None:
            v_attn = v_pos
        else:
            axes = [axes] if isinstance(axes, int) else list(axes)
            v_attn = int(math.prod(v[a % len(v)] for a in axes))
        heads = int(layer.get_config()["num_heads"])
        key_dim = int(layer.get_config()["key_dim"])
        value_dim = int(layer.get_config().get("value_dim") or key_dim)
        projections = (
            q_pos * _size(kernels["query"])
            + k_pos * _size(kernels["key"])
            + v_pos * _size(kernels["value"])
            + q_pos * _size(kernels["attention_output"])
        )
        attention = q_pos * v_attn * heads * (key_dim + value_dim)  # QK^T and AV
        return projections + attention

    def filters(self, layer: Any) -> int:
        # Its heads (each a set of query/key/value/output columns) and its output units.
        config = layer.get_config()
        return int(config["num_heads"]) + int(_mha_output_size(config, layer) or 0)


def einsum_macs(equation: str, shapes: list[Shape], what: str) -> int | None:
    """Multiply-accumulates of a two-operand einsum on one example (batch dims left out).

    Every combination of the indices of both operands is one multiply-add, so the cost is the
    product of the sizes of all distinct indices; dims of unknown size are batch dims. None for
    equations this does not parse (one operand, no ``->``).
    """
    if "->" not in equation or len(shapes) != 2 or any(s is None for s in shapes):
        return None
    lhs, _ = equation.replace(" ", "").split("->")
    specs = lhs.split(",")
    if len(specs) != 2:
        return None
    sizes: dict[str, int | None] = {}
    for spec, shape in zip(specs, shapes, strict=True):
        if "..." in spec:
            pre, post = spec.split("...")
            n_ell = len(shape) - len(pre) - len(post)
            if n_ell < 0:
                return None
            letters = list(pre) + [f"_{n_ell - 1 - i}" for i in range(n_ell)] + list(post)
        else:
            letters = list(spec)
        if len(letters) != len(shape):
            return None
        for letter, dim in zip(letters, shape, strict=True):
            if dim is not None:
                sizes[letter] = max(int(dim), sizes.get(letter) or 1)
            else:
                sizes.setdefault(letter, None)
    unknown = [k for k, v in sizes.items() if v is None]
    if len(unknown) > 1:
        raise UnsupportedModelError(
            f"cannot count FLOPs of {what}: dims {unknown} of its einsum are unknown. Build the "
            "model with fixed shapes or pass input_shapes= to count_flops."
        )
    return int(math.prod(v for v in sizes.values() if v is not None))


def dense_like_equation(equation: str) -> bool:
    """Whether an EinsumDense equation is a dense layer on the last axis (``...c,cd->...d``).

    The input's last index is contracted with the first of a 2-D kernel, the kernel's second
    index is the output's last, and every other index passes through unchanged, in order.
    """
    eq = equation.replace(" ", "")
    if "->" not in eq or eq.count(",") != 1:
        return False
    lhs, out = eq.split("->")
    inp, kernel = lhs.split(",")
    if len(kernel) != 2 or not inp or not out or "." in kernel:
        return False
    c, d = kernel
    return (
        c != d
        and inp[-1] == c
        and out[-1] == d
        and inp[:-1] == out[:-1]
        and c not in out
        and d not in inp
    )


class EinsumDenseRule(LayerRule):
    """EinsumDense: a dense layer on the last axis when its equation is ``...c,cd->...d``.

    Such a layer (the feed-forward layers of Model Garden's transformer blocks, for example)
    consumes input channels and produces output units like ``Dense``. Other equations are
    counted from the equation, and their channels block.
    """

    stock_methods = ("call", "build")

    def applies(self, layer: Any) -> bool:
        return type(layer).__name__ == "EinsumDense" and type(layer).__module__.startswith(
            "tf_keras."
        )

    def _dense_like(self, layer: Any) -> bool:
        bias_axes = layer.get_config().get("bias_axes")
        return dense_like_equation(layer.equation) and (
            not bias_axes or bias_axes == layer.equation.replace(" ", "")[-1]
        )

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if not self._dense_like(layer) or len(call.inputs) != 1:
            ctx.block_call(
                call,
                f"EinsumDense {call.path!r} computes {layer.equation!r}: only a dense layer on "
                "the last axis ('...c,cd->...d', bias on 'd') is pruned",
            )
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", _channels(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", _channels(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        if not self._dense_like(layer):
            return {}
        return {"kernel": {"in": 0, "out": 1}, "bias": {"out": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        if "out" not in kept:
            return config
        shape = config["output_shape"]
        if isinstance(shape, int):
            return dict(config, output_shape=len(kept["out"]))
        return dict(config, output_shape=[*list(shape)[:-1], len(kept["out"])])

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("kernel", "dense")] if self._dense_like(layer) else []

    def filters(self, layer: Any) -> int:
        # The output's last axis, dense-like or not: a figure over all filters counts them.
        shape = layer.get_config()["output_shape"]
        last = shape if isinstance(shape, int) else list(shape)[-1]
        return int(last) if last is not None else 0

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        kernel = tuple(layer.kernel.shape.as_list())
        return einsum_macs(layer.equation, [ins[0], kernel], _what(layer))

    def input_mask(self, layer: Any) -> str | None:
        return "tensor" if self._dense_like(layer) else None


class DotAttentionRule(LayerRule):
    """Attention/AdditiveAttention (no weights but matrix products): counted; channels block."""

    layer_types = (L.Attention, L.AdditiveAttention)

    def applies(self, layer: Any) -> bool:
        return type(layer) in self.layer_types

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        if len(ins) < 2 or any(t is None or len(t) != 3 for t in ins[:2]):
            return None
        q, v = ins[0], ins[1]
        if None in (q[1], q[2], v[1], v[2]):
            raise UnsupportedModelError(
                f"cannot count FLOPs of {_what(layer)}: its sequence lengths are unknown. "
                "Build the model with fixed lengths or pass input_shapes= to count_flops."
            )
        # Scores (one dot product or one scaled tanh sum per pair), then the weighted values.
        return int(q[1]) * int(v[1]) * (int(q[2]) + int(v[2]))


class LocallyConnectedRule(LayerRule):
    """LocallyConnected1D/2D: an unshared kernel per output position."""

    layer_types = (L.LocallyConnected1D, L.LocallyConnected2D)

    def applies(self, layer: Any) -> bool:
        return type(layer) in self.layer_types

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        if not _channels_last(layer) or getattr(layer, "implementation", 1) != 1:
            ctx.block_call(
                call,
                f"locally connected layer {call.path!r} is not channels_last with implementation=1",
            )
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", _channels(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", _channels(y)))

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
        return _with_count(config, "filters", kept, "out")

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
        what = _what(layer)
        positions = spatial(layer, outs[0], what)
        x = ins[0]
        cin = x[1] if getattr(layer, "data_format", "channels_last") == "channels_first" else x[-1]
        window = int(math.prod(layer.kernel_size))
        return positions * window * int(cin) * int(layer.filters)

    def filters(self, layer: Any) -> int:
        return int(layer.filters)


# ---------------------------------------------------------------------------------------------
# Per-channel layers (channels pass straight through)
