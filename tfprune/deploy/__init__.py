"""Serving a pruned model: inference optimisation, TF Serving layout, other runtimes.

:func:`optimize_for_inference` folds BatchNormalization and Rescaling into the layer before them
and drops training-only layers; :mod:`tfprune.deploy.serving` writes TF Serving version folders
and warm-up requests; :mod:`tfprune.deploy.runtimes` converts to TFLite and ONNX and checks
their outputs.
"""

from tfprune.deploy.fold import FoldError, FoldReport, check_no_masks, optimize_for_inference
from tfprune.deploy.inputs import example_inputs

__all__ = [
    "FoldError",
    "FoldReport",
    "check_no_masks",
    "example_inputs",
    "optimize_for_inference",
]
