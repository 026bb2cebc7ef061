"""Growing regularization, GReg-1 and GReg-2 (Wang et al., ICLR 2021).

The penalty ``R`` (one value per unit of a channel group, broadcast over the unit's filter
weights) enters the loss as ``0.5 * sum(R * w**2)``, whose gradient is the authors' update
``grad(W) += R * W``. It is read from non-trainable variables that the callback raises between
steps, so the compiled training step is traced once.

GReg-1: the ``ceil(ratio * n)`` filters of smallest mean |w| are chosen before training; their
penalty grows by ``delta`` every ``update_every`` optimizer steps. A group stops growing when
its penalty reaches ``ceiling``, and every group stops once the smoothed ratio
``mean|w_kept| / mean|w_pruned|`` reaches ``mag_ratio_limit`` in *all* groups. When every
group has stopped, the penalty is held ``stabilize_steps`` steps, the pruned units are masked,
and training stops: the model is ready for :func:`tfprune.strip_filters`.

GReg-2: first a uniform penalty on every candidate filter grows by ``pick_delta`` until
``pick_ceiling``; the filters of smallest magnitude *then* are picked (the overlap with the
plain-L1 choice is logged), and GReg-1's schedule follows, with the kept filters' penalty set
to ``recover`` (the authors' code: -1e-4, which lets kept weights regrow slightly). Each group
stops on its own, when its smoothed ratio reaches ``mag_ratio_limit`` or its penalty reaches
``ceiling``.

The smoothed ratio follows the authors' code: it starts at the first measured ratio, then
``hist = 0.9 * hist + 0.1 * ratio`` at every update; during GReg-2's picking it is measured
against the filters that would be picked at that moment.

When the masks are set, the kept/pruned magnitude ratio of every group is recorded
(``{log_prefix}/{group}/mask_ratio``); if it is below ``mag_ratio_limit`` a
:class:`~tfprune.regularization.SeparationWarning` names the groups and the figure: the pruned
filters still carry magnitude, so removing them changes the outputs (raise ``ceiling`` or
``stabilize_steps``).

Which weights: as in the authors' code only conv/dense *kernels* are penalised - no bias and
no BatchNorm - and, for filter pruning, only the producers' filters (all producers of a
residual group: the group is regularized as a whole). ``include_inputs=True`` also penalises
the consumers' input slices of the pruned units (their kernels' rows), which the authors only
do for channel pruning; it makes removal change the outputs less when a pruned channel keeps
a constant BatchNorm shift.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.regularization.penalty import GrowingPenaltyRegularizer, check_number
from tfprune.regularization.terms import (
    MAGNITUDE_RATIO_CAP,
    magnitude_ratio,
    unit_magnitudes,
    weighted_l2,
)
from tfprune.selection import select_units

__all__ = ["GrowingRegularization", "VARIANTS", "PHASES"]

logger = logging.getLogger("tfprune")

VARIANTS = ("greg1", "greg2")
#: Names of the phases stored in the state (index = value of the ``phase`` variable).
PHASES = ("select", "pick", "grow", "stabilize", "done")
_SELECT, _PICK, _GROW, _STABILIZE, _DONE = range(5)


@keras.utils.register_keras_serializable(package="tfprune")
class GrowingRegularization(GrowingPenaltyRegularizer):
    """GReg-1 / GReg-2 growing L2 regularization of the filters to prune, then masks.

    Usage::

        masked = tfprune.prune_filters(base, sparsity=0.0)  # masks, all ones
        greg = tfprune.GrowingRegularization(sparsity=0.5, variant="greg1")
        masked.compile(keras.optimizers.SGD(1e-3, momentum=0.9), loss, metrics)
        masked.fit(train_ds, epochs=n, callbacks=[greg])  # stops once stabilized
        small = tfprune.strip_filters(masked)

    All step counts are optimizer iterations (training batches), counted from the first batch
    this regularization saw. Defaults are the authors' CIFAR values.

    State (penalties, selection, phase, step, smoothed magnitude ratios) lives in
    ``tf.Variable`` s attached to the model (``model._tfprune_greg``): a checkpoint of the model
    (``tf.train.Checkpoint(model=model)``, ``model.save_weights`` in TF format,
    ``keras.callbacks.BackupAndRestore``) carries it, and a new callback on the restored model
    resumes mid-regularization with the same penalties. A second ``fit`` continues too. On a
    Keras 3 model ``tf.train.Checkpoint(model=model)`` and Keras 3's weights files
    (``model.save_weights`` to ``.weights.h5``, ``.keras``, Keras 3's ``BackupAndRestore``)
    carry it; Keras 3 loads the file into the state only when the callback's ``set_model`` ran
    before ``load_weights`` (``fit`` runs it before ``BackupAndRestore`` loads its backup).

    Logged at every epoch end (list this callback *before* ``TensorBoard`` / ``CSVLogger``):
    ``{log_prefix}/{group}/penalty`` (the pruned units' penalty; during GReg-2's picking, the
    uniform one), ``{log_prefix}/{group}/mag_ratio`` (smoothed kept/pruned magnitude ratio;
    0 before the first update), ``{log_prefix}/{group}/mask_ratio`` and
    ``{log_prefix}/low_separation`` (once the masks are set: the ratio then, and how many
    groups were below ``mag_ratio_limit``; see :meth:`mask_ratios`),
    ``{log_prefix}/{group}/overlap`` (GReg-2: fraction of the picked units that L1 would also
    have picked), ``{log_prefix}/phase`` (index into :data:`PHASES`) and
    ``{log_prefix}/step``. GReg-2's picks are also in :attr:`picks` and the ``tfprune`` logger.

    The penalty is a model loss, so it is part of the reported ``loss`` (also in
    ``evaluate``) until regularization ends; it is removed when training ends after the masks
    were set.

    Args:
      sparsity: fraction of each prunable layer's filters to remove, in [0, 1), or
        ``{layer_name_regex: ratio}`` (unmatched layers are not regularized).
      variant: ``"greg1"`` or ``"greg2"``.
      delta: penalty increment of the pruned filters per update (Δ, > 0). Default 1e-4.
      ceiling: the penalty at which a group stops growing (τ, >= delta). Default 1.0.
        Raise it (or ``stabilize_steps``) when a :class:`SeparationWarning` reports that the
        pruned filters still carried magnitude when the masks were set.
      update_every: optimizer steps between updates (K_u, >= 1). Default 10.
      stabilize_steps: steps the final penalty is held before the masks are set (K_s, >= 0).
        Default 10,000.
      mag_ratio_limit: the kept/pruned magnitude ratio that counts as separated (> 1).
        GReg-1 stops growing when every group's smoothed ratio reaches it, GReg-2 stops each
        group when its own does; a group below it when the masks are set is warned about.
        Default 1000.
      pick_delta: GReg-2's uniform increment (δ_pick, > 0). Default 1e-5.
      pick_ceiling: GReg-2 picks when the uniform penalty reaches this (τ_pick, >= pick_delta).
        Default 1e-2.
      recover: GReg-2: penalty of the kept filters after picking, in [-1, ceiling] (authors'
        code: -1e-4). Default -1e-4.
      include_inputs: also penalise the consumers' input slices of the pruned units.
      skip: producer layer names never regularized.
      stop_training: set ``model.stop_training`` once the masks are set (default True).
      log_prefix: prefix of the log keys.
    """

    state_key = "greg"

    def __init__(
        self,
        sparsity: Any = 0.5,
        variant: str = "greg1",
        *,
        delta: float = 1e-4,
        ceiling: float = 1.0,
        update_every: int = 10,
        stabilize_steps: int = 10_000,
        mag_ratio_limit: float = 1000.0,
        pick_delta: float = 1e-5,
        pick_ceiling: float = 1e-2,
        recover: float = -1e-4,
        include_inputs: bool = False,
        skip: Any = (),
        stop_training: bool = True,
        log_prefix: str = "greg",
    ) -> None:
        super().__init__(sparsity, skip, log_prefix)
        if variant not in VARIANTS:
            raise InvalidArgumentError(
                f"variant must be one of {VARIANTS}, got {variant!r}: 'greg1' selects by L1 "
                "first, 'greg2' after a uniform growing penalty."
            )
        self.variant = variant
        self._set_growth_schedule(delta, ceiling, update_every, stabilize_steps)
        self.mag_ratio_limit = check_number(
            "mag_ratio_limit",
            mag_ratio_limit,
            low=1.0,
            low_open=True,
            hint=" (the authors' default: 1000)",
        )
        self.pick_delta = check_number(
            "pick_delta", pick_delta, low=0.0, low_open=True, hint=" (the authors' default: 1e-5)"
        )
        self.pick_ceiling = check_number(
            "pick_ceiling",
            pick_ceiling,
            low=self.pick_delta,
            hint=f" It must be at least pick_delta={self.pick_delta} (the authors' default: 1e-2).",
        )
        self.recover = check_number(
            "recover", recover, low=-1.0, high=self.ceiling, hint=" (authors' code: -1e-4)"
        )
        if not isinstance(include_inputs, bool):
            raise InvalidArgumentError(
                f"include_inputs must be True or False, got {include_inputs!r}."
            )
        self.include_inputs = include_inputs
        self.stop_training_when_done = bool(stop_training)
        self.picks: dict[str, dict[str, Any]] = {}
        self._mirror: dict[str, int] | None = None

    # -- configuration -----------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **self._base_config(),
            "variant": self.variant,
            "delta": self.delta,
            "ceiling": self.ceiling,
            "update_every": self.update_every,
            "stabilize_steps": self.stabilize_steps,
            "mag_ratio_limit": self.mag_ratio_limit,
            "pick_delta": self.pick_delta,
            "pick_ceiling": self.pick_ceiling,
            "recover": self.recover,
            "include_inputs": self.include_inputs,
            "stop_training": self.stop_training_when_done,
        }

    # -- state -------------------------------------------------------------------------
    def _slice_kinds(self) -> tuple[str, ...]:
        return ("filter", "input") if self.include_inputs else ("filter",)

    def _state_specs(self) -> dict:
        specs: dict[str, tuple] = {
            "begin": ((), tf.int64, -1),
            "phase": ((), tf.int64, _SELECT),
            "updates": ((), tf.int64, 0),
            "stabilize_begin": ((), tf.int64, -1),
        }
        for g in self.groups:
            n = (g.n_units,)
            specs[f"g{g.id}_coef"] = (n, tf.float32, 0.0)
            specs[f"g{g.id}_pruned"] = (n, tf.float32, 0.0)
            specs[f"g{g.id}_l1"] = (n, tf.float32, 0.0)
            specs[f"g{g.id}_hist"] = ((), tf.float32, -1.0)  # -1: not measured yet
            specs[f"g{g.id}_stopped"] = ((), tf.float32, 0.0)
            specs[f"g{g.id}_picked"] = ((), tf.float32, 0.0)
        return {**specs, **self._separation_specs()}

    def _active(self) -> bool:
        return int(self.state["phase"].numpy()) != _DONE

    def _on_wired(self) -> None:
        if int(self.state["phase"].numpy()) == _SELECT:
            self._select_l1()

    def _select_l1(self) -> None:
        pruned = self.select(lambda g: unit_magnitudes(g, self.slices[g.id]))
        for g in self.groups:
            p = pruned[g.id] & self.candidates[g.id]
            self.state[f"g{g.id}_l1"].assign(p.astype(np.float32))
            if self.variant == "greg1":
                self.state[f"g{g.id}_pruned"].assign(p.astype(np.float32))
                self.state[f"g{g.id}_picked"].assign(1.0)
        self.state["phase"].assign(_GROW if self.variant == "greg1" else _PICK)

    def _loss(self) -> Any:
        total = tf.constant(0.0, tf.float32)
        for g in self.groups:
            total += weighted_l2(self.slices[g.id], self.state[f"g{g.id}_coef"], self.units_t[g.id])
        return total

    # -- schedule ----------------------------------------------------------------------
    @property
    def phase(self) -> str:
        """Current phase name (see :data:`PHASES`)."""
        return PHASES[int(self.state["phase"].numpy())] if self.state is not None else "select"

    def penalties(self) -> dict[str, np.ndarray]:
        """Current per-unit penalty of every regularized group, by group name."""
        return {g.name: self.state[f"g{g.id}_coef"].numpy().copy() for g in self.groups}

    def magnitude_ratios(self) -> dict[str, float]:
        """Smoothed kept/pruned magnitude ratio of every regularized group (0 before measured)."""
        return {g.name: self._hist(g) for g in self.groups}

    def _hist(self, g: Any) -> float:
        return max(float(self.state[f"g{g.id}_hist"].numpy()), 0.0)

    def _sync(self) -> dict[str, int]:
        if self._mirror is None:
            self._mirror = {
                k: int(self.state[k].numpy())
                for k in ("begin", "phase", "updates", "stabilize_begin")
            }
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
        if step < 0:  # the optimizer was replaced by a fresh one: continue from here
            self._set("begin", iterations)
            step = 0
        while mirror["phase"] in (_PICK, _GROW) and mirror["updates"] < step // self.update_every:
            self._set("updates", mirror["updates"] + 1)
            self._update()
            if all(float(self.state[f"g{g.id}_stopped"].numpy()) > 0 for g in self.groups):
                self._set("phase", _STABILIZE)
                self._set("stabilize_begin", step)
                logger.info("%s: penalties final at step %d; stabilizing", self.log_prefix, step)
        if mirror["phase"] == _STABILIZE and step - mirror["stabilize_begin"] >= (
            self.stabilize_steps
        ):
            self._finish(step)

    def _update(self) -> None:
        """One penalty update (every ``update_every`` steps), per group as the authors' code."""
        masked_before: dict | None = None  # read from the masks once, if GReg-2 picks
        for g in self.groups:
            if float(self.state[f"g{g.id}_stopped"].numpy()) > 0:
                continue
            cand = self.candidates[g.id]
            coef = self.state[f"g{g.id}_coef"].numpy()
            mags = unit_magnitudes(g, self.slices[g.id])
            if float(self.state[f"g{g.id}_picked"].numpy()) > 0:
                pruned = self.state[f"g{g.id}_pruned"].numpy() > 0.5
                coef[cand & pruned] += self.delta
                if self.variant == "greg2":
                    coef[cand & ~pruned] = self.recover
                self.state[f"g{g.id}_coef"].assign(coef)
            else:  # GReg-2's uniform stage: the ratio is measured against today's pick
                coef[cand] += self.pick_delta
                self.state[f"g{g.id}_coef"].assign(coef)
                if masked_before is None:
                    masked_before = self.pruner.current_pruned()
                pruned = self._smallest(g, mags, masked_before)
                if coef[cand].max() >= self.pick_ceiling * (1 - 1e-6):
                    self._pick(g, pruned)
            self._smooth_ratio(g, magnitude_ratio(mags, pruned, cand & ~g.blocked))
            if float(self.state[f"g{g.id}_picked"].numpy()) == 0:
                continue
            done = coef[cand & pruned].max(initial=0.0) >= self.ceiling * (1 - 1e-6)
            if self.variant == "greg2":  # each group stops on its own ratio
                done = done or self._hist(g) >= self.mag_ratio_limit
            if done:
                self.state[f"g{g.id}_stopped"].assign(1.0)
        if self.variant == "greg1" and all(
            self._hist(g) >= self.mag_ratio_limit for g in self.groups
        ):
            for g in self.groups:
                self.state[f"g{g.id}_stopped"].assign(1.0)
        if self._mirror["phase"] == _PICK and all(
            float(self.state[f"g{g.id}_picked"].numpy()) > 0 for g in self.groups
        ):
            self._set("phase", _GROW)

    def _smooth_ratio(self, g: Any, ratio: float) -> None:
        """``hist = ratio`` the first time, then ``0.9 * hist + 0.1 * ratio`` (authors' code)."""
        ratio = min(ratio, MAGNITUDE_RATIO_CAP)
        hist = float(self.state[f"g{g.id}_hist"].numpy())
        hist = ratio if hist < 0 else min(0.9 * hist + 0.1 * ratio, MAGNITUDE_RATIO_CAP)
        self.state[f"g{g.id}_hist"].assign(hist)

    def _smallest(self, g: Any, mags: np.ndarray, masked_before: dict) -> np.ndarray:
        """The ``ceil(ratio * n)`` candidate units of ``g`` with the smallest magnitude now."""
        ratios = {k: r for k, r in self.ratios.items() if k[0] == g.id}
        before = {g.id: masked_before[g.id]} if g.id in masked_before else None
        chosen = select_units([g], {g.id: mags}, ratios, pruned=before)[g.id]
        return chosen & self.candidates[g.id]

    def _pick(self, g: Any, pruned: np.ndarray) -> None:
        """GReg-2: make ``pruned`` (the smallest filters now) ``g``'s choice; log the L1 overlap."""
        self.state[f"g{g.id}_pruned"].assign(pruned.astype(np.float32))
        self.state[f"g{g.id}_picked"].assign(1.0)
        info = self._pick_info(g)
        self.picks[g.name] = info
        logger.info(
            "%s: %s picked %d units %s; overlap with the L1 choice %.3f",
            self.log_prefix,
            g.name,
            len(info["picked"]),
            info["picked"],
            info["overlap"],
        )

    def _pick_info(self, g: Any) -> dict[str, Any]:
        picked = self.state[f"g{g.id}_pruned"].numpy() > 0.5
        l1 = self.state[f"g{g.id}_l1"].numpy() > 0.5
        overlap = float((picked & l1).sum() / max(int(picked.sum()), 1))
        return {
            "picked": np.flatnonzero(picked).tolist(),
            "l1": np.flatnonzero(l1).tolist(),
            "overlap": overlap,
        }

    def _finish(self, step: int) -> None:
        pruned = {g.id: self.state[f"g{g.id}_pruned"].numpy() > 0.5 for g in self.groups}
        for g in self.groups:
            self._record_separation(g)
        self._warn_separation(
            f"raise ceiling (now {self.ceiling:g}) or stabilize_steps (now "
            f"{self.stabilize_steps}) so that the penalty drives the pruned filters to zero"
        )
        self._apply_masks(pruned)
        self._set("phase", _DONE)
        logger.info("%s: masks set at step %d", self.log_prefix, step)
        if self.stop_training_when_done:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        logs.update(self.log_values())

    def log_values(self) -> dict[str, float]:
        """The values written into the epoch logs."""
        out: dict[str, float] = {}
        for g in self.groups:
            cand = self.candidates[g.id]
            coef = self.state[f"g{g.id}_coef"].numpy()
            pruned = self.state[f"g{g.id}_pruned"].numpy() > 0.5
            picked = float(self.state[f"g{g.id}_picked"].numpy()) > 0
            sel = cand & pruned if picked and (cand & pruned).any() else cand
            out[self.key(g, "penalty")] = float(coef[sel].max(initial=0.0))
            out[self.key(g, "mag_ratio")] = self._hist(g)
            if self.variant == "greg2" and picked:
                out[self.key(g, "overlap")] = self._pick_info(g)["overlap"]
        out.update(self.separation_logs())
        out[f"{self.log_prefix}/phase"] = float(self.state["phase"].numpy())
        begin = int(self.state["begin"].numpy())
        out[f"{self.log_prefix}/step"] = float(
            max(int(self.model.optimizer.iterations.numpy()) - begin, 0) if begin >= 0 else 0
        )
        return out

    def steps_to_masks(self) -> int:
        """Optimizer steps from now until the masks are set, at most (0 once they are).

        The schedule may end sooner: GReg stops growing once the magnitude ratios reach
        ``mag_ratio_limit``.
        """
        mirror = self._sync()
        if mirror["phase"] == _DONE:
            return 0
        step = int(self.model.optimizer.iterations.numpy()) - max(mirror["begin"], 0)
        if mirror["phase"] == _STABILIZE:
            return max(self.stabilize_steps - (step - mirror["stabilize_begin"]), 0)
        ceiling = self.ceiling * (1 - 1e-6)
        updates = 0
        for g in self.groups:
            if float(self.state[f"g{g.id}_stopped"].numpy()) > 0:
                continue
            cand = self.candidates[g.id]
            coef = self.state[f"g{g.id}_coef"].numpy()
            if float(self.state[f"g{g.id}_picked"].numpy()) > 0:
                level = coef[cand & (self.state[f"g{g.id}_pruned"].numpy() > 0.5)].max(initial=0)
                needed = math.ceil(max(ceiling - level, 0) / self.delta)
            else:  # GReg-2 still raising its uniform penalty, then the growth after picking
                level = coef[cand].max(initial=0.0)
                needed = math.ceil(
                    max(self.pick_ceiling * (1 - 1e-6) - level, 0) / self.pick_delta
                ) + math.ceil(max(ceiling - self.pick_ceiling, 0) / self.delta)
            updates = max(updates, needed)
        grow = max((mirror["updates"] + updates) * self.update_every - step, 0)
        return grow + self.stabilize_steps

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.state is None:
            return
        if int(self.state["phase"].numpy()) == _DONE:
            self._remove_loss()
            return
        if self.phase == "stabilize":
            advice = f"lower stabilize_steps (now {self.stabilize_steps:,})"
        else:
            picking = f" and pick_delta (now {self.pick_delta:g})" if self.phase == "pick" else ""
            advice = (
                f"shorten the schedule: raise delta (now {self.delta:g}){picking}, lower "
                f"update_every (now {self.update_every}) or stabilize_steps (now "
                f"{self.stabilize_steps:,})"
            )
        self._warn_masks_not_set(self.steps_to_masks(), advice)
