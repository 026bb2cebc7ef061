"""Rules of layers without multiply weights: pass-through, per-channel, merges, reshapes."""

from __future__ import annotations

from typing import Any

import numpy as np

from tfprune.compat import (
    keras,
)
from tfprune.graph.rules.base import (
    FreeRule,
    Role,
    block_channels_first,
    is_scalar,
    last_axis_size,
    only_channel_axis,
    weight_short_name,
    with_kept_count,
)

__all__ = [
    "ConcatenateRule",
    "FlattenRule",
    "GroupNormRule",
    "InputRule",
    "LayerNormRule",
    "LayerScaleRule",
    "MergeRule",
    "PassThroughRule",
    "PerChannelParamRule",
    "RescalingRule",
    "ReshapeRule",
    "ScaledSumRule",
    "SoftmaxRule",
]

L = keras.layers


class PassThroughRule(FreeRule):
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
        if block_channels_first(ctx, call):
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))


class SoftmaxRule(FreeRule):
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


class PerChannelParamRule(FreeRule):
    """Per-channel layers with parameters along the channel axis (BN, PReLU)."""

    layer_types = (L.BatchNormalization, L.PReLU)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        rank = x.shape.rank
        if isinstance(layer, L.BatchNormalization):
            if not only_channel_axis(layer.axis, rank):
                ctx.block_call(call, f"batch norm {call.path!r} is not over the last axis")
                return
        ctx.per_channel(layer, x, y)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        if isinstance(layer, L.PReLU):
            return {"alpha": {"ch": -1}}
        return {n: {"ch": 0} for n in ("gamma", "beta", "moving_mean", "moving_variance")}


class MergeRule(FreeRule):
    """Add/Subtract/Multiply/Average/Maximum/Minimum: all inputs share the output's channels.

    An input whose channel axis has size 1 broadcasts (a scalar gate) and is not coupled.
    """

    layer_types = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)

    def connect(self, ctx: Any, call: Any) -> None:
        y = call.outputs[0]
        dy = ctx.tensor_dim(y)
        for t in call.inputs:
            c = last_axis_size(t)
            if c == last_axis_size(y):
                ctx.identity(ctx.tensor_dim(t), dy)
            elif c != 1:
                ctx.block_call(call, f"merge {call.path!r} broadcasts channels {c}")
                return


class ConcatenateRule(FreeRule):
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


class FlattenRule(FreeRule):
    """Flatten: input channel c becomes features c, C+c, 2C+c, ... of the output."""

    layer_types = (L.Flatten,)

    def connect(self, ctx: Any, call: Any) -> None:
        if block_channels_first(ctx, call, "flatten"):
            return
        x, y = call.inputs[0], call.outputs[0]
        if x.shape.rank <= 2:
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        else:
            ctx.flatten(ctx.tensor_dim(x), ctx.tensor_dim(y))


class ReshapeRule(FreeRule):
    """Reshape that keeps the last axis (e.g. (C,) -> (1, 1, C)) passes channels through."""

    layer_types = (L.Reshape,)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        cx, cy = last_axis_size(x), last_axis_size(y)
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


class RescalingRule(FreeRule):
    """Rescaling with scalar scale/offset is elementwise."""

    layer_types = (L.Rescaling,)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if np.size(layer.scale) == 1 and np.size(layer.offset) == 1:
            ctx.identity(ctx.tensor_dim(call.inputs[0]), ctx.tensor_dim(call.outputs[0]))
        else:
            ctx.block_call(call, f"rescaling {call.path!r} has per-channel constants")


class LayerNormRule(FreeRule):
    """LayerNormalization over the channel axis only (statistics over the kept channels)."""

    layer_types = (L.LayerNormalization,)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        rank = x.shape.rank
        if not only_channel_axis(layer.axis, rank):
            ctx.block_call(call, f"layer norm {call.path!r} normalises over non-channel axes")
            return
        ctx.per_channel(layer, x, y)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        # "mask" exists on tfprune's MaskedLayerNormalization (statistics over kept channels).
        return {"gamma": {"ch": 0}, "beta": {"ch": 0}, "mask": {"ch": 0}}

    def self_mask_role(self, layer: Any) -> Role | None:
        return "ch"  # mean and variance must be those of the kept channels


class GroupNormRule(FreeRule):
    """GroupNormalization with one channel per group (``groups=-1``): per-channel statistics.

    With fewer groups a channel's statistics are shared with the others of its group, so
    removing it would change them: such a layer blocks.
    """

    layer_types = (L.GroupNormalization,)

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        x, y = call.inputs[0], call.outputs[0]
        channels = last_axis_size(x)
        if not only_channel_axis(layer.axis, x.shape.rank):
            ctx.block_call(call, f"group norm {call.path!r} is not over the last axis")
        elif layer.groups not in (-1, channels):
            ctx.block_call(
                call,
                f"group norm {call.path!r} normalises {layer.groups} groups of several channels "
                "together; only groups=-1 (one channel per group) is pruned",
            )
        else:
            ctx.per_channel(layer, x, y)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"gamma": {"ch": 0}, "beta": {"ch": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        if "ch" in kept and config.get("groups") != -1:
            return dict(config, groups=len(kept["ch"]))
        return config


def _application_class(layer: Any, name: str, module: str) -> bool:
    """Whether ``layer`` is of the class ``name`` that Keras applications define in ``module``.

    tf_keras' or Keras 3's own class only: another class of that name may compute something
    else, and is traced like any custom layer instead.
    """
    cls = type(layer)
    return cls.__name__ == name and cls.__module__ in (
        f"tf_keras.src.applications.{module}",
        f"keras.src.applications.{module}",
    )


class LayerScaleRule(FreeRule):
    """ConvNeXt's ``LayerScale`` (Keras applications): a per-channel learned scale."""

    def applies(self, layer: Any) -> bool:
        return _application_class(layer, "LayerScale", "convnext") and hasattr(
            layer, "projection_dim"
        )

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        ctx.per_channel(call.layer, x, y)

    def weight_names(self, layer: Any) -> list[str]:
        # Keras 3's LayerScale makes its one weight, ``gamma``, without a name ("variable_36").
        return [
            "gamma" if v is getattr(layer, "gamma", None) else weight_short_name(v)
            for v in layer.weights
        ]

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"gamma": {"ch": 0}}

    def new_config(self, layer, config, kept):
        return with_kept_count(config, "projection_dim", kept, "ch")


class ScaledSumRule(FreeRule):
    """InceptionResNetV2's ``CustomScaleLayer``: ``inputs[0] + inputs[1] * scale`` (scalar)."""

    def applies(self, layer: Any) -> bool:
        return _application_class(layer, "CustomScaleLayer", "inception_resnet_v2") and is_scalar(
            getattr(layer, "scale", None)
        )

    def connect(self, ctx: Any, call: Any) -> None:
        MergeRule().connect(ctx, call)


# ---------------------------------------------------------------------------------------------
# TF-op layers (``x * 2``, ``tf.nn.relu6(x)``, ``x[:, ::2]`` ...) as tf_keras records them


class InputRule(FreeRule):
    """Model inputs: their channels can never be removed."""

    layer_types = (L.InputLayer,)

    def connect(self, ctx: Any, call: Any) -> None:
        for t in call.outputs:
            ctx.block(ctx.tensor_dim(t), "model input")
