"""The one training pipeline: recipe -> optimizer and LR schedule -> ``fit`` -> per-epoch history.

Every binary and protocol trains through :func:`fit`: base models, retraining, scratch
baselines, regularized pruning stages and ``tfprune-prune``. A *recipe* is any object with the
fields of :class:`tfprune.training.TrainingRecipe` (``optimizer``, ``momentum``,
``weight_decay``, ``weight_decay_mode``); the schedule is an
:class:`~tfprune.training.schedules.LRSchedule`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.compat import build_compiled_loss_and_metrics, keras, tf
from tfprune.nested import all_layers
from tfprune.runtime import current_runtime
from tfprune.trainability import JSVMeter
from tfprune.training import twins
from tfprune.training.optimizers import CoupledAdam, CoupledSGD, make_optimizer
from tfprune.training.schedules import EpochLRScheduler, LRSchedule, lr_scheduler

__all__ = [
    "compile_model",
    "compiled",
    "evaluate",
    "fit",
    "jsv_mean",
    "scope",
    "sparse_crossentropy_float32",
    "steps_per_execution",
]


def scope(strategy: Any) -> Any:
    """``strategy.scope()``, or a no-op context without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


@keras.saving.register_keras_serializable(package="tfprune")
def sparse_crossentropy_float32(y_true: Any, y_pred: Any) -> Any:
    """Sparse categorical cross-entropy from logits, computed in ``float32``.

    Under a mixed-precision policy the logits arrive in ``float16``/``bfloat16``; the softmax
    and the loss are taken in ``float32`` (Keras' advice for the model's output), without
    adding a layer to the model.
    """
    return keras.losses.sparse_categorical_crossentropy(
        y_true, tf.cast(y_pred, tf.float32), from_logits=True
    )


def compile_model(
    model: Any,
    recipe: Any,
    lr: float,
    steps_per_execution: int = 1,
    jit_compile: bool | None = None,
) -> None:
    """Compile ``model`` for sparse-label classification with the recipe's optimizer at ``lr``.

    ``jit_compile`` (XLA) defaults to the current :class:`tfprune.runtime.Runtime`'s. Under a
    ``mixed_float16`` policy Keras wraps the optimizer in a ``LossScaleOptimizer``.
    """
    if jit_compile is None:
        jit_compile = current_runtime().jit_compile
    opt = make_optimizer(
        recipe.optimizer,
        lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        weight_decay_mode=getattr(recipe, "weight_decay_mode", "coupled"),
    )
    model.compile(
        optimizer=opt,
        loss=sparse_crossentropy_float32,
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile=bool(jit_compile),
    )
    _create_step_variables(model)


def _create_step_variables(model: Any) -> None:
    """Create the optimizer's slots and the loss and metric trackers of a compiled model now.

    Keras creates them in the first training (or evaluation) step; a ``tf.function`` that
    creates variables when first called is traced twice, so building them here saves one
    trace of every new train and test function. The variables and their (zero) values are the
    ones the first step would create: the labels are sparse class ids, as the loss reads them.
    """
    if not isinstance(model, keras.Model) or len(getattr(model, "outputs", None) or ()) != 1:
        return
    optimizer = model.optimizer
    if type(optimizer) not in (
        CoupledSGD,
        CoupledAdam,
        keras.optimizers.SGD,
        keras.optimizers.Adam,
    ):
        return  # e.g. a LossScaleOptimizer (mixed_float16) builds its own way
    if not model.trainable or any(not la.trainable for la in all_layers(model) if la.weights):
        return  # a frozen layer may be unfrozen before fit: the first step sees what trains
    y_pred = model.outputs[0]
    y_true = tf.zeros([1] * (len(y_pred.shape) - 1), tf.int64)
    # Under the model's strategy, as its train step creates them; named as apply_gradients
    # names the slots.
    with model.distribute_strategy.scope():
        with tf.name_scope(optimizer.name):
            optimizer.build(model.trainable_variables)
        build_compiled_loss_and_metrics(model, y_pred, y_true)


def compiled(
    model: Any,
    recipe: Any,
    lr: float,
    steps_per_execution: int = 1,
    *,
    strategy: Any = None,
    share: bool = True,
) -> Any:
    """A compiled model holding ``model``'s weights, to train, evaluate and measure instead of it.

    Where ``model`` can have one, this is its twin of this process
    (:mod:`tfprune.training.twins`): compiled (and traced) once per shape and setting, then
    given the weights of each model and the state of a new optimizer at ``lr``; the results are
    those of training ``model`` itself. Otherwise it is ``model``, compiled with
    :func:`compile_model`. Training the returned model leaves ``model``'s weights as they were
    unless it is ``model``. ``share=False``: always ``model`` itself.
    """
    jit = bool(current_runtime().jit_compile)
    setting = (
        recipe.optimizer,
        float(recipe.momentum),
        float(recipe.weight_decay),
        getattr(recipe, "weight_decay_mode", "coupled"),
        int(steps_per_execution),
        jit,
    )

    def compile_fn(target: Any) -> None:
        compile_model(target, recipe, lr, steps_per_execution, jit)

    shared = twins.twin(model, setting, strategy, compile_fn, lr) if share else None
    if shared is not None:
        return shared
    with scope(strategy):
        compile_fn(model)
    return model


