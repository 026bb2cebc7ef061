"""Matched operating points: the pruning ratio that reaches a FLOPs or parameter reduction.

Comparing pruning methods is only fair at equal cost of the pruned model. Instead of a ratio,
ask for a *target*: ``{"flops_reduction": 2.0}`` (dense FLOPs / pruned FLOPs),
``{"params_reduction": 2.0}`` (dense parameters / pruned parameters) or ``{"speedup": 1.5}``
(dense / pruned measured inference latency, see :class:`LatencyMeter`). The search bisects the
uniform ratio (or the scale factor of a per-layer ratio mapping) over the exact counts of the
model that :func:`tfprune.strip_filters` would build, and returns the ratio whose achieved
reduction is closest to the target, within a relative tolerance (1 % by default).

The counts are computed from the kept channel counts, without building a model per try: every
weight is sliced (as a zero-cost broadcast view) the way surgery slices it, conv/dense MACs
scale with their kernels' sizes and parameters are the sliced weights' sizes. They equal
``count_flops`` / ``count_params(trainable_only=True)`` of the stripped model (tests check
this on several architecture families).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import is_functional, keras
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.flops import count_flops, count_params
from tfprune.graph.groups import Analysis
from tfprune.graph.rules import named_weights, rule_for
from tfprune.profiling import measure_latency
from tfprune.selection import RatioSpec
from tfprune.surgery import cut_channels

__all__ = [
    "TARGET_METRICS",
    "MAX_RATIO",
    "LatencyMeter",
    "ReducedCounter",
    "TargetResult",
    "check_target",
    "search_target",
]

#: The reductions a target can name: dense / pruned FLOPs (MACs of conv and dense layers),
#: dense / pruned trainable parameters, or dense / pruned measured latency.
TARGET_METRICS = ("flops_reduction", "params_reduction", "speedup")
#: Default relative tolerance: exact counts, and the noisier measured latency.
DEFAULT_TOLERANCE = {"flops_reduction": 0.01, "params_reduction": 0.01, "speedup": 0.05}
#: Largest ratio the search gives any layer (a layer always keeps at least one filter anyway).
MAX_RATIO = 1.0 - 1e-6
_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def check_target(target: Any) -> tuple[str, float]:
    """Validate ``{"flops_reduction": x}`` / ``{"params_reduction": x}`` -> ``(metric, x)``."""
    if not isinstance(target, Mapping) or len(target) != 1:
        raise InvalidArgumentError(
            f"target must be a one-entry mapping such as {{'flops_reduction': 2.0}}, got "
            f"{target!r}; the keys are {', '.join(TARGET_METRICS)}."
        )
    ((metric, value),) = target.items()
    if metric not in TARGET_METRICS:
        raise InvalidArgumentError(
            f"target names {metric!r}; use one of {', '.join(TARGET_METRICS)} (a factor: "
            "dense / pruned, e.g. 2.0 halves the FLOPs)."
        )
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or v < 1.0:
        raise InvalidArgumentError(
            f"target {metric} must be a factor >= 1 (dense / pruned, e.g. 2.0), got {value!r}."
        )
    return str(metric), v


@dataclasses.dataclass(frozen=True)
class TargetResult:
    """The outcome of a target search.

    Attributes:
      metric: ``"flops_reduction"``, ``"params_reduction"`` or ``"speedup"``.
      target: the requested factor (dense / pruned).
      achieved: the factor the returned ``sparsity`` gives (exact counts).
      sparsity: what to pass as ``sparsity=`` to :func:`tfprune.prune_filters` or to a
        regularization callback: the uniform ratio, or the scaled ``{pattern: ratio}`` mapping.
      scale: the uniform ratio, or the factor the given mapping's ratios were multiplied by.
      dense: the dense model's count (MACs or trainable parameters), or its median latency in
        seconds per batch for ``"speedup"``.
      pruned: the same for the pruned model.
      tolerance: the relative tolerance the search had to meet.
      evaluations: how many ratios were counted.
      uncounted: layers with weights but no FLOPs rule (their FLOPs count as 0 on both sides).
    """

    metric: str
    target: float
    achieved: float
    sparsity: float | dict[str, float]
    scale: float
    dense: float
    pruned: float
    tolerance: float
    evaluations: int
    uncounted: tuple[str, ...] = ()

    @property
    def relative_error(self) -> float:
        """``achieved / target - 1``."""
        return self.achieved / self.target - 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for run records: target and achieved side by side)."""
        out = dataclasses.asdict(self)
        out["uncounted"] = list(self.uncounted)
        out["relative_error"] = self.relative_error
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> TargetResult:
        """Inverse of :meth:`to_dict` (e.g. of ``tfprune.pruning_policy(masked).target``)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in fields}
        values["uncounted"] = tuple(values.get("uncounted", ()))
        return cls(**values)


def _leaf_layers(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, layer) of every non-model layer, nested functional models expanded."""
    out = []
    for layer in model.layers:
        path = prefix + layer.name
        if isinstance(layer, keras.Model) and is_functional(layer):
            out.extend(_leaf_layers(layer, path + "/"))
        else:
            out.append((path, layer))
    return out


