"""The Keras 3 classes the built-in rules vouch for, and the rules of Keras 3's raw ops.

A Keras 3 layer that computes what its tf_keras namesake computes is served by the same rule
(the coupling, slicing, kernel layout and FLOPs are written once); the classes below say which
Keras 3 classes each rule claims. A layer is claimed when its first Keras 3 class is one of
them exactly and its own classes do not override the rule's stock methods (``call``...):
anything else blocks its channels. Layers with LoRA adapters or quantized weights are not
claimed either (their kernel is not one plain weight).

Keras 3 records ``x + y``, ``keras.ops.relu(x)``, ``keras.ops.concatenate`` and
``keras.ops.reshape`` on symbolic tensors as raw ops (not layers); :class:`Keras3ElementwiseOpRule`,
:class:`Keras3ConcatenateRule` and :class:`Keras3ReshapeOpRule` read them.
"""

from __future__ import annotations

import math
from typing import Any

from tfprune.compat import KERAS3, flavour_of, keras3, keras3_op_class, keras3_stock_class, tf
from tfprune.graph.keras3 import Keras3Tensor
from tfprune.graph.rules.attention import EinsumDenseRule, MultiHeadAttentionRule
from tfprune.graph.rules.base import (
    FreeRule,
    LayerRule,
    Role,
    Shape,
    describe_layer,
    is_scalar,
    last_axis_size,
    only_channel_axis,
    spatial,
    variable_size,
)
from tfprune.graph.rules.keras_hub import ReversibleEmbeddingRule
from tfprune.graph.rules.recurrent import BidirectionalRule, RecurrentRule
from tfprune.graph.rules.shapes import (
    ConcatenateRule,
    FlattenRule,
    GroupNormRule,
    InputRule,
    LayerNormRule,
    MergeRule,
    PassThroughRule,
    PerChannelParamRule,
    RescalingRule,
    ReshapeRule,
)
from tfprune.graph.rules.weighted import (
    ConvRule,
    ConvTransposeRule,
    DenseRule,
    DepthwiseRule,
    EmbeddingRule,
    SeparableRule,
)

__all__ = [
    "Keras3ActivationRule",
    "Keras3BatchNormRule",
    "Keras3BidirectionalRule",
    "Keras3ConcatenateRule",
    "Keras3ConvRule",
    "Keras3ConvTransposeRule",
    "Keras3DenseRule",
    "Keras3DepthwiseRule",
    "Keras3EinsumDenseRule",
    "Keras3EmbeddingRule",
    "Keras3GroupNormRule",
    "Keras3MultiHeadAttentionRule",
    "Keras3RecurrentRule",
    "Keras3ReversibleEmbeddingRule",
    "Keras3ElementwiseOpRule",
    "Keras3FlattenRule",
    "Keras3InputRule",
    "Keras3LayerNormRule",
    "Keras3MergeRule",
    "Keras3PassThroughRule",
    "Keras3ExpandDimsRule",
    "Keras3GetItemRule",
    "Keras3ReduceOpRule",
    "Keras3ReshapeOpRule",
    "Keras3ReshapeRule",
    "Keras3RescalingRule",
    "Keras3SeparableRule",
    "KERAS3_RULES",
    "vouched_classes",
]


class _Keras3Classes:
    """Claims Keras 3 layers/ops whose first Keras 3 class is one of ``keras3_layers``/``ops``."""

    #: Public ``keras.layers`` names of the classes the rule vouches for.
    keras3_layers: tuple[str, ...] = ()
    #: Names of Keras 3 op classes (``keras.src.ops.numpy``/``nn``) the rule vouches for.
    keras3_ops: tuple[str, ...] = ()

    def vouched(self) -> tuple[type, ...]:
        """The Keras 3 classes this rule claims (those this Keras 3 version has)."""
        layers = keras3().layers
        found = [getattr(layers, n, None) for n in self.keras3_layers]
        found += [keras3_op_class(n) for n in self.keras3_ops]
        return tuple(c for c in found if c is not None)

    def applies(self, layer: Any) -> bool:
        if flavour_of(layer) != KERAS3:
            return False
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            return False
        return keras3_stock_class(layer) in self.vouched()


