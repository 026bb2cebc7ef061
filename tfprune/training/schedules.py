"""Learning-rate schedules of the pruning papers, as text specs and a Keras callback.

Spec strings (parsed by :func:`parse_schedule`, always together with the number of epochs):

* ``"0:0.01,30:0.001,60:0.0001"`` — piecewise constant, ``epoch:lr`` (the notation of
  the Wang et al./GReg/TPP scripts); the first entry must be epoch 0 and epochs must increase.
* ``"ft:0.001"`` — fine-tuning (FT) of Le & Hua 2021: one fixed small LR.
* ``"steps:0.01@0,0.001@60,0.0001@90"`` — explicit milestones, ``lr@epoch`` (the papers'
  ``MultiStepLR`` notation: the CIFAR large-LR retraining recipe over 120 epochs); the first
  entry must be at epoch 0 (:func:`parse_milestones`).
* ``"steps:0.01:1e-4"`` — step decay ×0.1 from start to end LR in equal-length stages (the
  MNIST runs of Lee et al. 2020: ``steps:0.01:1e-4`` over 90 epochs = ``0:0.01,30:0.001,60:0.0001``,
  ``steps:0.001:1e-4`` = ``0:0.001,45:0.0001``) (:func:`equal_steps`).
* ``"cosine:0.01:1e-4"`` — cosine annealing from start to end LR over the run (PyTorch
  ``CosineAnnealingLR`` with ``T_max`` = epochs, ``eta_min`` = end), updated every step.
* ``"halving:0.1:1e-5"`` — the halving rule of Wang et al. 2023, App. A: stages from the start
  LR down to the final LR by ×0.1; every stage but the last lasts ``min(30, ceil(remaining/2))``
  epochs; the last gets the rest (:func:`halving_schedule`). ``"halving:0.1:1e-5:30"`` sets the
  30-epoch cap.
* ``"lrw:160@0:0.1,80:0.01,120:0.001"`` — LR rewinding (Renda et al.; Le & Hua): replay the last
  ``epochs`` epochs of the original ``160``-epoch schedule (:func:`lr_rewinding`).
* ``"slr:0.1"`` / ``"slr:0.1:0.001"`` — scaled LR restarting (Le & Hua): cosine-shaped warm-up from
  ``0.001`` to ``0.1`` over 10% of the budget, then ×0.1 at 45% and 67.5% of the budget.
* ``"clr:0.1"`` / ``"clr:0.1:100:100:0.1"`` — cyclic LR restarting (Le & Hua) = one-cycle
  (PyTorch ``OneCycleLR(max_lr, div_factor, final_div_factor, pct_start)``, cosine phases).

Scratch budgets: :func:`scratch_e_epochs` and :func:`scratch_b_epochs`.
All validation errors are :class:`tfprune.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tfprune.compat import keras
from tfprune.errors import ConfigError

__all__ = [
    "EpochLRScheduler",
    "LRSchedule",
    "StepLRScheduler",
    "equal_steps",
    "format_piecewise",
    "halving_schedule",
    "lr_rewinding",
    "lr_scheduler",
    "parse_milestones",
    "parse_piecewise",
    "parse_schedule",
    "rescale_piecewise",
    "scratch_b_epochs",
    "scratch_e_epochs",
    "truncate_piecewise",
]


def _num(text: str, field: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{field}: cannot read {what} {text!r} as a number") from None


def parse_piecewise(spec: str, field: str = "schedule") -> list[tuple[int, float]]:
    """Parse ``"0:0.01,30:0.001"`` into ``[(0, 0.01), (30, 0.001)]`` (validated).

    Raises:
        ConfigError: empty spec, missing epoch 0, non-increasing epochs, LR <= 0 or unreadable
            numbers; the message names ``field``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{field}: empty LR schedule; expected e.g. '0:0.01,30:0.001'")
    stages: list[tuple[int, float]] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"{field}: empty entry in LR schedule {spec!r}")
        if ":" not in item:
            raise ConfigError(f"{field}: entry {item!r} of {spec!r} is not 'epoch:lr'")
        e_text, lr_text = item.split(":", 1)
        epoch = _num(e_text, field, "epoch")
        if epoch != int(epoch) or epoch < 0:
            raise ConfigError(f"{field}: epoch {e_text!r} in {spec!r} must be an integer >= 0")
        lr = _num(lr_text, field, "learning rate")
        if not lr > 0 or not math.isfinite(lr):
            raise ConfigError(f"{field}: learning rate {lr_text!r} in {spec!r} must be > 0")
        if stages and int(epoch) <= stages[-1][0]:
            raise ConfigError(
                f"{field}: epochs must increase in {spec!r}; {int(epoch)} follows {stages[-1][0]}"
            )
        stages.append((int(epoch), lr))
    if stages[0][0] != 0:
        raise ConfigError(f"{field}: LR schedule {spec!r} must start at epoch 0")
    return stages


