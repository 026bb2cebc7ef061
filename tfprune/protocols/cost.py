"""Know the cost of a protocol grid before running it: epochs, examples, MACs, training FLOPs, time.

:func:`estimate_cost` takes the :class:`~tfprune.protocols.spec.RunSpec` list of a grid (or of
one shard: ``plan_shard(expand_config(config), i, n)``) and works out, per run, what
:func:`tfprune.protocols.execute.execute` will train:

* **base** epochs: the shared base model (one per :meth:`RunSpec.base_id`), trained by the first
  run that needs it and loaded from the cache by the others, so it is counted once; scratch
  runs have no base;
* **pruning-stage** epochs of the regularized methods: ``options.prune_max_epochs``, an *upper
  bound* (the stage stops when its callback has set the masks);
* **retraining** epochs (:func:`tfprune.protocols.execute.retrain_plan`, which also gives the
  Scratch-E/B budgets);
* training examples per epoch (read from the dataset's size without loading it: digits' split
  is computed, MNIST's from the IDX headers, CIFAR/ImageNet are their standard sizes);
* MACs per example of the dense model and of the pruned one (the L1 shape at the run's ratio,
  the shape :class:`~tfprune.protocols.methods.Scratch` trains; the layer-wise criteria keep the
  same channel counts), counted with :func:`tfprune.count_flops` on models built here once per
  distinct (model, input shape, ratio).

FLOPs convention: ``count_flops`` counts multiply-accumulates (MACs) of one forward pass of
one example; one MAC is 2 FLOPs and a training step (forward + backward) costs about 3 forward
passes, so **training FLOPs = 3 × 2 × MACs × examples × epochs**. The base and the pruning
stage train the dense-size model, retraining the pruned one. Evaluation passes (forward only,
``2 × MACs × test examples``) and mean-JSV measurements are counted separately.

With ``calibrate=True`` each distinct (architecture, batch size) is timed on this machine in
the run's precision, compiled as a run compiles it (:func:`tfprune.training.pipeline.compile_model`
with the run's ``steps_per_execution``): whole training epochs on the real data when an epoch is
cheap (so the input pipeline's per-epoch cost is included), else a few steps (on random inputs
of the right shape when the data is not here), warm-up excluded, median of ``repeats``; one
evaluation pass; one mean-JSV measurement; and the one-off costs a run pays (loading the data,
building and pruning the model, the first (tracing) call of each compiled function). Those give
seconds per run, per grid and per shard. Not included: the report written at the end (about a
second for small grids).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import tfprune
from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.compat import tf
from tfprune.data import load_dataset
from tfprune.data.bundle import resolve_data_dir
from tfprune.data.digits import DIGITS_NUM_EXAMPLES
from tfprune.data.mnist import find_mnist_files
from tfprune.errors import ConfigError, TfpruneError
from tfprune.protocols.execute import build_model, retrain_plan, run_runtime
from tfprune.protocols.methods import REGULARIZED, get_method, prune_one_shot
from tfprune.protocols.spec import RunSpec, canonical_json
from tfprune.runtime import use_runtime
from tfprune.training import pipeline
from tfprune.training.schedules import parse_schedule

__all__ = [
    "FLOPS_PER_MAC",
    "TRAIN_PASSES",
    "CostEstimator",
    "DataFacts",
    "GridCost",
    "Phase",
    "RunCost",
    "dataset_facts",
    "estimate_cost",
    "format_cost",
    "format_count",
    "format_seconds",
    "format_totals",
    "process_seconds",
]

FLOPS_PER_MAC = 2
"""One multiply-accumulate is two floating-point operations."""

TRAIN_PASSES = 3
"""A training step (forward + backward) costs about three forward passes."""

_STANDARD_SIZES = {
    "cifar10": (50_000, 10_000, (32, 32, 3), 10),
    "cifar100": (50_000, 10_000, (32, 32, 3), 100),
    "imagenet": (1_281_167, 50_000, (224, 224, 3), 1000),
}


# --------------------------------------------------------------------------------------------
# Dataset sizes
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """What the cost needs to know about a dataset, read without loading it.

    Attributes:
      name: Dataset name.
      num_train: Training examples (one epoch).
      num_test: Test examples (one evaluation pass).
      input_shape: Shape of one model input (flattened for MLPs).
      num_classes: Number of classes.
      note: How the sizes are known (e.g. "MNIST IDX headers", "standard size").
    """

    name: str
    num_train: int
    num_test: int
    input_shape: tuple[int, ...]
    num_classes: int
    note: str = ""


def _idx_count(path: Any) -> int:
    """First dimension of an IDX file, from its 8-byte header (nothing else is read)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(8)
    return int.from_bytes(head[4:8], "big")


