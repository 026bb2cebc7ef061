"""Trainability-preserving pruning (TPP) regularizer (Wang & Fu 2023, "OPP scheme v5").

The filters to remove are chosen once, before training, by L1 (``ceil(ratio * n)`` smallest
mean |w| per layer). Only they are regularized, with a coefficient ``λ`` that grows by
``delta`` every ``update_every`` steps up to ``ceiling``:

* Gram decorrelation, per producer layer with filters as rows ``W`` (N x C·k·k) and keep
  vector ``m``: ``gram_weight * λ * mean((W Wᵀ ⊙ (1 - m mᵀ))²)`` - every Gram entry whose row
  or column is a pruned filter goes to 0 (pruned filters decorrelated from the kept ones and
  shrunk); kept-kept entries are free.
* L2 ``λ`` on the pruned filters' weights and biases and on the gamma/beta of their
  BatchNormalization (``regularize_bn=False`` drops the latter, the authors' ``--no_bn_reg``),
  written as the loss ``0.5 λ Σ w²`` (gradient ``λ w``).

Then ``λ`` is held ``stabilize_steps`` steps. As in the authors' code, the conv/dense layers
of the model are numbered in model order (all of them, pruned or not); the pruned filters of
the layer numbered ``i`` are hard-zeroed, together with their BatchNormalization gamma/beta
(not their biases, and whether or not the BN term is regularized), after every training step
from ``(i + 1) * zero_out_interval`` steps into stabilization on. At the end the pruned units
are masked and training stops; :func:`tfprune.strip_filters` removes them.

Just before a group's filters are first zeroed, its kept/pruned magnitude ratio is recorded
(``{log_prefix}/{group}/mask_ratio``); when the masks are set, a
:class:`~tfprune.regularization.SeparationWarning` names the groups whose ratio was below
``mag_ratio_limit``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np

from tfprune.compat import keras, tf
from tfprune.graph.rules import weight_short_name
from tfprune.regularization.penalty import GrowingPenaltyRegularizer, check_number, leaf_layers
from tfprune.regularization.terms import (
    KERNEL_NAMES,
    gram_penalty,
    group_slices,
    unit_magnitudes,
    weighted_l2,
)

__all__ = ["TrainabilityPreserving"]

logger = logging.getLogger("tfprune")

PHASES = ("select", "grow", "stabilize", "done")
_SELECT, _GROW, _STABILIZE, _DONE = range(4)


@keras.utils.register_keras_serializable(package="tfprune")
class TrainabilityPreserving(GrowingPenaltyRegularizer):
    """TPP: Gram + L2 growing regularization of the L1-chosen filters, then masks.

    Same usage and state handling as :class:`tfprune.GrowingRegularization`: a model from
    ``tfprune.prune_filters(base, sparsity=0.0)``, ``fit(..., callbacks=[tpp])``, which stops
    once stabilized; the state (``λ``, selection, phase, step) is attached to the model
    (``model._tfprune_tpp``) and travels with its checkpoints. Logged at every epoch end:
    ``{log_prefix}/lambda``, ``{log_prefix}/phase``, ``{log_prefix}/step`` and per group
    ``{log_prefix}/{group}/gram`` (mean squared Gram entry of the pruned rows/columns) and
    ``{log_prefix}/{group}/mag_ratio`` (kept/pruned mean |w|); once a group's filters were
    zeroed also ``{log_prefix}/{group}/mask_ratio`` (the ratio just before) and
    ``{log_prefix}/low_separation`` (groups below ``mag_ratio_limit``).

    Args:
      sparsity: fraction of each prunable layer's filters to remove, in [0, 1), or
        ``{layer_name_regex: ratio}``.
      delta: increment of λ per update (> 0). Default 1e-4.
      ceiling: final λ (>= delta). Default 1.0.
      update_every: optimizer steps between updates (>= 1). Default 10 (ImageNet: 5).
      stabilize_steps: steps λ is held before the masks are set (>= 0). Default 10,000.
      zero_out_interval: during stabilization, the pruned filters of the ``i``-th conv/dense
        layer (model order, counting every such layer) are zeroed after every step from
        ``(i + 1) * zero_out_interval`` steps on (>= 1). Default 100. ``stabilize_steps``
        should be at least this times the number of conv/dense layers (the authors' code
        refuses otherwise; here the remaining groups are zeroed when the masks are set).
      gram_weight: weight of the Gram term relative to λ (the authors' ``lw_opp``). Default 1000.
      regularize_bn: include the L2 term on the BatchNorm gamma/beta of pruned units.
      mag_ratio_limit: warn when a group's kept/pruned magnitude ratio is below this just
        before its filters are zeroed (> 1). Default 1000.
      skip: producer layer names never regularized.
      stop_training: set ``model.stop_training`` once the masks are set.
      log_prefix: prefix of the log keys.
    """

    state_key = "tpp"

    def __init__(
        self,
        sparsity: Any = 0.5,
        *,
        delta: float = 1e-4,
        ceiling: float = 1.0,
        update_every: int = 10,
        stabilize_steps: int = 10_000,
        zero_out_interval: int = 100,
        gram_weight: float = 1000.0,
        regularize_bn: bool = True,
        mag_ratio_limit: float = 1000.0,
        skip: Any = (),
        stop_training: bool = True,
        log_prefix: str = "tpp",
    ) -> None:
        super().__init__(sparsity, skip, log_prefix)
        self._set_growth_schedule(delta, ceiling, update_every, stabilize_steps)
        self.zero_out_interval = check_number(
            "zero_out_interval",
            zero_out_interval,
            low=1,
            integer=True,
            hint=" (the authors' default: 100)",
        )
        self.gram_weight = check_number(
            "gram_weight", gram_weight, low=0.0, hint=" (the authors' default: 1000)"
        )
        self.regularize_bn = bool(regularize_bn)
        self.mag_ratio_limit = check_number(
            "mag_ratio_limit", mag_ratio_limit, low=1.0, low_open=True, hint=" (default 1000)"
        )
        self.stop_training_when_done = bool(stop_training)
        self._mirror: dict[str, int] | None = None

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **self._base_config(),
            "delta": self.delta,
            "ceiling": self.ceiling,
            "update_every": self.update_every,
            "stabilize_steps": self.stabilize_steps,
            "zero_out_interval": self.zero_out_interval,
            "gram_weight": self.gram_weight,
            "regularize_bn": self.regularize_bn,
            "mag_ratio_limit": self.mag_ratio_limit,
            "stop_training": self.stop_training_when_done,
        }

    # -- state -------------------------------------------------------------------------
    def _slice_kinds(self) -> tuple[str, ...]:
        return ("filter", "bias", "norm") if self.regularize_bn else ("filter", "bias")

    def _state_specs(self) -> dict:
        specs: dict[str, tuple] = {
            "begin": ((), tf.int64, -1),
            "phase": ((), tf.int64, _SELECT),
            "updates": ((), tf.int64, 0),
            "stabilize_begin": ((), tf.int64, -1),
            "zeroed": ((), tf.int64, 0),
            "lambda": ((), tf.float32, 0.0),
        }
        for g in self.groups:
            specs[f"g{g.id}_pruned"] = ((g.n_units,), tf.float32, 0.0)
        return {**specs, **self._separation_specs()}

    def _active(self) -> bool:
        return int(self.state["phase"].numpy()) != _DONE

    def _on_wired(self) -> None:
        self._turn_order()
        if int(self.state["phase"].numpy()) == _SELECT:
            pruned = self.select(lambda g: unit_magnitudes(g, self.slices[g.id]))
            for g in self.groups:
                p = pruned[g.id] & self.candidates[g.id]
                self.state[f"g{g.id}_pruned"].assign(p.astype(np.float32))
            self.state["phase"].assign(_GROW)

    def _loss(self) -> Any:
        lam = tf.cast(self.state["lambda"], tf.float32)
        total = tf.constant(0.0, tf.float32)
        for g in self.groups:
            pruned = tf.cast(self.state[f"g{g.id}_pruned"], tf.float32)
            keep = 1.0 - pruned
            for s, u in zip(self.slices[g.id], self.units_t[g.id], strict=True):
                if s.kind == "filter" and self.gram_weight > 0:
                    total += self.gram_weight * lam * gram_penalty(s, tf.gather(keep, u))
            total += weighted_l2(self.slices[g.id], lam * pruned, self.units_t[g.id])
        return total

    # -- schedule ----------------------------------------------------------------------
    @property
    def phase(self) -> str:
        """Current phase name: ``select``, ``grow``, ``stabilize`` or ``done``."""
        return PHASES[int(self.state["phase"].numpy())] if self.state is not None else "select"

    @property
    def coefficient(self) -> float:
        """Current λ."""
        return float(self.state["lambda"].numpy())

    def _sync(self) -> dict[str, int]:
        if self._mirror is None:
            keys = ("begin", "phase", "updates", "stabilize_begin", "zeroed")
            self._mirror = {k: int(self.state[k].numpy()) for k in keys}
        return self._mirror

    def _set(self, key: str, value: int) -> None:
        self._mirror[key] = int(value)
        self.state[key].assign(int(value))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        mirror = self._sync()
        if mirror["phase"] == _DONE:
            return
        iterations = self._iterations(batch)
        step = iterations - mirror["begin"]
        if step < 0:
            self._set("begin", iterations)
            step = 0
        if mirror["phase"] == _GROW:
            due = step // self.update_every
            if mirror["updates"] < due:
                self._set("updates", due)
                lam = min(due * self.delta, self.ceiling)
                self.state["lambda"].assign(lam)
                if lam >= self.ceiling * (1 - 1e-6):
                    self._set("phase", _STABILIZE)
                    self._set("stabilize_begin", step)
                    logger.info("%s: λ final at step %d; stabilizing", self.log_prefix, step)
        if mirror["phase"] == _STABILIZE:
            elapsed = step - mirror["stabilize_begin"]
            final = elapsed >= self.stabilize_steps
            for g in self.groups:
                if final or elapsed >= self.turn[g.id] * self.zero_out_interval:
                    self._start_zeroing(g)
            self._zero_active()
            zeroed = sum(int(self._zeroing(g)) for g in self.groups)
            if zeroed != mirror["zeroed"]:
                self._set("zeroed", zeroed)
            if final:
                self._finish(step)

    def _turn_order(self) -> None:
        """Number every conv/dense layer in model order; a group's turn follows its first one."""
        order: dict[int, int] = {}
        for layer in leaf_layers(self.model):
            names = {weight_short_name(v) for v in layer.weights}
            if names & set(KERNEL_NAMES[:3]):
                order.setdefault(id(layer), len(order))
        self.layer_count = len(order)
        self.turn = {}
        for g in self.groups:
            idx = [order[id(m.layer)] for m in g.producers if id(m.layer) in order]
            self.turn[g.id] = (min(idx) if idx else len(order)) + 1
        self._zero_slices = {g.id: group_slices(g, ("filter", "norm")) for g in self.groups}
        self._zero_keep: dict[int, list] = {}
        self._zero_fn: tuple[tuple[int, ...], Any] | None = None
        if self.stabilize_steps < self.zero_out_interval * self.layer_count:
            warnings.warn(
                f"{self.log_prefix}: stabilize_steps={self.stabilize_steps} is shorter than "
                f"zero_out_interval={self.zero_out_interval} x {self.layer_count} conv/dense "
                "layers; the authors' code refuses this. Groups whose turn has not come are "
                "zeroed when the masks are set.",
                UserWarning,
                stacklevel=3,
            )

    def _zeroing(self, g: Any) -> bool:
        return g.id in self._zero_keep

    def _start_zeroing(self, g: Any) -> None:
        """From now on, zero the pruned filters of ``g`` and their BN gamma/beta (not biases)."""
        if g.id not in self._zero_keep:
            if float(self.state[f"g{g.id}_mask_ratio"].numpy()) < 0:
                self._record_separation(g)  # the first time: just before zeroing
            pruned = self.state[f"g{g.id}_pruned"].numpy() > 0.5
            keep = []
            for s in self._zero_slices[g.id]:
                rows = pruned[s.units]
                if rows.any():
                    shape = [1] * len(s.variable.shape)
                    shape[s.axis] = rows.size
                    dtype = tf.as_dtype(s.variable.dtype).as_numpy_dtype  # Keras 3: a name
                    mult = (~rows).astype(dtype).reshape(shape)
                    keep.append((s.variable, tf.constant(mult)))
            self._zero_keep[g.id] = keep

    def _zero_active(self) -> None:
        """Zero every group whose turn has come, in one compiled call (retraced per new group)."""
        active = tuple(sorted(self._zero_keep))
        if not active:
            return
        if self._zero_fn is None or self._zero_fn[0] != active:
            pairs = [pair for gid in active for pair in self._zero_keep[gid]]

            @tf.function
            def zero() -> None:
                for variable, mult in pairs:
                    variable.assign(variable * mult)

            self._zero_fn = (active, zero)
        self._zero_fn[1]()

    def _finish(self, step: int) -> None:
        pruned = {g.id: self.state[f"g{g.id}_pruned"].numpy() > 0.5 for g in self.groups}
        self._warn_separation(
            f"raise ceiling (the final λ, now {self.ceiling:g}) or zero_out_interval (now "
            f"{self.zero_out_interval}) so that the pruned filters are near zero before they "
            "are zeroed"
        )
        self._apply_masks(pruned)
        self._set("phase", _DONE)
        logger.info("%s: masks set at step %d", self.log_prefix, step)
        if self.stop_training_when_done:
            self.model.stop_training = True

    def gram_values(self) -> dict[str, float]:
        """Per group: mean squared Gram entry over the pruned rows/columns (0 = decorrelated)."""
        out = {}
        for g in self.groups:
            keep = 1.0 - self.state[f"g{g.id}_pruned"].numpy()
            vals = []
            for s in self.slices[g.id]:
                if s.kind == "filter":
                    w = s.rows().numpy()
                    k = keep[s.units]
                    sel = 1.0 - np.outer(k, k)
                    if sel.any():
                        vals.append(float(((w @ w.T) ** 2 * sel).sum() / sel.sum()))
            out[g.name] = float(np.mean(vals)) if vals else 0.0
        return out

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        grams = self.gram_values()
        for g in self.groups:
            logs[self.key(g, "gram")] = grams[g.name]
            logs[self.key(g, "mag_ratio")] = self.current_magnitude_ratio(g)
        logs.update(self.separation_logs())
        logs[f"{self.log_prefix}/lambda"] = self.coefficient
        logs[f"{self.log_prefix}/phase"] = float(self.state["phase"].numpy())
        begin = int(self.state["begin"].numpy())
        logs[f"{self.log_prefix}/step"] = float(
            max(int(self.model.optimizer.iterations.numpy()) - begin, 0) if begin >= 0 else 0
        )

    def steps_to_masks(self) -> int:
        """Optimizer steps from now until the masks are set (0 once they are)."""
        mirror = self._sync()
        if mirror["phase"] == _DONE:
            return 0
        step = int(self.model.optimizer.iterations.numpy()) - max(mirror["begin"], 0)
        if mirror["phase"] == _STABILIZE:
            return max(self.stabilize_steps - (step - mirror["stabilize_begin"]), 0)
        updates = math.ceil(self.ceiling * (1 - 1e-6) / self.delta)
        return max(updates * self.update_every - step, 0) + self.stabilize_steps

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.state is None:
            return
        if int(self.state["phase"].numpy()) == _DONE:
            self._remove_loss()
            return
        if self.phase == "stabilize":
            advice = f"lower stabilize_steps (now {self.stabilize_steps:,})"
        else:
            advice = (
                f"shorten the schedule: raise delta (now {self.delta:g}), lower update_every "
                f"(now {self.update_every}) or stabilize_steps (now {self.stabilize_steps:,})"
            )
        self._warn_masks_not_set(self.steps_to_masks(), advice)