class ReducedCounter:
    """Exact MACs and trainable parameters of the stripped model, from the pruned units.

    Built once per dense model; :meth:`counts` then costs a few numpy slices per layer that
    loses channels.
    """

    def __init__(self, model: Any, analysis: Analysis) -> None:
        self.analysis = analysis
        flops = count_flops(model)
        self.uncounted = tuple(flops.uncounted)
        self.dense_macs = flops.total
        self.dense_params = count_params(model, trainable_only=True).total
        self._layers = []  # (layer, macs, {short name: (shape, counted as a param)})
        seen: set[int] = set()
        for path, layer in _leaf_layers(model):
            if not analysis.layer_members(layer):
                continue
            weights = {}
            for name, v in named_weights(layer).items():
                first = id(v) not in seen
                seen.add(id(v))
                weights[name] = (tuple(v.shape.as_list()), first and v.trainable)
            self._layers.append((layer, int(flops.per_layer.get(path, 0)), weights))

    def counts(self, pruned: Mapping[int, np.ndarray]) -> tuple[int, int]:
        """(MACs, trainable params) of the model without the ``pruned`` units of each group."""
        kept_units = {gid: np.flatnonzero(~p) for gid, p in pruned.items() if p.any()}
        macs, params = self.dense_macs, self.dense_params
        for layer, layer_macs, weights in self._layers:
            kept = {}
            for role, m in self.analysis.layer_members(layer).items():
                gid = self.analysis.group_of_key[m.key]
                if gid in kept_units:
                    idx = m.kept_channels(kept_units[gid])
                    if idx.size < m.size:
                        kept[role] = idx
            if not kept:
                continue
            views = {n: np.broadcast_to(np.int8(0), s) for n, (s, _) in weights.items()}
            sliced = rule_for(layer).slice_weights(layer, views, kept)
            before = after = 0
            for name, (shape, counted) in weights.items():
                new = int(np.size(sliced.get(name, views[name])))
                if counted:
                    params += new - int(math.prod(shape))
                if name.split("/")[-1] in _KERNELS:  # "query/kernel" is a kernel too
                    before += int(math.prod(shape))
                    after += new
            if layer_macs and before:
                # MACs of a conv/dense call are (positions) x (kernel size): exact in integers.
                macs += layer_macs * after // before - layer_macs
        return macs, params


class LatencyMeter:
    """Measured speedup of the stripped model: dense / pruned median latency per batch.

    The dense model is timed once; every try builds the stripped model (as
    :func:`tfprune.strip_filters` would) and times it the same way
    (:func:`tfprune.profiling.measure_latency`, inference mode inside one ``tf.function``).
    Latency is noisy: ratios are compared on medians of ``runs`` calls.
    """

    def __init__(self, model: Any, analysis: Analysis, inputs: Any, runs: int = 30) -> None:
        self.analysis = analysis
        self.inputs = inputs
        self.runs = int(runs)
        self.dense = measure_latency(model, inputs, runs=self.runs)["median"]

    def measure(self, pruned: Mapping[int, np.ndarray]) -> tuple[float, float]:
        """(speedup, pruned latency) of the model without ``pruned``."""
        small = cut_channels(self.analysis, dict(pruned))
        latency = measure_latency(small, self.inputs, runs=self.runs)["median"]
        return (self.dense / latency if latency > 0 else math.inf), latency


