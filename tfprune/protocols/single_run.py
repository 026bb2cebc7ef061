"""One prune run end to end: train (or load) → prune → retrain → strip → export → compare.

Training goes through the same pipeline as the protocols (:func:`tfprune.training.fit`, SGD
momentum 0.9 with coupled weight decay unless ``weight_decay_mode="decoupled"``), and pruning
through the protocols' one-shot method (``importance="taylor"`` gets training examples).

This is what ``tfprune-prune`` runs. It returns a :class:`PruneRunResult` whose table puts the
base, the masked-and-retrained and the stripped model side by side (params, FLOPs, accuracy,
measured latency) so that the physical speed-up is measured, not assumed.

Masking changes what reaches every BatchNormalization, so by default its moving statistics are
re-estimated on training batches (:func:`tfprune.recalibrate_batch_norm`) after masking and
again after retraining; the table gives the accuracy before retraining both raw and
recalibrated, and marks every recalibrated figure.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfprune.batch_norm import RECALIBRATION_BATCHES, check_accuracy_gap, recalibrate_batch_norm
from tfprune.compat import keras
from tfprune.data import load_dataset
from tfprune.distribute import get_strategy
from tfprune.errors import InvalidArgumentError
from tfprune.export import check_export_dir, export_saved_model
from tfprune.files import atomic_write_json, ensure_output_dir
from tfprune.flops import count_flops, count_params
from tfprune.models import load_model, model_builder
from tfprune.profiling import interleaved_latency, speedup_stats
from tfprune.protocols.execute import build_model
from tfprune.protocols.methods import one_shot_masks
from tfprune.protocols.spec import RetrainRecipe
from tfprune.runtime import Runtime, use_runtime
from tfprune.selection import check_ratio
from tfprune.surgery import strip_filters
from tfprune.training import WEIGHT_DECAY_MODES, pipeline
from tfprune.training.schedules import parse_schedule

__all__ = [
    "DEFAULT_SEED",
    "SPLIT_FILE",
    "PruneRunConfig",
    "PruneRunResult",
    "read_split",
    "run_prune",
    "write_split",
]

logger = logging.getLogger(__name__)

#: Beside a saved model: the dataset, data folder and seed its held-out test split was drawn with.
SPLIT_FILE = "split.json"
#: The seed of a run that names none (and whose loaded model records none); the tools' default.
DEFAULT_SEED = 0


def _split_path(model_path: str | os.PathLike[str]) -> Path:
    path = Path(model_path)
    return (path if path.is_dir() else path.parent) / SPLIT_FILE


def write_split(
    model_path: str | os.PathLike[str], dataset: str, data_dir: str | None, seed: int
) -> Path:
    """Records (atomically, in ``split.json`` beside ``model_path``) the data a model saw.

    The held-out test split of a dataset depends on its seed (and, for MNIST, on which files
    ``data_dir`` holds), so a later prune of the model must test it on the same split.
    """
    record = {
        "dataset": dataset,
        "data_dir": None if data_dir is None else os.path.abspath(data_dir),
        "seed": int(seed),
    }
    return atomic_write_json(_split_path(model_path), record)


def read_split(model_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record :func:`write_split` left beside ``model_path`` (None if there is none)."""
    path = _split_path(model_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return {"dataset": str(record["dataset"]), "seed": int(record["seed"]), **record}
    except (ValueError, KeyError, TypeError):
        raise InvalidArgumentError(
            f"{str(path)!r} is not a split record (dataset, data_dir, seed); delete it to test "
            "the model on the split of --seed, or retrain the model with tfprune-train"
        ) from None


@dataclasses.dataclass
class PruneRunConfig:
    """Everything one prune run needs (the ``tfprune-prune`` flags, typed)."""

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "small_cnn"
    load_model: str | None = None
    sparsity: float = 0.5
    importance: str = "l1"
    train_epochs: int = 15
    retrain_epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.05
    retrain_learning_rate: float = 0.01
    weight_decay: float = 0.0
    weight_decay_mode: str = "coupled"
    #: Re-estimate the BatchNorm statistics on training batches after masking and retraining.
    recalibrate_batch_norm: bool = True
    #: None: the seed in the loaded model's split record, else :data:`DEFAULT_SEED`.
    seed: int | None = None
    strategy: str = "default"
    export_dir: str | None = None
    #: Replace a tfprune export already in ``export_dir`` (never a folder of other files).
    overwrite: bool = False
    latency_batch: int = 32
    mixed_precision: Any = False
    jit_compile: bool = False

    def validate(self) -> None:
        """Reject bad values before any work starts (messages name the field)."""
        check_ratio(self.sparsity, "sparsity")
        for name in ("train_epochs", "retrain_epochs"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(f"{name} must be >= 0, got {getattr(self, name)}.")
        for name in ("batch_size", "latency_batch"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("learning_rate", "retrain_learning_rate"):
            if not getattr(self, name) > 0:
                raise InvalidArgumentError(f"{name} must be > 0, got {getattr(self, name)}.")
        if not self.weight_decay >= 0:
            raise InvalidArgumentError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        if self.weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise InvalidArgumentError(
                f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got "
                f"{self.weight_decay_mode!r}."
            )
        self.runtime()
        if self.export_dir:  # fails now, not after both training phases
            ensure_output_dir(self.export_dir, "export_dir", create=False)
            check_export_dir(self.export_dir, self.overwrite)
        if self.load_model and not os.path.exists(self.load_model):
            raise InvalidArgumentError(
                f"load_model path {self.load_model!r} does not exist; give a saved Keras model "
                "(SavedModel folder, .keras or .h5) or leave it empty to train one."
            )
        if self.seed is not None and (isinstance(self.seed, bool) or self.seed < 0):
            raise InvalidArgumentError(f"seed must be an integer >= 0, got {self.seed!r}.")

    def resolved_seed(self) -> int:
        """The seed of the run: ``seed``, else the loaded model's split seed, else the default.

        Raises:
          InvalidArgumentError: the loaded model's ``split.json`` names another dataset or seed
            (testing it on another split would score it on images it was trained on).
        """
        split = read_split(self.load_model) if self.load_model else None
        if split is None:
            return DEFAULT_SEED if self.seed is None else int(self.seed)
        where = str(_split_path(self.load_model))
        if split["dataset"] != self.dataset:
            raise InvalidArgumentError(
                f"--load_model={self.load_model!r} was trained on {split['dataset']!r} "
                f"({where}), not on --dataset={self.dataset!r}; pass "
                f"--dataset={split['dataset']} (its test split is the only one it has not seen)"
            )
        if self.seed is not None and int(self.seed) != split["seed"]:
            raise InvalidArgumentError(
                f"--load_model={self.load_model!r} was trained beside the test split of seed "
                f"{split['seed']} ({where}), not --seed={self.seed}: another seed's test split "
                f"holds images it was trained on; drop --seed or pass --seed={split['seed']}"
            )
        return split["seed"]

    def runtime(self) -> Runtime:
        """The precision and XLA setting of the run (``mixed_precision``, ``jit_compile``)."""
        return Runtime(self.mixed_precision, self.jit_compile)


@dataclasses.dataclass
class PruneRunResult:
    """Rows of the before/after table, plus the stripped model and its plan."""

    rows: list[dict[str, Any]]
    model: Any
    plan: Any
    export_path: str | None
    #: Measured speed-up of the stripped model over the base: median, low and high of the
    #: per-round latency ratios (interleaved rounds), and the number of rounds.
    speedup: dict[str, float] | None = None
    #: The retrained model's last training accuracy, its gap to the test accuracy and whether
    #: the gap was flagged (:func:`tfprune.batch_norm.check_accuracy_gap`).
    gap: dict[str, Any] = dataclasses.field(default_factory=dict)

    def table(self) -> str:
        """Markdown table of the run."""
        head = (
            "| model | params | FLOPs (MACs) | accuracy | training accuracy | latency (ms/batch) |"
        )
        lines = [head, "|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            lat = f"{r['latency_ms']:.2f}" if r.get("latency_ms") is not None else "-"
            train = f"{r['train_accuracy']:.2%}" if r.get("train_accuracy") is not None else "-"
            lines.append(
                f"| {r['name']} | {r['params']:,} | {r['flops']:,} | {r['accuracy']:.2%} | "
                f"{train} | {lat} |"
            )
        base, last = self.rows[0], self.rows[-1]
        lines.append("")
        lines.append("training accuracy: that of the last training epoch.")
        if any(r.get("recalibrated") for r in self.rows):
            lines.append(
                "BN recalibrated: the BatchNormalization statistics were re-estimated on "
                "training batches before the accuracy was measured."
            )
        lines.append(
            f"params ×{base['params'] / last['params']:.2f} smaller, FLOPs "
            f"×{base['flops'] / max(last['flops'], 1):.2f} fewer, measured speed-up "
            + (
                f"×{self.speedup['median']:.2f} (×{self.speedup['low']:.2f}–"
                f"×{self.speedup['high']:.2f} over {self.speedup['rounds']} interleaved rounds)"
                if self.speedup
                else f"×{base['latency_ms'] / last['latency_ms']:.2f}"
            )
        )
        return "\n".join(lines)


def _recipe(config: PruneRunConfig, lr: float, epochs: int) -> RetrainRecipe:
    return RetrainRecipe(
        schedule=f"0:{lr:g}",
        epochs=epochs,
        batch_size=config.batch_size,
        momentum=0.9,
        weight_decay=config.weight_decay,
        weight_decay_mode=config.weight_decay_mode,
    )


def run_prune(config: PruneRunConfig, log: Callable[[str], None] | None = None) -> PruneRunResult:
    """Run one prune pipeline as configured and return the side-by-side result.

    Every model is built, trained and exported in the configured precision, with its XLA
    setting.
    """
    log = log or logger.info
    config.validate()
    runtime = config.runtime()
    if runtime != Runtime():
        log(f"precision {runtime.precision}, XLA {'on' if runtime.jit_compile else 'off'}")
    with use_runtime(runtime):
        return _run_prune(config, log)


def _builder_takes_input_dim(name: str) -> bool:
    """True for zoo models built for flat vectors (``input_dim``): the MLPs."""
    builder = model_builder(name)
    return builder is not None and "input_dim" in inspect.signature(builder).parameters


def _run_prune(config: PruneRunConfig, log: Any) -> PruneRunResult:
    seed = config.resolved_seed()
    keras.utils.set_random_seed(seed)
    strategy = get_strategy(config.strategy)
    base = None
    if config.load_model:
        with strategy.scope():
            base = load_model(config.load_model, "load_model")
        flat = len(base.inputs[0].shape) == 2
    else:
        flat = _builder_takes_input_dim(config.model)
    data = load_dataset(
        config.dataset,
        config.data_dir,
        # --batch_size is global: each replica takes its share of every step.
        batch_size=max(1, config.batch_size // strategy.num_replicas_in_sync),
        seed=seed,
        strategy=strategy,
        flatten=flat,
    )
    log(f"data: {data.description}; held-out test split of seed {seed}")
    train = _recipe(config, config.learning_rate, config.train_epochs)
    retrain = _recipe(config, config.retrain_learning_rate, config.retrain_epochs)
    with strategy.scope():
        if base is None:
            base = build_model(config.model, data.input_shape, data.num_classes, seed)
        pipeline.compile_model(base, train, config.learning_rate)
    base_history: dict[str, list[float]] = {}
    if not config.load_model and config.train_epochs:
        log(f"training {base.name} for {config.train_epochs} epochs")
        schedule = parse_schedule(train.schedule, train.epochs)
        base_history = pipeline.fit(
            base,
            data,
            train,
            schedule,
            strategy=strategy,
            epochs=train.epochs,
            eval_every_epoch=False,
            progress=log,
        )
    base_acc = pipeline.evaluate(base, data)
    check_accuracy_gap(base, base_history, base_acc, what="the base model", log=log)

    with strategy.scope():
        masked = one_shot_masks(base, config.sparsity, config.importance, data, seed=seed)
        pipeline.compile_model(masked, retrain, config.retrain_learning_rate)
    pruned_acc = pipeline.evaluate(masked, data)
    recalibrated_acc = None
    if config.recalibrate_batch_norm and recalibrate_batch_norm(
        masked, data.train, steps=RECALIBRATION_BATCHES
    ):
        recalibrated_acc = pipeline.evaluate(masked, data)
    retrain_history: dict[str, list[float]] = {}
    if config.retrain_epochs:
        log(f"retraining the masked model for {config.retrain_epochs} epochs")
        schedule = parse_schedule(retrain.schedule, retrain.epochs)
        retrain_history = pipeline.fit(
            masked,
            data,
            retrain,
            schedule,
            strategy=strategy,
            epochs=retrain.epochs,
            eval_every_epoch=False,
            compile=False,
            progress=log,
        )
    recalibrated = recalibrated_acc is not None
    if recalibrated and config.retrain_epochs:
        recalibrate_batch_norm(masked, data.train, steps=RECALIBRATION_BATCHES)
    retrained_acc = pipeline.evaluate(masked, data)
    gap = check_accuracy_gap(
        masked, retrain_history, retrained_acc, what="the retrained model", log=log
    )
    small, plan = strip_filters(masked, return_plan=True)
    pipeline.compile_model(small, retrain, config.retrain_learning_rate)
    small_acc = pipeline.evaluate(small, data)

    x = np.stack([x for x, _ in data.test.unbatch().take(config.latency_batch)])
    # The three distinct models take turns in every round (load changes hit them alike).
    times = interleaved_latency({"base": base, "masked": masked, "small": small}, x)
    speedup = speedup_stats(times["base"], times["small"])
    mark = ", BN recalibrated" if recalibrated else ""
    if config.export_dir:
        stripped_name = f"stripped (exported{mark})"
    else:
        stripped_name = "stripped (BN recalibrated)" if recalibrated else "stripped"
    before = f"masked {config.sparsity:.0%} (before retraining"
    # (name, latency key, model, test accuracy, training history, recalibrated)
    entries = [
        ("base", "base", base, base_acc, base_history, False),
        (before + ")", "masked", masked, pruned_acc, {}, False),
    ]
    if recalibrated:
        entries.append((before + mark + ")", "masked", masked, recalibrated_acc, {}, True))
    entries += [
        (
            f"masked, retrained{mark}",
            "masked",
            masked,
            retrained_acc,
            retrain_history,
            recalibrated,
        ),
        (stripped_name, "small", small, small_acc, retrain_history, recalibrated),
    ]
    rows = []
    for name, key, model, acc, history, recal in entries:
        lat = float(np.median(times[key])) * 1e3
        rows.append(
            {
                "name": name,
                "params": count_params(model).total,
                "flops": count_flops(model).total,
                "accuracy": acc,
                "train_accuracy": (history.get("accuracy") or [None])[-1],
                "recalibrated": recal,
                "latency_ms": lat,
            }
        )
    export_path = None
    if config.export_dir:
        export_path = export_saved_model(
            small, config.export_dir, check_inputs=x[:4], overwrite=config.overwrite
        )
        log(f"exported SavedModel to {export_path}")
    return PruneRunResult(
        rows=rows,
        model=small,
        plan=plan,
        export_path=export_path,
        speedup=speedup,
        gap=gap.metrics(),
    )
