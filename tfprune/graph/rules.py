"""Per-layer channel rules: how each layer type couples channels, and how its weights slice.

A *rule* knows three things about one family of layers:

* ``connect(ctx, call)`` – which channel axes of the call's input/output tensors and of the
  layer's own weights must be pruned together (used by channel-group discovery);
* ``weight_axes(layer)`` – for each weight, which axis holds which channel *role*
  (``"in"``, ``"out"`` or ``"ch"`` for per-channel pass-through parameters such as BN's gamma);
* ``new_config``/``slice_weights`` – how to build the smaller layer once channels are removed.

Layers are matched with ``isinstance``, most specific rule first. A layer no rule claims blocks
every channel it touches (fail closed). Users can add rules with :func:`register_rule`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfprune.compat import KerasTensor, keras, tf

__all__ = [
    "LayerRule",
    "register_rule",
    "rule_for",
    "ELEMENTWISE_OPS",
    "Role",
]

Role = str  # "in" | "out" | "ch"

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
        "floor",
        "ceil",
        "round",
    }
)
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
    return False


def _with_count(config: dict, key: str, kept: dict, role: Role) -> dict:
    """``config`` with ``key`` set to the number of kept ``role`` channels, if any were cut."""
    return dict(config, **{key: len(kept[role])}) if role in kept else config


class LayerRule:
    """Base class of channel rules; the default blocks everything (an unknown layer)."""

    #: Layer classes this rule claims (matched with isinstance).
    layer_types: tuple[type, ...] = ()

    def applies(self, layer: Any) -> bool:
        """Whether this rule handles ``layer``."""
        return isinstance(layer, self.layer_types)

    def connect(self, ctx: Any, call: Any) -> None:
        """Declare channel couplings of one call; the default blocks all its tensors."""
        reason = f"layer {call.path!r} ({type(call.layer).__name__}) is not understood"
        ctx.block_call(call, reason)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        """Map weight short name -> {role: axis}."""
        return {}

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


_RULES: list[LayerRule] = []


def register_rule(rule: LayerRule, *, first: bool = True) -> LayerRule:
    """Register a channel rule; user rules go first so they override the built-in ones."""
    if first:
        _RULES.insert(0, rule)
    else:
        _RULES.append(rule)
    return rule


def rule_for(layer: Any) -> LayerRule:
    """The rule that handles ``layer`` (a blocking default when none does)."""
    for rule in _RULES:
        if rule.applies(layer):
            return rule
    return _UNKNOWN


_UNKNOWN = LayerRule()


def _channels_last(layer: Any) -> bool:
    fmt = getattr(layer, "data_format", "channels_last")
    return fmt in (None, "channels_last")


# ---------------------------------------------------------------------------------------------
# Producers / consumers: convolutions and dense layers


class ConvRule(LayerRule):
    """Conv1D/2D/3D (grouped too): input channels are consumed, filters are produced."""

    layer_types = (L.Conv1D, L.Conv2D, L.Conv3D)

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


class ConvTransposeRule(ConvRule):
    """Conv1D/2D/3DTranspose: kernel is (..., out, in)."""

    layer_types = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)

    def applies(self, layer: Any) -> bool:
        return isinstance(layer, self.layer_types)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"kernel": {"in": -1, "out": -2}, "bias": {"out": 0}}


class DenseRule(LayerRule):
    """Dense on the last axis of any-rank input."""

    layer_types = (L.Dense,)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", _channels(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", _channels(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"kernel": {"in": 0, "out": 1}, "bias": {"out": 0}, "mask": {"in": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        return _with_count(config, "units", kept, "out")


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


# ---------------------------------------------------------------------------------------------
# Per-channel layers (channels pass straight through)


class PassThroughRule(LayerRule):
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


class SoftmaxRule(LayerRule):
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


class PerChannelParamRule(LayerRule):
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


class MergeRule(LayerRule):
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


class ConcatenateRule(LayerRule):
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


class FlattenRule(LayerRule):
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


class ReshapeRule(LayerRule):
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


class RescalingRule(LayerRule):
    """Rescaling with scalar scale/offset is elementwise."""

    layer_types = (L.Rescaling,)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if np.size(layer.scale) == 1 and np.size(layer.offset) == 1:
            ctx.identity(ctx.tensor_dim(call.inputs[0]), ctx.tensor_dim(call.outputs[0]))
        else:
            ctx.block_call(call, f"rescaling {call.path!r} has per-channel constants")


class LayerNormRule(LayerRule):
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


class LayerScaleRule(LayerRule):
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


class ScaledSumRule(LayerRule):
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


class TFOpRule(LayerRule):
    """Known elementwise TF ops, channel-preserving slicing, reductions, concat and pad."""

    def applies(self, layer: Any) -> bool:
        return type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda")

    def connect(self, ctx: Any, call: Any) -> None:
        op = _op_name(call.layer)
        if not call.outputs:
            ctx.block_call(call, f"op {call.path!r} has no tensor output")
            return
        y = call.outputs[0]
        if len(call.outputs) != 1:
            ctx.block_call(call, f"op {call.path!r} ({op}) has several outputs")
            return
        if op in ELEMENTWISE_OPS:
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
        elif op in _RESIZE_OPS or op == "reshape":
            x = call.inputs[0]
            if _channels(x) == _channels(y) and _channels(x) is not None:
                ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
            else:
                ctx.block_call(call, f"op {call.path!r} ({op}) changes the channel axis")
        else:
            ctx.block_call(call, f"TF op {call.path!r} ({call.layer.symbol}) is not understood")

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


class InputRule(LayerRule):
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
