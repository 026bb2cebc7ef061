"""The pipeline of one :class:`~tfprune.protocols.spec.RunSpec`: base -> prune -> retrain -> record.

Steps (all seeded by ``spec.seed``):

1. Load the dataset (MLP models get flattened inputs).
2. Get the **base model**: trained with ``spec.base`` (``schedule``, ``epochs``, optional
   ``schedule_epochs`` to stop a longer schedule early — the ``Px`` pruning epoch of
   Wang et al. 2023 —,
   ``train_steps`` for an exact number of optimizer steps (SX-B), ``batch_size``, ``momentum``,
   ``weight_decay``, ``weight_decay_mode``, ``optimizer``), cached as weights under
   ``workdir/base_models/<base_id>/`` (written to a temporary folder and renamed, so concurrent
   writers are safe: the first rename wins, the other result is dropped).
3. Apply the method of :data:`tfprune.protocols.methods.METHODS` (dense, one-shot criterion
   with or without OrthP, scratch, or a regularized pruning stage). Scratch runs train the
   pruned architecture fresh for their budget (``options.scratch_budget``: ``None`` = the
   recipe's epochs, ``"E"`` = the pipeline's total epochs, ``"B"`` = its total FLOPs); protocols
   give them the dense model's recipe, whose piecewise schedule is stretched to the budget.
4. Measure params / FLOPs (:func:`tfprune.count_params` / :func:`tfprune.count_flops`),
   accuracy and mean JSV right after pruning (``options.jsv_samples`` training images, default
   1000; ``0`` disables) and, with ``options.jsv_every_epoch``, after every retraining epoch.
5. Retrain with the recipe (:func:`tfprune.training.fit`) and record the per-epoch history,
   the metrics and the fairness ``setup`` descriptors read by
   :func:`tfprune.protocols.setups.setup_check` (including the weight-decay mode). The metrics
   hold the last training epoch's accuracy and its gap to the test accuracy; a large gap in a
   model with BatchNormalization is logged as a warning
   (:func:`tfprune.batch_norm.check_accuracy_gap`), the recipe is never changed for it.

With ``options.recalibrate_batch_norm`` (off by default: the papers evaluate the model as
trained) the BatchNorm statistics are re-estimated on training batches after pruning and after
retraining, before each evaluation; ``acc_after_prune_raw`` keeps the figure without it.

All options are typed and validated (:class:`~tfprune.protocols.spec.RunOptions`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.batch_norm import RECALIBRATION_BATCHES, check_accuracy_gap, recalibrate_batch_norm
from tfprune.compat import keras
from tfprune.data import load_dataset
from tfprune.errors import ConfigError
from tfprune.files import atomic_write_json, staging_dir
from tfprune.flops import count_flops, count_params
from tfprune.models import get_model, model_builder
from tfprune.protocols.methods import METHODS, get_method, prune_one_shot
from tfprune.protocols.spec import BaseSpec, RunRecord, RunSpec
from tfprune.pruning import find_sparsity_for_target
from tfprune.runtime import Runtime, use_runtime
from tfprune.training import pipeline
from tfprune.training.recipe import TrainingRecipe
from tfprune.training.schedules import (
    LRSchedule,
    format_piecewise,
    parse_schedule,
    rescale_piecewise,
    scratch_b_epochs,
)

__all__ = [
    "BaseModel",
    "RunResult",
    "build_model",
    "execute",
    "get_base_model",
    "retrain_plan",
    "run",
    "run_runtime",
    "setup_descriptor",
]

logger = logging.getLogger(__name__)

_scope = pipeline.scope


def _replicas(strategy: Any) -> int:
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int, **kw: Any):
    """``get_model(name)`` with input size, classes and seed passed as the builder takes them."""
    builder = model_builder(name)
    params = inspect.signature(builder).parameters if builder is not None else {}
    kwargs = dict(kw)
    if "input_dim" in params and "input_dim" not in kwargs:
        kwargs["input_dim"] = int(np.prod(input_shape))
    elif "input_shape" in params and "input_shape" not in kwargs:
        kwargs["input_shape"] = tuple(input_shape)
    if "num_classes" in params and "num_classes" not in kwargs:
        kwargs["num_classes"] = int(num_classes)
    if "seed" in params and "seed" not in kwargs:
        kwargs["seed"] = int(seed)
    if builder is None:  # keras:<Application>
        kwargs.setdefault("input_shape", tuple(input_shape))
        kwargs.setdefault("num_classes", int(num_classes))
    return get_model(name, **kwargs)


def _load_data(spec: BaseSpec, batch_size: int, strategy: Any) -> Any:
    opts = dict(spec.data_options)
    if spec.model.startswith("mlp"):
        opts.setdefault("flatten", True)
    per_replica = max(1, batch_size // _replicas(strategy))
    return load_dataset(
        spec.dataset,
        spec.data_dir,
        batch_size=per_replica,
        seed=spec.seed,
        strategy=strategy,
        **opts,
    )


def _evaluate(model: Any, data: Any) -> float:
    return pipeline.evaluate(model, data)


def run_runtime(spec: RunSpec | BaseSpec) -> Runtime:
    """The precision and XLA setting ``spec`` runs under (its ``precision``/``jit_compile``)."""
    if isinstance(spec, RunSpec):
        spec = spec.base_spec()
    return Runtime(spec.precision, spec.jit_compile)


def _fresh_model(spec: BaseSpec, data: Any, strategy: Any) -> Any:
    with _scope(strategy):
        return build_model(
            spec.model, data.input_shape, data.num_classes, spec.seed, **spec.model_kwargs
        )


# --------------------------------------------------------------------------------------------
# Base model cache
# --------------------------------------------------------------------------------------------


class BaseModel:
    """A trained (or loaded) base model and what is known about it."""

    def __init__(self, model: Any, meta: dict[str, Any]) -> None:
        self.model = model
        self.meta = meta


def _base_schedule(spec: RunSpec | BaseSpec, recipe: TrainingRecipe) -> LRSchedule:
    length = int(spec.base.get("schedule_epochs", recipe.epochs))
    return parse_schedule(recipe.schedule, max(length, recipe.epochs), field="base.schedule")


def get_base_model(
    spec: BaseSpec,
    workdir: str,
    *,
    strategy: Any = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BaseModel:
    """Load the cached base model ``spec`` or train and cache it (atomically).

    The cache is ``workdir/base_models/<spec.base_id()>/``; a run's base is
    ``get_base_model(run_spec.base_spec(), ...)``.

    It is built and trained in the spec's precision, with its XLA setting. With ``progress``,
    training also tests the model on the held-out split after every epoch (``val_*`` in the
    history) and passes one line per epoch to ``progress``; the weights trained, the cache and
    the ids are the same either way.
    """
    log = log or logger.info
    with use_runtime(run_runtime(spec)):
        return _get_base_model(spec, workdir, strategy=strategy, log=log, progress=progress)


def _get_base_model(
    spec: BaseSpec,
    workdir: str,
    *,
    strategy: Any,
    log: Callable[[str], None],
    progress: Callable[[str], None] | None,
) -> BaseModel:
    recipe = spec.recipe()
    base_id = spec.base_id()
    root = os.path.join(workdir, "base_models")
    final = os.path.join(root, base_id)
    keras.utils.set_random_seed(spec.seed)
    data = _load_data(spec, recipe.batch_size, strategy)
    model = _fresh_model(spec, data, strategy)
    weights = os.path.join(final, "weights.h5")
    meta_path = os.path.join(final, "meta.json")
    if os.path.exists(meta_path) and os.path.exists(weights):
        model.load_weights(weights)
        with open(meta_path) as f:
            meta = json.load(f)
        meta["cached"] = True
        log(f"base model {base_id}: loaded from cache (acc {meta.get('acc', float('nan')):.4f})")
        if meta.get("acc") is not None:
            meta.update(_base_gap(model, meta, log))
        return BaseModel(model, meta)

    schedule = _base_schedule(spec, recipe)
    steps = spec.base.get("train_steps")
    what = f"{steps} steps" if steps is not None else f"{recipe.epochs} epochs"
    log(f"base model {base_id}: training {spec.model} for {what}")
    t0 = time.time()
    spe = pipeline.steps_per_execution(schedule)
    # a grid's base is trained as its twin; tfprune-train (progress) saves the model itself
    # with its optimizer state
    trainee = pipeline.compiled(
        model, recipe, schedule.lr_at(0), spe, strategy=strategy, share=progress is None
    )
    history = pipeline.fit(
        trainee,
        data,
        recipe,
        schedule,
        strategy=strategy,
        epochs=recipe.epochs,
        steps=None if steps is None else int(steps),
        eval_every_epoch=progress is not None,
        compile=False,
        progress=progress,
    )
    seconds = time.time() - t0
    acc = _evaluate(trainee, data)
    if trainee is not model:  # trained as its twin: the weights come back, compiled as before
        model.set_weights(trainee.get_weights())
        with _scope(strategy):
            pipeline.compile_model(model, recipe, schedule.lr_at(0), spe)
    meta = {
        "base_id": base_id,
        "dataset": spec.dataset,
        "model": spec.model,
        "base": spec.base,
        "seed": spec.seed,
        "acc": acc,
        "seconds": seconds,
        "history": history,
        "schedule": _schedule_text(schedule, recipe.epochs),
        "steps_per_epoch": data.steps_per_epoch,
    }
    meta.update(_base_gap(model, meta, log))
    tmp = staging_dir(root, base_id)
    try:
        model.save_weights(os.path.join(tmp, "weights.h5"))
        atomic_write_json(os.path.join(tmp, "meta.json"), meta)
        try:
            os.rename(tmp, final)
        except OSError:
            pass  # another process won the race; its (equivalent) base is kept
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    meta["cached"] = False
    log(f"base model {base_id}: acc {acc:.4f} after {seconds:.1f}s")
    return BaseModel(model, meta)


def _base_gap(model: Any, meta: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The base model's training-vs-held-out figures (a warning when BatchNorm may be stale)."""
    gap = check_accuracy_gap(
        model, meta.get("history"), meta["acc"], what=f"base model {meta['base_id']}", log=log
    )
    return gap.metrics()