def parse_milestones(spec: str, field: str = "schedule") -> list[tuple[int, float]]:
    """Parse explicit milestones ``"0.01@0,0.001@60"`` into ``[(0, 0.01), (60, 0.001)]``.

    Raises:
        ConfigError: an entry is not ``lr@epoch``, or the stages are invalid (see
            :func:`parse_piecewise`); the message names ``field``.
    """
    items = []
    for item in str(spec).split(","):
        lr_text, at, e_text = item.strip().partition("@")
        if not at:
            raise ConfigError(
                f"{field}: milestone {item.strip()!r} of {spec!r} is not 'lr@epoch' "
                "(e.g. 'steps:0.01@0,0.001@60,0.0001@90')"
            )
        items.append(f"{e_text.strip()}:{lr_text.strip()}")
    return parse_piecewise(",".join(items), field)


def format_piecewise(stages: Sequence[tuple[int, float]]) -> str:
    """Inverse of :func:`parse_piecewise`: ``[(0, 0.01), (30, 0.001)]`` -> ``"0:0.01,30:0.001"``."""
    return ",".join(f"{int(e)}:{lr:g}" for e, lr in stages)


def halving_schedule(
    lr: float, epochs: int, final_lr: float = 1e-5, max_stage: int = 30
) -> list[tuple[int, float]]:
    """The halving retraining schedule of Wang et al. 2023, App. A.

    Stages are ``lr, lr/10, ...`` down to ``final_lr``; with ``remaining = epochs``, every stage
    but the last lasts ``min(max_stage, ceil(remaining / 2))`` epochs and the last gets what is
    left. Stages that would get no epoch are dropped (the final LR is then reached earlier only if
    epochs allow). Examples: ``(0.1, 90)`` -> ``0:0.1,30:0.01,60:0.001,75:1e-4,83:1e-5``;
    ``(0.01, 60)`` -> ``0:0.01,30:0.001,45:1e-4,53:1e-5``.
    """
    if not lr > 0 or not final_lr > 0:
        raise ConfigError(f"halving: lr ({lr}) and final_lr ({final_lr}) must be > 0")
    if final_lr > lr * (1 + 1e-9):
        raise ConfigError(f"halving: final_lr {final_lr:g} must be <= the start lr {lr:g}")
    if int(epochs) != epochs or epochs < 1:
        raise ConfigError(f"halving: epochs must be an integer >= 1, got {epochs!r}")
    if max_stage < 1:
        raise ConfigError(f"halving: max_stage must be >= 1, got {max_stage!r}")
    n_stages = int(round(math.log10(lr / final_lr))) + 1
    lrs = [float(f"{lr * 10.0**-i:.6g}") for i in range(n_stages)]
    stages: list[tuple[int, float]] = []
    start, remaining = 0, int(epochs)
    for i, value in enumerate(lrs):
        if remaining <= 0:
            break
        length = remaining if i == len(lrs) - 1 else min(max_stage, math.ceil(remaining / 2))
        stages.append((start, value))
        start += length
        remaining -= length
    return stages