def latency_inputs(model: Any, batch_size: int = 32, seed: int = 0) -> Any:
    """Random float inputs of ``batch_size`` for every model input (for :class:`LatencyMeter`)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        dims = list(t.shape)[1:]
        if any(d is None for d in dims):
            raise InvalidArgumentError(
                f"target speedup needs latency_inputs=: input {t.name!r} has shape "
                f"{tuple(t.shape)} with unknown dimensions; pass a batch of real inputs."
            )
        out.append(rng.normal(size=(batch_size, *dims)).astype(np.float32))
    return out[0] if len(out) == 1 else out


def search_target(
    metric: str,
    target: float,
    counter: ReducedCounter,
    pruned_for: Callable[[RatioSpec], dict[int, np.ndarray]],
    sparsity: Mapping[str, float] | None,
    skip: tuple[str, ...],
    tolerance: float = 0.01,
    meter: LatencyMeter | None = None,
) -> TargetResult:
    """Bisect the uniform ratio (``sparsity=None``) or the scale of a ratio mapping.

    ``pruned_for(spec)`` returns the units the selection removes for ``spec``. The achieved
    reduction grows monotonically with the ratio and changes in steps (a layer's filter count is
    an integer): the search locates the step that crosses ``target`` to 1e-9 in ratio and takes
    the closer side. For ``"speedup"`` (``meter`` given) every try builds and times a model, so
    the ratio is located to 1/256 of its range.
    """
    if sparsity is not None:
        base = {str(k): float(v) for k, v in sparsity.items()}
        top = max(base.values(), default=0.0)
        if top <= 0:
            raise InvalidArgumentError(
                f"every ratio of the sparsity mapping {base!r} is 0, so no scale reaches "
                f"{metric}={target}; give the layers to prune a positive ratio."
            )
        s_max = MAX_RATIO / top

        def spec_for(s: float) -> tuple[RatioSpec, Any]:
            ratios = {k: min(MAX_RATIO, round(s * r, 12)) for k, r in base.items()}
            return RatioSpec(0.0, tuple(ratios.items()), skip), ratios
    else:
        s_max = MAX_RATIO

        def spec_for(s: float) -> tuple[RatioSpec, Any]:
            return RatioSpec(float(s), (), skip), float(s)

    if metric == "speedup":
        if meter is None:  # pragma: no cover - internal misuse
            raise ValueError("speedup needs a LatencyMeter")
        dense = meter.dense
    else:
        dense = counter.dense_macs if metric == "flops_reduction" else counter.dense_params
    if dense <= 0:
        raise UnsupportedModelError(
            f"the model has no {'conv/dense FLOPs' if metric == 'flops_reduction' else 'params'}"
            f" to reduce, so target {metric} cannot be met."
        )
    cache: dict[float, tuple[float, int]] = {}

    def reduction(s: float) -> tuple[float, int]:
        if s not in cache:
            pruned = pruned_for(spec_for(s)[0])
            if meter is not None:
                cache[s] = meter.measure(pruned)
            else:
                macs, params = counter.counts(pruned)
                n = macs if metric == "flops_reduction" else params
                cache[s] = (dense / n if n > 0 else math.inf, n)
        return cache[s]

    def result(s: float) -> TargetResult:
        achieved, n = reduction(s)
        return TargetResult(
            metric=metric,
            target=target,
            achieved=float(achieved),
            sparsity=spec_for(s)[1],
            scale=float(s),
            dense=dense,
            pruned=n,
            tolerance=float(tolerance),
            evaluations=len(cache),
            uncounted=counter.uncounted,
        )

    if target <= 1.0:
        return result(0.0)
    top_value = reduction(s_max)[0]
    if top_value < target * (1 - tolerance):
        what = "the largest uniform ratio" if sparsity is None else "the largest scale"
        raise InvalidArgumentError(
            f"target {metric}={target:g} is not reachable: {what} ({s_max:.6g}, every layer "
            f"keeps one filter) gives at most {top_value:.4g}x. Ask for at most "
            f"{top_value:.4g}, or allow more layers to be pruned (patterns, skip, "
            "max_group_sparsity)."
        )
    lo, hi = 0.0, s_max  # reduction(lo) < target <= reduction(hi), or hi is s_max
    resolution = 1e-9 if meter is None else s_max / 256
    while hi - lo > resolution:
        mid = 0.5 * (lo + hi)
        if reduction(mid)[0] >= target:
            hi = mid
        else:
            lo = mid
    best = min((hi, lo), key=lambda s: abs(reduction(s)[0] / target - 1))
    if abs(reduction(best)[0] / target - 1) > tolerance:
        raise InvalidArgumentError(
            f"target {metric}={target:g} cannot be met within {tolerance:.1%}: the closest "
            f"operating points are {reduction(lo)[0]:.4g}x and {reduction(hi)[0]:.4g}x (filter "
            "counts are integers). Prune more layers (a finer step), or pass a larger tolerance."
            + (" Latency is measured: noise also moves it." if meter is not None else "")
        )
    if meter is not None:  # a measured figure: no re-measuring for a shorter number
        return result(best)
    return result(
        _short_decimal(
            best, up=best == hi, high=s_max, same=lambda v: reduction(v) == reduction(best)
        )
    )


def _short_decimal(s: float, *, up: bool, high: float, same: Callable[[float], bool]) -> float:
    """A number with few decimals near ``s`` (above it if ``up``) that gives ``s``'s counts."""
    for digits in range(1, 10):
        q = 10.0**digits
        v = round((math.ceil(s * q) if up else math.floor(s * q)) / q, digits)
        if 0 <= v <= high and same(v):
            return v
    return s
