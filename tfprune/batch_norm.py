"""Re-estimate BatchNormalization statistics from data (after pruning, or for random weights)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tfprune.compat import keras, require_tf_keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.nested import all_layers

__all__ = ["recalibrate_batch_norm"]


def recalibrate_batch_norm(model: keras.Model, data: Any, steps: int | None = None) -> int:
    """Set every BatchNormalization's moving statistics to those of ``data``; return the count.

    Pruning changes the activations that reach each BatchNormalization, so its moving mean
    and variance no longer match them; re-estimating them on a few training batches (no
    gradient step) recovers much of the accuracy lost before fine-tuning. It also gives
    randomly initialised networks outputs of a usable scale, which benchmarks and export checks
    need. ``data`` is one batch of inputs (an array, a tensor, or a list of them for several
    inputs) or an iterable of batches (a ``tf.data.Dataset`` of inputs or of ``(x, y)``
    pairs); ``steps`` caps how many batches are read. The statistics are the running average
    over the batches read, each batch weighted equally. Weights, momentum and everything else
    in the model are left as they were.
    """
    require_tf_keras(model, "tfprune.recalibrate_batch_norm")
    if steps is not None and steps < 1:
        raise InvalidArgumentError(f"steps must be >= 1, got {steps}")
    norms = [la for la in all_layers(model) if isinstance(la, keras.layers.BatchNormalization)]
    if not norms:
        return 0
    batches = _batches(data)
    saved = [layer.momentum for layer in norms]
    seen = 0
    try:
        for batch in batches:
            if steps is not None and seen >= steps:
                break
            # A running mean over the batches seen: weight 1/(n+1) on batch n.
            for layer in norms:
                layer.momentum = seen / (seen + 1)
            model(batch, training=True)
            seen += 1
    finally:
        for layer, momentum in zip(norms, saved, strict=True):
            layer.momentum = momentum
    if not seen:
        raise InvalidArgumentError("data holds no batch; pass at least one batch of inputs")
    return len(norms)


def _batches(data: Any) -> Iterable[Any]:
    """One batch (an array or tensor, or a list of them) or an iterable of batches."""
    if isinstance(data, (np.ndarray, tf.Tensor)):
        return [data]
    if isinstance(data, list) and data and isinstance(data[0], (np.ndarray, tf.Tensor)):
        return [data]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        return (b[0] if isinstance(b, tuple) else b for b in data)
    raise InvalidArgumentError(
        "data must be a batch of inputs (an array, a tensor, or a list of them) or an iterable "
        f"of batches such as a tf.data.Dataset, got {type(data).__name__}"
    )