def equal_steps(lr: float, epochs: int, final_lr: float = 1e-4) -> list[tuple[int, float]]:
    """Step decay ×0.1 from ``lr`` to ``final_lr`` in equal-length stages over ``epochs``.

    Stage ``i`` of ``n`` starts at ``round(i * epochs / n)``; stages that would be empty are
    dropped. ``(0.01, 90)`` -> ``0:0.01,30:0.001,60:0.0001``;
    ``(0.001, 90)`` -> ``0:0.001,45:0.0001``.
    """
    if not lr > 0 or not final_lr > 0 or final_lr > lr * (1 + 1e-9):
        raise ConfigError(f"steps: need 0 < final_lr ({final_lr}) <= lr ({lr})")
    if int(epochs) != epochs or epochs < 1:
        raise ConfigError(f"steps: epochs must be an integer >= 1, got {epochs!r}")
    n = int(round(math.log10(lr / final_lr))) + 1
    out: list[tuple[int, float]] = []
    for i in range(n):
        start = int(round(i * epochs / n))
        if out and start <= out[-1][0]:
            continue
        out.append((start, float(f"{lr * 10.0**-i:.6g}")))
    return out


def lr_rewinding(
    original: Sequence[tuple[int, float]] | str, original_epochs: int, epochs: int
) -> list[tuple[int, float]]:
    """LR rewinding: replay the last ``epochs`` epochs of the original schedule.

    E.g. original ``0:0.1,80:0.01,120:0.001`` over 160 epochs, 72 epochs -> ``0:0.01,32:0.001``.
    A budget longer than the original starts with the original's first LR for the extra epochs.
    """
    stages = parse_piecewise(original, "lrw") if isinstance(original, str) else list(original)
    if epochs < 1 or original_epochs < 1:
        raise ConfigError(f"lrw: epochs ({epochs}) and original epochs must be >= 1")
    offset = int(original_epochs) - int(epochs)
    out: list[tuple[int, float]] = []
    for i, (start, lr) in enumerate(stages):
        end = stages[i + 1][0] if i + 1 < len(stages) else max(original_epochs, start + 1)
        if end <= offset:
            continue
        out.append((max(0, start - offset), lr))
    return out or [(0, stages[-1][1])]


def rescale_piecewise(
    stages: Sequence[tuple[int, float]] | str, from_epochs: int, to_epochs: int
) -> list[tuple[int, float]]:
    """Stretch a piecewise schedule's milestones by ``to_epochs / from_epochs`` (rounded).

    Used for Scratch-B budgets, whose schedule decays at the same *fractions* of the run
    (Liu et al. 2019).
    """
    st = parse_piecewise(stages, "rescale") if isinstance(stages, str) else list(stages)
    if from_epochs < 1 or to_epochs < 1:
        raise ConfigError(f"rescale: epochs must be >= 1 (from {from_epochs}, to {to_epochs})")
    out: list[tuple[int, float]] = []
    for start, lr in st:
        e = int(round(start * to_epochs / from_epochs))
        if out and e <= out[-1][0]:
            continue
        out.append((e, lr))
    return out


def truncate_piecewise(
    stages: Sequence[tuple[int, float]] | str, start_epoch: int
) -> list[tuple[int, float]]:
    """The part of a schedule from ``start_epoch`` on, re-based to 0 (S4.2: continue scratch)."""
    st = parse_piecewise(stages, "truncate") if isinstance(stages, str) else list(stages)
    current = st[0][1]
    out: list[tuple[int, float]] = []
    for e, lr in st:
        if e <= start_epoch:
            current = lr
        else:
            out.append((e - start_epoch, lr))
    return [(0, current), *out]


def _cos(start: float, end: float, frac: float) -> float:
    frac = min(max(frac, 0.0), 1.0)
    return end + (start - end) * (1.0 + math.cos(math.pi * frac)) / 2.0


