"""Shared machinery of the regularization-based pruning methods.

Every method here works on the *channel groups* of a model masked by
:func:`tfprune.prune_filters`: a unit of a group (a filter together with its bias, its
BatchNormalization entry, the matching input slice of every consumer and its residual
partners) is regularized and removed as a whole.

The pieces:

* :class:`WeightSlice` / :func:`group_slices`: the trainable weights of a group, each with the
  axis that carries the group's channels and the unit of every channel.
* Penalty terms written as losses (the gradient of ``0.5 * sum(R * w**2)`` is ``R * w``, the
  update rule of the GReg/TPP code): :func:`weighted_l2`, :func:`unit_sq_norms`,
  :func:`gram_penalty`.
* :class:`RegularizationState`: the training state of a method (penalties, phase, step) as
  ``tf.Variable`` s attached to the model as a checkpoint dependency. ``model.save_weights``
  (TF format), ``tf.train.Checkpoint(model=model)`` and ``keras.callbacks.BackupAndRestore``
  therefore save and restore it, also when the checkpoint is restored before the callback
  creates the variables (TF restores them when they are attached). The variables are not
  model weights (``model.weights`` is unchanged).
* :class:`GroupRegularizer`: the base Keras callback that finds the groups, selects units,
  adds the penalty to the model's losses (``model.add_loss(callable)``), and sets the masks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import AutoTrackable, keras, remove_callable_losses, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.graph.groups import Analysis, ChannelGroup
from tfprune.graph.rules import rule_for
from tfprune.pruning import FilterPruner
from tfprune.selection import RatioSpec, check_ratio, resolve_ratios, select_units

__all__ = [
    "KERNEL_NAMES",
    "MAGNITUDE_RATIO_CAP",
    "GroupRegularizer",
    "GrowingPenaltyRegularizer",
    "RegularizationState",
    "SeparationWarning",
    "WeightSlice",
    "check_number",
    "group_slices",
    "gram_penalty",
    "parse_sparsity",
    "unit_magnitudes",
    "unit_sq_norms",
    "weighted_l2",
]

logger = logging.getLogger("tfprune")

KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")
#: Magnitude ratios are stored capped at this value (a ratio of inf: pruned weights are 0).
MAGNITUDE_RATIO_CAP = 1e12


class SeparationWarning(UserWarning):
    """Masks were set while the filters to remove still carried much of their magnitude."""


NORM_NAMES = ("gamma", "beta")
SLICE_KINDS = ("filter", "bias", "input", "norm")


# ---------------------------------------------------------------------------------------------
# Argument checks


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
    hint: str = "",
) -> float | int:
    """Validate a numeric argument; the error names the argument, the value and the range."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"{name} must be {kind}, got {value!r}.{hint}")
    if integer and float(value) != int(value):
        raise InvalidArgumentError(f"{name} must be {kind}, got {value!r}.{hint}")
    v = int(value) if integer else float(value)
    if (
        math.isnan(v)
        or (low is not None and (v < low or (low_open and v == low)))
        or (high is not None and v > high)
    ):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        rng = " and ".join(x for x in (lo, hi) if x)
        raise InvalidArgumentError(f"{name} must be {rng}, got {value!r}.{hint}")
    return v


def parse_sparsity(sparsity: Any, skip: Any = ()) -> RatioSpec:
    """A float in [0, 1) or ``{layer_name_regex: ratio}`` -> :class:`~tfprune.selection.RatioSpec`.

    Regexes are matched with ``re.fullmatch`` against producer layer names, as in
    :func:`tfprune.prune_filters`; unmatched layers are not regularized.
    """
    skip = (skip,) if isinstance(skip, str) else tuple(skip or ())
    if isinstance(sparsity, Mapping):
        if not sparsity:
            raise InvalidArgumentError(
                "sparsity mapping is empty; give {layer_name_regex: ratio, ...} or a float."
            )
        patterns = []
        for key, value in sparsity.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(
                    f"sparsity keys must be layer-name regular expressions, got {key!r}."
                )
            patterns.append((key, check_ratio(value, f"sparsity[{key!r}]")))
        return RatioSpec(default=0.0, patterns=tuple(patterns), skip=skip)
    return RatioSpec(default=check_ratio(sparsity, "sparsity"), skip=skip)