class Keras3ConvRule(_Keras3Classes, ConvRule):
    """Keras 3 ``Conv1D``/``Conv2D``/``Conv3D`` (grouped too): as tf_keras's."""

    keras3_layers = ("Conv1D", "Conv2D", "Conv3D")


class Keras3ConvTransposeRule(_Keras3Classes, ConvTransposeRule):
    """Keras 3 ``Conv1DTranspose``/``2D``/``3D``: as tf_keras's (kernel ``(k..., out, in)``)."""

    keras3_layers = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")


class Keras3EmbeddingRule(_Keras3Classes, EmbeddingRule):
    """Keras 3 ``Embedding``: as tf_keras's (its ``output_dim`` columns are the filters)."""

    keras3_layers = ("Embedding",)


class Keras3ReversibleEmbeddingRule(_Keras3Classes, ReversibleEmbeddingRule):
    """Keras 3 ``ReversibleEmbedding`` called forward: as ``Embedding`` (see keras-hub's twin)."""

    keras3_layers = ("ReversibleEmbedding",)
    stock_methods = ("call",)


class Keras3MultiHeadAttentionRule(_Keras3Classes, MultiHeadAttentionRule):
    """Keras 3 ``MultiHeadAttention``: heads, key and value dimensions as tf_keras's.

    Keras 3 takes the query, value and key masks before ``attention_mask`` in ``call``.
    """

    keras3_layers = ("MultiHeadAttention",)
    argument_names = (
        "query",
        "value",
        "key",
        "query_mask",
        "value_mask",
        "key_mask",
        "attention_mask",
        "return_attention_scores",
    )

    def is_tensor(self, t: Any) -> bool:
        return isinstance(t, Keras3Tensor)


class Keras3EinsumDenseRule(_Keras3Classes, EinsumDenseRule):
    """Keras 3 ``EinsumDense``: dense on the last axis when it computes ``...c,cd->...d``."""

    keras3_layers = ("EinsumDense",)


class Keras3RecurrentRule(_Keras3Classes, RecurrentRule):
    """Keras 3 ``SimpleRNN``/``GRU``/``LSTM``: units and their gates as tf_keras's."""

    keras3_layers = ("SimpleRNN", "GRU", "LSTM")

    @staticmethod
    def gates(layer: Any) -> int:
        return {"LSTM": 4, "GRU": 3}.get(keras3_stock_class(layer).__name__, 1)


class Keras3BidirectionalRule(_Keras3Classes, BidirectionalRule):
    """Keras 3 ``Bidirectional`` around a SimpleRNN/GRU/LSTM: as tf_keras's."""

    keras3_layers = ("Bidirectional",)
    inner_rules = (Keras3RecurrentRule,)

    def new_config(self, layer, config, kept):
        # Keras 3 builds a wrapped layer from the input shape its config records: drop it, so
        # the directions are built on the (narrower) input they are called on.
        config = dict(super().new_config(layer, config, kept))
        for key in ("layer", "backward_layer"):
            if isinstance(config.get(key), dict) and "build_config" in config[key]:
                config[key] = {k: v for k, v in config[key].items() if k != "build_config"}
        return config


class Keras3GroupNormRule(_Keras3Classes, GroupNormRule):
    """Keras 3 ``GroupNormalization``: as tf_keras's (one channel per group is pruned)."""

    keras3_layers = ("GroupNormalization",)


class Keras3DenseRule(_Keras3Classes, DenseRule):
    """Keras 3 ``Dense``: as tf_keras's."""

    keras3_layers = ("Dense",)


class Keras3DepthwiseRule(_Keras3Classes, DepthwiseRule):
    """Keras 3 ``DepthwiseConv1D``/``2D``: as tf_keras's; Keras 3 names the kernel ``kernel``."""

    keras3_layers = ("DepthwiseConv1D", "DepthwiseConv2D")

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"kernel": {"in": -2}}

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("kernel", "depthwise")]

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return spatial(layer, outs[0], describe_layer(layer)) * variable_size(layer.kernel)


class Keras3SeparableRule(_Keras3Classes, SeparableRule):
    """Keras 3 ``SeparableConv1D``/``2D``: as tf_keras's (same weight names)."""

    keras3_layers = ("SeparableConv1D", "SeparableConv2D")


