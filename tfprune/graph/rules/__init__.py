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

The interface and the registry are in :mod:`~tfprune.graph.rules.base`; the built-in rules are
grouped by kind: :mod:`~tfprune.graph.rules.weighted` (convolutions, dense, embeddings),
:mod:`~tfprune.graph.rules.recurrent` (RNNs, ConvLSTMs, ``Bidirectional``),
:mod:`~tfprune.graph.rules.attention` (``MultiHeadAttention``, ``EinsumDense``),
:mod:`~tfprune.graph.rules.wrappers` (``TimeDistributed``, TF-MOT's wrappers),
:mod:`~tfprune.graph.rules.shapes` (layers without multiply weights),
:mod:`~tfprune.graph.rules.ops` (TF ops in a functional graph),
:mod:`~tfprune.graph.rules.model_garden` (TF Model Garden's embedding layers),
:mod:`~tfprune.graph.rules.keras_hub` (keras-hub's embedding layers) and
:mod:`~tfprune.graph.rules.keras3` (the Keras 3 classes the rules vouch for, Keras 3's ops).
"""

from tfprune.graph.rules.attention import (
    DotAttentionRule,
    EinsumDenseRule,
    MultiHeadAttentionRule,
    dense_like_equation,
    einsum_macs,
)
from tfprune.graph.rules.base import (
    KERNEL_NAMES,
    PRODUCER_ROLES,
    ChannelContext,
    LayerRule,
    Role,
    mixing_activation,
    named_weights,
    numel,
    overrides_stock,
    register_rule,
    rule_for,
    unregister_rule,
    weight_names,
    weight_short_name,
)
from tfprune.graph.rules.keras3 import KERAS3_RULES
from tfprune.graph.rules.keras_hub import (
    PositionEmbeddingRule as KerasHubPositionEmbeddingRule,
)
from tfprune.graph.rules.keras_hub import ReversibleEmbeddingRule, ViTPatchingAndEmbeddingRule
from tfprune.graph.rules.model_garden import (
    AddPositionEmbsRule,
    ClassTokenRule,
    OnDeviceEmbeddingRule,
    PositionEmbeddingRule,
    VisionAttentionRule,
)
from tfprune.graph.rules.ops import ELEMENTWISE_OPS, TFOpRule
from tfprune.graph.rules.recurrent import BidirectionalRule, ConvRecurrentRule, RecurrentRule
from tfprune.graph.rules.shapes import (
    ConcatenateRule,
    FlattenRule,
    GroupNormRule,
    InputRule,
    LayerNormRule,
    LayerScaleRule,
    MergeRule,
    PassThroughRule,
    PerChannelParamRule,
    RescalingRule,
    ReshapeRule,
    ScaledSumRule,
    SoftmaxRule,
)
from tfprune.graph.rules.weighted import (
    ConvRule,
    ConvTransposeRule,
    DenseRule,
    DepthwiseRule,
    EmbeddingRule,
    LocallyConnectedRule,
    SeparableRule,
)
from tfprune.graph.rules.wrappers import (
    PruneLowMagnitudeRule,
    QuantizeWrapperRule,
    TimeDistributedRule,
)

__all__ = [
    "ChannelContext",
    "ELEMENTWISE_OPS",
    "KERNEL_NAMES",
    "LayerRule",
    "PRODUCER_ROLES",
    "Role",
    "mixing_activation",
    "named_weights",
    "numel",
    "overrides_stock",
    "register_rule",
    "rule_for",
    "unregister_rule",
    "weight_names",
    "weight_short_name",
]

for _rule in (
    ConvRule(),
    ConvTransposeRule(),
    DenseRule(),
    DepthwiseRule(),
    SeparableRule(),
    EmbeddingRule(),
    RecurrentRule(),
    ConvRecurrentRule(),
    BidirectionalRule(),
    TimeDistributedRule(),
    PruneLowMagnitudeRule(),
    QuantizeWrapperRule(),
    MultiHeadAttentionRule(),
    EinsumDenseRule(),
    DotAttentionRule(),
    LocallyConnectedRule(),
    OnDeviceEmbeddingRule(),
    VisionAttentionRule(),
    PositionEmbeddingRule(),
    AddPositionEmbsRule(),
    ClassTokenRule(),
    ReversibleEmbeddingRule(),
    KerasHubPositionEmbeddingRule(),
    ViTPatchingAndEmbeddingRule(),
    PassThroughRule(),
    SoftmaxRule(),
    PerChannelParamRule(),
    MergeRule(),
    ConcatenateRule(),
    FlattenRule(),
    ReshapeRule(),
    RescalingRule(),
    LayerNormRule(),
    GroupNormRule(),
    LayerScaleRule(),
    ScaledSumRule(),
    TFOpRule(),
    InputRule(),
    *KERAS3_RULES,
):
    register_rule(_rule, first=False)