def _mnist_sizes(data_dir: str | None, opts: dict[str, Any]) -> tuple[int, int, str]:
    split = opts.get("split", "auto")
    holdout = int(opts.get("holdout", 2000))
    folder = resolve_data_dir("mnist", data_dir)
    found = find_mnist_files(folder) if folder is not None and folder.is_dir() else None
    have_train = bool(found and found["train_images"] and found["train_labels"])
    have_test = bool(found and found["test_labels"])
    if split == "standard" or (split == "auto" and have_train):
        if have_train and have_test:
            assert found is not None
            n_train, n_test = _idx_count(found["train_labels"]), _idx_count(found["test_labels"])
            return n_train, n_test, "MNIST IDX headers"
        return 60_000, 10_000, "standard MNIST size (files not found)"
    if have_test:
        assert found is not None
        n = _idx_count(found["test_labels"])
        return n - holdout, holdout, "MNIST t10k split, IDX header"
    if split == "t10k":
        return 10_000 - holdout, holdout, "MNIST t10k split (files not found)"
    return 60_000, 10_000, "standard MNIST size (files not found)"


def dataset_facts(
    name: str,
    data_dir: str | None = None,
    options: dict[str, Any] | None = None,
    *,
    flatten: bool = False,
) -> DataFacts:
    """Sizes of a dataset as :func:`tfprune.data.load_dataset` would give them, without loading.

    ``options`` are the run's ``data_options`` (``test_fraction``, ``resize``, ``split``,
    ``holdout``, ``label_mode``, ``image_size``, ...). Digits' split sizes are computed exactly
    (scikit-learn rounds the test share up); MNIST's are read from the IDX file headers (8 bytes
    each); CIFAR's and ImageNet's are the standard sizes (``note`` says which).

    Raises:
      ConfigError: an unknown dataset name.
    """
    opts = dict(options or {})
    flatten = flatten or bool(opts.get("flatten", False))
    if name == "digits":
        fraction = float(opts.get("test_fraction", 0.2))
        n_test = math.ceil(fraction * DIGITS_NUM_EXAMPLES)
        facts = (DIGITS_NUM_EXAMPLES - n_test, n_test, (8, 8, 1), 10, "digits split, exact")
    elif name == "mnist":
        n_train, n_test, note = _mnist_sizes(data_dir, opts)
        size = opts.get("resize")
        if size is None:
            shape: tuple[int, ...] = (28, 28, 1)
        else:
            hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
            shape = (*hw, 1)
        facts = (n_train, n_test, shape, 10, note)
    elif name in _STANDARD_SIZES:
        n_train, n_test, shape, classes = _STANDARD_SIZES[name]
        if name == "cifar100" and opts.get("label_mode") == "coarse":
            classes = 20
        if name == "imagenet":
            size = int(opts.get("image_size", 224))
            shape = (size, size, 3)
            classes = int(opts.get("num_classes") or len(opts.get("classes") or ()) or classes)
        facts = (n_train, n_test, shape, classes, f"standard {name} size")
    else:
        raise ConfigError(f"cost: unknown dataset {name!r}")
    n_train, n_test, shape, classes, note = facts
    if flatten:
        shape = (int(np.prod(shape)),)
    return DataFacts(name, int(n_train), int(n_test), tuple(shape), int(classes), note)