class Keras3BatchNormRule(_Keras3Classes, PerChannelParamRule):
    """Keras 3 ``BatchNormalization`` over the last axis."""

    keras3_layers = ("BatchNormalization",)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        if not only_channel_axis(call.layer.axis, x.shape.rank):
            ctx.block_call(call, f"batch norm {call.path!r} is not over the last axis")
            return
        ctx.per_channel(call.layer, x, y)


class Keras3LayerNormRule(_Keras3Classes, LayerNormRule):
    """Keras 3 ``LayerNormalization`` over the channel axis, without RMS scaling."""

    keras3_layers = ("LayerNormalization",)

    def applies(self, layer: Any) -> bool:
        return super().applies(layer) and not getattr(layer, "rms_scaling", False)


class Keras3RescalingRule(_Keras3Classes, RescalingRule):
    """Keras 3 ``Rescaling`` with one scale and one offset."""

    keras3_layers = ("Rescaling",)


class Keras3PassThroughRule(_Keras3Classes, PassThroughRule):
    """Keras 3 layers that act on each channel separately (activations, pooling, padding...)."""

    keras3_layers = (
        "ReLU",
        "LeakyReLU",
        "ELU",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "ActivityRegularization",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "Identity",
    )


class Keras3ActivationRule(_Keras3Classes, PassThroughRule):
    """Keras 3 ``Activation``: elementwise (a softmax blocks, see ``mixing_activation``)."""

    keras3_layers = ("Activation",)


class Keras3MergeRule(_Keras3Classes, MergeRule):
    """Keras 3 ``Add``/``Subtract``/``Multiply``/``Average``/``Maximum``/``Minimum``."""

    keras3_layers = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


class Keras3ConcatenateRule(_Keras3Classes, ConcatenateRule):
    """Keras 3 ``Concatenate`` layer and ``keras.ops.concatenate`` (both have ``axis``)."""

    keras3_layers = ("Concatenate",)
    keras3_ops = ("Concatenate",)


class Keras3FlattenRule(_Keras3Classes, FlattenRule):
    """Keras 3 ``Flatten``."""

    keras3_layers = ("Flatten",)


class Keras3ReshapeRule(_Keras3Classes, ReshapeRule):
    """Keras 3 ``Reshape`` layer that keeps the channel axis."""

    keras3_layers = ("Reshape",)


class Keras3InputRule(_Keras3Classes, InputRule):
    """Keras 3 model inputs: their channels can never be removed."""

    keras3_layers = ("InputLayer",)


class Keras3ElementwiseOpRule(_Keras3Classes, FreeRule):
    """Keras 3's elementwise ops (``x + y``, ``keras.ops.relu``...): channels line up.

    A tensor whose channel axis has size 1 broadcasts and is not coupled; a constant argument
    must be one number (a per-channel constant would need slicing), else the op blocks.
    """

    keras3_ops = (
        "Cast",
        "Add",
        "Subtract",
        "Multiply",
        "Divide",
        "TrueDivide",
        "Maximum",
        "Minimum",
        "Negative",
        "Abs",
        "Square",
        "Sqrt",
        "Exp",
        "Log",
        "Tanh",
        "Relu",
        "Relu6",
        "Sigmoid",
        "Silu",
        "Gelu",
        "Elu",
        "Selu",
        "LeakyRelu",
        "HardSigmoid",
        "HardSilu",
        "Softplus",
        "Softsign",
    )

    def connect(self, ctx: Any, call: Any) -> None:
        tensors = {id(t) for t in call.inputs}
        constants = [
            a for a in list(call.args) + list(call.kwargs.values()) if id(a) not in tensors
        ]
        if not all(is_scalar(a) for a in constants):
            ctx.block_call(call, f"op {call.path!r} has a constant that is not one number")
            return
        MergeRule.connect(self, ctx, call)