def sparsity_config(sparsity: Any) -> Any:
    """JSON-able form of a sparsity argument."""
    if isinstance(sparsity, Mapping):
        return {str(k): float(v) for k, v in sparsity.items()}
    return float(sparsity)


# ---------------------------------------------------------------------------------------------
# Weights of a group


@dataclasses.dataclass(eq=False)
class WeightSlice:
    """One trainable weight of a group's layer and the axis that carries the group's channels.

    ``kind`` is ``"filter"`` (a producer's kernel: the filters), ``"bias"`` (a producer's
    bias), ``"input"`` (a consumer's kernel: the input slices) or ``"norm"`` (gamma/beta of a
    normalization layer). ``units[c]`` is the group unit of channel ``c`` along ``axis``.
    """

    variable: Any
    axis: int
    units: np.ndarray
    kind: str
    path: str
    name: str

    @property
    def channels(self) -> int:
        """Number of channels along :attr:`axis`."""
        return int(self.units.size)

    def other_axes(self) -> list[int]:
        """All axes but the channel axis."""
        return [a for a in range(len(self.variable.shape)) if a != self.axis]

    def channel_sq(self, cache: dict | None = None) -> Any:
        """Sum of squares per channel, shape ``(channels,)`` (float32).

        ``cache`` (a dict kept for one loss evaluation) shares ``w**2`` between the slices of
        one variable (a kernel is a producer in one group and a consumer in another).
        """
        if cache is None:
            sq = tf.square(tf.cast(self.variable, tf.float32))
        else:
            key = id(self.variable)
            if key not in cache:
                cache[key] = tf.square(tf.cast(self.variable, tf.float32))
            sq = cache[key]
        return tf.reduce_sum(sq, axis=self.other_axes())

    @property
    def identity_units(self) -> bool:
        """Whether channel ``c`` is unit ``c`` for every channel (no gather needed)."""
        return bool(np.array_equal(self.units, np.arange(self.units.size)))

    def rows(self) -> Any:
        """The weight as a ``(channels, -1)`` float32 matrix (row c = channel c's weights)."""
        w = tf.cast(self.variable, tf.float32)
        rank = len(self.variable.shape)
        perm = [self.axis] + self.other_axes()
        if perm != list(range(rank)):
            w = tf.transpose(w, perm)
        return tf.reshape(w, (self.channels, -1))


def _slice_kind(role: str, name: str) -> str | None:
    if role == "out":
        if name in KERNEL_NAMES:
            return "filter"
        return "bias" if name == "bias" else None
    if role == "in":
        return "input" if name in KERNEL_NAMES else None
    if role == "ch":
        return "norm" if name in NORM_NAMES else None
    return None


def group_slices(group: ChannelGroup, kinds: tuple[str, ...] = SLICE_KINDS) -> list[WeightSlice]:
    """The trainable weights of ``group`` of the given kinds (see :class:`WeightSlice`).

    Mask variables and other non-trainable weights (BatchNorm moving statistics) are never
    included.
    """
    out = []
    for m in group.layers:
        axes = rule_for(m.layer).weight_axes(m.layer)
        for v in m.layer.weights:
            if not v.trainable:
                continue
            name = v.name.split("/")[-1].split(":")[0]
            axis = axes.get(name, {}).get(m.role)
            kind = _slice_kind(m.role, name)
            if axis is None or kind is None or kind not in kinds:
                continue
            axis = axis % len(v.shape)
            if int(v.shape[axis]) != m.unit_of_channel.size:
                continue
            out.append(WeightSlice(v, axis, np.asarray(m.unit_of_channel), kind, m.path, name))
    return out


