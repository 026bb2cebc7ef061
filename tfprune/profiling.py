"""Measuring inference latency the same way for every model compared."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tfprune.compat import tf

__all__ = ["measure_latency"]


def measure_latency(
    model: Any, inputs: Any, *, warmup: int = 5, runs: int = 30
) -> dict[str, float]:
    """Median/mean/min seconds per call of ``model`` on ``inputs`` in inference mode.

    The model runs inside one ``tf.function`` (as a server would run it); the first ``warmup``
    calls (tracing included) are not timed.
    """
    fn = tf.function(lambda x: model(x, training=False))
    x = tf.convert_to_tensor(inputs)
    for _ in range(max(1, warmup)):
        fn(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn(x)
        _ = tf.nest.map_structure(lambda t: t.numpy(), out)
        times.append(time.perf_counter() - t0)
    arr = np.asarray(times)
    return {"median": float(np.median(arr)), "mean": float(arr.mean()), "min": float(arr.min())}