def _recalibrate(model: Any, data: Any) -> None:
    """Re-estimate the BatchNorm statistics on training batches (``recalibrate_batch_norm``)."""
    recalibrate_batch_norm(model, data.train, steps=RECALIBRATION_BATCHES)


# --------------------------------------------------------------------------------------------
# Setup descriptors
# --------------------------------------------------------------------------------------------


def _schedule_text(schedule: LRSchedule, epochs: int) -> str:
    """The schedule as actually run for ``epochs`` epochs (piecewise: stages before the end)."""
    if schedule.kind == "piecewise":
        return format_piecewise([(e, lr) for e, lr in schedule.stages if e < max(epochs, 1)])
    return f"{schedule.spec}@{schedule.epochs}"


def _overall(parts: list[tuple[LRSchedule, int]]) -> str:
    """Concatenate schedules run back to back into one piecewise text (others: joined specs)."""
    if all(s.kind == "piecewise" for s, _ in parts):
        stages: list[tuple[int, float]] = []
        offset = 0
        for sched, epochs in parts:
            for e, lr in sched.stages:
                if e >= epochs:
                    break
                if not stages or not math.isclose(stages[-1][1], lr, rel_tol=1e-9):
                    stages.append((offset + e, lr))
            offset += epochs
        return format_piecewise(stages)
    return " | ".join(f"{_schedule_text(s, n)} x{n}" for s, n in parts if n > 0)


