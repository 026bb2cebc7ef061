"""Rules of TF Model Garden layers (``tf-models-official``) that compute with their own weights.

Model Garden's transformers start with layers tfprune cannot trace (they read their own
weights inside ``call``): BERT's token and position embeddings, and the ViT's class token and
position embeddings. Without rules, they block the hidden width of the whole encoder. Each
rule below claims exactly one class, by module and name, so tfprune needs no import of Model
Garden, and a subclass (which may compute something else) is never claimed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfprune.compat import keras
from tfprune.graph.rules.attention import MultiHeadAttentionRule
from tfprune.graph.rules.base import (
    ChannelContext,
    LayerRule,
    Role,
    Shape,
    numel,
)
from tfprune.graph.rules.weighted import EmbeddingRule

__all__ = [
    "AddPositionEmbsRule",
    "ClassTokenRule",
    "ExactClassRule",
    "OnDeviceEmbeddingRule",
    "PerChannelTableRule",
    "PositionEmbeddingRule",
    "VisionAttentionRule",
]


class ExactClassRule(LayerRule):
    """A rule for one class, matched by ``module.ClassName`` (never its subclasses)."""

    qualified_name = ""
    stock_methods = ()  # the exact class is matched: its own call() is what the rule knows

    def applies(self, layer: Any) -> bool:
        cls = type(layer)
        return f"{cls.__module__}.{cls.__qualname__}" == self.qualified_name


class OnDeviceEmbeddingRule(ExactClassRule, EmbeddingRule):
    """``OnDeviceEmbedding`` (BERT's word and type embeddings): ``embedding_width`` units.

    Like ``keras.layers.Embedding``: its integer input is not a channel axis; its table's
    columns are the units it produces.
    """

    qualified_name = "official.nlp.modeling.layers.on_device_embedding.OnDeviceEmbedding"

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        if "out" not in kept:
            return config
        return dict(config, embedding_width=len(kept["out"]))

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        config = layer.get_config()
        if not config.get("use_one_hot"):
            return 0  # a table lookup (its parameters are counted)
        # One-hot ids times the table: a matrix product per id.
        ids = numel(ins[0], f"layer {layer.name!r}")
        return ids * int(config["vocab_size"]) * int(config["embedding_width"])

    def filters(self, layer: Any) -> int:
        return int(layer.get_config()["embedding_width"])


class PerChannelTableRule(ExactClassRule):
    """A layer that adds or attaches a learned table with one column per input channel."""

    table = ""
    table_axis = -1

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        if len(call.inputs) != 1 or len(call.outputs) != 1:
            ctx.block_call(call, f"layer {call.path!r} is called with several inputs")
            return
        ctx.per_channel(call.layer, call.inputs[0], call.outputs[0])

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {self.table: {"ch": self.table_axis}}

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        return 0  # additions and copies only


class PositionEmbeddingRule(PerChannelTableRule):
    """BERT's ``PositionEmbedding``: row ``t`` of its table, broadcast to the input's shape.

    Its output has the input's channels, and channel ``c`` is column ``c`` of the table.
    """

    qualified_name = "official.nlp.modeling.layers.position_embedding.PositionEmbedding"
    table = "embeddings"

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        x = call.inputs[0] if call.inputs else None
        rank = x.shape.rank if x is not None else None
        seq_axis = int(call.layer.get_config().get("seq_axis", 1))
        if rank is None or seq_axis % rank == rank - 1:
            ctx.block_call(call, f"position embedding {call.path!r} runs along the channel axis")
            return
        super().connect(ctx, call)


class AddPositionEmbsRule(PerChannelTableRule):
    """The ViT's ``AddPositionEmbs``: adds a ``(1, positions, channels)`` table."""

    qualified_name = "official.vision.modeling.backbones.vit.AddPositionEmbs"
    table = "pos_embedding"


class ClassTokenRule(PerChannelTableRule):
    """The ViT's ``TokenLayer``: puts a learned ``(1, 1, channels)`` class token first."""

    qualified_name = "official.vision.modeling.backbones.vit.TokenLayer"
    table = "cls"


class VisionAttentionRule(ExactClassRule, MultiHeadAttentionRule):
    """Model Garden's vision ``MultiHeadAttention`` (ViT), when it is the stock computation.

    The class only adds spatial partitioning (``partition_dims``) and batch-limited inference
    (``max_inference_parallelism``) around the stock attention; with both unset it computes
    exactly what ``keras.layers.MultiHeadAttention`` computes, and is pruned like it (its
    masked twin and its stripped copy are stock layers). With either set, it is not claimed.
    """

    qualified_name = "official.vision.modeling.layers.nn_layers.MultiHeadAttention"
    _extra = ("partition_dims", "max_inference_parallelism")

    def applies(self, layer: Any) -> bool:
        if not super().applies(layer):
            return False
        config = layer.get_config()
        return all(config.get(k) is None for k in self._extra)

    def stock_equivalent(self, layer: Any) -> tuple[type, dict]:
        config = {k: v for k, v in layer.get_config().items() if k not in self._extra}
        return keras.layers.MultiHeadAttention, config