class LRSchedule:
    """A parsed LR schedule over a known number of epochs.

    Attributes:
        spec: The spec string it was parsed from.
        epochs: The run length the schedule is laid out over.
        kind: ``"piecewise"``, ``"cosine"``, ``"slr"`` or ``"clr"``.
        stages: For ``piecewise`` (also ``ft``, ``halving``, ``lrw``), ``[(epoch, lr), ...]``.
        continuous: True when the LR changes within an epoch (set per step).
    """

    def __init__(self, spec: str, epochs: int, kind: str, **params: Any) -> None:
        self.spec = spec
        self.epochs = int(epochs)
        self.kind = kind
        self.params = params
        self.stages: list[tuple[int, float]] = list(params.get("stages", []))
        self.continuous = kind != "piecewise"

    def lr_at(self, epoch: float) -> float:
        """LR at (fractional) ``epoch`` (``0 <= epoch``; epoch ``e`` = start of epoch ``e``)."""
        p, total = self.params, max(self.epochs, 1)
        if self.kind == "piecewise":
            lr = self.stages[0][1]
            for start, value in self.stages:
                if epoch + 1e-9 >= start:
                    lr = value
            return lr
        if self.kind == "cosine":
            return _cos(p["start"], p["end"], epoch / total)
        if self.kind == "slr":
            warm = 0.1 * total
            if epoch < warm:
                return _cos(p["start"], p["max_lr"], epoch / warm)  # rises start -> max
            if epoch < 0.675 * total:
                return p["max_lr"] if epoch < 0.45 * total else p["max_lr"] * 0.1
            return p["max_lr"] * 0.01
        if self.kind == "clr":
            initial = p["max_lr"] / p["div"]
            final = initial / p["final_div"]
            warm = p["pct"] * total
            if epoch < warm:
                return _cos(initial, p["max_lr"], epoch / warm)
            return _cos(p["max_lr"], final, (epoch - warm) / max(total - warm, 1e-9))
        raise ConfigError(f"unknown schedule kind {self.kind!r}")

    def epoch_lrs(self) -> list[float]:
        """LR at the start of every epoch (what the history's ``lr`` list records)."""
        return [self.lr_at(e) for e in range(self.epochs)]

    def first_stage_epochs(self) -> int:
        """Length of the first LR stage (N of trainability accuracy, Wang et al. 2023, Eq. 1).

        For piecewise schedules the epochs before the first decay (capped at the run length);
        continuous schedules have no stages, so the whole run counts.
        """
        if self.kind == "piecewise" and len(self.stages) > 1:
            return max(1, min(self.stages[1][0], self.epochs))
        return max(1, self.epochs)

    def final_lr(self) -> float:
        """LR of the last epoch."""
        return self.lr_at(max(self.epochs - 1e-6, 0.0)) if self.epochs else self.lr_at(0)

    def describe(self) -> str:
        """Canonical text of the schedule actually used (piecewise stages when it has them)."""
        if self.kind == "piecewise":
            return format_piecewise(self.stages)
        return self.spec

    def __repr__(self) -> str:
        return f"LRSchedule({self.spec!r}, epochs={self.epochs})"


