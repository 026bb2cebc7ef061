"""The base callback of the regularization-based pruning methods, and their argument checks.

Every method works on the *channel groups* of a model masked by :func:`tfprune.prune_filters`:
a unit of a group (a filter together with its bias, its BatchNormalization entry, the matching
input slice of every consumer and its residual partners) is regularized and removed as a
whole. :class:`GroupRegularizer` finds the groups, selects units, adds the penalty to the
model's losses and sets the masks; the penalty maths are in
:mod:`tfprune.regularization.terms` and the training state in
:mod:`tfprune.regularization.state`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import keras, keras_of, tf
from tfprune.errors import InvalidArgumentError, NothingPrunedWarning, UnsupportedModelError
from tfprune.graph.groups import Analysis, ChannelGroup
from tfprune.nested import all_layers
from tfprune.pruning import FilterPruner
from tfprune.regularization.state import (
    RegularizationState,
    attach_loss,
    detach_loss,
    keep_loss,
)
from tfprune.regularization.terms import (
    MAGNITUDE_RATIO_CAP,
    group_slices,
    magnitude_ratio,
    unit_magnitudes,
)
from tfprune.selection import RatioSpec, check_ratio, resolve_ratios, select_units

__all__ = [
    "GroupRegularizer",
    "GrowingPenaltyRegularizer",
    "SeparationWarning",
    "check_number",
    "parse_sparsity",
]

logger = logging.getLogger("tfprune")


class SeparationWarning(UserWarning):
    """Masks were set while the filters to remove still carried much of their magnitude."""


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


def leaf_layers(model: Any) -> list[Any]:
    """Every layer of ``model`` in model order, nested models entered (not listed)."""
    model_class = keras_of(model).Model
    return [layer for layer in all_layers(model) if not isinstance(layer, model_class)]


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
        """Find the groups to regularize, create/restore the state, add the penalty loss.

        Works on masked models of both flavours (tf_keras and Keras 3).
        """
        super().set_model(model)
        if model is self._wired_model:
            if self._loss_fn is not None:
                keep_loss(model, self._loss_fn)
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

    def _warn_masks_not_set(self, remaining: int, advice: str) -> None:
        """Warn (and log) that ``fit`` ended before the masks were set, so nothing is pruned."""
        begin = int(self.state["begin"].numpy())
        done = max(int(self.model.optimizer.iterations.numpy()) - begin, 0) if begin >= 0 else 0
        message = (
            f"{self.log_prefix}: fit ended after {done:,} steps in phase {self.phase!r} "
            "without setting the masks, so strip_filters would remove no filter. The schedule "
            f"needs up to {remaining:,} more steps: train longer (fit again continues), or "
            f"{advice}."
        )
        logger.warning(message)
        warnings.warn(message, NothingPrunedWarning, stacklevel=2)

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
