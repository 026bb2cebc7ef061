"""Per-layer channel rules: how each layer type couples channels, and how its weights slice.

A *rule* is the one place that knows a family of layers:

* ``connect(ctx, call)`` – which channel axes of the call's input/output tensors and of the
  layer's own weights must be pruned together (declared on a :class:`ChannelContext`);
* ``weight_axes(layer)``/``channel_rows``/``kernel_names``/``kernel_layouts`` – for each weight,
  which axis holds which channel *role* (``"in"``, ``"out"`` or ``"ch"`` for per-channel
  pass-through parameters such as BN's gamma), read by importance criteria, penalties and OrthP;
* ``new_config``/``slice_weights`` – how to build the smaller layer once channels are removed;
* ``macs`` – what one call costs (read by :func:`tfprune.count_flops`);
* ``input_mask``/``self_mask_role`` – how the layer is masked while pruning trains.

Layers are matched with ``isinstance``, most specific rule first. A layer no rule claims blocks
every channel it touches (fail closed). Users can add rules with :func:`register_rule`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import (
    KerasTensor,
    keras,
    tf,
    tfmot_prune_wrapper_class,
    tfmot_quantize_wrapper_class,
)
from tfprune.errors import InvalidArgumentError, UnsupportedModelError

__all__ = [
    "ChannelContext",
    "LayerRule",
    "register_rule",
    "rule_for",
    "unregister_rule",
    "ELEMENTWISE_OPS",
    "KERNEL_NAMES",
    "Role",
]

Role = str  # "in" | "out" | "ch" (or a rule's own role such as "head")
DimKey = tuple  # an opaque key of one channel axis, handed out by a ChannelContext
Shape = tuple | None  # a tensor shape with the batch dimension first (None: unknown rank)

#: Short names of multiply weights (kernels) of the built-in layers.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings", "recurrent_kernel")

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


def _channels(t: Any) -> int | None:
    shape = t.shape
    if shape.rank is None or shape.rank == 0:
        return None
    return shape[-1]


def _only_channel_axis(axis: Any, rank: int) -> bool:
    """Whether a layer's ``axis`` argument (int or list) is exactly the last (channel) axis."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return [a % rank for a in axes] == [rank - 1]


def _is_kt(x: Any) -> bool:
    return isinstance(x, KerasTensor)


def _is_scalar(x: Any) -> bool:
    if isinstance(x, (bool, int, float, np.number, str, type(None))):
        return True
    if isinstance(x, np.ndarray):
        return x.size == 1
    if tf.is_tensor(x) and not isinstance(x, (KerasTensor, tf.Variable)):
        return x.shape.num_elements() == 1  # an eager constant such as tf.cast(3.0, dtype)
    return False


def numel(shape: Shape, what: str) -> int:
    """Number of elements of one example (batch dim excluded); a clear error if unknown."""
    if shape is None or any(d is None for d in shape[1:]):
        raise UnsupportedModelError(
            f"cannot count FLOPs of {what}: its shape {shape} has unknown non-batch dimensions. "
            "Build the model with a fixed input shape or pass input_shapes= to count_flops."
        )
    return int(math.prod(shape[1:]))


def spatial(layer: Any, shape: Shape, what: str) -> int:
    """Product of the spatial dims of a conv input/output shape (batch and channels excluded)."""
    numel(shape, what)  # validates
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    dims = shape[2:] if channels_first else shape[1:-1]
    return int(math.prod(dims))


def _size(variable: Any) -> int:
    return int(math.prod(variable.shape.as_list()))


def _what(layer: Any) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _with_count(config: dict, key: str, kept: dict, role: Role) -> dict:
    """``config`` with ``key`` set to the number of kept ``role`` channels, if any were cut."""
    return dict(config, **{key: len(kept[role])}) if role in kept else config