def parse_schedule(spec: str, epochs: int, field: str = "schedule") -> LRSchedule:
    """Parse a schedule spec (see the module doc) laid out over ``epochs`` epochs.

    Raises:
        ConfigError: empty or malformed spec, decreasing epochs, LR <= 0; names ``field``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{field}: empty LR schedule; expected e.g. '0:0.01,30:0.001'")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 0:
        raise ConfigError(f"{field}: epochs must be an integer >= 0, got {epochs!r}")
    text = spec.strip()
    head, _, rest = text.partition(":")
    head = head.strip().lower()

    def nums(n_min: int, n_max: int) -> list[float]:
        parts = [s for s in rest.split(":")] if rest else []
        if not n_min <= len(parts) <= n_max:
            raise ConfigError(
                f"{field}: {head!r} schedule {text!r} takes {n_min}-{n_max} ':'-separated numbers"
            )
        values = [_num(s, field, "value") for s in parts]
        for v in values:
            if not v > 0:
                raise ConfigError(f"{field}: values in {text!r} must be > 0")
        return values

    if head == "ft" or head == "fixed":
        (lr,) = nums(1, 1)
        return LRSchedule(text, epochs, "piecewise", stages=[(0, lr)])
    if head == "steps" and "@" in rest:
        return LRSchedule(text, epochs, "piecewise", stages=parse_milestones(rest, field))
    if head == "steps":
        v = nums(1, 2)
        final = v[1] if len(v) > 1 else 1e-4
        stages = equal_steps(v[0], max(int(epochs), 1), final)
        return LRSchedule(text, epochs, "piecewise", stages=stages)
    if head == "cosine":
        start, end = nums(2, 2)
        if end > start:
            raise ConfigError(f"{field}: cosine end LR {end:g} must be <= start {start:g}")
        return LRSchedule(text, epochs, "cosine", start=start, end=end)
    if head == "halving":
        v = nums(1, 3)
        final = v[1] if len(v) > 1 else 1e-5
        cap = int(v[2]) if len(v) > 2 else 30
        stages = halving_schedule(v[0], max(int(epochs), 1), final, cap)
        return LRSchedule(text, epochs, "piecewise", stages=stages)
    if head == "lrw":
        orig_epochs_text, at, orig = rest.partition("@")
        if not at:
            raise ConfigError(f"{field}: LR rewinding is 'lrw:<orig_epochs>@<epoch:lr,...>'")
        orig_epochs = _num(orig_epochs_text, field, "original epochs")
        stages = lr_rewinding(parse_piecewise(orig, field), int(orig_epochs), max(int(epochs), 1))
        return LRSchedule(text, epochs, "piecewise", stages=stages)
    if head == "slr":
        v = nums(1, 2)
        start = v[1] if len(v) > 1 else 1e-3
        return LRSchedule(text, epochs, "slr", max_lr=v[0], start=start)
    if head == "clr":
        v = nums(1, 4)
        pct = v[3] if len(v) > 3 else 0.1
        if not 0 < pct < 1:
            raise ConfigError(f"{field}: clr pct_start must be in (0, 1), got {pct}")
        return LRSchedule(
            text,
            epochs,
            "clr",
            max_lr=v[0],
            div=v[1] if len(v) > 1 else 100.0,
            final_div=v[2] if len(v) > 2 else 100.0,
            pct=pct,
        )
    if head[:1].isdigit() or head == "":
        return LRSchedule(text, epochs, "piecewise", stages=parse_piecewise(text, field))
    raise ConfigError(
        f"{field}: unknown LR schedule {text!r}; use 'epoch:lr,...', 'ft:', 'steps:', 'cosine:', "
        "'halving:', 'lrw:', 'slr:' or 'clr:'"
    )


class EpochLRScheduler(keras.callbacks.Callback):
    """Sets the optimizer LR from an :class:`LRSchedule` and records it per epoch.

    The LR is set at the start of every epoch (for continuous schedules — cosine, SLR, CLR — use
    :class:`StepLRScheduler` or :func:`lr_scheduler`, which also update every step). The LR at
    the start of each epoch is appended to :attr:`lrs` and written to the epoch logs as ``lr``.

    Args:
        schedule: The parsed schedule.
        steps_per_epoch: Steps per epoch for continuous schedules (default: from ``fit``'s
            ``params["steps"]``, else per-epoch updates).
        initial_epoch: Offset added to Keras' epoch index (resumed runs).
    """

    def __init__(
        self, schedule: LRSchedule, steps_per_epoch: int | None = None, initial_epoch: int = 0
    ) -> None:
        super().__init__()
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.initial_epoch = int(initial_epoch)
        self.lrs: list[float] = []
        self._epoch = 0

    def _set(self, value: float) -> None:
        self.model.optimizer.learning_rate.assign(value)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Set the LR of this epoch's start."""
        self._epoch = epoch + self.initial_epoch
        lr = self.schedule.lr_at(self._epoch)
        self._set(lr)
        self.lrs.append(float(lr))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Log the epoch's starting LR as ``lr``."""
        if logs is not None and self.lrs:
            logs["lr"] = self.lrs[-1]

    def get_config(self) -> dict[str, Any]:
        """Serializable config (the spec and epochs)."""
        return {
            "spec": self.schedule.spec,
            "epochs": self.schedule.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "initial_epoch": self.initial_epoch,
        }