def _hyper(
    recipe: TrainingRecipe, precision: str = "float32", recalibrate: bool = False
) -> dict[str, Any]:
    hyper = {
        "batch_size": recipe.batch_size,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "weight_decay_mode": recipe.weight_decay_mode,
        "optimizer": recipe.optimizer,
        "precision": precision,
    }
    if recalibrate:  # only when set: the setups of the papers' recipe stay what they were
        hyper["recalibrate_batch_norm"] = True
    return hyper


def _jsv_inputs(data: Any, n: int) -> np.ndarray | None:
    if n <= 0:
        return None
    x = data.train_arrays[0][:n]
    return np.asarray(data.preprocess(x))


def _base_jsv(model: Any, base_id: str, workdir: str, x: np.ndarray | None) -> float | None:
    """Mean JSV of a cached base model, computed once per base and sample count."""
    if x is None:
        return None
    folder = os.path.join(workdir, "base_models", base_id)
    path = os.path.join(folder, f"jsv_{len(x)}.json")
    if os.path.exists(path):
        with open(path) as f:
            return float(json.load(f)["mean_jsv"])
    value = _jsv(model, x)
    if os.path.isdir(folder):
        atomic_write_json(path, {"mean_jsv": value, "samples": len(x)})
    return value


def _jsv(model: Any, x: np.ndarray | None) -> float | None:
    if x is None:
        return None
    return pipeline.jsv_mean(model, x)