class ChannelContext:
    """What a rule's :meth:`LayerRule.connect` uses to declare which channels go together.

    Channel-group discovery hands one context to every rule. A *dim* is one channel axis: the
    last axis of a tensor (:meth:`tensor_dim`) or one channel role of a layer's weights
    (:meth:`layer_dim`). Couplings say which channels of two dims must be removed together;
    :meth:`block` marks channels that must never be removed. Dims are opaque keys.
    """

    def tensor_dim(self, t: Any) -> DimKey:
        """The dim of tensor ``t``'s last (channel) axis."""
        raise NotImplementedError

    def layer_dim(self, layer: Any, role: Role, size: int | None) -> DimKey:
        """The dim of one channel role (``"in"``, ``"out"``, ``"ch"``...) of ``layer``'s weights."""
        raise NotImplementedError

    def size(self, key: DimKey) -> int:
        """Number of channels of a dim (0 when unknown)."""
        raise NotImplementedError

    def identity(self, a: DimKey, b: DimKey) -> None:
        """Channel ``c`` of ``a`` is channel ``c`` of ``b`` (sizes must agree, else both block)."""
        raise NotImplementedError

    def concat(self, inputs: list[DimKey], out: DimKey) -> None:
        """The ``inputs`` fill consecutive channel ranges of ``out``."""
        raise NotImplementedError

    def expand(self, a: DimKey, b: DimKey, factor: int) -> None:
        """Channel ``c`` of ``a`` is channels ``c*factor .. c*factor+factor-1`` of ``b``."""
        raise NotImplementedError

    def flatten(self, a: DimKey, b: DimKey) -> None:
        """Channel ``c`` of ``a`` is features ``p*C + c`` of ``b`` for every position ``p``."""
        raise NotImplementedError

    def tie_blocks(self, key: DimKey, groups: int) -> None:
        """Position ``i`` of each of ``groups`` equal blocks of ``key`` is removed together."""
        raise NotImplementedError

    def per_channel(self, layer: Any, x: Any, y: Any) -> DimKey:
        """Tensors ``x``, ``y`` and ``layer``'s per-channel parameters (role ``"ch"``) are one."""
        raise NotImplementedError

    def block(self, key: DimKey, reason: str) -> None:
        """Never remove any channel of ``key``; ``reason`` is shown by ``tfprune.explain``."""
        raise NotImplementedError

    def block_call(self, call: Any, reason: str) -> None:
        """Block every tensor the call reads or writes."""
        raise NotImplementedError

    def mark_mixing(self, call: Any) -> None:
        """The call mixes channels of its inputs (e.g. normalises over them): mask its inputs."""
        raise NotImplementedError