# --------------------------------------------------------------------------------------------
# Per-run cost
# --------------------------------------------------------------------------------------------


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
            base = _num(self.base.epochs)
            base = base if self.trains_base else f"({base})"
        prune = "-" if self.prune is None else f"<={_num(self.prune.epochs)}"
        return f"{base}/{prune}/{_num(self.retrain.epochs)}"


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


def _num(x: float) -> str:
    return f"{x:g}" if x == int(x) else f"{x:.2f}"


def _key(*parts: Any) -> str:
    return canonical_json(list(parts))


@dataclasses.dataclass
class _Arch:
    """A model shape: how to build it, and its counts."""

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


class CostEstimator:
    """Estimates run costs; caches dataset sizes, model counts and (calibrated) timings.

    Args:
      calibrate: Also time each distinct architecture on this machine (see the module doc).
      repeats: Timed repetitions per measurement (the median is kept).
      log: Progress lines of the calibration go here (``None``: silent).
    """

    def __init__(
        self,
        *,
        calibrate: bool = False,
        repeats: int = 3,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.calibrate = bool(calibrate)
        self.repeats = max(1, int(repeats))
        self.log = log or (lambda _msg: None)
        self._facts: dict[str, DataFacts] = {}
        self._archs: dict[str, _Arch] = {}
        self._ratios: dict[str, Any] = {}
        self._timings: dict[str, Any] = {}

    # -- counts -----------------------------------------------------------------------------

    def facts(self, spec: RunSpec) -> DataFacts:
        """Dataset sizes of ``spec`` (MLP models get flattened inputs, as in a run)."""
        opts = dict(spec.opts.data_options)
        flatten = bool(opts.pop("flatten", spec.model.startswith("mlp")))
        key = _key(spec.dataset, spec.data_dir, opts, flatten)
        if key not in self._facts:
            self._facts[key] = dataset_facts(spec.dataset, spec.data_dir, opts, flatten=flatten)
        return self._facts[key]

    def _arch(self, spec: RunSpec, facts: DataFacts, ratio: Any) -> _Arch:
        opts = spec.opts
        key = _key(
            spec.model,
            opts.model_kwargs,
            facts.input_shape,
            facts.num_classes,
            ratio,
            list(opts.skip) if ratio is not None else [],
            opts.precision,
            opts.jit_compile,
        )
        if key not in self._archs:
            arch = _Arch(key, spec, facts.input_shape, facts.num_classes, ratio)
            with use_runtime(run_runtime(spec)):
                t0 = time.perf_counter()
                dense = build_model(
                    spec.model,
                    facts.input_shape,
                    facts.num_classes,
                    spec.seed,
                    **opts.model_kwargs,
                )
                t1 = time.perf_counter()
                model = dense
                if ratio is not None:
                    _, model = prune_one_shot(
                        dense, ratio, "l1", None, seed=spec.seed, skip=opts.skip
                    )
                t2 = time.perf_counter()
            arch.macs = int(tfprune.count_flops(model).total)
            arch.build_seconds, arch.prune_seconds = t1 - t0, t2 - t1
            self._archs[key] = arch
        return self._archs[key]

    def _ratio(self, spec: RunSpec, facts: DataFacts) -> Any:
        """The run's ratio, or the one its ``options.target`` resolves to (as a run finds it)."""
        target = spec.opts.target
        if not target:
            return spec.ratio
        key = _key(spec.model, spec.opts.model_kwargs, facts.input_shape, target, spec.ratio)
        if key not in self._ratios:
            dense = build_model(
                spec.model,
                facts.input_shape,
                facts.num_classes,
                spec.seed,
                **spec.opts.model_kwargs,
            )
            found = tfprune.find_sparsity_for_target(
                dense,
                dict(target),
                sparsity=spec.ratio if isinstance(spec.ratio, dict) else None,
                skip=spec.opts.skip,
            )
            self._ratios[key] = found.sparsity
        return self._ratios[key]

    def run_cost(self, spec: RunSpec, trains_base: bool = True) -> RunCost:
        """The cost of one run; ``trains_base``: count its base (the first run needing it)."""
        method = get_method(spec.method)
        opts = spec.opts
        facts = self.facts(spec)
        dense = self._arch(spec, facts, None)
        ratio = self._ratio(spec, facts)
        small = dense if spec.method == "dense" else self._arch(spec, facts, ratio)
        epochs, schedule = retrain_plan(spec, dense.macs, small.macs)
        spe_exec = pipeline.steps_per_execution(schedule)
        retrain = Phase(
            "retrain",
            epochs,
            facts.num_train,
            small.macs,
            spec.retrain.batch_size,
            spe_exec,
            opts.eval_every_epoch,
            opts.jsv_every_epoch and opts.jsv_samples > 0,
            arch=small.key,
        )
        base = prune = None
        base_id = None
        if method.needs_base:
            base, base_id = self._base_phase(spec, facts, dense, small)
        if spec.method in REGULARIZED:
            prune = Phase(
                "prune",
                opts.prune_max_epochs,
                facts.num_train,
                dense.macs,
                spec.retrain.batch_size,
                1,  # the regularization callback acts between steps
                upper_bound=True,
                arch=dense.key,
            )
        evals = 1 + (epochs * int(opts.eval_every_epoch) + 1 if epochs else 0)
        jsv = 0
        if opts.jsv_samples > 0:
            jsv = 1 + (epochs if opts.jsv_every_epoch else 0)
        if base is not None and trains_base:
            evals += 1
            jsv += int(opts.jsv_samples > 0)
        return RunCost(
            run_id=spec.run_id(),
            cell=spec.cell,
            seed=spec.seed,
            method=spec.method,
            base_id=base_id,
            trains_base=bool(base is not None and trains_base),
            base=base,
            prune=prune,
            retrain=retrain,
            dense_macs=dense.macs,
            pruned_macs=small.macs,
            num_test=facts.num_test,
            evals=evals,
            jsv=jsv,
            jsv_samples=opts.jsv_samples,
        )

    def _base_phase(
        self, spec: RunSpec, facts: DataFacts, dense: _Arch, small: _Arch
    ) -> tuple[Phase, str]:
        recipe = spec.base_recipe()
        spe = -(-facts.num_train // recipe.batch_size)
        base = dict(spec.base)
        if spec.opts.squeeze_base_by_speedup:
            # SX-B, as execute's _squeezed: P/k epochs' worth of steps, k the measured speed-up.
            speedup = dense.macs / max(small.macs, 1)
            base.setdefault("schedule_epochs", base["epochs"])
            base["train_steps"] = max(1, int(round(base["epochs"] * spe / speedup)))
            base["epochs"] = max(1, math.ceil(base["train_steps"] / spe))
            options = {k: v for k, v in spec.options.items() if k != "squeeze_base_by_speedup"}
            options["squeezed_from"] = int(spec.base["epochs"])
            spec = dataclasses.replace(spec, base=base, options=options)
        steps = base.get("train_steps")
        epochs: float = recipe.epochs if steps is None else int(steps) / spe
        length = int(base.get("schedule_epochs", base["epochs"]))
        schedule = parse_schedule(
            recipe.schedule, max(length, int(base["epochs"])), "base.schedule"
        )
        phase = Phase(
            "base",
            epochs,
            facts.num_train,
            dense.macs,
            recipe.batch_size,
            pipeline.steps_per_execution(schedule),
            arch=dense.key,
        )
        return phase, spec.base_id()

    def estimate(self, specs: Sequence[RunSpec], startup_seconds: float = 0.0) -> GridCost:
        """The cost of ``specs`` run one after another by one process, each base counted once.

        ``startup_seconds``: the process's fixed cost (start, imports), added to the time.
        """
        runs: list[RunCost] = []
        bases: dict[str, Phase] = {}
        for spec in specs:
            cost = self.run_cost(spec, trains_base=True)
            if cost.base_id is not None and cost.base is not None:
                cost.trains_base = cost.base_id not in bases
                if cost.trains_base:
                    bases[cost.base_id] = cost.base
                else:  # loaded from the cache: no base eval, no base JSV
                    cost.evals -= 1
                    cost.jsv -= int(spec.opts.jsv_samples > 0)
            if self.calibrate:
                cost.seconds = self._run_seconds(spec, cost)
            runs.append(cost)
        notes = sorted({f"{f.name}: {f.note}" for f in self._facts.values() if f.note})
        if any(r.prune is not None for r in runs):
            notes.append("pruning-stage epochs are an upper bound (options.prune_max_epochs)")
        return GridCost(runs, bases, startup_seconds if self.calibrate else 0.0, notes)

    # -- calibration ------------------------------------------------------------------------

    def _median(self, fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def _data(self, spec: RunSpec, batch: int) -> tuple[Any, float]:
        """The run's dataset at ``batch`` (``None`` when not loadable here) and its load time."""
        opts = dict(spec.opts.data_options)
        if spec.model.startswith("mlp"):
            opts.setdefault("flatten", True)
        key = _key("data", spec.dataset, spec.data_dir, opts, batch)  # the seed costs nothing
        if key not in self._timings:
            data, seconds = None, 0.0
            if spec.dataset != "imagenet":  # its decoding pipeline is not timed: random inputs

                def load() -> Any:
                    return load_dataset(
                        spec.dataset, spec.data_dir, batch_size=batch, seed=spec.seed, **opts
                    )

                try:
                    t0 = time.perf_counter()
                    data = load()
                    seconds = time.perf_counter() - t0
                    if seconds < 1.0:  # the first load also imports the reader: time another
                        seconds = self._median(load)
                except TfpruneError as err:
                    self.log(
                        f"timing: {spec.dataset} is not here ({type(err).__name__}); "
                        "random inputs are used and loading is not timed"
                    )
            self._timings[key] = (data, seconds)
        return self._timings[key]

    def _model(self, arch: _Arch) -> Any:
        key = _key("model", arch.key)
        if key not in self._timings:
            with use_runtime(run_runtime(arch.spec)):
                self._timings[key] = arch.build()
        return self._timings[key]

    def _train_timing(self, phase: Phase, spec: RunSpec) -> dict[str, float]:
        """Seconds per step, per epoch, per ``fit`` call and of the first call (tracing).

        On the real training pipeline when the dataset is here: whole epochs when one is cheap
        (the per-epoch cost of the input pipeline is then included), else a few steps; on random
        inputs of the right shape otherwise.
        """
        arch = self._archs[phase.arch]
        recipe = spec.retrain if phase.kind != "base" else spec.base_recipe()
        batch = phase.batch_size
        data, _ = self._data(spec, batch)
        key = _key("train", arch.key, batch, phase.steps_per_execution, recipe.optimizer)
        if key in self._timings:
            return self._timings[key]
        flops_per_step = TRAIN_PASSES * FLOPS_PER_MAC * arch.macs * batch
        spe_exec = phase.steps_per_execution
        whole_epochs = data is not None and flops_per_step * phase.steps_per_epoch < 2e10
        if not whole_epochs and flops_per_step * spe_exec > 5e9:
            spe_exec = 1  # a big model: the Python overhead saved by spe_exec is negligible
        a, b = spe_exec, 3 * spe_exec
        if flops_per_step * b > 2e10:
            a, b = 1, 2
        if data is not None:
            ds = data.train if whole_epochs else data.train.repeat()
        else:
            rng = np.random.default_rng(0)
            x = rng.random((batch * 4, *arch.input_shape), dtype=np.float32)
            y = np.arange(batch * 4) % arch.num_classes
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
        t_start = time.perf_counter()
        with use_runtime(run_runtime(arch.spec)):
            firsts = []  # the first call traces the train function: twice for a cheap model
            for _ in range(2 if whole_epochs else 1):
                model = arch.build()
                pipeline.compile_model(model, recipe, 0.01, spe_exec)
                t0 = time.perf_counter()
                model.fit(ds, epochs=1, steps_per_epoch=None if whole_epochs else a, verbose=0)
                firsts.append(time.perf_counter() - t0)
            first = statistics.median(firsts)

            def fit(epochs: int, steps: int | None) -> None:
                model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0)

            if whole_epochs:
                t_1 = self._median(lambda: fit(1, None))
                t_3 = self._median(lambda: fit(3, None))
                epoch_all = max((t_3 - t_1) / 2, 1e-9)
                step, epoch = epoch_all / phase.steps_per_epoch, 0.0
                call = max(t_1 - epoch_all, 0.0)
                t_first = t_1
            else:
                t_a = self._median(lambda: fit(1, a))
                t_b = self._median(lambda: fit(1, b))
                t_2a = self._median(lambda: fit(2, a))
                step = max((t_b - t_a) / (b - a), 1e-9)
                epoch = max(t_2a - t_a - a * step, 0.0)
                call = max(t_a - epoch - a * step, 0.0)
                t_first = t_a
        out = {"step": step, "epoch": epoch, "call": call, "first": max(first - t_first, 0.0)}
        source = "" if data is not None else ", random inputs"
        per_epoch = step * phase.steps_per_epoch + epoch
        took = time.perf_counter() - t_start
        self.log(
            f"timed {_arch_label(arch)} batch {batch}: {per_epoch:.3g} s/epoch, "
            f"first fit +{out['first']:.2f}s{source} ({took:.1f}s)"
        )
        self._timings[key] = out
        return out

    def _eval_timing(self, arch: _Arch, spec: RunSpec, batch: int) -> dict[str, float]:
        """Seconds of one evaluation pass and extra of the first one (tracing)."""
        data, _ = self._data(spec, batch)
        num_test = self.facts(spec).num_test
        key = _key("eval", arch.key, batch, num_test)
        if key in self._timings:
            return self._timings[key]
        n_batches = -(-num_test // batch)
        probe = min(n_batches, 8)
        if data is not None:
            ds = data.test.take(probe)
        else:
            rng = np.random.default_rng(1)
            x = rng.random((batch * probe, *arch.input_shape), dtype=np.float32)
            y = np.arange(batch * probe) % arch.num_classes
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
        with use_runtime(run_runtime(arch.spec)):
            model = self._model(arch)
            pipeline.compile_model(model, arch.spec.retrain, 0.01)
            t0 = time.perf_counter()
            model.evaluate(ds, verbose=0)
            first = time.perf_counter() - t0
            t_probe = self._median(lambda: model.evaluate(ds, verbose=0))
            if probe < n_batches:
                t_one = self._median(lambda: model.evaluate(ds.take(1), verbose=0))
                per = max((t_probe - t_one) / (probe - 1), 0.0) if probe > 1 else t_one
                t_pass = t_one + per * (n_batches - 1)
            else:
                t_pass = t_probe
        out = {"pass": t_pass, "first": max(first - t_probe, 0.0)}
        self._timings[key] = out
        return out

    def _jsv_timing(self, arch: _Arch, samples: int) -> dict[str, float]:
        """Seconds of a mean-JSV measurement: a steady one (per-epoch callback) and a first."""
        key = _key("jsv", arch.key, samples)
        if key in self._timings:
            return self._timings[key]
        n = min(samples, 100 if arch.macs * arch.num_classes > 1e9 else samples)
        x = np.random.default_rng(2).random((n, *arch.input_shape), dtype=np.float32)
        with use_runtime(run_runtime(arch.spec)):
            model = self._model(arch)
            callback = JacobianSingularValues(x, log_on_train_begin=False)
            callback.set_model(model)
            t0 = time.perf_counter()
            callback.compute()
            first = time.perf_counter() - t0
            steady = self._median(callback.compute)
        scale = samples / n
        out = {"call": steady * scale, "first": max(first - steady, 0.0)}
        self._timings[key] = out
        return out

    def _orthp_seconds(self, arch: _Arch) -> float:
        key = _key("orthp", arch.key)
        if key not in self._timings:
            with use_runtime(run_runtime(arch.spec)):
                model = arch.build()
                self._timings[key] = self._median(lambda: tfprune.orthp(model))
        return self._timings[key]

    def _phase_seconds(self, phase: Phase, spec: RunSpec) -> float:
        """One ``fit``: first call, steps, epoch overheads, per-epoch evaluation and JSV."""
        if phase.epochs <= 0:
            return 0.0
        t = self._train_timing(phase, spec)
        arch = self._archs[phase.arch]
        steps = phase.epochs * phase.steps_per_epoch
        seconds = t["first"] + t["call"] + math.ceil(phase.epochs) * t["epoch"] + steps * t["step"]
        if phase.eval_every_epoch:
            seconds += phase.epochs * self._eval_timing(arch, spec, phase.batch_size)["pass"]
        if phase.jsv_every_epoch:
            jv = self._jsv_timing(arch, spec.opts.jsv_samples)
            seconds += jv["first"] + phase.epochs * jv["call"]
        return seconds

    def _run_seconds(self, spec: RunSpec, cost: RunCost) -> float:
        """Calibrated wall time of one run, following the steps of ``execute``."""
        jsv_n = spec.opts.jsv_samples
        batch = spec.retrain.batch_size
        small = self._archs[cost.retrain.arch]
        dense = self._arch(spec, self.facts(spec), None)
        seconds = self._data(spec, batch)[1] + dense.build_seconds  # data, base/fresh model
        if cost.base is not None:
            base_batch = spec.base_recipe().batch_size
            seconds += self._data(spec, base_batch)[1]  # the base model loads the data too
            if cost.trains_base:
                seconds += self._phase_seconds(cost.base, spec)
                ev = self._eval_timing(dense, spec, base_batch)
                seconds += ev["first"] + ev["pass"]
                if jsv_n:
                    jv = self._jsv_timing(dense, jsv_n)
                    seconds += jv["first"] + jv["call"]
        if cost.prune is not None:
            seconds += self._phase_seconds(cost.prune, spec)
        seconds += small.prune_seconds  # one-shot masks and removal (0 for dense)
        if spec.method == "scratch":
            seconds += small.build_seconds
        if spec.method.endswith("_orthp"):
            seconds += self._orthp_seconds(small)
        ev = self._eval_timing(small, spec, batch)
        seconds += ev["first"] + ev["pass"]  # accuracy right after pruning
        if jsv_n:
            jv = self._jsv_timing(small, jsv_n)
            seconds += jv["first"] + jv["call"]  # mean JSV right after pruning
        seconds += self._phase_seconds(cost.retrain, spec)
        if cost.retrain.epochs:
            seconds += ev["pass"]  # final accuracy
        return seconds


def _arch_label(arch: _Arch) -> str:
    ratio = "dense" if arch.ratio is None else f"ratio {json.dumps(arch.ratio)}"
    return f"{arch.spec.model} {ratio} ({format_count(arch.macs)} MACs)"


def estimate_cost(
    specs: Sequence[RunSpec],
    *,
    calibrate: bool = False,
    startup_seconds: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> GridCost:
    """The cost of running ``specs`` in one process (see the module doc).

    Args:
      specs: The runs, e.g. ``plan_shard(expand_config(config), i, n)``.
      calibrate: Also estimate wall time by timing each distinct model on this machine.
      startup_seconds: Fixed cost of the process (start and imports) added to the time.
      log: Progress lines of the calibration.
    """
    return CostEstimator(calibrate=calibrate, log=log).estimate(specs, startup_seconds)


def process_seconds() -> float | None:
    """Seconds since this process started (Linux ``/proc``), ``None`` where unknown."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def format_count(x: float) -> str:
    """A count with an SI suffix, 3 significant digits: ``"42.3G"``, ``"3.48K"``, ``"600M"``."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def format_seconds(seconds: float) -> str:
    """``"7.3s"``, ``"4m05s"`` or ``"2h03m"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_totals(cost: GridCost) -> list[str]:
    """The totals of ``cost`` as lines of text (at most 100 columns)."""
    ep = cost.epochs
    bound = " (upper bound)" if ep["prune"] else ""
    jsv_n = max((r.jsv_samples for r in cost.runs), default=0)
    jsv = sum(r.jsv for r in cost.runs)
    lines = [
        f"{len(cost.runs)} runs, {len(cost.bases)} base models (each trained once)",
        f"epochs: base {_num(ep['base'])}, pruning {_num(ep['prune'])}{bound}, retraining "
        f"{_num(ep['retrain'])}",
        f"training FLOPs: {format_count(cost.train_flops)} = base "
        f"{format_count(cost.base_flops)} + pruning {format_count(cost.prune_flops)} + "
        f"retraining {format_count(cost.retrain_flops)}",
        "  (3 x 2 x MACs x examples x epochs: forward+backward ~ 3 forward passes, "
        "1 MAC = 2 FLOPs)",
        f"evaluation: {sum(r.evals for r in cost.runs)} test-set passes "
        f"({format_count(cost.eval_flops)} FLOPs)"
        + (f"; mean JSV: {jsv} measurements x {jsv_n} Jacobians" if jsv else ""),
    ]
    if cost.seconds is not None:
        lines.append(
            f"estimated wall time: {format_seconds(cost.seconds)} = runs "
            f"{format_seconds(cost.seconds - cost.startup_seconds)} + process start "
            f"{format_seconds(cost.startup_seconds)} (not included: the report at the end)"
        )
    return lines


def format_cost(cost: GridCost, title: str = "") -> str:
    """A readable table (at most 100 columns) of the runs of ``cost``, then their totals."""
    timed = cost.seconds is not None
    head = (
        f"{'run id':<12}  {'cell':<25}  {'seed':>4}  {'epochs b/p/r':<12}  {'ex/ep':>6}  "
        f"{'MACs/ex':<12}  {'FLOPs':>7}" + ("  est. s" if timed else "")
    )
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for r in cost.runs:
        cell = r.cell if len(r.cell) <= 25 else r.cell[:24] + "~"
        macs = f"{format_count(r.dense_macs)}->{format_count(r.pruned_macs)}"
        n = r.examples_per_epoch
        line = (
            f"{r.run_id:<12}  {cell:<25}  {r.seed:>4}  {r.epochs_text():<12}  "
            f"{n if n < 1_000_000 else format_count(n):>6}  {macs:<12}  "
            f"{format_count(r.train_flops):>7}"
        )
        if timed:
            line += f"  {r.seconds:6.1f}"
        lines.append(line)
    lines.append("-" * len(head))
    lines.append(
        "epochs b/p/r = base/pruning/retraining; (20) = base loaded from the cache (trained by an"
    )
    lines.append(
        "earlier run); <=30 = upper bound. FLOPs = this run's training FLOPs (its base included"
    )
    lines.append(
        "when it trains it); MACs/ex = MACs per example, dense -> pruned; est. s = estimated "
        "seconds."
        if timed
        else "when it trains it); MACs/ex = MACs per example, dense -> pruned."
    )
    lines += format_totals(cost)
    lines.extend(f"note: {n}" for n in cost.notes)
    return "\n".join(lines)