class StepLRScheduler(EpochLRScheduler):
    """:class:`EpochLRScheduler` that also updates the LR at every step (continuous schedules).

    Kept separate because a batch-level hook makes Keras synchronise every step; piecewise
    schedules do not need it. :func:`lr_scheduler` picks the right class.
    """

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Set the LR of this step (fractional epoch ``epoch + batch / steps``)."""
        steps = self.steps_per_epoch or (self.params or {}).get("steps")
        if steps:
            self._set(self.schedule.lr_at(self._epoch + batch / steps))


def lr_scheduler(
    schedule: LRSchedule, steps_per_epoch: int | None = None, initial_epoch: int = 0
) -> EpochLRScheduler:
    """The callback for ``schedule``: per-step updates only when the schedule is continuous."""
    cls = StepLRScheduler if schedule.continuous else EpochLRScheduler
    return cls(schedule, steps_per_epoch, initial_epoch)


def scratch_e_epochs(pretrain_epochs: int, retrain_epochs: int, prune_epochs: int = 0) -> int:
    """Scratch-E (Liu et al. 2019; setup SX-A of Wang et al. 2023): the pipeline's total epochs."""
    for name, v in (
        ("pretrain_epochs", pretrain_epochs),
        ("retrain_epochs", retrain_epochs),
        ("prune_epochs", prune_epochs),
    ):
        if v < 0:
            raise ConfigError(f"scratch_e: {name} must be >= 0, got {v}")
    return int(pretrain_epochs) + int(prune_epochs) + int(retrain_epochs)


def scratch_b_epochs(
    pretrain_epochs: int,
    dense_flops: float,
    pruned_flops: float,
    retrain_epochs: int = 0,
    variant: str = "why",
) -> int:
    """Scratch-B budget: the small model gets the compute of the pruning pipeline.

    Variants:

    * ``"why"`` (default): ``K1 * F1/F2 + K2`` epochs (pretraining of the dense model at ``F1``
      for ``K1`` epochs plus retraining at ``F2`` for ``K2``, spent entirely at ``F2``), rounded
      to the nearest integer.
    * ``"rethink_cifar"``: Liu et al.'s CIFAR code, ``int(K1 * F1/F2)`` (ignores ``K2``).
    * ``"rethink_imagenet"``: Liu et al.'s ImageNet code, ``int(K1 * F1/F2)``, but 180 epochs (i.e.
      2×90) once ``F1/F2 >= 2``.
    """
    if not dense_flops > 0 or not pruned_flops > 0:
        raise ConfigError(
            f"scratch_b: FLOPs must be > 0 (dense {dense_flops}, pruned {pruned_flops})"
        )
    if pretrain_epochs < 0 or retrain_epochs < 0:
        raise ConfigError("scratch_b: epochs must be >= 0")
    k = dense_flops / pruned_flops
    if variant == "why":
        return int(round(pretrain_epochs * k + retrain_epochs))
    if variant == "rethink_cifar":
        return int(pretrain_epochs * k)
    if variant == "rethink_imagenet":
        return int(2 * pretrain_epochs) if k >= 2 else int(pretrain_epochs * k)
    raise ConfigError(
        f"scratch_b: variant must be 'why', 'rethink_cifar' or 'rethink_imagenet', got {variant!r}"
    )
