"""Rules of keras-hub layers that compute with their own weights (Keras 3).

keras-hub's backbones are functional models of custom layers. tfprune traces the custom layers
that only call sublayers and ops (:mod:`tfprune.graph.keras3`); those below read weights of
their own inside ``call`` (token and position embeddings, the ViT's patch embedding with its
class token), so a rule must say how their weights slice. As for TF Model Garden
(:mod:`tfprune.graph.rules.model_garden`), each rule claims exactly one class by module and
name: keras-hub is never imported, and a subclass is never claimed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tfprune.graph.rules.base import ChannelContext, Role, Shape, variable_size
from tfprune.graph.rules.model_garden import ExactClassRule, PerChannelTableRule
from tfprune.graph.rules.weighted import DenseRule, EmbeddingRule

__all__ = [
    "PositionEmbeddingRule",
    "ReversibleEmbeddingRule",
    "ViTPatchingAndEmbeddingRule",
]

_LAYERS = "keras_hub.src.layers.modeling."


class ReversibleEmbeddingRule(ExactClassRule, EmbeddingRule):
    """keras-hub's ``ReversibleEmbedding`` called forward (token ids -> vectors).

    Forward it is ``keras.layers.Embedding``; its untied ``reverse_embeddings`` (hidden x
    vocabulary) lose the same rows. Called with ``reverse=True`` (vectors -> logits) it blocks.
    """

    qualified_name = _LAYERS + "reversible_embedding.ReversibleEmbedding"

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        reverse = call.kwargs.get("reverse", call.args[1] if len(call.args) > 1 else False)
        if reverse is not False:
            ctx.block_call(call, f"embedding {call.path!r} is called in reverse (to logits)")
            return
        super().connect(ctx, call)

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {"embeddings": {"out": 1}, "reverse_embeddings": {"out": 0}}


class PositionEmbeddingRule(PerChannelTableRule):
    """keras-hub's ``PositionEmbedding``: the first rows of its table, shaped like its input.

    Its output has the input's channels, and channel ``c`` is column ``c`` of the table.
    """

    qualified_name = _LAYERS + "position_embedding.PositionEmbedding"
    table = "embeddings"  # the weight's name (its attribute is position_embeddings)


class ViTPatchingAndEmbeddingRule(ExactClassRule):
    """keras-hub's ViT stem: a patch convolution, the class token and position embeddings.

    Its ``hidden_dim`` channels are the conv's filters, the class token's and the position
    table's columns (role ``"out"``); the image channels are the conv's inputs.
    """

    qualified_name = "keras_hub.src.models.vit.vit_layers.ViTPatchingAndEmbedding"

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        if len(call.inputs) != 1 or layer.data_format != "channels_last":
            ctx.block_call(call, f"ViT embedding {call.path!r} is not one channels_last image")
            return
        DenseRule.connect(self, ctx, call)  # image channels in, hidden_dim out

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {
            "kernel": {"in": -2, "out": -1},
            "bias": {"out": 0},
            "class_token": {"out": -1},
            "embeddings": {"out": -1},
        }

    def kernel_names(self, layer: Any) -> tuple[str, ...]:
        return ("kernel",)

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        # Its get_config writes two derived sizes its constructor does not take back.
        config = {k: v for k, v in config.items() if k not in ("num_patches", "num_positions")}
        return dict(config, hidden_dim=len(kept["out"])) if "out" in kept else config

    def filters(self, layer: Any) -> int:
        return int(layer.hidden_dim)

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        patches = math.prod(s // p for s, p in zip(ins[0][1:3], layer.patch_embedding.strides))
        return int(patches) * variable_size(layer.patch_embedding.kernel)
