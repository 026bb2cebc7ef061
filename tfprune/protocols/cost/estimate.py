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
* training examples per epoch (read from the dataset's size without loading it, see
  :mod:`tfprune.protocols.cost.dataset_sizes`);
* MACs per example of the dense model and of the pruned one (the L1 shape at the run's ratio,
  the shape :class:`~tfprune.protocols.methods.Scratch` trains; the layer-wise criteria keep the
  same channel counts), counted with :func:`tfprune.count_flops` on models built here once per
  distinct (model, input shape, ratio).

Training FLOPs are ``3 × 2 × MACs × examples × epochs`` (see
:mod:`tfprune.protocols.cost.model`, which holds the records of the cost). The base and the
pruning stage train the dense-size model, retraining the pruned one. Evaluation passes and
mean-JSV measurements are counted separately.

With ``calibrate=True`` the estimator also asks a
:class:`~tfprune.protocols.cost.calibration.Calibration` for the seconds each run takes on this
machine (it times each distinct model here); that gives seconds per run, per grid and per
shard. The text of the cost is written by :mod:`tfprune.protocols.cost.report`.

The modules of :mod:`tfprune.protocols.cost`, each depending only on those before it:
``dataset_sizes`` and ``model`` (the records), ``report`` (text), ``calibration`` (timing), then
this one (the counting and the entry points).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from tfprune.flops import count_flops
from tfprune.protocols.cost.calibration import Calibration
from tfprune.protocols.cost.dataset_sizes import DataFacts, dataset_facts
from tfprune.protocols.cost.model import (
    Arch,
    GridCost,
    Phase,
    RunCost,
)
from tfprune.protocols.execute import build_model, retrain_plan, run_runtime
from tfprune.protocols.methods import REGULARIZED, get_method, prune_one_shot
from tfprune.protocols.spec import RunSpec, canonical_json
from tfprune.pruning import find_sparsity_for_target
from tfprune.runtime import use_runtime
from tfprune.training import pipeline
from tfprune.training.schedules import parse_schedule

__all__ = ["CostEstimator", "estimate_cost"]


def _key(*parts: Any) -> str:
    return canonical_json(list(parts))


class CostEstimator:
    """Counts run costs; caches dataset sizes and model counts.

    With ``calibrate`` it also keeps a :class:`~tfprune.protocols.cost.calibration.Calibration`
    (attribute ``calibration``, else ``None``) and asks it for each run's seconds; the counting
    here does not depend on how the timing is done.

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
        self.calibration = (
            Calibration(repeats=self.repeats, log=self.log) if self.calibrate else None
        )
        self._facts: dict[str, DataFacts] = {}
        self._archs: dict[str, Arch] = {}
        self._ratios: dict[str, Any] = {}

    def facts(self, spec: RunSpec) -> DataFacts:
        """Dataset sizes of ``spec`` (MLP models get flattened inputs, as in a run)."""
        opts = dict(spec.opts.data_options)
        flatten = bool(opts.pop("flatten", spec.model.startswith("mlp")))
        key = _key(spec.dataset, spec.data_dir, opts, flatten)
        if key not in self._facts:
            self._facts[key] = dataset_facts(spec.dataset, spec.data_dir, opts, flatten=flatten)
        return self._facts[key]

    def _arch(self, spec: RunSpec, facts: DataFacts, ratio: Any) -> Arch:
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
            arch = Arch(key, spec, facts.input_shape, facts.num_classes, ratio)
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
            arch.macs = int(count_flops(model).total)
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
            found = find_sparsity_for_target(
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
        self, spec: RunSpec, facts: DataFacts, dense: Arch, small: Arch
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
        if self.calibration is not None:
            self.calibration.new_process()
        for spec in specs:
            cost = self.run_cost(spec, trains_base=True)
            if cost.base_id is not None and cost.base is not None:
                cost.trains_base = cost.base_id not in bases
                if cost.trains_base:
                    bases[cost.base_id] = cost.base
                else:  # loaded from the cache: no base eval, no base JSV
                    cost.evals -= 1
                    cost.jsv -= int(spec.opts.jsv_samples > 0)
            if self.calibration is not None:
                dense = self._arch(spec, self.facts(spec), None)
                small = self._archs[cost.retrain.arch]
                cost.seconds = self.calibration.run_seconds(spec, cost, dense, small)
            runs.append(cost)
        notes = sorted({f"{f.name}: {f.note}" for f in self._facts.values() if f.note})
        if any(r.prune is not None for r in runs):
            notes.append("pruning-stage epochs are an upper bound (options.prune_max_epochs)")
        return GridCost(runs, bases, startup_seconds if self.calibrate else 0.0, notes)


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