def jsv_mean(model: Any, inputs: np.ndarray) -> float:
    """Mean JSV of ``model`` on ``inputs`` (:func:`tfprune.mean_jsv`); a twin's is traced once."""
    meter = twins.jsv_meter(model) or JSVMeter(model)
    return float(meter(inputs).mean)


def steps_per_execution(schedule: LRSchedule, extra_callbacks: list | None = None) -> int:
    """Steps per graph call: 32 when nothing acts between steps, else 1.

    Several SGD steps per call give the same updates with far less Python overhead on small
    models; that needs a per-epoch LR schedule and no step-level callbacks.
    """
    if extra_callbacks or type(lr_scheduler(schedule)) is not EpochLRScheduler:
        return 1
    return 32


def _epoch_line(epoch: int, total: int, logs: dict) -> str:
    parts = [f"epoch {epoch + 1}/{total}"]
    for key in ("loss", "accuracy", "val_accuracy", "lr"):
        if key in logs:
            parts.append(f"{key} {float(logs[key]):.4g}")
    return "  ".join(parts)


def evaluate(model: Any, data: Any) -> float:
    """Test accuracy of a compiled model on ``data.test``."""
    return float(model.evaluate(data.test, verbose=0)[1])


def fit(
    model: Any,
    data: Any,
    recipe: Any,
    schedule: LRSchedule,
    *,
    strategy: Any = None,
    epochs: int,
    steps: int | None = None,
    jsv_inputs: np.ndarray | None = None,
    eval_every_epoch: bool = True,
    extra_callbacks: list | None = None,
    compile: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Compile (unless ``compile=False``) and train ``model``; returns the per-epoch history.

    Args:
      model: The Keras model.
      data: A :class:`tfprune.data.DatasetBundle`.
      recipe: Optimizer fields (see the module doc).
      schedule: LR schedule, set per epoch (per step when continuous).
      strategy: ``tf.distribute`` strategy (compiles in its scope).
      epochs: Number of epochs (ignored when ``steps`` is given).
      steps: Exact number of optimizer steps instead of whole epochs: ``steps // spe`` full
        epochs, then one partial epoch of the remaining batches (SX-B's squeezed pretraining).
      jsv_inputs: Inputs for the mean JSV after every epoch (``jsv_mean`` in the history).
      eval_every_epoch: Evaluate on ``data.test`` after every epoch (``val_accuracy``).
      extra_callbacks: More callbacks (e.g. a regularization).
      compile: Compile first (``False``: the model is already compiled for this recipe).
      progress: Called with one line per finished epoch (epoch, loss, accuracy, LR).

    Returns:
      ``{metric: [per epoch]}`` with ``lr`` (LR at each epoch start) and, with ``jsv_inputs``,
      ``jsv_mean``; empty when nothing is trained.
    """
    sched_cb = lr_scheduler(schedule)
    if compile:
        with scope(strategy):
            compile_model(
                model, recipe, schedule.lr_at(0), steps_per_execution(schedule, extra_callbacks)
            )
    full, partial = int(epochs), 0
    if steps is not None:
        spe = data.steps_per_epoch
        if not spe:
            raise ValueError("training for an exact number of steps needs a known epoch length")
        full, partial = divmod(int(steps), int(spe))
    if full <= 0 and partial <= 0:
        return {}
    callbacks: list[Any] = [sched_cb, *(extra_callbacks or [])]
    if progress is not None:  # epoch-level only: keeps several steps per graph call
        total = full + (1 if partial else 0)
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: progress(_epoch_line(epoch, total, logs or {}))
            )
        )
    jsv_cb = None
    if jsv_inputs is not None:
        jsv_cb = JacobianSingularValues(
            jsv_inputs,
            every_n_epochs=1,
            log_on_train_begin=False,
            meter=twins.jsv_meter(model),
        )
        callbacks.append(jsv_cb)
    val = data.test if eval_every_epoch else None
    out: dict[str, list[float]] = {}
    runs = []
    if full > 0:
        runs.append((data.train, full, 0))
    if partial > 0:
        runs.append((data.train.take(partial), full + 1, full))
    for ds, until, initial in runs:
        hist = model.fit(
            ds,
            epochs=until,
            initial_epoch=initial,
            validation_data=val,
            callbacks=callbacks,
            verbose=0,
        )
        for k, vals in hist.history.items():
            out.setdefault(k, []).extend(float(v) for v in vals)
        if getattr(model, "stop_training", False):
            break
    out["lr"] = list(sched_cb.lrs)
    if jsv_cb is not None:
        out["jsv_mean"] = [float(h["mean"]) for h in jsv_cb.history]
        for k in list(out):
            if k.startswith("jsv_") and k != "jsv_mean":
                del out[k]
    return out
