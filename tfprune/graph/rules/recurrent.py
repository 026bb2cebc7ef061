"""Rules of recurrent layers: ``SimpleRNN``, ``GRU``, ``LSTM``, ``ConvLSTM*D``, ``Bidirectional``.

Their units (a ConvLSTM's filters) are the filters; gates of a unit are pruned with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfprune.compat import keras
from tfprune.errors import UnsupportedModelError
from tfprune.graph.rules.base import (
    ChannelContext,
    LayerRule,
    Role,
    Shape,
    block_channels_first,
    describe_layer,
    last_axis_size,
    rule_for,
    weight_short_name,
    with_kept_count,
)

__all__ = [
    "BidirectionalRule",
    "ConvRecurrentRule",
    "RecurrentRule",
]

L = keras.layers


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
    #: Axis of the kernel's input channels and of the recurrent kernel's state rows.
    row_axis = 0

    def applies(self, layer: Any) -> bool:
        # Only the stock classes (and tfprune's masked twins): subclasses may change the cell.
        return type(layer) in self.layer_types or getattr(layer, "_tfprune_stock", None) in (
            self.layer_types
        )

    @staticmethod
    def gates(layer: Any) -> int:
        """Number of gate blocks stacked along the units axis of the weights."""
        if isinstance(layer, (L.LSTM, L.ConvLSTM1D, L.ConvLSTM2D, L.ConvLSTM3D)):
            return 4
        return 3 if isinstance(layer, L.GRU) else 1

    def units(self, layer: Any) -> int:
        """Number of units (the layer's filters)."""
        return int(layer.units)

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        if block_channels_first(ctx, call, "recurrent layer"):
            return
        if getattr(layer, "stateful", False):
            ctx.block_call(call, f"recurrent layer {call.path!r} is stateful")
            return
        if len(call.inputs) != 1 or not call.outputs:
            ctx.block_call(call, f"recurrent layer {call.path!r} is called with states or masks")
            return
        x = call.inputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", last_axis_size(x)))
        dout = ctx.layer_dim(layer, "out", self.units(layer))
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
        units, gates = self.units(layer), self.gates(layer)
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
        return with_kept_count(config, "units", kept, "out")

    def slice_weights(self, layer, weights, kept):
        out = dict(weights)
        if "in" in kept:
            out["kernel"] = np.take(out["kernel"], kept["in"], axis=self.row_axis)
        if "out" in kept:
            cols = _gate_columns(kept["out"], self.units(layer), self.gates(layer))
            out["kernel"] = np.take(out["kernel"], cols, axis=-1)
            rk = np.take(out["recurrent_kernel"], kept["out"], axis=self.row_axis)
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
                f"cannot count FLOPs of {describe_layer(layer)}: its sequence length is unknown "
                f"({x}). Build the model with a fixed length or pass input_shapes= to count_flops."
            )
        fan_in = int(layer.cell.kernel.shape[0]) + int(layer.units)
        return int(steps) * fan_in * self.gates(layer) * int(layer.units)

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"

    def self_mask_role(self, layer: Any) -> Role | None:
        return "out"

    def filters(self, layer: Any) -> int:
        return self.units(layer)


class ConvRecurrentRule(RecurrentRule):
    """ConvLSTM1D/2D/3D: an LSTM whose gates are convolutions; its filters are the units.

    Kernels are conv kernels ``(k..., in, 4 * filters)`` and ``(k..., filters, 4 * filters)``:
    input channels and state rows on the second-to-last axis, gate-stacked filters on the last.
    """

    layer_types = (L.ConvLSTM1D, L.ConvLSTM2D, L.ConvLSTM3D)
    row_axis = -2

    def units(self, layer: Any) -> int:
        return int(layer.filters)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"kernel": {"in": -2}, "recurrent_kernel": {"out": -2}, "mask": {"out": 0}}

    def new_config(self, layer, config, kept):
        return with_kept_count(config, "filters", kept, "out")

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        x, y = ins[0], outs[0] if outs else None
        if x is None or y is None or any(d is None for d in (*x[1:], *y[1:])):
            raise UnsupportedModelError(
                f"cannot count FLOPs of {describe_layer(layer)}: its input {x} or output {y} has "
                "unknown dimensions. Build the model with fixed shapes or pass input_shapes= to "
                "count_flops."
            )
        steps = int(x[1])
        positions = int(np.prod(y[2:-1] if layer.return_sequences else y[1:-1]))
        taps = int(np.prod(layer.kernel_size))
        fan_in = int(layer.cell.kernel.shape[-2]) + self.units(layer)
        return steps * positions * taps * fan_in * self.gates(layer) * self.units(layer)


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
    #: The rule types of the wrapped layers it vouches for (exactly these).
    inner_rules: tuple[type, ...] = (RecurrentRule,)

    def applies(self, layer: Any) -> bool:
        stock = getattr(layer, "_tfprune_stock", None)
        return type(layer) is L.Bidirectional or stock is L.Bidirectional

    def _inner(self, layer: Any) -> list[Any]:
        return [layer.forward_layer, layer.backward_layer]

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        inner = self._inner(layer)
        problem = None
        if any(type(rule_for(i)) not in self.inner_rules for i in inner):
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
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", last_axis_size(x)))
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