# --------------------------------------------------------------------------------------------
# execute
# --------------------------------------------------------------------------------------------


def retrain_plan(spec: RunSpec, base_flops: float, flops: float) -> tuple[int, LRSchedule]:
    """``(epochs, schedule)`` of the retraining (scratch: the budget, schedule stretched to it)."""
    opts, recipe = spec.opts, spec.retrain
    epochs = recipe.epochs
    if not get_method(spec.method).needs_base:
        base_rec = spec.base_recipe()
        pipeline_epochs = recipe.epochs if opts.pipeline_epochs is None else opts.pipeline_epochs
        if opts.scratch_budget == "E":
            epochs = base_rec.epochs + opts.pipeline_prune_epochs + pipeline_epochs
        elif opts.scratch_budget == "B":
            epochs = scratch_b_epochs(
                base_rec.epochs, base_flops, flops, pipeline_epochs, variant=opts.scratch_b_variant
            )
    schedule = parse_schedule(recipe.schedule, recipe.epochs, field="retrain.schedule")
    if epochs != recipe.epochs and schedule.kind == "piecewise" and recipe.epochs > 0:
        schedule = parse_schedule(
            format_piecewise(rescale_piecewise(schedule.stages, recipe.epochs, epochs)),
            epochs,
            field="retrain.schedule",
        )
    elif epochs != recipe.epochs:
        schedule = parse_schedule(recipe.schedule, epochs, field="retrain.schedule")
    return epochs, schedule


def setup_descriptor(
    spec: RunSpec,
    *,
    params: int,
    flops: int,
    base_flops: int,
    prune_epochs: float = 0.0,
    prune_schedule: str = "",
    steps_per_epoch: int | None = None,
) -> dict[str, Any]:
    """The fairness descriptors of a run, from its spec and its achieved counts.

    They are what :func:`~tfprune.protocols.setups.setup_check` compares.

    Args:
      spec: The run.
      params: Achieved parameter count of the retrained model.
      flops: Its achieved FLOPs.
      base_flops: FLOPs of the dense model.
      prune_epochs: Epochs of the pruning stage (regularized methods).
      prune_schedule: Its LR schedule.
      steps_per_epoch: Training batches per epoch (for a base trained an exact number of steps).
    """
    epochs, schedule = retrain_plan(spec, base_flops, flops)
    scratch = not get_method(spec.method).needs_base
    base_rec = spec.base_recipe()
    if scratch:
        base_epochs: float = 0
    elif spec.base.get("train_steps") is not None and steps_per_epoch:
        base_epochs = int(spec.base["train_steps"]) / int(steps_per_epoch)
    else:
        base_epochs = base_rec.epochs
    if scratch:
        overall = _schedule_text(schedule, epochs)
    else:
        parts = [(_base_schedule(spec, base_rec), base_rec.epochs)]
        if prune_epochs:
            n_prune = max(1, math.ceil(prune_epochs))
            parts.append((parse_schedule(prune_schedule, n_prune), n_prune))
        parts.append((schedule, epochs))
        overall = _overall(parts)
    return {
        "dataset": spec.dataset,
        "model": spec.model,
        "params": int(params),
        "flops": int(flops),
        "base_id": None if scratch else spec.base_id(),
        "finetune_schedule": _schedule_text(schedule, epochs),
        "finetune_epochs": int(epochs),
        "hyper": _hyper(spec.retrain, spec.opts.precision, spec.opts.recalibrate_batch_norm),
        "prune_epochs": prune_epochs,
        "prune_schedule": prune_schedule,
        "overall_schedule": overall,
        "total_epochs": base_epochs + prune_epochs + epochs,
        "total_flops": float((base_epochs + prune_epochs) * base_flops + epochs * flops),
        "scratch": scratch,
        "base_epochs": base_epochs,
    }


