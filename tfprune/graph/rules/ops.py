"""The rule of TF ops in a functional graph (``TFOpLambda``: ``tf.*`` calls, operators)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tfprune.compat import (
    KerasTensor,
    is_tf_op_layer,
    keras,
    tf,
)
from tfprune.graph.rules.base import (
    ChannelContext,
    LayerRule,
    Shape,
    describe_layer,
    is_keras_tensor,
    is_scalar,
    last_axis_size,
    numel,
)

__all__ = [
    "ELEMENTWISE_OPS",
    "TFOpRule",
]

L = keras.layers


# Last component of TFOpLambda symbols (``math.add``, ``__operators__.add``, ``nn.relu6``...)
# that act elementwise (per channel) on their tensor arguments.
ELEMENTWISE_OPS = frozenset(
    {
        "add",
        "subtract",
        "multiply",
        "truediv",
        "divide",
        "floordiv",
        "maximum",
        "minimum",
        "pow",
        "squared_difference",
        "negative",
        "abs",
        "square",
        "sqrt",
        "rsqrt",
        "exp",
        "log",
        "reciprocal",
        "sign",
        "relu",
        "relu6",
        "elu",
        "selu",
        "gelu",
        "silu",
        "swish",
        "sigmoid",
        "hard_sigmoid",
        "tanh",
        "softplus",
        "softsign",
        "leaky_relu",
        "identity",
        "cast",
        "clip_by_value",
        "stop_gradient",
        "erf",
        "convert_to_tensor",
        "floor",
        "ceil",
        "round",
    }
)
_SHAPE_OPS = frozenset({"shape", "size", "rank", "uniform", "normal", "truncated_normal"})
_REDUCE_OPS = frozenset({"reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod"})
_RESIZE_OPS = frozenset({"resize", "resize_bilinear", "resize_nearest_neighbor"})


def _op_name(layer: Any) -> str:
    return str(getattr(layer, "symbol", "") or "").split(".")[-1]


def _full_slice(s: Any) -> bool:
    if isinstance(s, dict):
        return s.get("start") is None and s.get("stop") is None and s.get("step") in (None, 1)
    if isinstance(s, slice):
        return s.start is None and s.stop is None and s.step in (None, 1)
    return False


def _constant_shape(x: Any) -> tuple | None:
    """The shape of a constant array argument (NumPy or eager tensor; not a variable)."""
    if isinstance(x, np.ndarray):
        return tuple(x.shape)
    if tf.is_tensor(x) and not isinstance(x, (KerasTensor, tf.Variable)):
        return tuple(x.shape.as_list())
    return None


def _per_channel_constant(x: Any, channels: int | None, rank: int | None) -> bool:
    """Whether ``x`` is a constant with one value (or row) per channel, or one for all.

    For example a position embedding ``(1, positions, channels)`` or a per-channel scale, which
    broadcast onto the output.
    """
    shape = _constant_shape(x)
    if shape is None or not shape or rank is None or len(shape) > rank:
        return False
    return shape[-1] == 1 or (channels is not None and shape[-1] == channels)


def _rewritable_reshape(args: tuple, kwargs: dict) -> bool:
    """Whether a ``tf.reshape`` call's target is a list ending in a written-out integer."""
    if "name" in kwargs or len(args) > 2:
        return False
    shape = kwargs.get("shape", args[1] if len(args) > 1 else None)
    return (
        isinstance(shape, (list, tuple))
        and bool(shape)
        and isinstance(shape[-1], (int, np.integer))
        and not isinstance(shape[-1], bool)
    )


def _pinned_channels(call: Any) -> int | None:
    """The channel count a ``tf.reshape`` call's constant target shape spells out, if any."""
    shape = call.kwargs.get("shape", call.args[1] if len(call.args) > 1 else None)
    if shape is None or is_keras_tensor(shape):
        return None
    entries = tf.nest.flatten(shape)
    last = entries[-1] if entries else None
    if is_keras_tensor(last):
        return None
    try:
        last = int(np.asarray(last).reshape(-1)[-1])
    except (TypeError, ValueError, IndexError):
        return None
    return last if last > 0 else None