def weighted_l2(slices: list[WeightSlice], coef: Any, units_t: list[Any]) -> Any:
    """``0.5 * sum_s sum_c coef[unit(c)] * ||w_s[c]||^2`` (its gradient is ``coef * w``).

    ``coef`` is a per-unit tensor; ``units_t[i]`` the int32 unit indices of ``slices[i]``.
    """
    total = tf.constant(0.0, tf.float32)
    coef = tf.convert_to_tensor(coef)
    for s, u in zip(slices, units_t, strict=True):
        c = coef if s.identity_units and s.channels == coef.shape[0] else tf.gather(coef, u)
        total += tf.reduce_sum(c * s.channel_sq())
    return 0.5 * total


def unit_sq_norms(
    slices: list[WeightSlice], units_t: list[Any], n_units: int, cache: dict | None = None
) -> Any:
    """Per-unit sum of squares over all ``slices``, shape ``(n_units,)``."""
    terms = []
    for s, u in zip(slices, units_t, strict=True):
        if s.identity_units and s.channels == n_units:
            terms.append(s.channel_sq(cache))
        else:
            terms.append(tf.math.unsorted_segment_sum(s.channel_sq(cache), u, n_units))
    return tf.add_n(terms) if terms else tf.zeros((n_units,), tf.float32)


def gram_penalty(s: WeightSlice, keep: Any) -> Any:
    """TPP's decorrelation term of one layer: ``mean((W W^T * (1 - k k^T))**2)``.

    ``W`` is the layer's filters as rows and ``k`` its 0/1 keep vector (one per channel): every
    Gram entry whose row *or* column is a pruned filter is driven to 0; kept-kept entries are
    free. The mean is over all ``N x N`` entries (the authors' code divides by ``N^2``).
    """
    w = s.rows()
    gram = tf.matmul(w, w, transpose_b=True)
    k = tf.cast(keep, tf.float32)
    sel = 1.0 - k[:, None] * k[None, :]
    return tf.reduce_mean(tf.square(gram * sel))


def unit_magnitudes(group: ChannelGroup, slices: list[WeightSlice]) -> np.ndarray:
    """Mean |w| of each unit's filters, averaged over the group's producers (L1 criterion)."""
    scores = []
    for s in slices:
        if s.kind != "filter":
            continue
        w = tf.abs(tf.cast(s.variable, tf.float32))
        per_channel = tf.reduce_mean(w, axis=s.other_axes()).numpy()
        sums = np.bincount(s.units, weights=per_channel, minlength=group.n_units)
        counts = np.bincount(s.units, minlength=group.n_units)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    if not scores:
        return np.zeros(group.n_units)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.nanmean(np.vstack(scores), axis=0))


def magnitude_ratio(mags: np.ndarray, pruned: np.ndarray, candidates: np.ndarray) -> float:
    """``mean|w_kept| / mean|w_pruned|`` over the candidate units (inf when pruned are 0)."""
    kept = candidates & ~pruned
    gone = candidates & pruned
    if not gone.any() or not kept.any():
        return float("inf")
    num = float(mags[kept].mean())
    den = float(mags[gone].mean())
    return num / den if den > 0 else float("inf")


# ---------------------------------------------------------------------------------------------
# Training state carried by checkpoints