class Keras3ReshapeOpRule(_Keras3Classes, FreeRule):
    """``keras.ops.reshape``: keeping the channel axis passes channels, flattening spreads them."""

    keras3_ops = ("Reshape",)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        cx, cy = last_axis_size(x), last_axis_size(y)
        dims = x.shape.as_list()[1:] if x.shape.rank else [None]
        if cx is not None and cx == cy and x.shape.rank >= 2:
            ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))
        elif y.shape.rank == 2 and None not in dims and cy == math.prod(dims):
            FlattenRule.connect(self, ctx, call)
        else:
            ctx.block_call(call, f"reshape {call.path!r} mixes the channel axis")

    def rewrite_call(self, layer: Any, args: tuple, kwargs: dict, kept: Any) -> Any | None:
        """The reshape again, its target spelling out the new channel (or feature) count."""
        x = args[0] if args else None
        shape = list(getattr(layer, "newshape", None) or ())
        if kept is None or x is None or not shape or shape[-1] == -1:
            return None
        dims = list(x.shape[1:])
        # A target of rank > 2 keeps the channel axis; one of rank 2 flattens (features).
        size = dims[-1] if len(shape) > 2 else math.prod(dims)
        if None in dims or shape[-1] == size:
            return None
        return keras3().ops.reshape(x, (*shape[:-1], int(size)))


class Keras3ReduceOpRule(_Keras3Classes, FreeRule):
    """``keras.ops.mean``/``max``/``sum``... over axes other than the channels: channels pass."""

    keras3_ops = ("Mean", "Max", "Amax", "Min", "Amin", "Sum")

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        axis, rank = call.layer.axis, x.shape.rank
        axes = None if axis is None or rank is None else tf.nest.flatten(axis)
        if axes is None or (rank - 1) in [a % rank for a in axes] or not y.shape.rank:
            ctx.block_call(call, f"op {call.path!r} reduces over the channel axis")
            return
        ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))


class Keras3ExpandDimsRule(_Keras3Classes, FreeRule):
    """``keras.ops.expand_dims`` adding an axis before the channels: channels pass."""

    keras3_ops = ("ExpandDims",)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        axes = tf.nest.flatten(call.layer.axis)
        rank = y.shape.rank or 0
        if not rank or (rank - 1) in [a % rank for a in axes]:
            ctx.block_call(call, f"op {call.path!r} adds a new channel axis")
            return
        ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))


class Keras3GetItemRule(_Keras3Classes, FreeRule):
    """``x[...]`` on a symbolic tensor: channels pass when the last axis is not indexed."""

    keras3_ops = ("GetItem",)

    def connect(self, ctx: Any, call: Any) -> None:
        x, y = call.inputs[0], call.outputs[0]
        key = call.args[1] if len(call.args) > 1 else call.kwargs.get("key")
        key = key if isinstance(key, tuple) else (key,)
        full = slice(None)
        simple = all(k is Ellipsis or isinstance(k, (int, slice)) for k in key)
        if Ellipsis in key:
            after = key[key.index(Ellipsis) + 1 :]
            keeps_last = not after or after[-1] == full
        else:
            keeps_last = len(key) < (x.shape.rank or 0) or key[-1] == full
        if not (simple and keeps_last and y.shape.rank and last_axis_size(x) == last_axis_size(y)):
            ctx.block_call(call, f"slice {call.path!r} indexes the channel axis")
            return
        ctx.identity(ctx.tensor_dim(x), ctx.tensor_dim(y))


#: The Keras 3 rules, in the order they are tried.
KERAS3_RULES: tuple[LayerRule, ...] = (
    Keras3ConvRule(),
    Keras3ConvTransposeRule(),
    Keras3DenseRule(),
    Keras3DepthwiseRule(),
    Keras3SeparableRule(),
    Keras3EmbeddingRule(),
    Keras3ReversibleEmbeddingRule(),
    Keras3MultiHeadAttentionRule(),
    Keras3EinsumDenseRule(),
    Keras3RecurrentRule(),
    Keras3BidirectionalRule(),
    Keras3BatchNormRule(),
    Keras3LayerNormRule(),
    Keras3GroupNormRule(),
    Keras3RescalingRule(),
    Keras3PassThroughRule(),
    Keras3ActivationRule(),
    Keras3MergeRule(),
    Keras3ConcatenateRule(),
    Keras3FlattenRule(),
    Keras3ReshapeRule(),
    Keras3InputRule(),
    Keras3ElementwiseOpRule(),
    Keras3ReshapeOpRule(),
    Keras3ReduceOpRule(),
    Keras3GetItemRule(),
    Keras3ExpandDimsRule(),
)


def vouched_classes() -> dict[type, LayerRule]:
    """Every Keras 3 class a built-in rule claims, with that rule (imports Keras 3)."""
    return {cls: rule for rule in KERAS3_RULES for cls in rule.vouched()}