def _squeezed(spec: RunSpec, strategy: Any) -> RunSpec:
    """SX-B (Wang et al. 2023, Tab. 4): pretraining squeezed to ``P / k`` epochs' optimizer steps.

    ``k`` is the measured speed-up of the pruned shape, so that the pipeline's training FLOPs
    (``P/k * F1 + F * F2 = (P + F) * F2``) equal Scratch-E's, up to one step.
    """
    data = _load_data(spec.base_spec(), spec.base_recipe().batch_size, strategy)
    keras.utils.set_random_seed(spec.seed)
    dense = _fresh_model(spec.base_spec(), data, strategy)
    with _scope(strategy):
        _, small = prune_one_shot(dense, spec.ratio, "l1", data, seed=spec.seed)
    k = count_flops(dense).total / max(count_flops(small).total, 1)
    spe = data.steps_per_epoch
    if not spe:
        raise ConfigError("SX-B needs a dataset with a known number of training examples")
    base = dict(spec.base)
    base.setdefault("schedule_epochs", base["epochs"])
    steps = max(1, int(round(base["epochs"] * spe / k)))
    base["train_steps"] = steps
    base["epochs"] = max(1, math.ceil(steps / spe))
    options = {key: v for key, v in spec.options.items() if key != "squeeze_base_by_speedup"}
    options["squeezed_from"] = int(spec.base["epochs"])
    return dataclasses.replace(spec, base=base, options=options)


@dataclasses.dataclass
class RunResult:
    """A finished run: its record, and the models and data it ran on.

    Attributes:
      record: The :class:`RunRecord` (what the runner stores).
      model: The retrained model (for ``options.retrain_masked``: the masked model, still to
        be stripped); ``None`` when :func:`run` was told not to keep it.
      base: The base model the run started from (``None`` for a scratch run).
      data: The dataset the run trained and tested on.
    """

    record: RunRecord
    model: Any
    base: BaseModel | None
    data: Any


def run(
    spec: RunSpec,
    workdir: str,
    *,
    base: BaseModel | None = None,
    strategy: Any = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    keep_model: bool = True,
) -> RunResult:
    """Run ``spec`` (see the module doc) and return its record with the models it made.

    Every model of the run is built and trained under the spec's precision and XLA setting
    (:func:`run_runtime`). ``base`` starts the run from that model (e.g. one loaded from a
    file) instead of the cached base of ``spec.base_spec()``; ``progress`` gets a line per
    epoch while the base model trains (:func:`get_base_model`) and while the run retrains.
    ``keep_model=False`` leaves the retrained model out of the result: a model retrained as
    its twin (a compiled model of the same shape that the runs of a grid share) then does not
    get the twin's weights copied back.
    """
    log = log or logger.info
    runtime = run_runtime(spec)
    with use_runtime(runtime):
        result = _run(
            spec,
            workdir,
            base=base,
            strategy=strategy,
            log=log,
            progress=progress,
            keep_model=keep_model,
        )
    result.record.metrics["precision"] = runtime.precision
    result.record.metrics["jit_compile"] = runtime.jit_compile
    return result


