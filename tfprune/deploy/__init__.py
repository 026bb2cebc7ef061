"""Serving a pruned model: inference optimisation, TF Serving layout, other runtimes.

:func:`optimize_for_inference` folds BatchNormalization and Rescaling into the layer before them
and drops training-only layers; :mod:`tfprune.deploy.serving` writes TF Serving version folders
and warm-up requests; :mod:`tfprune.deploy.runtimes` converts to TFLite and ONNX and checks
their outputs; :func:`latency_aware_ratios` turns a latency table measured on this machine into
per-layer ratios for :func:`tfprune.prune_filters`.
"""

from tfprune.deploy.fold import FoldReport, check_no_masks, optimize_for_inference
from tfprune.deploy.inputs import example_inputs
from tfprune.deploy.latency import LatencyTable, latency_aware_ratios, measure_latency_table

__all__ = [
    "FoldReport",
    "LatencyTable",
    "check_no_masks",
    "example_inputs",
    "latency_aware_ratios",
    "measure_latency_table",
    "optimize_for_inference",
]
