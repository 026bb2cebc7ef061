"""Latency-aware per-layer pruning ratios from a latency table measured on this machine.

In the spirit of NetAdapt (Yang et al., 2018): instead of asking for a FLOPs reduction, ask for
a latency. :func:`measure_latency_table` times every conv/dense layer of the model on its own, at
its real input size, with its input and output channels cut to each candidate ratio, on the
machine that will serve it. :func:`latency_aware_ratios` then removes filters step by step from
the channel group that buys the most estimated latency per unit of filter importance (L1 norm)
lost, until the estimated latency of the conv/dense layers reaches the target, and returns a
``{layer-name regex: ratio}`` mapping for :func:`tfprune.prune_filters`.

The estimate sums per-layer times (layers other than conv/dense are taken as fixed cost), so
re-measure the pruned model (``benchmarks/deploy_speed.py``) before trusting it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfprune.compat import inbound_nodes, keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.graph import channel_groups

__all__ = ["LatencyTable", "latency_aware_ratios", "measure_latency_table"]

L = keras.layers
_TIMED = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)


@dataclasses.dataclass
class LatencyTable:
    """Measured seconds per call of each timed layer at each ``(in_channels, out_channels)``.

    Attributes:
        batch_size: batch the layers were timed at.
        times: ``layer path -> {(in_channels, out_channels): median seconds}``.
        dense: ``layer path -> (in_channels, out_channels)`` of the unpruned layer.
        ratios: the candidate ratios the table was measured at.
    """

    batch_size: int
    times: dict[str, dict[tuple[int, int], float]]
    dense: dict[str, tuple[int, int]]
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75)

    def lookup(self, path: str, c_in: int, c_out: int) -> float:
        """Seconds of layer ``path`` at ``(c_in, c_out)``.

        A combination that was not measured is estimated from the measured entry nearest in
        ``c_in * c_out``, scaled by the ratio of the products (MACs).
        """
        entries = self.times[path]
        if (c_in, c_out) in entries:
            return entries[(c_in, c_out)]
        want = c_in * c_out
        (a, b), t = min(entries.items(), key=lambda kv: abs(kv[0][0] * kv[0][1] - want))
        return t * want / (a * b)

    def total(self, channels: dict[str, tuple[int, int]] | None = None) -> float:
        """Estimated seconds of all timed layers at ``channels`` (default: dense)."""
        channels = channels or {}
        return sum(self.lookup(p, *channels.get(p, d)) for p, d in self.dense.items())


def _layer_at(layer: Any, c_in: int, c_out: int) -> tuple[Any, tuple]:
    config = dict(layer.get_config())
    config.pop("name", None)
    if isinstance(layer, L.Dense):
        config["units"] = c_out
    elif isinstance(layer, L.DepthwiseConv2D):
        c_out = c_in * layer.depth_multiplier
    else:
        config["filters"] = c_out
    shape = list(layer.input_shape[1:])
    shape[-1] = c_in
    return type(layer).from_config(config), tuple(shape)


def _time_layer(layer: Any, shape: tuple, batch_size: int, repeats: int) -> float:
    fn = tf.function(layer)
    x = tf.random.normal((batch_size, *shape))
    fn(x)  # build and trace
    fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _timed_layers(model: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def visit(m: Any, prefix: str) -> None:
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                visit(layer, prefix + layer.name + "/")
            elif type(layer) in _TIMED and len(inbound_nodes(layer)) == 1:
                found[prefix + layer.name] = layer

    visit(model, "")
    return found


def _kept(n: int, ratio: float) -> int:
    """Channels kept when ``ratio`` of ``n`` is removed (prune_filters' ceil rule, >= 1 kept)."""
    return max(1, n - math.ceil(ratio * n))


def measure_latency_table(
    model: Any,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    *,
    batch_size: int = 1,
    repeats: int = 10,
) -> LatencyTable:
    """Time each conv/dense layer alone at the channel counts the candidate ``ratios`` give.

    Every combination of the layer's input and output channels kept at ``0`` or one of
    ``ratios`` is measured (median of ``repeats`` calls of a ``tf.function`` at ``batch_size``).
    """
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise InvalidArgumentError(f"ratios must be in (0, 1), got {list(ratios)}")
    if batch_size < 1 or repeats < 1:
        raise InvalidArgumentError("batch_size and repeats must be >= 1")
    steps = (0.0, *sorted(ratios))
    times: dict[str, dict[tuple[int, int], float]] = {}
    dense: dict[str, tuple[int, int]] = {}
    for path, layer in _timed_layers(model).items():
        c_in = int(layer.input_shape[-1])
        c_out = int(layer.output_shape[-1])
        dense[path] = (c_in, c_out)
        table = times.setdefault(path, {})
        for r_in in steps:
            for r_out in steps:
                key = (_kept(c_in, r_in), _kept(c_out, r_out))
                if isinstance(layer, L.DepthwiseConv2D):
                    key = (key[0], key[0] * layer.depth_multiplier)
                if key in table:
                    continue
                new, shape = _layer_at(layer, *key)
                table[key] = _time_layer(new, shape, batch_size, repeats)
    return LatencyTable(batch_size=batch_size, times=times, dense=dense, ratios=steps[1:])


def _l1_scores(group: Any) -> np.ndarray:
    """Per-unit L1 norm of the producing kernels, normalised to sum 1."""
    scores = np.zeros(group.n_units)
    for m in group.producers:
        kernel = m.layer.weights[0].numpy()
        per_channel = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(0)
        if per_channel.size == m.unit_of_channel.size:
            scores += np.nan_to_num(m.unit_scores(per_channel, group.n_units))
    return scores / max(scores.sum(), 1e-12)


def latency_aware_ratios(
    model: Any,
    target: float,
    *,
    table: LatencyTable | None = None,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    batch_size: int = 1,
    repeats: int = 10,
) -> tuple[dict[str, float], LatencyTable, float]:
    """Per-layer ratios whose estimated conv/dense latency is ``target`` x the dense one.

    Greedy, NetAdapt-style: at each step every prunable group (with one producing layer) may
    move to its next ratio in ``ratios``; the move with the most estimated seconds saved per
    unit of normalised L1 importance removed is taken, until the estimate is at most
    ``target`` times the dense estimate (or no move is left).

    Args:
        model: a functional or Sequential tf_keras model.
        target: wanted latency as a fraction of the dense model's, in (0, 1).
        table: a table from :func:`measure_latency_table` (measured here if None); its
            ratios are the candidates then.
        ratios: candidate per-layer ratios when ``table`` is None.
        batch_size: batch of the timing when ``table`` is None.
        repeats: timed calls per entry when ``table`` is None.

    Returns:
        ``(mapping, table, estimated fraction)``: ``mapping`` is ``{re.escape(layer name):
        ratio}`` for :func:`tfprune.prune_filters` (layers not in it are not pruned).
    """
    if not 0 < target < 1:
        raise InvalidArgumentError(f"target must be a latency fraction in (0, 1), got {target}")
    table = table or measure_latency_table(model, ratios, batch_size=batch_size, repeats=repeats)
    steps = (0.0, *table.ratios)
    groups = [
        g
        for g in channel_groups(model)
        if g.prunable and len(g.producers) == 1 and g.producers[0].path in table.dense
    ]
    if not groups:
        raise InvalidArgumentError(
            "no prunable group with a single conv/dense producer; nothing to trade for latency"
        )
    scores = {g.id: np.sort(_l1_scores(g)) for g in groups}
    level = {g.id: 0 for g in groups}

    def channels() -> dict[str, tuple[int, int]]:
        out = {p: list(d) for p, d in table.dense.items()}
        for g in groups:
            ratio = steps[level[g.id]]
            kept_units = _kept(g.n_units, ratio)
            for m in g.layers:
                if m.path in out and m.role in ("in", "out", "ch"):
                    axis = 1 if m.role == "out" else 0
                    per_unit = max(1, m.size // g.n_units)  # Flatten -> Dense: rows per unit
                    out[m.path][axis] = kept_units * per_unit
        for p, layer in _timed_layers(model).items():
            if isinstance(layer, L.DepthwiseConv2D):
                out[p][1] = out[p][0] * layer.depth_multiplier
        return {p: tuple(v) for p, v in out.items()}

    def estimate() -> float:
        return table.total(channels())

    dense_total = table.total()
    current = dense_total
    while current > target * dense_total:
        best = None
        for g in groups:
            if level[g.id] + 1 >= len(steps):
                continue
            level[g.id] += 1
            cost = estimate()
            level[g.id] -= 1
            n = scores[g.id].size
            lost = scores[g.id][: math.ceil(steps[level[g.id] + 1] * n)].sum()
            lost -= scores[g.id][: math.ceil(steps[level[g.id]] * n)].sum()
            value = (current - cost) / max(lost, 1e-9)
            if best is None or value > best[0]:
                best = (value, g, cost)
        if best is None:
            break
        level[best[1].id] += 1
        current = best[2]
    mapping = {
        re.escape(g.producers[0].path): steps[level[g.id]] for g in groups if level[g.id] > 0
    }
    return mapping, table, current / dense_total