class LayerRule:
    """Everything tfprune knows about one family of layers; the default blocks everything.

    Subclass it and :func:`register_rule` an instance to teach tfprune a new layer type. A rule
    is the single place that knows, for its layers:

    * channel couplings (:meth:`connect`), weight layout (:meth:`weight_axes`,
      :meth:`channel_rows`, :meth:`kernel_names`, :meth:`kernel_layouts`);
    * how to build the smaller layer (:meth:`new_config`, :meth:`slice_weights`);
    * its cost (:meth:`macs`) and how its input channels are masked during training
      (:meth:`input_mask`, :meth:`self_mask_role`).
    """

    #: Layer classes this rule claims (matched with isinstance).
    layer_types: tuple[type, ...] = ()
    #: Methods whose stock behaviour the rule relies on: a user subclass that overrides one
    #: of them is not claimed by the built-in rule (fail closed).
    stock_methods: tuple[str, ...] = ("call",)
    #: Short names of the weights that hold a layer's multiply weights (importance, penalties).
    kernel_weight_names: tuple[str, ...] = KERNEL_NAMES

    def applies(self, layer: Any) -> bool:
        """Whether this rule handles ``layer``."""
        return isinstance(layer, self.layer_types)

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        """Declare channel couplings of one call; the default blocks all its tensors."""
        reason = f"layer {call.path!r} ({type(call.layer).__name__}) is not understood"
        ctx.block_call(call, reason)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        """Map weight short name -> {role: axis} (axes whose length is the role's channels)."""
        return {}

    def kernel_names(self, layer: Any) -> tuple[str, ...]:
        """Short names of ``layer``'s multiply weights (what L1/L2 importance and GReg read)."""
        return tuple(n for n in self.kernel_weight_names if n in self.weight_axes(layer))

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        """``(weight short name, layout)`` of kernels OrthP may re-initialise.

        Layouts: ``"dense"`` (in, out), ``"conv"`` (k..., in, out), ``"conv_transpose"``
        (k..., out, in), ``"depthwise"`` (k..., in, multiplier). Default: none.
        """
        return []

    def kernel_variables(self, layer: Any) -> list[tuple[Any, str]]:
        """``(variable, layout)`` pairs of :meth:`kernel_layouts` (what OrthP re-initialises)."""
        by_name = {}
        for v in layer.weights:
            by_name.setdefault(v.name.split("/")[-1].split(":")[0], v)
        return [(by_name[n], kind) for n, kind in self.kernel_layouts(layer) if n in by_name]

    def channel_rows(
        self,
        layer: Any,
        role: Role,
        arrays: Mapping[str, np.ndarray],
        names: Iterable[str] | None = None,
    ) -> list[np.ndarray]:
        """``arrays`` (weight-shaped values by short name) as ``(channels, -1)`` matrices.

        Row ``c`` holds every value that belongs to channel ``c`` of ``role`` (for a producer:
        the whole filter). Only arrays named in ``names`` (default: all) with a ``role`` axis
        are returned. ``arrays`` may be the weights or anything of the same shapes (gradients).
        """
        axes = self.weight_axes(layer)
        wanted = None if names is None else set(names)
        rows = []
        for name, a in arrays.items():
            axis = axes.get(name, {}).get(role)
            if axis is None or (wanted is not None and name not in wanted):
                continue
            w = np.moveaxis(np.asarray(a), axis, 0)
            rows.append(w.reshape(w.shape[0], -1))
        return rows

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        """Config of the smaller layer (default: unchanged)."""
        return config

    def slice_weights(
        self, layer: Any, weights: dict[str, np.ndarray], kept: dict[Role, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Slice every weight along the axes of the roles that lost channels."""
        axes = self.weight_axes(layer)
        out = {}
        for name, w in weights.items():
            for role, axis in axes.get(name, {}).items():
                if role in kept:
                    w = np.take(w, kept[role], axis=axis)
            out[name] = w
        return out

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        """Multiply-accumulates of one call on one example, or None when not counted.

        ``ins``/``outs`` are the call's tensor shapes with the batch dimension first. Raise
        :class:`~tfprune.errors.UnsupportedModelError` when a needed dimension is unknown.
        """
        return None

    def filters(self, layer: Any) -> int:
        """Number of channels (filters, units) ``layer`` produces; 0 for layers that create none.

        ``tfprune.explain`` counts these over every layer of a model, seen or not, so its
        prunable fraction is a fraction of all filters.
        """
        return 0

    def input_mask(self, layer: Any) -> str | None:
        """How pruned input channels are zeroed in front of this layer during training.

        ``"kernel"``: the layer has a kernel-masked twin (cheap), ``"tensor"``: a
        :class:`~tfprune.layers.ChannelMask` goes on its input, None: the layer does not
        consume channels (they pass through).
        """
        return None

    def self_mask_role(self, layer: Any) -> Role | None:
        """The role whose pruned channels the layer itself must mask (it has a masked twin).

        For layers whose own computation mixes the channels of that role: a layer norm's
        statistics (``"ch"``), a recurrent layer's state feeding back into its gates (``"out"``).
        """
        return None


_RULES: list[LayerRule] = []


def register_rule(rule: LayerRule, *, first: bool = True) -> LayerRule:
    """Register a rule (a :class:`LayerRule` instance) for a layer type tfprune should prune.

    User rules go first (``first=True``) so they override the built-in ones. Returns ``rule``,
    so it can later be removed with :func:`unregister_rule`.
    """
    if not isinstance(rule, LayerRule):
        raise InvalidArgumentError(
            f"register_rule expects a LayerRule instance, got {type(rule).__name__}"
        )
    if first:
        _RULES.insert(0, rule)
    else:
        _RULES.append(rule)
    return rule


def unregister_rule(rule: LayerRule) -> None:
    """Remove a rule added with :func:`register_rule` (a no-op if it is not registered)."""
    while rule in _RULES:
        _RULES.remove(rule)


def rule_for(layer: Any) -> LayerRule:
    """The rule that handles ``layer`` (a blocking default when none does).

    A built-in rule only claims a layer whose computation is the stock one: a subclass that
    overrides one of the rule's ``stock_methods`` (``call``, ``convolution_op``...) is a
    different computation and gets no built-in rule (it is traced or blocks).
    """
    for rule in _RULES:
        if rule.applies(layer) and not overrides_stock(layer, rule):
            return rule
    return _UNKNOWN


def _trusted_class(cls: type) -> bool:
    return cls.__module__.startswith(("tf_keras.", "keras.", "tfprune."))


def overrides_stock(layer: Any, rule: LayerRule) -> list[str]:
    """Names of ``rule.stock_methods`` that ``layer``'s own (non-Keras) classes redefine.

    Empty for stock Keras and tfprune layers and for rules registered by users (which know
    the classes they claim).
    """
    if not type(rule).__module__.startswith("tfprune."):
        return []
    found: list[str] = []
    for cls in type(layer).__mro__:
        if _trusted_class(cls) or cls in rule.layer_types:
            break
        found.extend(m for m in rule.stock_methods if m in vars(cls) and m not in found)
    return found


_UNKNOWN = LayerRule()


def _channels_last(layer: Any) -> bool:
    fmt = getattr(layer, "data_format", "channels_last")
    return fmt in (None, "channels_last")


class _FreeRule(LayerRule):
    """Base of rules for layers without multiply-accumulates (per-channel, shape-only ops)."""

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return 0


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
        if not _channels_last(layer):
            ctx.block_call(call, f"layer {call.path!r} uses channels_first")
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
        if not _channels_last(layer):
            ctx.block_call(call, f"layer {call.path!r} uses channels_first")
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
        if not _channels_last(layer):
            ctx.block_call(call, f"layer {call.path!r} uses channels_first")
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
    """Bidirectional around an RNN: counted (both directions); its channels block for now.

    Pruning the units of both directions would need masked twins of both inner layers inside
    the wrapper; until then the wrapper's input and output channels are never removed (the
    layers before and after it can still be pruned where they are not coupled to it).
    """

    layer_types = (L.Bidirectional,)

    def applies(self, layer: Any) -> bool:
        return type(layer) is L.Bidirectional

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        ctx.block_call(
            call,
            f"Bidirectional {call.path!r}: tfprune does not prune the units of a "
            "bidirectional RNN yet (its input and output channels stay)",
        )

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        total = 0
        for inner in (layer.forward_layer, layer.backward_layer):
            m = rule_for(inner).macs(inner, ins[:1], outs[:1])
            if m is None:
                return None
            total += m
        return total


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
        if rule.self_mask_role(inner) is not None or type(rule) is LayerRule:
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
        return prunable[0].name.split("/")[-1].split(":")[0] if prunable else "kernel"

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


def _mha_kernels(layer: Any) -> dict[str, Any]:
    """The projection kernels of a MultiHeadAttention layer, by projection name."""
    out = {}
    for v in layer.weights:
        parts = v.name.split(":")[0].split("/")
        if len(parts) >= 2 and parts[-1] == "kernel":
            out[parts[-2]] = v
    return out


class MultiHeadAttentionRule(LayerRule):
    """MultiHeadAttention: projections, attention scores ``QK^T`` and the weighted sum ``AV``."""

    layer_types = (L.MultiHeadAttention,)

    def applies(self, layer: Any) -> bool:
        return type(layer) is L.MultiHeadAttention

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
        # Attention heads (each a set of query/key/value/output columns) are its filters.
        return int(layer.get_config()["num_heads"])


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


class PassThroughRule(_FreeRule):
    """Layers that act on each channel separately and keep the channel axis last."""

    layer_types = (
        L.Activation,
        L.ReLU,
        L.LeakyReLU,
        L.ELU,
        L.ThresholdedReLU,
        L.Dropout,
        L.SpatialDropout1D,
        L.SpatialDropout2D,
        L.SpatialDropout3D,
        L.GaussianNoise,
        L.GaussianDropout,
        L.AlphaDropout,
        L.ActivityRegularization,
        L.MaxPooling1D,
        L.MaxPooling2D,
        L.MaxPooling3D,
        L.AveragePooling1D,
        L.AveragePooling2D,
        L.AveragePooling3D,
        L.GlobalAveragePooling1D,
        L.GlobalAveragePooling2D,
        L.GlobalAveragePooling3D,
        L.GlobalMaxPooling1D,
        L.GlobalMaxPooling2D,
        L.GlobalMaxPooling3D,
        L.ZeroPadding1D,
        L.ZeroPadding2D,
        L.ZeroPadding3D,
        L.Cropping1D,
        L.Cropping2D,
        L.Cropping3D,
        L.UpSampling1D,
        L.UpSampling2D,
        L.UpSampling3D,
    ) + tuple(getattr(L, n) for n in ("Identity",) if hasattr(L, n))

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if not _channels_last(layer):
            ctx.block_call(call, f"layer {call.path!r} uses channels_first")
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))


class SoftmaxRule(_FreeRule):
    """Softmax mixes channels when it normalises over the channel axis."""

    layer_types = (L.Softmax,)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        axis = call.layer.axis
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        rank = x.shape.rank
        if any(a in (-1, rank - 1) for a in axes):
            ctx.block_call(call, f"softmax {call.path!r} normalises over the channel axis")
        else:
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))


class PerChannelParamRule(_FreeRule):
    """Per-channel layers with parameters along the channel axis (BN, PReLU)."""

    layer_types = (L.BatchNormalization, L.PReLU)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        rank = x.shape.rank
        if isinstance(layer, L.BatchNormalization):
            if not _only_channel_axis(layer.axis, rank):
                ctx.block_call(call, f"batch norm {call.path!r} is not over the last axis")
                return
        ctx.per_channel(layer, x, y)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        if isinstance(layer, L.PReLU):
            return {"alpha": {"ch": -1}}
        return {n: {"ch": 0} for n in ("gamma", "beta", "moving_mean", "moving_variance")}


class MergeRule(_FreeRule):
    """Add/Subtract/Multiply/Average/Maximum/Minimum: all inputs share the output's channels.

    An input whose channel axis has size 1 broadcasts (a scalar gate) and is not coupled.
    """

    layer_types = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)

    def connect(self, ctx: Any, call: Any) -> None:
        y = call.outputs[0]
        dy = ctx.tensor_dim(y)
        for t in call.inputs:
            c = _channels(t)
            if c == _channels(y):
                ctx.identity(ctx.tensor_dim(t), dy)
            elif c != 1:
                ctx.block_call(call, f"merge {call.path!r} broadcasts channels {c}")
                return


class ConcatenateRule(_FreeRule):
    """Concatenate: along the channel axis inputs take consecutive offsets of the output."""

    layer_types = (L.Concatenate,)

    def connect(self, ctx: Any, call: Any) -> None:
        y = call.outputs[0]
        rank = y.shape.rank
        if call.layer.axis % rank == rank - 1:
            ctx.concat([ctx.tensor_dim(t) for t in call.inputs], ctx.tensor_dim(y))
        else:
            for t in call.inputs:
                ctx.identity(ctx.tensor_dim(t), ctx.tensor_dim(y))


class FlattenRule(_FreeRule):
    """Flatten: input channel c becomes features c, C+c, 2C+c, ... of the output."""

    layer_types = (L.Flatten,)

    def connect(self, ctx: Any, call: Any) -> None:
        if not _channels_last(call.layer):
            ctx.block_call(call, f"flatten {call.path!r} uses channels_first")
            return
        x, y = call.inputs[0], call.outputs[0]
        if x.shape.rank <= 2:
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        else:
            ctx.flatten(ctx.tensor_dim(x), ctx.tensor_dim(y))


class ReshapeRule(_FreeRule):
    """Reshape that keeps the last axis (e.g. (C,) -> (1, 1, C)) passes channels through."""

    layer_types = (L.Reshape,)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        cx, cy = _channels(x), _channels(y)
        if cx is not None and cx == cy:
            ctx.per_channel(call.layer, x, y)
        else:
            ctx.block_call(call, f"reshape {call.path!r} mixes the channel axis")

    def new_config(self, layer, config, kept):
        if "ch" in kept:
            shape = list(config["target_shape"])
            shape[-1] = len(kept["ch"])
            config = dict(config, target_shape=tuple(shape))
        return config


class RescalingRule(_FreeRule):
    """Rescaling with scalar scale/offset is elementwise."""

    layer_types = (L.Rescaling,)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if np.size(layer.scale) == 1 and np.size(layer.offset) == 1:
            ctx.identity(ctx.tensor_dim(call.inputs[0]), ctx.tensor_dim(call.outputs[0]))
        else:
            ctx.block_call(call, f"rescaling {call.path!r} has per-channel constants")


class LayerNormRule(_FreeRule):
    """LayerNormalization over the channel axis only (statistics over the kept channels)."""

    layer_types = (L.LayerNormalization,)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        rank = x.shape.rank
        if not _only_channel_axis(layer.axis, rank):
            ctx.block_call(call, f"layer norm {call.path!r} normalises over non-channel axes")
            return
        ctx.per_channel(layer, x, y)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        # "mask" exists on tfprune's MaskedLayerNormalization (statistics over kept channels).
        return {"gamma": {"ch": 0}, "beta": {"ch": 0}, "mask": {"ch": 0}}

    def self_mask_role(self, layer: Any) -> Role | None:
        return "ch"  # mean and variance must be those of the kept channels


class LayerScaleRule(_FreeRule):
    """ConvNeXt's ``LayerScale`` (tf_keras.applications): a per-channel learned scale."""

    def applies(self, layer: Any) -> bool:
        return type(layer).__name__ == "LayerScale" and hasattr(layer, "projection_dim")

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        ctx.per_channel(call.layer, x, y)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"gamma": {"ch": 0}}

    def new_config(self, layer, config, kept):
        return _with_count(config, "projection_dim", kept, "ch")