class TFOpRule(LayerRule):
    """Known elementwise TF ops, channel-preserving slicing, reductions, concat and pad."""

    def applies(self, layer: Any) -> bool:
        return is_tf_op_layer(layer)

    def connect(self, ctx: Any, call: Any) -> None:
        op = _op_name(call.layer)
        if not call.outputs:
            ctx.block_call(call, f"op {call.path!r} has no tensor output")
            return
        if op == "split":
            self._split(ctx, call)
            return
        y = call.outputs[0]
        if len(call.outputs) != 1:
            ctx.block_call(call, f"op {call.path!r} ({op}) has several outputs")
            return
        if op in _SHAPE_OPS:
            # Reads only the shape (tf.shape) or makes fresh values from a shape
            # (tf.random.uniform): no channel of any input flows into the output.
            ctx.block(ctx.tensor_dim(y), f"op {call.path!r} ({op}) makes a new tensor")
        elif op in ELEMENTWISE_OPS:
            self._elementwise(ctx, call, op, y)
        elif op == "getitem":
            self._getitem(ctx, call, y)
        elif op in _REDUCE_OPS:
            self._reduce(ctx, call, y)
        elif op in ("concat", "concatenate"):
            axis = call.kwargs.get("axis", call.args[1] if len(call.args) > 1 else 0)
            values = call.args[0] if call.args else call.kwargs.get("values")
            rank = y.shape.rank
            tensors = [t for t in tf.nest.flatten(values) if is_keras_tensor(t)]
            if axis % rank == rank - 1:
                ctx.concat([ctx.tensor_dim(t) for t in tensors], ctx.tensor_dim(y))
            else:
                for t in tensors:
                    ctx.identity(ctx.tensor_dim(t), ctx.tensor_dim(y))
        elif op == "tile":
            self._tile(ctx, call, y)
        elif op == "pad":
            paddings = call.args[1] if len(call.args) > 1 else call.kwargs.get("paddings")
            try:
                last = list(np.asarray(paddings)[-1])
            except Exception:  # noqa: BLE001 - symbolic paddings: be safe
                last = None
            if last == [0, 0]:
                ctx.identity(ctx.tensor_dim(call.inputs[0]), ctx.tensor_dim(y))
            else:
                ctx.block_call(call, f"op {call.path!r} pads the channel axis")
        elif op == "reshape" and _pinned_channels(call) is not None:
            x = call.inputs[0]
            if _rewritable_reshape(call.args, call.kwargs) and (
                _pinned_channels(call) == last_axis_size(x) == last_axis_size(y)
            ):
                # Channel c stays channel c (the last axis keeps its size, row-major order);
                # the stripped model gets the new count written in (rewrite_call).
                ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
                return
            # The rebuilt model replays the recorded shape: a written-out channel count that
            # is not the input's would no longer fit once channels are removed.
            ctx.block_call(
                call,
                f"reshape {call.path!r} writes a last axis ({_pinned_channels(call)}) into its "
                "target shape that is not its input's channel axis "
                f"({last_axis_size(x)}) kept as is",
            )
        elif op in _RESIZE_OPS or op == "reshape":
            x = call.inputs[0]
            if last_axis_size(x) == last_axis_size(y) and last_axis_size(x) is not None:
                ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
            else:
                ctx.block_call(call, f"op {call.path!r} ({op}) changes the channel axis")
        else:
            ctx.block_call(call, f"TF op {call.path!r} ({call.layer.symbol}) is not understood")

    #: Ops without multiply-accumulates that ``connect`` understands.
    free_ops = (
        ELEMENTWISE_OPS
        | _REDUCE_OPS
        | _RESIZE_OPS
        | {"getitem", "concat", "concatenate", "pad", "reshape", "transpose", "squeeze"}
        | {"expand_dims", "split", "stack", "shape", "cast", "one_hot", "gather", "tile"}
        | {"broadcast_to", "ones", "zeros", "ones_like", "zeros_like", "fill", "range"}
    )

    def rewrite_call(
        self, layer: Any, args: tuple, kwargs: dict, kept: np.ndarray | None
    ) -> Any | None:
        """A reshape or an op with per-channel constants, redone for the kept channels.

        The reshape's target spells out the channel count; the constants are cut to ``kept``.
        Only a call whose output channels were cut is redone (``kept`` given), and a reshape
        only when its input lost exactly those channels: a reshape the analysis blocked keeps
        every channel, so it is replayed as recorded.
        """
        if kept is None:
            return None
        if _op_name(layer) in ELEMENTWISE_OPS:
            return self._rewrite_constants(layer, args, kwargs, kept)
        if _op_name(layer) != "reshape" or not _rewritable_reshape(args, kwargs):
            return None
        x = kwargs.get("tensor", args[0] if args else None)
        shape = list(kwargs.get("shape", args[1] if len(args) > 1 else None))
        channels = x.shape[-1] if x is not None and x.shape.rank else None
        if channels is None or shape[-1] == channels or channels != len(kept):
            return None
        return tf.reshape(x, [*shape[:-1], int(channels)])

    @staticmethod
    def _rewrite_constants(layer: Any, args: tuple, kwargs: dict, kept: Any) -> Any | None:
        """The op again, with each per-channel constant cut to the ``kept`` channels."""
        size = int(np.max(kept, initial=-1)) + 1
        changed = []

        def cut(arg: Any) -> Any:
            shape = _constant_shape(arg)
            if shape is None or not shape or shape[-1] in (1, len(kept)) or shape[-1] < size:
                return arg
            changed.append(arg)
            return np.take(np.asarray(arg), kept, axis=-1)

        new_args = tf.nest.map_structure(cut, args)
        new_kwargs = tf.nest.map_structure(cut, kwargs)
        return layer.function(*new_args, **new_kwargs) if changed else None

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        op = _op_name(layer)
        if op in self.free_ops:
            return 0
        if op == "matmul" and len(ins) == 2 and outs and all(len(t or ()) >= 3 for t in ins):
            # (..., m, k) x (..., k, n), transposed or not: the inner size k is
            # sqrt(|a| * |b| / |out|) over the last two axes of each.
            a, b, out = ins[0], ins[1], outs[0]
            if None in (a[-2:] + b[-2:]) or out is None or None in out[-2:]:
                return None
            k = math.isqrt(int(math.prod(a[-2:]) * math.prod(b[-2:]) // math.prod(out[-2:])))
            return numel(out, describe_layer(layer)) * k
        return None

    def _split(self, ctx: ChannelContext, call: Any) -> None:
        """``tf.split``: along the channel axis, equal parts whose position i goes together.

        Each output is then a consecutive range of the input's channels (the inverse of a
        concat), and channel i of every part is removed together, so the parts stay equal and
        the recorded ``num_or_size_splits`` still fits the smaller model. Along any other axis
        every part keeps all channels.
        """
        x = call.inputs[0]
        args = list(call.args) + [None] * 3
        splits = call.kwargs.get("num_or_size_splits", args[1])
        axis = call.kwargs.get("axis", args[2] if args[2] is not None else 0)
        rank = x.shape.rank
        if rank is None or not isinstance(axis, (int, np.integer)):
            ctx.block_call(call, f"split {call.path!r} has an unknown axis")
            return
        if int(axis) % rank != rank - 1:
            for y in call.outputs:
                ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
            return
        n = len(call.outputs)
        if not isinstance(splits, (int, np.integer)):
            ctx.block_call(
                call, f"split {call.path!r} cuts the channel axis into parts of fixed sizes"
            )
            return
        dx = ctx.tensor_dim(x)
        ctx.concat([ctx.tensor_dim(y) for y in call.outputs], dx)
        ctx.tie_blocks(dx, n)

    def _tile(self, ctx: ChannelContext, call: Any, y: Any) -> None:
        """``tf.tile``: repeating along other axes keeps every channel where it is.

        Repeating the channel axis itself (or multiples tfprune cannot read) blocks.
        """
        x = call.inputs[0]
        multiples = call.kwargs.get("multiples", call.args[1] if len(call.args) > 1 else None)
        try:
            last = int(np.asarray(multiples).reshape(-1)[-1])
        except Exception:  # noqa: BLE001 - symbolic multiples: cannot tell where channels go
            last = None
        if last == 1 and last_axis_size(x) == last_axis_size(y):
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        elif last is None:
            ctx.block_call(call, f"tile {call.path!r} has multiples known only at run time")
        else:
            ctx.block_call(call, f"tile {call.path!r} repeats the channel axis {last} times")

    def _elementwise(self, ctx, call, op, y) -> None:
        cy = last_axis_size(y)
        for arg in tf.nest.flatten((call.args, call.kwargs)):
            if is_keras_tensor(arg):
                c = last_axis_size(arg)
                if c == cy:
                    ctx.identity(ctx.tensor_dim(arg), ctx.tensor_dim(y))
                elif c != 1:
                    ctx.block_call(call, f"op {call.path!r} ({op}) broadcasts channels")
                    return
            elif is_scalar(arg) or isinstance(arg, tf.DType):  # cast(x, tf.float32)
                continue
            elif not _per_channel_constant(arg, cy, y.shape.rank):
                ctx.block_call(
                    call,
                    f"op {call.path!r} ({op}) has a constant that is neither a scalar nor one "
                    "value per channel",
                )
                return

    def _getitem(self, ctx, call, y) -> None:
        x = call.inputs[0]
        spec = call.args[1] if len(call.args) > 1 else None
        spec = spec if isinstance(spec, (list, tuple)) else (spec,)
        rank = x.shape.rank
        ok = False
        if any(s is Ellipsis for s in spec):
            ok = spec[-1] is Ellipsis or _full_slice(spec[-1])
        elif len([s for s in spec if s is not None]) < rank:
            # Slices, indices (x[:, 0], a class token) and new axes before the channel axis.
            ok = all(
                s is None
                or isinstance(s, (dict, slice, np.integer))
                or (isinstance(s, int) and not isinstance(s, bool))
                for s in spec
            )
        else:
            ok = _full_slice(spec[rank - 1]) if len(spec) == rank else False
        if ok and last_axis_size(x) == last_axis_size(y) and y.shape.rank >= 2:
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        else:
            ctx.block_call(call, f"slice {call.path!r} touches the channel axis")

    def _reduce(self, ctx, call, y) -> None:
        x = call.inputs[0]
        axis = call.kwargs.get("axis", call.args[1] if len(call.args) > 1 else None)
        rank = x.shape.rank
        axes = [] if axis is None else list(np.atleast_1d(axis))
        if axis is None or any(int(a) % rank == rank - 1 for a in axes):
            ctx.block_call(call, f"reduction {call.path!r} runs over the channel axis")
        elif last_axis_size(y) == last_axis_size(x):
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        else:
            ctx.block_call(call, f"reduction {call.path!r} changes the channel axis")