def _run(
    spec: RunSpec,
    workdir: str,
    *,
    base: BaseModel | None,
    strategy: Any,
    log: Callable[[str], None],
    progress: Callable[[str], None] | None,
    keep_model: bool,
) -> RunResult:
    t_start = time.time()
    given = spec  # the record keeps the spec it was given: its id names the run's folder
    method = get_method(spec.method)
    method.check(spec)
    if spec.opts.retrain_masked and not method.retrains_masked:
        can = [m.name for m in METHODS.values() if m.retrains_masked]
        raise ConfigError(
            f"method {method.name!r} cannot retrain masked (options.retrain_masked); the "
            f"methods that can: {', '.join(can)}"
        )
    if spec.opts.squeeze_base_by_speedup and method.needs_base:
        spec = _squeezed(spec, strategy)
    opts = spec.opts
    recipe = spec.retrain
    spec.base_recipe()  # validated before anything trains
    keras.utils.set_random_seed(spec.seed)  # the pipelines' shuffles depend on the global seed
    base_spec = spec.base_spec()
    data = _load_data(base_spec, recipe.batch_size, strategy)
    jsv_x = _jsv_inputs(data, opts.jsv_samples)

    base_meta: dict[str, Any] = {}
    base_acc = jsv_base = None
    scratch = not method.needs_base
    if scratch:
        keras.utils.set_random_seed(spec.seed)
        base_model = _fresh_model(base_spec, data, strategy)
        base = None
    else:
        if base is None:
            base = get_base_model(base_spec, workdir, strategy=strategy, log=log, progress=progress)
        base_model, base_meta = base.model, base.meta
        # measured as its twin when it has one; the methods get the base model itself
        measured = pipeline.compiled(base_model, recipe, 0.01, strategy=strategy)
        acc = base_meta["acc"] if "acc" in base_meta else _evaluate(measured, data)
        base_acc = float(acc)
        jsv_base = _base_jsv(measured, spec.base_id(), workdir, jsv_x)

    base_params = count_params(base_model).total
    base_flops = count_flops(base_model).total

    target = None
    run_spec = spec
    if opts.target:
        # One operating point for every method: the ratio whose exact counts meet the target.
        target = find_sparsity_for_target(
            base_model,
            dict(opts.target),
            sparsity=spec.ratio if isinstance(spec.ratio, dict) else None,
            skip=opts.skip,
        )
        options = {k: v for k, v in spec.options.items() if k != "target"}
        run_spec = dataclasses.replace(spec, ratio=target.sparsity, options=options)
        log(f"target {target.metric} {target.target:g}: ratio {target.scale:.4g}")
    keras.utils.set_random_seed(spec.seed + 7919)
    result = method.apply(base_model, run_spec, data, strategy, log)
    model = result.model
    prune_epochs = result.prune_epochs
    counted = model if result.shape is None else result.shape
    params = count_params(counted).total
    flops = count_flops(counted).total

    epochs, schedule = retrain_plan(spec, base_flops, flops)

    # compiled once: the evaluation here and the retraining share it (a twin: once per shape)
    pruned = model
    model = pipeline.compiled(
        model, recipe, schedule.lr_at(0), pipeline.steps_per_execution(schedule), strategy=strategy
    )
    acc_raw = None
    if opts.recalibrate_batch_norm:  # the option; the papers' recipes evaluate the raw model
        acc_raw = _evaluate(model, data)
        _recalibrate(model, data)
    acc_after = _evaluate(model, data)
    jsv_after = _jsv(model, jsv_x)
    # A scratch run prunes nothing: its first accuracy is that of the untrained model.
    first_acc = "acc after pruning" if method.needs_base else "acc untrained"
    log(
        f"{spec.cell} seed {spec.seed}: {method.name} params {params:,}/{base_params:,} "
        f"FLOPs {flops:,}/{base_flops:,}, {first_acc} {acc_after:.4f}"
        + (f", mean JSV {jsv_after:.4g}" if jsv_after is not None else "")
    )

    keras.utils.set_random_seed(spec.seed + 104729)
    t0 = time.time()
    history = pipeline.fit(
        model,
        data,
        recipe,
        schedule,
        strategy=strategy,
        epochs=epochs,
        jsv_inputs=jsv_x if opts.jsv_every_epoch else None,
        eval_every_epoch=opts.eval_every_epoch,
        compile=False,
        progress=progress,
    )
    train_seconds = time.time() - t0
    if opts.recalibrate_batch_norm and epochs:
        _recalibrate(model, data)
    final_acc = _evaluate(model, data) if epochs else acc_after
    gap = check_accuracy_gap(
        model, history, final_acc, what=f"{spec.cell} seed {spec.seed}", log=log
    )
    val = history.get("val_accuracy") or [final_acc]
    if opts.jsv_every_epoch and jsv_after is not None:
        history["jsv_mean"] = [jsv_after, *history.get("jsv_mean", [])]
    n1 = min(schedule.first_stage_epochs(), len(val))
    ta = float(np.mean(val[:n1])) if history.get("val_accuracy") else None

    setup = setup_descriptor(
        spec,
        params=params,
        flops=flops,
        base_flops=base_flops,
        prune_epochs=prune_epochs,
        prune_schedule=result.prune_schedule,
        steps_per_epoch=base_meta.get("steps_per_epoch"),
    )
    total_flops = setup["total_flops"]

    metrics = {
        "final_acc": final_acc,
        "best_acc": float(max([*val, final_acc])),
        "acc_after_prune": acc_after,
        "base_acc": base_acc,
        **gap.metrics(),
        "params": int(params),
        "flops": int(flops),
        "base_params": int(base_params),
        "base_flops": int(base_flops),
        "speedup": float(base_flops / max(flops, 1)),
        "param_reduction": float(1.0 - params / max(base_params, 1)),
        "jsv_base": jsv_base,
        "jsv_after_prune": jsv_after,
        "jsv_final": float(history["jsv_mean"][-1]) if history.get("jsv_mean") else None,
        "trainability_acc": ta,
        "retrain_epochs": int(epochs),
        "prune_epochs": float(prune_epochs),
        "weight_decay_mode": recipe.weight_decay_mode,
        "seconds": time.time() - t_start,
        "train_seconds": train_seconds,
        "base_seconds": float(base_meta.get("seconds", 0.0)),
        "base_cached": bool(base_meta.get("cached", False)),
    }
    if acc_raw is not None:
        metrics["acc_after_prune_raw"] = acc_raw
    metrics.update(result.metrics)
    if target is not None:
        metrics["target_metric"] = target.metric
        metrics["target"] = float(target.target)
        metrics["target_achieved"] = float(
            base_flops / max(flops, 1)
            if target.metric == "flops_reduction"
            else base_params / max(params, 1)
        )
        metrics["target_ratio"] = target.scale
    if opts.squeezed_from is not None:
        # SX-B: achieved pipeline FLOPs over Scratch-E's (the full schedule, all at F2).
        scratch_e = float(spec.base.get("schedule_epochs", opts.squeezed_from)) * flops
        metrics["flops_vs_scratch_e"] = total_flops / max(scratch_e, 1.0)
        metrics["base_train_steps"] = int(spec.base["train_steps"])
    if result.prune_history:
        history = {**history, **{f"prune_{k}": v for k, v in result.prune_history.items()}}
    record = RunRecord(spec=given.to_dict(), metrics=metrics, history=history, setup=setup)
    if not keep_model:
        return RunResult(record, None, base, data)
    if model is not pruned:  # trained as its twin: the weights come back to the pruned model
        pruned.set_weights(model.get_weights())
    return RunResult(record, pruned, base, data)


def execute(
    spec: RunSpec,
    workdir: str,
    *,
    strategy: Any = None,
    log: Callable[[str], None] | None = None,
) -> RunRecord:
    """Run one spec end to end and return its record (see the module doc).

    Deterministic given ``spec.seed``; the base model is cached under
    ``workdir/base_models/<base_id>/`` and shared by every spec with the same base; nothing else is
    written outside ``workdir``.
    """
    return run(spec, workdir, strategy=strategy, log=log, keep_model=False).record