class ScaledSumRule(_FreeRule):
    """InceptionResNetV2's ``CustomScaleLayer``: ``inputs[0] + inputs[1] * scale`` (scalar)."""

    def applies(self, layer: Any) -> bool:
        return type(layer).__name__ == "CustomScaleLayer" and _is_scalar(
            getattr(layer, "scale", None)
        )

    def connect(self, ctx: Any, call: Any) -> None:
        MergeRule().connect(ctx, call)


# ---------------------------------------------------------------------------------------------
# TF-op layers (``x * 2``, ``tf.nn.relu6(x)``, ``x[:, ::2]`` ...) as tf_keras records them


def _op_name(layer: Any) -> str:
    return str(getattr(layer, "symbol", "") or "").split(".")[-1]


def _full_slice(s: Any) -> bool:
    if isinstance(s, dict):
        return s.get("start") is None and s.get("stop") is None and s.get("step") in (None, 1)
    if isinstance(s, slice):
        return s.start is None and s.stop is None and s.step in (None, 1)
    return False


def _pinned_channels(call: Any) -> int | None:
    """The channel count a ``tf.reshape`` call's constant target shape spells out, if any."""
    shape = call.kwargs.get("shape", call.args[1] if len(call.args) > 1 else None)
    if shape is None or _is_kt(shape):
        return None
    entries = tf.nest.flatten(shape)
    last = entries[-1] if entries else None
    if _is_kt(last):
        return None
    try:
        last = int(np.asarray(last).reshape(-1)[-1])
    except (TypeError, ValueError, IndexError):
        return None
    return last if last > 0 else None


