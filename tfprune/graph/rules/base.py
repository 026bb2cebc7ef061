"""The rule interface: roles, :class:`ChannelContext`, :class:`LayerRule`, the rule registry."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import (
    KerasTensor,
    keras,
    tf,
)
from tfprune.errors import InvalidArgumentError, UnsupportedModelError

__all__ = [
    "ChannelContext",
    "DimKey",
    "FreeRule",
    "KERNEL_NAMES",
    "LayerRule",
    "PRODUCER_ROLES",
    "Role",
    "Shape",
    "block_channels_first",
    "describe_layer",
    "is_channels_last",
    "is_keras_tensor",
    "is_scalar",
    "last_axis_size",
    "mixing_activation",
    "named_weights",
    "numel",
    "only_channel_axis",
    "overrides_stock",
    "register_rule",
    "rule_for",
    "spatial",
    "unregister_rule",
    "variable_size",
    "weight_names",
    "weight_short_name",
    "with_kept_count",
]

Role = str  # "in" | "out" | "ch" (or a rule's own role such as "head")
DimKey = tuple  # an opaque key of one channel axis, handed out by a ChannelContext
Shape = tuple | None  # a tensor shape with the batch dimension first (None: unknown rank)

#: Roles whose channels a layer creates: its filters (units) and its attention heads.
PRODUCER_ROLES = ("out", "head")

#: Short names of multiply weights (kernels) of the built-in layers.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings", "recurrent_kernel")

L = keras.layers


def last_axis_size(t: Any) -> int | None:
    """The size of tensor ``t``'s last (channel) axis; None for a scalar or an unknown rank."""
    shape = t.shape
    if shape.rank is None or shape.rank == 0:
        return None
    return shape[-1]


def only_channel_axis(axis: Any, rank: int) -> bool:
    """Whether a layer's ``axis`` argument (int or list) is exactly the last (channel) axis."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return [a % rank for a in axes] == [rank - 1]


def is_keras_tensor(x: Any) -> bool:
    """Whether ``x`` is a symbolic Keras tensor (a functional model's node output)."""
    return isinstance(x, KerasTensor)


def is_scalar(x: Any) -> bool:
    """Whether an op argument is one number (a Python or numpy scalar, a 1-element constant)."""
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


def variable_size(variable: Any) -> int:
    """The number of elements of a weight variable."""
    return int(math.prod(variable.shape.as_list()))


def describe_layer(layer: Any) -> str:
    """``layer 'name' (Class)``: how messages name a layer."""
    return f"layer {layer.name!r} ({type(layer).__name__})"


def with_kept_count(config: dict, key: str, kept: dict, role: Role) -> dict:
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

    def is_used(self, t: Any) -> bool:
        """Whether tensor ``t`` is read by another call or is a model output (default: True)."""
        return True

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

    def weight_names(self, layer: Any) -> list[str]:
        """The names this rule gives ``layer.weights`` (in that order), unique within the layer.

        Default: each variable's short name (``conv/kernel:0`` -> ``kernel``). A layer whose
        sublayers hold weights of the same short name (MultiHeadAttention's four kernels) names
        them with the sublayer (``query/kernel``). Every other method of the rule
        (:meth:`weight_axes`, :meth:`slice_weights`...) uses these names.
        """
        return [weight_short_name(v) for v in layer.weights]

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        """Map weight name -> {role: axis} (axes whose length is the role's channels)."""
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
        by_name = named_weights(layer)
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

    def stock_equivalent(self, layer: Any) -> tuple[type, dict]:
        """``(stock class, its config)`` of a layer that computes exactly like a stock one.

        tfprune's masked twins derive from stock Keras classes; a rule that claims a third-party
        subclass says here which stock layer (and config) it computes like. Default: the
        layer's own class and config.
        """
        return type(layer), layer.get_config()

    def rewrite_call(
        self, layer: Any, args: tuple, kwargs: dict, kept: np.ndarray | None
    ) -> Any | None:
        """Outputs of a call, redone on narrower inputs, when replaying it as recorded won't fit.

        ``args``/``kwargs`` are the call's arguments with the stripped model's tensors in place
        (e.g. a ``tf.reshape`` whose target spells out the old channel count, or an add of a
        per-channel constant); ``kept`` are the indices of the output channels that stay (None
        when none were removed or they are not known). Default: None, replay the call as
        recorded.
        """
        return None

    def mask_inputs(self, call: Any) -> list[Any]:
        """The input tensors of ``call`` whose pruned channels are masked in front of the layer.

        Default: the first input, when :meth:`input_mask` says the layer consumes channels.
        """
        return list(call.inputs[:1]) if self.input_mask(call.layer) is not None else []

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

    def self_mask_roles(self, layer: Any) -> tuple[Role, ...]:
        """Every role whose pruned channels the layer masks itself (default: ``self_mask_role``)."""
        role = self.self_mask_role(layer)
        return () if role is None else (role,)


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

#: Parts of activation-function names that normalise over the channel axis (softmax,
#: ``tf.nn.log_softmax_v2``, sparsemax...): every output channel depends on all of them.
_MIXING_NAMES = ("softmax", "sparsemax", "normalize")


def mixing_activation(layer: Any) -> str | None:
    """The name of ``layer``'s activation when it mixes the channels (a softmax), else None.

    A layer's own ``activation`` (``Dense(..., activation="softmax")``, ``Activation``) is
    applied before the channel mask, so removing a channel would change the kept ones.
    """
    fn = getattr(layer, "activation", None)
    if not callable(fn):
        return None
    name = getattr(fn, "__name__", type(fn).__name__)
    return name if any(part in name.lower() for part in _MIXING_NAMES) else None


def weight_short_name(variable: Any) -> str:
    """``conv/kernel:0`` -> ``kernel``."""
    return variable.name.split("/")[-1].split(":")[0]


def weight_names(layer: Any) -> list[str]:
    """The names of ``layer.weights`` as its rule uses them (:meth:`LayerRule.weight_names`)."""
    names = rule_for(layer).weight_names(layer)
    if len(set(names)) != len(names):
        raise UnsupportedModelError(
            f"{describe_layer(layer)} has several weights named alike ({names}); its rule must "
            "give them distinct names (LayerRule.weight_names)."
        )
    return names


def named_weights(layer: Any) -> dict[str, Any]:
    """``layer``'s weights (variables) by the names its rule uses."""
    return dict(zip(weight_names(layer), layer.weights, strict=True))


def is_channels_last(layer: Any) -> bool:
    """Whether ``layer`` keeps channels on the last axis (no ``data_format`` counts as yes)."""
    fmt = getattr(layer, "data_format", "channels_last")
    return fmt in (None, "channels_last")


def block_channels_first(ctx: ChannelContext, call: Any, what: str = "layer") -> bool:
    """Block a call of a ``channels_first`` layer (rules assume channels last); True if so."""
    if is_channels_last(call.layer):
        return False
    ctx.block_call(call, f"{what} {call.path!r} uses channels_first")
    return True


class FreeRule(LayerRule):
    """Base of rules for layers without multiply-accumulates (per-channel, shape-only ops)."""

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return 0
