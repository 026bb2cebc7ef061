"""Rules of wrapper layers: TimeDistributed and TF-MOT's pruning and quantization wrappers."""

from __future__ import annotations

import dataclasses
from typing import Any

from tfprune.compat import (
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
    describe_layer,
    rule_for,
    weight_short_name,
)

__all__ = [
    "PruneLowMagnitudeRule",
    "QuantizeWrapperRule",
    "TimeDistributedRule",
    "WrapperRule",
]

L = keras.layers


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
            raise UnsupportedModelError(
                f"cannot count FLOPs of {describe_layer(layer)}: unknown time steps"
            )
        fold = [None if t is None else (t[0], *t[2:]) for t in ins]
        fold_out = [None if t is None else (t[0], *t[2:]) for t in outs]
        inner = super().macs(layer, fold, fold_out)
        return None if inner is None else int(x[1]) * inner


class PruneLowMagnitudeRule(WrapperRule):
    """TF-MOT's ``prune_low_magnitude`` wrapper: filters are pruned through it.

    Its sparsity ``mask`` has the wrapped kernel's shape and is sliced with it; the smaller
    model keeps the wrapper (and its schedule), so TF-MOT's own ``strip_pruning`` still works.
    """

    @property
    def layer_types(self) -> tuple[type, ...]:  # TF-MOT's class, once TF-MOT is imported
        cls = tfmot_prune_wrapper_class()
        return () if cls is None else (cls,)

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

    @property
    def layer_types(self) -> tuple[type, ...]:  # TF-MOT's class, once TF-MOT is imported
        cls = tfmot_quantize_wrapper_class()
        return () if cls is None else (cls,)

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        ctx.block_call(
            call,
            f"layer {call.path!r} is wrapped for quantization-aware training "
            f"({type(call.layer).__name__}); prune the float model first "
            "(tfprune.prune_filters, strip_filters), then quantize the smaller model",
        )

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return rule_for(layer.layer).macs(layer.layer, ins, outs)