class TFOpRule(LayerRule):
    """Known elementwise TF ops, channel-preserving slicing, reductions, concat and pad."""

    def applies(self, layer: Any) -> bool:
        return type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda")

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
            tensors = [t for t in tf.nest.flatten(values) if _is_kt(t)]
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
            # The rebuilt model replays the recorded shape: a written-out channel count would
            # no longer fit once channels are removed.
            ctx.block_call(
                call,
                f"reshape {call.path!r} writes the channel count ({_pinned_channels(call)}) into "
                "its target shape; read it at run time (tf.shape(x)[-1]) or use "
                "keras.layers.Reshape",
            )
        elif op in _RESIZE_OPS or op == "reshape":
            x = call.inputs[0]
            if _channels(x) == _channels(y) and _channels(x) is not None:
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
    )

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
            return numel(out, _what(layer)) * k
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
        if last == 1 and _channels(x) == _channels(y):
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        elif last is None:
            ctx.block_call(call, f"tile {call.path!r} has multiples known only at run time")
        else:
            ctx.block_call(call, f"tile {call.path!r} repeats the channel axis {last} times")

    def _elementwise(self, ctx, call, op, y) -> None:
        cy = _channels(y)
        for arg in tf.nest.flatten((call.args, call.kwargs)):
            if _is_kt(arg):
                c = _channels(arg)
                if c == cy:
                    ctx.identity(ctx.tensor_dim(arg), ctx.tensor_dim(y))
                elif c != 1:
                    ctx.block_call(call, f"op {call.path!r} ({op}) broadcasts channels")
                    return
            elif not _is_scalar(arg):
                ctx.block_call(call, f"op {call.path!r} ({op}) has a non-scalar constant")
                return

    def _getitem(self, ctx, call, y) -> None:
        x = call.inputs[0]
        spec = call.args[1] if len(call.args) > 1 else None
        spec = spec if isinstance(spec, (list, tuple)) else (spec,)
        rank = x.shape.rank
        ok = False
        if any(s is Ellipsis for s in spec):
            ok = spec[-1] is Ellipsis or _full_slice(spec[-1])
        elif len(spec) < rank:
            ok = all(isinstance(s, (dict, slice)) for s in spec)
        else:
            ok = _full_slice(spec[rank - 1]) if len(spec) == rank else False
        if ok and _channels(x) == _channels(y) and y.shape.rank >= 2:
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
        elif _channels(y) == _channels(x):
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        else:
            ctx.block_call(call, f"reduction {call.path!r} changes the channel axis")


class InputRule(_FreeRule):
    """Model inputs: their channels can never be removed."""

    layer_types = (L.InputLayer,)

    def connect(self, ctx: Any, call: Any) -> None:
        for t in call.outputs:
            ctx.block(ctx.tensor_dim(t), "model input")


for _rule in (
    ConvRule(),
    ConvTransposeRule(),
    DenseRule(),
    DepthwiseRule(),
    SeparableRule(),
    EmbeddingRule(),
    RecurrentRule(),
    BidirectionalRule(),
    TimeDistributedRule(),
    PruneLowMagnitudeRule(),
    QuantizeWrapperRule(),
    MultiHeadAttentionRule(),
    EinsumDenseRule(),
    DotAttentionRule(),
    LocallyConnectedRule(),
    PassThroughRule(),
    SoftmaxRule(),
    PerChannelParamRule(),
    MergeRule(),
    ConcatenateRule(),
    FlattenRule(),
    ReshapeRule(),
    RescalingRule(),
    LayerNormRule(),
    LayerScaleRule(),
    ScaledSumRule(),
    TFOpRule(),
    InputRule(),
):
    register_rule(_rule, first=False)
