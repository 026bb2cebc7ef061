"""tfprune: filter-level structured pruning and growing regularization for tf_keras.

The flow: model -> channel groups (:func:`channel_groups`, :func:`explain`) -> importance ->
masks during ``fit`` (:func:`prune_filters`, :class:`UpdateFilterMasks`) -> physical surgery
(:func:`strip_filters`, :func:`shrink`) -> SavedModel (:func:`export_saved_model`).
"""

from tfprune import errors
from tfprune.batch_norm import recalibrate_batch_norm
from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.callbacks.masks import UpdateFilterMasks
from tfprune.deploy import optimize_for_inference
from tfprune.export import export_for_serving, export_saved_model
from tfprune.flops import ModelCount, count_flops, count_params, param_reduction, speedup
from tfprune.graph import ChannelGroup, LayerRule, channel_groups, explain, register_rule
from tfprune.layers import ChannelMask
from tfprune.plan import PruningPlan
from tfprune.pruning import (
    FilterPruner,
    PruningPolicy,
    custom_objects,
    find_sparsity_for_target,
    prune_filters,
    shrink,
)
from tfprune.regularization import (
    ConvOrthogonality,
    GroupLasso,
    GrowingRegularization,
    KernelOrthogonality,
    NetworkSlimming,
    TrainabilityPreserving,
)
from tfprune.surgery import apply_plan, strip_filters
from tfprune.targets import TargetResult
from tfprune.trainability import JSVStats, mean_jsv, orthp, trainability_accuracy

__version__ = "0.1.0"

__all__ = [
    "ChannelGroup",
    "ChannelMask",
    "ConvOrthogonality",
    "FilterPruner",
    "GroupLasso",
    "GrowingRegularization",
    "JSVStats",
    "JacobianSingularValues",
    "KernelOrthogonality",
    "LayerRule",
    "ModelCount",
    "NetworkSlimming",
    "PruningPlan",
    "PruningPolicy",
    "TargetResult",
    "TrainabilityPreserving",
    "UpdateFilterMasks",
    "apply_plan",
    "channel_groups",
    "count_flops",
    "count_params",
    "custom_objects",
    "errors",
    "explain",
    "find_sparsity_for_target",
    "export_for_serving",
    "export_saved_model",
    "mean_jsv",
    "optimize_for_inference",
    "orthp",
    "param_reduction",
    "prune_filters",
    "recalibrate_batch_norm",
    "register_rule",
    "shrink",
    "speedup",
    "strip_filters",
    "trainability_accuracy",
]
