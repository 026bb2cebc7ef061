"""The records of a grid's cost: training stages, runs, grids, and the model shapes behind them.

A run trains up to three stages (:class:`Phase`): the shared base model, the pruning stage of a
regularized method, and the retraining. :class:`RunCost` holds one run's stages and counts,
:class:`GridCost` a list of runs with every shared base counted once. :class:`Arch` is one model
shape (dense, or pruned at a ratio): how to build it and its MACs per example. The counting
itself is done by :class:`tfprune.protocols.cost.estimate.CostEstimator`.

FLOPs convention: :func:`tfprune.count_flops` counts multiply-accumulates (MACs) of one forward
pass of one example; one MAC is 2 FLOPs and a training step (forward + backward) costs about 3
forward passes, so **training FLOPs = 3 × 2 × MACs × examples × epochs**. An evaluation pass
is forward only: ``2 × MACs × test examples``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfprune.protocols.execute import build_model
from tfprune.protocols.methods import prune_one_shot
from tfprune.protocols.spec import RunSpec

__all__ = [
    "FLOPS_PER_MAC",
    "TRAIN_PASSES",
    "Arch",
    "GridCost",
    "Phase",
    "RunCost",
    "format_epochs",
]

FLOPS_PER_MAC = 2
"""One multiply-accumulate is two floating-point operations."""

TRAIN_PASSES = 3
"""A training step (forward + backward) costs about three forward passes."""


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training stage of a run (one ``fit``).

    Attributes:
      kind: ``"base"``, ``"prune"`` or ``"retrain"``.
      epochs: Epochs (fractional for a base trained an exact number of steps).
      examples_per_epoch: Training examples per epoch.
      macs: MACs per example of the model trained (one forward pass).
      batch_size: Global batch size.
      steps_per_execution: Training steps per graph call.
      eval_every_epoch: Whether the test set is evaluated after every epoch.
      jsv_every_epoch: Whether the mean JSV is measured after every epoch.
      upper_bound: The epochs are a bound (a regularized stage may stop earlier).
      arch: Key of the architecture trained (for the calibration).
    """

    kind: str
    epochs: float
    examples_per_epoch: int
    macs: int
    batch_size: int
    steps_per_execution: int = 1
    eval_every_epoch: bool = False
    jsv_every_epoch: bool = False
    upper_bound: bool = False
    arch: str = ""

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch."""
        return -(-self.examples_per_epoch // self.batch_size)

    @property
    def flops(self) -> float:
        """Training FLOPs: ``3 × 2 × MACs × examples × epochs``."""
        return TRAIN_PASSES * FLOPS_PER_MAC * float(self.macs) * self.examples

    @property
    def examples(self) -> float:
        """Training examples over the whole stage."""
        return float(self.examples_per_epoch) * self.epochs


@dataclasses.dataclass
class RunCost:
    """The cost of one run.

    Attributes:
      run_id, cell, seed, method: From the spec.
      base_id: The shared base model (``None`` for scratch runs).
      trains_base: This run is the first of the list to need its base, so it trains it (the
        later ones load it from the cache).
      base: The base-model training stage (also set when the base is cached; then it is not
        counted in this run's FLOPs).
      prune: The regularized pruning stage (``None`` for other methods).
      retrain: The retraining (scratch: the whole training at the budget).
      dense_macs: MACs per example of the dense model.
      pruned_macs: MACs per example of the retrained model.
      num_test: Test examples per evaluation pass.
      evals: Evaluation passes over the test set (base included when this run trains it).
      jsv: Mean-JSV measurements (of ``jsv_samples`` Jacobians each).
      jsv_samples: Jacobians per measurement.
      seconds: Calibrated wall-time estimate (``None`` without calibration).
    """

    run_id: str
    cell: str
    seed: int
    method: str
    base_id: str | None
    trains_base: bool
    base: Phase | None
    prune: Phase | None
    retrain: Phase
    dense_macs: int
    pruned_macs: int
    num_test: int
    evals: int
    jsv: int
    jsv_samples: int
    seconds: float | None = None

    @property
    def examples_per_epoch(self) -> int:
        """Training examples per epoch."""
        return self.retrain.examples_per_epoch

    @property
    def train_flops(self) -> float:
        """Training FLOPs of this run (its base only when it trains it; pruning: upper bound)."""
        out = self.retrain.flops
        if self.prune is not None:
            out += self.prune.flops
        if self.base is not None and self.trains_base:
            out += self.base.flops
        return out

    @property
    def eval_flops(self) -> float:
        """FLOPs of the run's evaluation passes (forward only)."""
        base_evals = int(self.trains_base)  # the base's evaluation runs the dense model
        macs = base_evals * self.dense_macs + (self.evals - base_evals) * self.pruned_macs
        return FLOPS_PER_MAC * float(macs) * self.num_test

    def epochs_text(self) -> str:
        """``base/prune/retrain`` epochs: ``(20)`` = a cached base, ``<=30`` = an upper bound."""
        if self.base is None:
            base = "-"
        else:
            base = format_epochs(self.base.epochs)
            base = base if self.trains_base else f"({base})"
        prune = "-" if self.prune is None else f"<={format_epochs(self.prune.epochs)}"
        return f"{base}/{prune}/{format_epochs(self.retrain.epochs)}"


@dataclasses.dataclass
class GridCost:
    """The cost of a list of runs (a grid or a shard); every base is counted once.

    Attributes:
      runs: Per-run costs, in the order given (a process runs them in run-id order).
      bases: ``{base_id: base stage}`` of the bases these runs need.
      startup_seconds: Fixed cost of the process (start, imports), included in :attr:`seconds`.
      notes: Dataset notes and caveats.
    """

    runs: list[RunCost]
    bases: dict[str, Phase]
    startup_seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def base_flops(self) -> float:
        """Training FLOPs of the base models (each once)."""
        return sum(p.flops for p in self.bases.values())

    @property
    def prune_flops(self) -> float:
        """Training FLOPs of the pruning stages (upper bound)."""
        return sum(r.prune.flops for r in self.runs if r.prune is not None)

    @property
    def retrain_flops(self) -> float:
        """Training FLOPs of the retrainings (and scratch trainings)."""
        return sum(r.retrain.flops for r in self.runs)

    @property
    def train_flops(self) -> float:
        """All training FLOPs: bases once + pruning stages + retrainings."""
        return self.base_flops + self.prune_flops + self.retrain_flops

    @property
    def eval_flops(self) -> float:
        """FLOPs of all evaluation passes."""
        return sum(r.eval_flops for r in self.runs)

    @property
    def epochs(self) -> dict[str, float]:
        """Total epochs by stage: ``base`` (each base once), ``prune`` (bound), ``retrain``."""
        return {
            "base": sum(p.epochs for p in self.bases.values()),
            "prune": sum(r.prune.epochs for r in self.runs if r.prune is not None),
            "retrain": sum(r.retrain.epochs for r in self.runs),
        }

    @property
    def seconds(self) -> float | None:
        """Calibrated wall time: the runs one after another plus the process start."""
        if any(r.seconds is None for r in self.runs):
            return None
        return self.startup_seconds + sum(r.seconds or 0.0 for r in self.runs)


def format_epochs(x: float) -> str:
    """A number of epochs as text: ``"20"`` when whole, else two decimals (``"2.35"``)."""
    return f"{x:g}" if x == int(x) else f"{x:.2f}"


@dataclasses.dataclass
class Arch:
    """A model shape: how to build it, and its counts.

    Attributes:
      key: Cache key of the shape (model, its options, input shape, classes, ratio, precision).
      spec: A run that trains this shape (its seed and options build it).
      input_shape: Shape of one model input.
      num_classes: Number of classes.
      ratio: Pruning ratio of the L1 shape; ``None`` for the dense model.
      macs: MACs per example (one forward pass).
      build_seconds: Seconds it took to build the dense model when the shape was counted.
      prune_seconds: Seconds it took to prune it to this shape (0 for the dense model).
    """

    key: str
    spec: RunSpec
    input_shape: tuple[int, ...]
    num_classes: int
    ratio: Any  # None: the dense model
    macs: int = 0
    build_seconds: float = 0.0
    prune_seconds: float = 0.0

    def build(self) -> Any:
        """A fresh model of this shape (built as a run builds it: dense, then pruned)."""
        spec = self.spec
        model = build_model(
            spec.model, self.input_shape, self.num_classes, spec.seed, **spec.opts.model_kwargs
        )
        if self.ratio is None:
            return model
        _, small = prune_one_shot(
            model, self.ratio, "l1", None, seed=spec.seed, skip=spec.opts.skip
        )
        return small
