"""Measuring inference latency the same way for every model compared."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfprune.compat import tf

__all__ = ["interleaved_latency", "measure_latency", "speedup_stats"]


def _served(model: Any) -> Any:
    return tf.function(lambda x: model(x, training=False))


def _timed_call(fn: Any, x: Any) -> float:
    t0 = time.perf_counter()
    out = fn(x)
    tf.nest.map_structure(lambda t: t.numpy(), out)
    return time.perf_counter() - t0


def measure_latency(
    model: Any, inputs: Any, *, warmup: int = 5, runs: int = 30
) -> dict[str, float]:
    """Median/mean/min seconds per call of ``model`` on ``inputs`` in inference mode.

    The model runs inside one ``tf.function`` (as a server would run it); the first ``warmup``
    calls (tracing included) are not timed.
    """
    fn = _served(model)
    x = tf.convert_to_tensor(inputs)
    for _ in range(max(1, warmup)):
        fn(x)
    arr = np.asarray([_timed_call(fn, x) for _ in range(runs)])
    return {"median": float(np.median(arr)), "mean": float(arr.mean()), "min": float(arr.min())}


def interleaved_latency(
    models: Mapping[str, Any], inputs: Any, *, rounds: int = 7, runs: int = 5, warmup: int = 3
) -> dict[str, list[float]]:
    """Per-round median seconds per call of each model, the models taking turns every round.

    Interleaving spreads a change in machine load over all models alike, so the ratio of two
    models' times within a round is steadier than a ratio of two separate measurements.
    """
    x = tf.convert_to_tensor(inputs)
    fns = {name: _served(model) for name, model in models.items()}
    for fn in fns.values():
        for _ in range(max(1, warmup)):
            fn(x)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            out[name].append(float(np.median([_timed_call(fn, x) for _ in range(runs)])))
    return out


def speedup_stats(base: list[float], other: list[float]) -> dict[str, float]:
    """Median, lowest and highest of the per-round ratios ``base / other`` (same rounds)."""
    ratios = np.asarray(base) / np.asarray(other)
    return {
        "median": float(np.median(ratios)),
        "low": float(ratios.min()),
        "high": float(ratios.max()),
        "rounds": int(ratios.size),
    }