class RegularizationState(AutoTrackable):
    """``tf.Variable`` s of a regularization method, tracked by the model for checkpoints.

    Attached to the model as attribute ``_tfprune_<key>``; not part of ``model.weights``.
    Variables are created under the model's distribution strategy (aggregation
    ``ONLY_FIRST_REPLICA``) and are updated by the callbacks between training steps.
    """

    def __init__(self, specs: Mapping[str, tuple[tuple[int, ...], Any, Any]]) -> None:
        variables = {}
        for name, (shape, dtype, init) in specs.items():
            variables[name] = tf.Variable(
                tf.cast(tf.fill(shape, init), dtype) if shape else tf.cast(init, dtype),
                trainable=False,
                name=name,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self.variables = variables

    def __getitem__(self, name: str) -> Any:
        return self.variables[name]

    def matches(self, specs: Mapping[str, tuple[tuple[int, ...], Any, Any]]) -> bool:
        """Whether this state has exactly these variables (names and shapes)."""
        if set(self.variables) != set(specs):
            return False
        return all(
            tuple(self.variables[k].shape) == tuple(shape) for k, (shape, _, _) in specs.items()
        )

    def numpy(self) -> dict[str, np.ndarray]:
        """Current values."""
        return {k: np.asarray(v.numpy()) for k, v in self.variables.items()}

    @classmethod
    def attach(
        cls, model: Any, key: str, specs: Mapping[str, tuple[tuple[int, ...], Any, Any]]
    ) -> RegularizationState:
        """The model's state ``key`` (created under its strategy scope if missing)."""
        attr = f"_tfprune_{key}"
        existing = getattr(model, attr, None)
        if isinstance(existing, cls) and existing.matches(specs):
            return existing
        with model.distribute_strategy.scope():
            state = cls(specs)
        setattr(model, attr, state)  # tracked: restored now if a checkpoint awaits it
        return state


# ---------------------------------------------------------------------------------------------
# Loss wiring


def attach_loss(model: Any, fn: Callable[[], Any]) -> None:
    """Add the zero-argument loss ``fn`` to ``model.losses`` and force fit/evaluate to retrace."""
    model.add_loss(fn)
    model.train_function = None
    model.test_function = None


def detach_loss(model: Any, fn: Callable[[], Any]) -> bool:
    """Remove a loss added by :func:`attach_loss` (True if it was there)."""
    removed = remove_callable_losses(model, fn)
    if removed:
        model.train_function = None
        model.test_function = None
    return removed


def leaf_layers(model: Any) -> list[Any]:
    """Every layer of ``model`` in model order, nested models entered (not listed)."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(leaf_layers(layer))
        else:
            out.append(layer)
    return out


def safe_name(name: str) -> str:
    """A log-key-friendly version of a group name."""
    return name.replace("+", "_").replace("/", ".")


# ---------------------------------------------------------------------------------------------
# Base callback


class GroupRegularizer(keras.callbacks.Callback):
    """Base of the regularization callbacks: groups, selection, loss wiring, masks.

    Subclasses define :meth:`_state_specs`, :meth:`_loss`, the schedule, and call
    :meth:`_apply_masks` when done. Use them on a model from :func:`tfprune.prune_filters`
    (e.g. ``sparsity=0.0``: masks on every prunable group, all ones).
    """

    state_key = "regularizer"

    def __init__(self, sparsity: Any, skip: Any = (), log_prefix: str = "reg") -> None:
        super().__init__()
        self.spec = parse_sparsity(sparsity, skip)
        self.sparsity = sparsity_config(sparsity)
        self.skip = tuple(self.spec.skip)
        if not isinstance(log_prefix, str) or not log_prefix:
            raise InvalidArgumentError(
                f"log_prefix must be a non-empty string, got {log_prefix!r}."
            )
        self.log_prefix = log_prefix
        self._wired_model: Any = None
        self._loss_fn: Callable[[], Any] | None = None
        self.pruner: Any = None
        self.groups: list[ChannelGroup] = []
        self.ratios: dict[tuple[int, int], float] = {}
        self.state: RegularizationState | None = None

    # -- set-up ------------------------------------------------------------------------
    def _slice_kinds(self) -> tuple[str, ...]:
        return ("filter",)

    def _state_specs(self) -> dict[str, tuple[tuple[int, ...], Any, Any]]:
        return {}

    def _loss(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_wired(self) -> None:
        """Hook after groups, slices and state exist."""

    def set_model(self, model: Any) -> None:
        """Find the groups to regularize, create/restore the state, add the penalty loss."""
        super().set_model(model)
        if model is self._wired_model:
            return
        if self._wired_model is not None and self._loss_fn is not None:
            detach_loss(self._wired_model, self._loss_fn)
        self.pruner = FilterPruner.for_model(model)
        analysis: Analysis = self.pruner.analysis
        prunable = [g for g in analysis.groups if g.prunable]
        if not prunable:
            raise UnsupportedModelError(
                f"Model {model.name!r} has no prunable channel group; run "
                "print(tfprune.explain(model)) to see which layers block pruning."
            )
        self.ratios = {k: r for k, r in resolve_ratios(analysis, self.spec).items() if r > 0}
        gids = sorted({gid for gid, _ in self.ratios})
        if not gids:
            raise InvalidArgumentError(
                f"sparsity={self.sparsity!r} selects no filters of model {model.name!r}: give a "
                "ratio in (0, 1) or patterns that match producer layers, e.g. "
                f"{[m.path for g in prunable for m in g.producers][:4]}."
            )
        self.groups = [g for g in analysis.groups if g.id in gids]
        self.slices = {g.id: group_slices(g, self._slice_kinds()) for g in self.groups}
        self.units_t = {
            gid: [tf.constant(s.units, tf.int32) for s in sl] for gid, sl in self.slices.items()
        }
        self.candidates = {g.id: self._candidates(g) for g in self.groups}
        self.state = RegularizationState.attach(model, self.state_key, self._state_specs())
        self._on_wired()
        self._wired_model = model
        if self._active():
            self._loss_fn = self._loss
            attach_loss(model, self._loss_fn)

    def _active(self) -> bool:
        """Whether the penalty should be part of the loss (False once the method is done)."""
        return True

    def _candidates(self, g: ChannelGroup) -> np.ndarray:
        """Units of ``g`` in a segment with a non-zero ratio and not blocked."""
        out = np.zeros(g.n_units, bool)
        for (gid, s), _ in self.ratios.items():
            if gid == g.id:
                out[g.segments[s]] = True
        return out & ~g.blocked

    def select(self, criterion: Callable[[ChannelGroup], np.ndarray]) -> dict[int, np.ndarray]:
        """Units to prune per group: lowest ``criterion`` scores, ``ceil(ratio*n)`` per layer."""
        scores = {g.id: np.asarray(criterion(g), float) for g in self.groups}
        return select_units(
            self.groups,
            scores,
            self.ratios,
            pruned=self.pruner.current_pruned(),
        )

    def _apply_masks(self, pruned: Mapping[int, np.ndarray]) -> None:
        """Mask exactly ``pruned`` (plus what was masked before) so strip_filters removes it."""
        current = self.pruner.current_pruned()
        merged = dict(current)
        for gid, p in pruned.items():
            merged[gid] = p | current.get(gid, np.zeros_like(p))
        self.pruner.apply(merged)

    def _remove_loss(self) -> None:
        if self._wired_model is not None and self._loss_fn is not None:
            detach_loss(self._wired_model, self._loss_fn)
        self._loss_fn = None
        self._wired_model = None

    def key(self, g: ChannelGroup, what: str) -> str:
        """Log key of a per-group value."""
        return f"{self.log_prefix}/{safe_name(g.name)}/{what}"

    def _base_config(self) -> dict:
        return {"sparsity": self.sparsity, "skip": list(self.skip), "log_prefix": self.log_prefix}

    @classmethod
    def from_config(cls, config: dict) -> GroupRegularizer:
        """Inverse of ``get_config``."""
        return cls(**config)


class GrowingPenaltyRegularizer(GroupRegularizer):
    """Base of the callbacks whose penalty grows on a schedule and then stabilises (GReg, TPP).

    Subclasses keep ``begin`` (first optimizer step) and ``g<id>_pruned`` (0/1 per unit) in
    their state.
    """

    def _set_growth_schedule(
        self, delta: float, ceiling: float, update_every: int, stabilize_steps: int
    ) -> None:
        """Validate and keep the growing-penalty schedule that GReg and TPP share.

        As in GReg and TPP: ``+delta`` every ``update_every`` steps up to ``ceiling``, then
        ``stabilize_steps`` steps with the penalty held.
        """
        self.delta = check_number(
            "delta", delta, low=0.0, low_open=True, hint=" The authors' default is 1e-4."
        )
        self.ceiling = check_number(
            "ceiling",
            ceiling,
            low=self.delta,
            hint=(
                f" It must be at least the increment delta={self.delta}"
                " (the authors' default: 1.0)."
            ),
        )
        self.update_every = check_number(
            "update_every",
            update_every,
            low=1,
            integer=True,
            hint=" (steps; the authors' default: 10)",
        )
        self.stabilize_steps = check_number(
            "stabilize_steps",
            stabilize_steps,
            low=0,
            integer=True,
            hint=" (the authors' default: 10000)",
        )

    def _separation_specs(self) -> dict[str, tuple[tuple[int, ...], Any, Any]]:
        """State of the separation check: ``g<id>_mask_ratio`` (-1 until measured)."""
        return {f"g{g.id}_mask_ratio": ((), tf.float32, -1.0) for g in self.groups}

    def current_magnitude_ratio(self, g: ChannelGroup) -> float:
        """``mean|w_kept| / mean|w_pruned|`` of ``g``'s filters now (capped; inf -> cap)."""
        pruned = self.state[f"g{g.id}_pruned"].numpy() > 0.5
        ratio = magnitude_ratio(
            unit_magnitudes(g, self.slices[g.id]), pruned, self.candidates[g.id] & ~g.blocked
        )
        return min(ratio, MAGNITUDE_RATIO_CAP)

    def _record_separation(self, g: ChannelGroup, ratio: float | None = None) -> None:
        """Store the kept/pruned magnitude ratio of ``g`` at the moment its filters go."""
        value = self.current_magnitude_ratio(g) if ratio is None else ratio
        self.state[f"g{g.id}_mask_ratio"].assign(min(value, MAGNITUDE_RATIO_CAP))

    def mask_ratios(self) -> dict[str, float]:
        """Kept/pruned mean |w| ratio of each group when its filters were removed (nan: not yet)."""
        out = {}
        for g in self.groups:
            v = float(self.state[f"g{g.id}_mask_ratio"].numpy())
            out[g.name] = v if v >= 0 else float("nan")
        return out

    def low_separation(self) -> dict[str, float]:
        """Groups whose recorded ratio (:meth:`mask_ratios`) is below ``mag_ratio_limit``."""
        return {k: v for k, v in self.mask_ratios().items() if v < self.mag_ratio_limit}

    def _warn_separation(self, advice: str) -> None:
        """Warn (and log) if a group's recorded ratio is below ``mag_ratio_limit``."""
        limit = self.mag_ratio_limit
        ratios = {k: v for k, v in self.mask_ratios().items() if not math.isnan(v)}
        low = self.low_separation()
        if not low:
            return
        worst = min(low, key=low.get)
        listing = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(low.items(), key=lambda kv: kv[1]))
        message = (
            f"{self.log_prefix}: masks set while the filters to remove still carry magnitude: "
            f"the kept/pruned mean |w| ratio is {low[worst]:.3g} in {worst} ({len(low)} of "
            f"{len(ratios)} groups below {limit:g}: {listing}). Removing them changes the "
            f"model's outputs; {advice}."
        )
        logger.warning(message)
        warnings.warn(message, SeparationWarning, stacklevel=3)

    def separation_logs(self) -> dict[str, float]:
        """Log values of the separation check (present once measured)."""
        out = {}
        for g in self.groups:
            v = float(self.state[f"g{g.id}_mask_ratio"].numpy())
            if v >= 0:
                out[self.key(g, "mask_ratio")] = v
        if out:
            out[f"{self.log_prefix}/low_separation"] = float(len(self.low_separation()))
        return out

    def pruned_units(self) -> dict[str, np.ndarray]:
        """Units selected for removal, by group name (empty before GReg-2 picks)."""
        return {
            g.name: np.flatnonzero(self.state[f"g{g.id}_pruned"].numpy() > 0.5) for g in self.groups
        }

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._mirror = None
        self._epoch_start: int | None = None
        if int(self.state["begin"].numpy()) < 0:
            self.state["begin"].assign(int(self.model.optimizer.iterations.numpy()))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = int(self.model.optimizer.iterations.numpy())

    def _iterations(self, batch: int) -> int:
        """Optimizer iterations after training batch ``batch`` of this epoch.

        Counted from the epoch's start, so that no step waits for the device to report its
        step counter (one read per epoch instead of one per step).
        """
        if getattr(self, "_epoch_start", None) is None:  # called outside fit's epoch loop
            return int(self.model.optimizer.iterations.numpy())
        return self._epoch_start + int(batch) + 1
