"""One prune run end to end: train (or load) → prune → retrain → strip → export → compare.

The run is one protocol run (:func:`tfprune.protocols.execute.run`): the base model is trained
by the protocols' base-model code and cached under ``<output_dir>/base_models/<base_id>/`` like
a grid's (a ``tfprune-compare`` run in the same folder shares it), pruned by the one-shot
method of the criterion, and retrained masked with the same pipeline (SGD momentum 0.9 with
coupled weight decay unless ``weight_decay_mode="decoupled"``). Then the retrained masked model
is stripped, tested, timed beside the base and exported.

This is what ``tfprune-prune`` runs. It returns a :class:`PruneRunResult` whose table puts the
base, the masked-and-retrained and the stripped model side by side (params, FLOPs, accuracy,
measured latency) so that the physical speed-up is measured, not assumed.

Masking changes what reaches every BatchNormalization, so by default its moving statistics are
re-estimated on training batches (:func:`tfprune.recalibrate_batch_norm`) after masking and
again after retraining; the table gives the accuracy before retraining both raw and
recalibrated, and marks every recalibrated figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfprune import defaults
from tfprune.batch_norm import batch_norm_layers, check_accuracy_gap
from tfprune.compat import keras
from tfprune.distribute import get_strategy
from tfprune.errors import InvalidArgumentError, RecipeValueError
from tfprune.export import check_export_dir, export_saved_model
from tfprune.files import atomic_write_json, ensure_output_dir
from tfprune.flops import count_flops, count_params
from tfprune.models import load_model
from tfprune.profiling import interleaved_latency, speedup_stats
from tfprune.protocols.execute import BaseModel, run
from tfprune.protocols.spec import RunSpec
from tfprune.runtime import Runtime, use_runtime
from tfprune.selection import check_ratio
from tfprune.surgery import strip_filters
from tfprune.training import pipeline
from tfprune.training.recipe import TrainingRecipe

__all__ = [
    "DEFAULT_SEED",
    "SPLIT_FILE",
    "PruneRunConfig",
    "PruneRunResult",
    "prune_run_spec",
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
    #: None: the dataset's default (:data:`tfprune.defaults.BATCH_SIZES`).
    batch_size: int | None = None
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
    #: Where the base model is cached (``base_models/<base_id>/``, shared with
    #: ``tfprune-compare --output_dir`` runs); None: a temporary folder, removed afterwards.
    output_dir: str | None = None

    def validate(self) -> None:
        """Reject bad values before any work starts (messages name the field)."""
        check_ratio(self.sparsity, "sparsity")
        if self.latency_batch < 1:
            raise InvalidArgumentError(f"latency_batch must be >= 1, got {self.latency_batch}.")
        for name in ("learning_rate", "retrain_learning_rate"):
            if not getattr(self, name) > 0:
                raise InvalidArgumentError(f"{name} must be > 0, got {getattr(self, name)}.")
        self.recipes()
        self.runtime()
        if self.output_dir:
            ensure_output_dir(self.output_dir, "output_dir", create=False)
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

    def recipes(self) -> tuple[TrainingRecipe, TrainingRecipe]:
        """The base model's and the retraining's recipes (constant LR, SGD momentum 0.9).

        Raises:
          InvalidArgumentError: a bad epoch count, batch size or weight decay, named as its flag.
        """
        names = {"epochs": "train_epochs / retrain_epochs"}

        def recipe(lr: float, epochs: int) -> TrainingRecipe:
            try:
                return TrainingRecipe(
                    schedule=f"0:{lr:g}",
                    epochs=epochs,
                    batch_size=(
                        defaults.batch_size(self.dataset)
                        if self.batch_size is None
                        else self.batch_size
                    ),
                    momentum=0.9,
                    weight_decay=self.weight_decay,
                    weight_decay_mode=self.weight_decay_mode,
                )
            except RecipeValueError as err:
                flag = names.get(err.field, err.field)
                raise InvalidArgumentError(str(err.renamed(flag))) from None

        return (
            recipe(self.learning_rate, self.train_epochs),
            recipe(self.retrain_learning_rate, self.retrain_epochs),
        )


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


def prune_run_spec(config: PruneRunConfig, seed: int, loaded: Any = None) -> RunSpec:
    """The protocol run of ``config``: its base recipe, its criterion, masked retraining.

    ``loaded``: the model of ``config.load_model`` (its input rank says whether the images are
    flattened); the run then starts from it instead of a trained base.
    """
    train, retrain = config.recipes()
    runtime = config.runtime()
    options: dict[str, Any] = {
        "retrain_masked": True,
        "jsv_samples": 0,
        "eval_every_epoch": False,
        "recalibrate_batch_norm": bool(config.recalibrate_batch_norm),
    }
    if runtime.precision != "float32":
        options["precision"] = runtime.precision
    if runtime.jit_compile:
        options["jit_compile"] = True
    model = config.model
    if loaded is not None:  # its input rank says whether the images are flattened
        model = f"loaded:{config.load_model}"
        options["data_options"] = {"flatten": len(loaded.inputs[0].shape) == 2}
    return RunSpec(
        protocol="prune",
        cell=f"{config.importance} {config.sparsity:.0%}",
        dataset=config.dataset,
        model=model,
        method=config.importance,
        ratio=config.sparsity,
        retrain=retrain,
        seed=seed,
        base=train.to_dict(),
        data_dir=config.data_dir,
        options=options,
    )


def _run_prune(config: PruneRunConfig, log: Any) -> PruneRunResult:
    seed = config.resolved_seed()
    keras.utils.set_random_seed(seed)
    strategy = get_strategy(config.strategy)
    loaded = None
    if config.load_model:
        with strategy.scope():
            loaded = load_model(config.load_model, "load_model")
    spec = prune_run_spec(config, seed, loaded)
    log(f"data: {spec.dataset}; held-out test split of seed {seed}")
    with contextlib.ExitStack() as stack:
        if config.output_dir:
            workdir = str(ensure_output_dir(config.output_dir))
        else:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="tfprune-prune-"))
        base = BaseModel(loaded, {"base_id": config.load_model}) if loaded is not None else None
        done = run(spec, workdir, base=base, strategy=strategy, log=log, progress=log)
    record, masked, data = done.record, done.model, done.data
    base_model, metrics = done.base.model, record.metrics
    base_history = done.base.meta.get("history") or {}
    if loaded is not None:
        check_accuracy_gap(loaded, {}, metrics["base_acc"], what="the base model", log=log)
    retrain_history = record.history

    small, plan = strip_filters(masked, return_plan=True)
    pipeline.compile_model(small, spec.retrain, config.retrain_learning_rate)
    small_acc = pipeline.evaluate(small, data)

    x = np.stack([x for x, _ in data.test.unbatch().take(config.latency_batch)])
    # The three distinct models take turns in every round (load changes hit them alike).
    times = interleaved_latency({"base": base_model, "masked": masked, "small": small}, x)
    speedup = speedup_stats(times["base"], times["small"])
    recalibrated = bool(config.recalibrate_batch_norm and batch_norm_layers(masked))
    mark = ", BN recalibrated" if recalibrated else ""
    if config.export_dir:
        stripped_name = f"stripped (exported{mark})"
    else:
        stripped_name = "stripped (BN recalibrated)" if recalibrated else "stripped"
    before = f"masked {config.sparsity:.0%} (before retraining"
    raw = metrics.get("acc_after_prune_raw", metrics["acc_after_prune"])
    # (name, latency key, model, test accuracy, training history, recalibrated)
    entries = [
        ("base", "base", base_model, metrics["base_acc"], base_history, False),
        (before + ")", "masked", masked, raw, {}, False),
    ]
    if recalibrated:
        entries.append(
            (before + mark + ")", "masked", masked, metrics["acc_after_prune"], {}, True)
        )
    entries += [
        (
            f"masked, retrained{mark}",
            "masked",
            masked,
            metrics["final_acc"],
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
    gap = {k: metrics[k] for k in ("train_acc", "acc_gap", "batch_norm_gap") if k in metrics}
    return PruneRunResult(
        rows=rows,
        model=small,
        plan=plan,
        export_path=export_path,
        speedup=speedup,
        gap=gap,
    )
