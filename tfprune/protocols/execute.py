"""The pipeline of one :class:`~tfprune.protocols.spec.RunSpec`: base -> prune -> retrain -> record.

Steps (all seeded by ``spec.seed``):

1. Load the dataset (MLP models get flattened inputs).
2. Get the **base model**: trained with ``spec.base`` (``schedule``, ``epochs``, optional
   ``schedule_epochs`` to stop a longer schedule early — WHY's ``Px`` pruning epoch —,
   ``batch_size``, ``momentum``, ``weight_decay``, ``optimizer``), cached as weights under
   ``workdir/base_models/<base_id>/`` (written to a temporary folder and renamed, so concurrent
   writers are safe: the first rename wins, the other result is dropped).
3. Apply the method:

   * ``dense``: the base model itself (retrained with the recipe if ``retrain.epochs > 0``);
   * ``l1`` / any importance name of :func:`tfprune.prune_filters` (``l2``, ``random``,
     ``bn_scale``, ``taylor``, ``fpgm``): one-shot masks at ``spec.ratio``, then
     :func:`tfprune.strip_filters` — the small-dense model is what is retrained;
   * ``<criterion>_orthp`` (e.g. ``l1_orthp``): as above, then :func:`tfprune.orthp` on the
     stripped model (DI's OrthP);
   * ``scratch``: the architecture of the L1-pruned model, re-initialised fresh with
     ``keras.Model.from_config`` (small-dense, spec 1.1) and trained with the recipe; the budget
     follows ``options["scratch_budget"]``: ``None`` (``retrain.epochs``), ``"E"`` (base epochs +
     ``options["pipeline_epochs"]``) or ``"B"`` (``K1*F1/F2 + K2``, measured FLOPs; variant
     ``options["scratch_b_variant"]``); a piecewise schedule is stretched to the new length;
   * ``greg1`` / ``greg2`` / ``tpp``: the regularised pruning stage from
     :mod:`tfprune.regularization` (imported lazily) for ``options["prune_epochs"]`` epochs at
     ``options["prune_schedule"]``, then removal and retraining.

4. Measure params / FLOPs (:func:`tfprune.count_params` / :func:`tfprune.count_flops`),
   accuracy and mean JSV right after pruning (``options["jsv_samples"]`` training images, default
   1000; ``0`` disables) and, with ``options["jsv_every_epoch"]``, after every retraining epoch.
5. Retrain with the recipe and record the per-epoch history, the metrics and the fairness
   ``setup`` descriptors read by :func:`tfprune.protocols.setups.setup_check`.

Other options: ``model_kwargs`` (builder kwargs), ``data_options`` (``load_dataset`` options),
``skip`` (layer names never pruned), ``eval_every_epoch`` (default True: ``val_accuracy`` per
epoch on the test split).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

import tfprune
from tfprune.compat import keras
from tfprune.data import load_dataset
from tfprune.errors import ConfigError
from tfprune.models import get_model
from tfprune.protocols.schedules import (
    EpochLRScheduler,
    LRSchedule,
    format_piecewise,
    lr_scheduler,
    parse_schedule,
    rescale_piecewise,
    scratch_b_epochs,
)
from tfprune.protocols.spec import RetrainRecipe, RunRecord, RunSpec

__all__ = ["REG_METHODS", "BaseModel", "build_model", "execute_spec", "get_base_model"]

REG_METHODS = ("greg1", "greg2", "tpp")
"""Methods whose pruning stage is a regularised training phase (tfprune.regularization)."""

_BASE_DEFAULTS = {
    "batch_size": 100,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "optimizer": "sgd",
}


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _scope(strategy: Any) -> Any:
    return strategy.scope() if strategy is not None else _Null()


def _replicas(strategy: Any) -> int:
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def base_recipe(spec: RunSpec) -> RetrainRecipe:
    """The base-model recipe of ``spec`` as a :class:`RetrainRecipe` (defaults filled in)."""
    base = dict(spec.base)
    known = {"schedule", "epochs", "batch_size", "momentum", "weight_decay", "optimizer"}
    extra = set(base) - known - {"schedule_epochs"}
    if extra:
        raise ConfigError(f"base: unknown field(s) {sorted(extra)}; allowed: {sorted(known)}")
    if "schedule" not in base or "epochs" not in base:
        raise ConfigError("base: needs 'schedule' and 'epochs' (the base-model training recipe)")
    kw = {**_BASE_DEFAULTS, **{k: base[k] for k in known if k in base}}
    try:
        return RetrainRecipe(**kw)
    except ConfigError as err:
        raise ConfigError(str(err).replace("retrain.", "base.")) from None


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int, **kw: Any):
    """``get_model(name)`` with input size, classes and seed passed as the builder takes them."""
    from tfprune.models.registry import _builders

    builder = _builders().get(name)
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


def _compile(model: Any, recipe: RetrainRecipe, lr: float, steps_per_execution: int = 1) -> None:
    if recipe.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, weight_decay=recipe.weight_decay or None)
    else:
        opt = keras.optimizers.SGD(
            lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay or None
        )
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


def _steps_per_execution(schedule: LRSchedule, extra_callbacks: list | None = None) -> int:
    """Steps per graph call: 32 when nothing acts between steps, else 1.

    Several SGD steps per call give the same updates with far less Python overhead on small
    models; that needs a per-epoch LR schedule and no step-level callbacks.
    """
    if extra_callbacks or type(lr_scheduler(schedule)) is not EpochLRScheduler:
        return 1
    return 32


def _load_data(spec: RunSpec, batch_size: int, strategy: Any) -> Any:
    opts = dict(spec.options.get("data_options", {}))
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
    return float(model.evaluate(data.test, verbose=0)[1])


def _train(
    model: Any,
    data: Any,
    recipe: RetrainRecipe,
    schedule: LRSchedule,
    *,
    strategy: Any,
    epochs: int,
    jsv_inputs: np.ndarray | None = None,
    eval_every_epoch: bool = True,
    extra_callbacks: list | None = None,
    compile_model: bool = True,
) -> dict[str, list[float]]:
    """Compile (unless already done) and fit ``model``; returns the per-epoch history.

    The history includes ``lr`` and, with ``jsv_inputs``, ``jsv_mean`` per epoch.
    """
    sched_cb = lr_scheduler(schedule)
    if compile_model:
        with _scope(strategy):
            _compile(
                model,
                recipe,
                schedule.lr_at(0),
                _steps_per_execution(schedule, extra_callbacks),
            )
    if epochs <= 0:
        return {}
    callbacks: list[Any] = [sched_cb, *(extra_callbacks or [])]
    jsv_cb = None
    if jsv_inputs is not None:
        jsv_cb = tfprune.JacobianSingularValues(
            jsv_inputs, every_n_epochs=1, log_on_train_begin=False
        )
        callbacks.append(jsv_cb)
    hist = model.fit(
        data.train,
        epochs=epochs,
        validation_data=data.test if eval_every_epoch else None,
        callbacks=callbacks,
        verbose=0,
    )
    out = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    out["lr"] = list(sched_cb.lrs)
    if jsv_cb is not None:
        out["jsv_mean"] = [float(h["mean"]) for h in jsv_cb.history]
        for k in list(out):
            if k.startswith("jsv_") and k != "jsv_mean":
                del out[k]
    return out


# --------------------------------------------------------------------------------------------
# Base model cache
# --------------------------------------------------------------------------------------------


class BaseModel:
    """A trained (or loaded) base model and what is known about it."""

    def __init__(self, model: Any, meta: dict[str, Any]) -> None:
        self.model = model
        self.meta = meta


def _base_schedule(spec: RunSpec, recipe: RetrainRecipe) -> LRSchedule:
    length = int(spec.base.get("schedule_epochs", recipe.epochs))
    return parse_schedule(recipe.schedule, max(length, recipe.epochs), field="base.schedule")


def get_base_model(
    spec: RunSpec, workdir: str, *, strategy: Any = None, log: Callable[[str], None] = print
) -> BaseModel:
    """Load the cached base model of ``spec`` or train and cache it (atomically)."""
    recipe = base_recipe(spec)
    base_id = spec.base_id()
    root = os.path.join(workdir, "base_models")
    final = os.path.join(root, base_id)
    keras.utils.set_random_seed(spec.seed)
    data = _load_data(spec, recipe.batch_size, strategy)
    with _scope(strategy):
        model = build_model(
            spec.model,
            data.input_shape,
            data.num_classes,
            spec.seed,
            **spec.options.get("model_kwargs", {}),
        )
    weights = os.path.join(final, "weights.h5")
    meta_path = os.path.join(final, "meta.json")
    if os.path.exists(meta_path) and os.path.exists(weights):
        model.load_weights(weights)
        with open(meta_path) as f:
            meta = json.load(f)
        meta["cached"] = True
        log(f"base model {base_id}: loaded from cache (acc {meta.get('acc', float('nan')):.4f})")
        return BaseModel(model, meta)

    schedule = _base_schedule(spec, recipe)
    log(f"base model {base_id}: training {spec.model} for {recipe.epochs} epochs")
    t0 = time.time()
    history = _train(
        model,
        data,
        recipe,
        schedule,
        strategy=strategy,
        epochs=recipe.epochs,
        eval_every_epoch=False,
    )
    seconds = time.time() - t0
    acc = _evaluate(model, data)
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
    }
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{base_id}-{uuid.uuid4().hex[:6]}-", dir=root)
    try:
        model.save_weights(os.path.join(tmp, "weights.h5"))
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
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


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


def _criterion(method: str) -> tuple[str, bool]:
    """``(importance name, with OrthP)`` of a method name."""
    if method.endswith("_orthp"):
        return method[: -len("_orthp")], True
    return method, False


def _prune(base: Any, spec: RunSpec, importance: str, data: Any) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {"seed": spec.seed}
    if spec.options.get("skip"):
        kwargs["skip"] = tuple(spec.options["skip"])
    if importance == "taylor":
        x, y = data.train_arrays
        n = min(len(y), 500)
        kwargs["importance_data"] = (data.preprocess(x[:n]), y[:n])
        kwargs["loss"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    masked = tfprune.prune_filters(base, spec.ratio, importance, **kwargs)
    small = tfprune.strip_filters(masked)
    return masked, small


def _regularized_prune(
    base: Any, spec: RunSpec, data: Any, strategy: Any, log: Callable[[str], None]
) -> tuple[Any, dict[str, Any]]:
    """GReg-1/2 or TPP pruning stage via :mod:`tfprune.regularization` (lazy import)."""
    try:
        import tfprune.regularization as reg  # noqa: PLC0415
    except ImportError as err:
        raise ConfigError(
            f"method {spec.method!r} needs tfprune.regularization (GrowingRegularization), "
            f"which is not available in this installation: {err}"
        ) from None
    name = "TrainabilityPreserving" if spec.method == "tpp" else "GrowingRegularization"
    cls = getattr(reg, name, None)
    if cls is None:
        raise ConfigError(f"method {spec.method!r}: tfprune.regularization has no {name}")
    opts = dict(spec.options.get("regularization", {}))
    params = inspect.signature(cls).parameters
    if "variant" in params and spec.method != "tpp":
        opts.setdefault("variant", spec.method)
    opts.setdefault("sparsity", spec.ratio)
    if spec.options.get("skip"):
        opts.setdefault("skip", tuple(spec.options["skip"]))
    prune_epochs = int(spec.options.get("prune_epochs", 1))
    lr0 = parse_schedule(spec.retrain.schedule, spec.retrain.epochs, "retrain.schedule").lr_at(0)
    prune_sched = str(spec.options.get("prune_schedule", f"0:{lr0:g}"))
    with _scope(strategy):
        masked = tfprune.prune_filters(base, 0.0, "l1", seed=spec.seed)
    callback = cls(**opts)
    recipe = spec.retrain
    schedule = parse_schedule(prune_sched, prune_epochs, field="options.prune_schedule")
    log(f"{spec.method}: regularised pruning stage, {prune_epochs} epochs at {prune_sched}")
    hist = _train(
        masked,
        data,
        recipe,
        schedule,
        strategy=strategy,
        epochs=prune_epochs,
        eval_every_epoch=False,
        extra_callbacks=[callback],
    )
    small = tfprune.strip_filters(masked)
    ran = len(hist.get("loss", [])) if hist else 0
    if tfprune.count_params(small).total >= tfprune.count_params(base).total:
        raise ConfigError(
            f"{spec.method}: the regularization did not finish within options.prune_epochs="
            f"{prune_epochs} epochs (no filter was removed); raise prune_epochs or shorten the "
            "schedule in options.regularization (delta, update_every, stabilize_steps)"
        )
    info = {"prune_epochs": ran, "prune_schedule": prune_sched, "history": hist}
    return small, info


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


def _hyper(recipe: RetrainRecipe) -> dict[str, Any]:
    return {
        "batch_size": recipe.batch_size,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "optimizer": recipe.optimizer,
    }


def _jsv_inputs(data: Any, n: int) -> np.ndarray | None:
    if n <= 0:
        return None
    x = data.train_arrays[0][:n]
    return np.asarray(data.preprocess(x))


def _jsv(model: Any, x: np.ndarray | None) -> float | None:
    if x is None:
        return None
    return float(tfprune.mean_jsv(model, x).mean)


# --------------------------------------------------------------------------------------------
# execute
# --------------------------------------------------------------------------------------------


def _squeezed(spec: RunSpec, strategy: Any) -> RunSpec:
    """SX-B (WHY Tab. 4): the base is trained ``round(P / k)`` epochs, k = measured speed-up."""
    data = _load_data(spec, spec.retrain.batch_size, strategy)
    with _scope(strategy):
        dense = build_model(
            spec.model,
            data.input_shape,
            data.num_classes,
            spec.seed,
            **spec.options.get("model_kwargs", {}),
        )
        _, small = _prune(dense, spec, "l1", data)
    k = tfprune.count_flops(dense).total / max(tfprune.count_flops(small).total, 1)
    base = dict(spec.base)
    base.setdefault("schedule_epochs", base["epochs"])
    base["epochs"] = max(1, int(round(base["epochs"] / k)))
    options = {key: v for key, v in spec.options.items() if key != "squeeze_base_by_speedup"}
    options["squeezed_from"] = int(spec.base["epochs"])
    return dataclasses.replace(spec, base=base, options=options)


def execute_spec(
    spec: RunSpec,
    workdir: str,
    *,
    strategy: Any = None,
    log: Callable[[str], None] = print,
) -> RunRecord:
    """Run ``spec`` (see the module doc) and return its :class:`RunRecord`."""
    t_start = time.time()
    if spec.options.get("squeeze_base_by_speedup") and spec.method != "scratch":
        spec = _squeezed(spec, strategy)
    opts = spec.options
    method = spec.method
    recipe = spec.retrain
    base_rec = base_recipe(spec)
    keras.utils.set_random_seed(spec.seed)  # the pipelines' shuffles depend on the global seed
    data = _load_data(spec, recipe.batch_size, strategy)
    jsv_x = _jsv_inputs(data, int(opts.get("jsv_samples", 1000)))
    jsv_every = bool(opts.get("jsv_every_epoch", False))
    eval_every = bool(opts.get("eval_every_epoch", True))

    prune_epochs, prune_schedule, prune_history = 0, "", {}
    base_meta: dict[str, Any] = {}
    base_acc = jsv_base = None
    scratch = method == "scratch"
    if scratch:
        # The pruned *shape* does not depend on trained weights (local, per-layer ranking), so
        # an untrained copy of the architecture is pruned; no base training is needed.
        keras.utils.set_random_seed(spec.seed)
        with _scope(strategy):
            dense = build_model(
                spec.model,
                data.input_shape,
                data.num_classes,
                spec.seed,
                **opts.get("model_kwargs", {}),
            )
            _, shaped = _prune(dense, spec, "l1", data)
        base_model = dense
    else:
        base = get_base_model(spec, workdir, strategy=strategy, log=log)
        base_model, base_meta = base.model, base.meta
        with _scope(strategy):
            _compile(base_model, recipe, 0.01)
        base_acc = float(base_meta.get("acc", _evaluate(base_model, data)))
        jsv_base = _jsv(base_model, jsv_x)

    base_params = tfprune.count_params(base_model).total
    base_flops = tfprune.count_flops(base_model).total

    keras.utils.set_random_seed(spec.seed + 7919)
    with _scope(strategy):
        if scratch:
            model = keras.Model.from_config(shaped.get_config())
        elif method == "dense":
            model = keras.models.clone_model(base_model)
            model.set_weights(base_model.get_weights())
        elif method in REG_METHODS:
            model, info = _regularized_prune(base_model, spec, data, strategy, log)
            prune_epochs, prune_schedule = info["prune_epochs"], info["prune_schedule"]
            prune_history = info["history"]
        else:
            importance, with_orthp = _criterion(method)
            _, model = _prune(base_model, spec, importance, data)
            if with_orthp:
                tfprune.orthp(model)
    params = tfprune.count_params(model).total
    flops = tfprune.count_flops(model).total

    # Budget (scratch) and schedule.
    epochs = recipe.epochs
    budget = opts.get("scratch_budget") if scratch else None
    pipeline_epochs = int(opts.get("pipeline_epochs", recipe.epochs))
    if budget is not None:
        if budget == "E":
            epochs = base_rec.epochs + int(opts.get("pipeline_prune_epochs", 0)) + pipeline_epochs
        elif budget == "B":
            epochs = scratch_b_epochs(
                base_rec.epochs,
                base_flops,
                flops,
                pipeline_epochs,
                variant=str(opts.get("scratch_b_variant", "why")),
            )
        else:
            raise ConfigError(f"options.scratch_budget must be 'E', 'B' or null, got {budget!r}")
    schedule = parse_schedule(recipe.schedule, recipe.epochs, field="retrain.schedule")
    if epochs != recipe.epochs and schedule.kind == "piecewise" and recipe.epochs > 0:
        schedule = parse_schedule(
            format_piecewise(rescale_piecewise(schedule.stages, recipe.epochs, epochs)),
            epochs,
            field="retrain.schedule",
        )
    elif epochs != recipe.epochs:
        schedule = parse_schedule(recipe.schedule, epochs, field="retrain.schedule")

    with _scope(strategy):  # compiled once: the evaluation here and the retraining share it
        _compile(model, recipe, schedule.lr_at(0), _steps_per_execution(schedule))
    acc_after = _evaluate(model, data)
    jsv_after = _jsv(model, jsv_x)
    log(
        f"{spec.cell} seed {spec.seed}: {method} params {params:,}/{base_params:,} "
        f"FLOPs {flops:,}/{base_flops:,}, acc after pruning {acc_after:.4f}"
        + (f", mean JSV {jsv_after:.4g}" if jsv_after is not None else "")
    )

    keras.utils.set_random_seed(spec.seed + 104729)
    t0 = time.time()
    history = _train(
        model,
        data,
        recipe,
        schedule,
        strategy=strategy,
        epochs=epochs,
        jsv_inputs=jsv_x if jsv_every else None,
        eval_every_epoch=eval_every,
        compile_model=False,
    )
    train_seconds = time.time() - t0
    final_acc = _evaluate(model, data) if epochs else acc_after
    val = history.get("val_accuracy") or [final_acc]
    if jsv_every and jsv_after is not None:
        history["jsv_mean"] = [jsv_after, *history.get("jsv_mean", [])]
    n1 = min(schedule.first_stage_epochs(), len(val))
    ta = float(np.mean(val[:n1])) if history.get("val_accuracy") else None

    base_epochs = 0 if scratch else base_rec.epochs
    total_epochs = base_epochs + prune_epochs + epochs
    total_flops = float((base_epochs + prune_epochs) * base_flops + epochs * flops)
    if scratch:
        overall = _schedule_text(schedule, epochs)
    else:
        parts = [(_base_schedule(spec, base_rec), base_rec.epochs)]
        if prune_epochs:
            parts.append((parse_schedule(prune_schedule, prune_epochs), prune_epochs))
        parts.append((schedule, epochs))
        overall = _overall(parts)

    metrics = {
        "final_acc": final_acc,
        "best_acc": float(max([*val, final_acc])),
        "acc_after_prune": acc_after,
        "base_acc": base_acc,
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
        "seconds": time.time() - t_start,
        "train_seconds": train_seconds,
        "base_seconds": float(base_meta.get("seconds", 0.0)),
        "base_cached": bool(base_meta.get("cached", False)),
    }
    setup = {
        "dataset": spec.dataset,
        "model": spec.model,
        "params": int(params),
        "flops": int(flops),
        "base_id": None if scratch else spec.base_id(),
        "finetune_schedule": _schedule_text(schedule, epochs),
        "finetune_epochs": int(epochs),
        "hyper": _hyper(recipe),
        "prune_epochs": int(prune_epochs),
        "prune_schedule": prune_schedule,
        "overall_schedule": overall,
        "total_epochs": int(total_epochs),
        "total_flops": total_flops,
        "scratch": scratch,
        "base_epochs": int(base_epochs),
    }
    if prune_history:
        history = {**history, **{f"prune_{k}": v for k, v in prune_history.items()}}
    return RunRecord(spec=spec.to_dict(), metrics=metrics, history=history, setup=setup)
