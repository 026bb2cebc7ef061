"""The contract between protocols, the runner and the run store.

A protocol expands a config into :class:`RunSpec` objects (one per run: grid cell × seed);
:func:`tfprune.protocols.execute.execute` runs one spec and returns a :class:`RunRecord` (final
metrics, per-epoch history and the fairness descriptors that
:func:`tfprune.protocols.setups.setup_check` compares). Every
dataclass here round-trips through plain JSON (``to_dict`` / ``from_dict``), and
:meth:`RunSpec.run_id` is a stable content hash, so a run is identified by what it does, not by
where it sits in a grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any, TypedDict

from tfprune import defaults
from tfprune.configs.checks import check_ratio
from tfprune.errors import ConfigError, InvalidArgumentError, did_you_mean
from tfprune.protocols.params import type_problem
from tfprune.runtime import PRECISIONS
from tfprune.training.recipe import TrainingRecipe

__all__ = [
    "BASE_DEFAULTS",
    "BaseSpec",
    "RunMetrics",
    "RunOptions",
    "RunRecord",
    "RunSetup",
    "RunSpec",
    "base_recipe",
    "canonical_json",
    "check_record",
]


def _plain(value: Any) -> Any:
    """Convert tuples to lists and numpy scalars to Python numbers (recursively) for JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys and no whitespace: equal content gives equal text."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), allow_nan=True)


BASE_DEFAULTS: dict[str, Any] = {
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "optimizer": "sgd",
    "weight_decay_mode": "coupled",
}
"""Base-recipe fields a ``base`` dict may leave out (``batch_size``: the dataset's default)."""

BASE_EXTRA_FIELDS = ("schedule_epochs", "train_steps")
"""Base-dict fields besides the recipe: the length the schedule is laid out over (a base
stopped early, the pruning epoch of Wang et al. 2023) and an exact number of optimizer steps
(SX-B's squeezed pretraining)."""


def base_recipe(base: Mapping[str, Any], dataset: str) -> TrainingRecipe:
    """A base-model recipe dict (``schedule``, ``epochs``, optional hyper-parameters) as a recipe.

    A dict without ``batch_size`` trains at ``dataset``'s default
    (:func:`tfprune.defaults.batch_size`).

    Raises:
        ConfigError: unknown fields, or ``schedule`` / ``epochs`` missing.
    """
    base = dict(base)
    known = {f.name for f in dataclasses.fields(TrainingRecipe)}
    extra = set(base) - known - set(BASE_EXTRA_FIELDS)
    if extra:
        allowed = sorted(known | set(BASE_EXTRA_FIELDS))
        raise ConfigError(f"base: unknown field(s) {sorted(extra)}; allowed: {allowed}")
    if "schedule" not in base or "epochs" not in base:
        raise ConfigError("base: needs 'schedule' and 'epochs' (the base-model training recipe)")
    kw = {**BASE_DEFAULTS, **{k: base[k] for k in known if k in base}}
    kw.setdefault("batch_size", defaults.batch_size(dataset))
    return TrainingRecipe.from_dict(kw, where="base")


@dataclasses.dataclass(frozen=True)
class BaseSpec:
    """The dense model runs start from: trained once, cached and shared by every run naming it.

    Attributes:
        dataset: :func:`tfprune.data.load_dataset` name.
        model: :func:`tfprune.models.get_model` name.
        base: The training recipe as a dict (``schedule``, ``epochs``, optional
            ``batch_size``, ``momentum``, ``weight_decay``, ``optimizer``, ``weight_decay_mode``,
            and ``schedule_epochs`` / ``train_steps`` to stop early or after an exact number of
            steps).
        seed: Seed of the weights, the data order and the held-out test split.
        data_dir: Dataset directory (``None``: the dataset's default).
        model_kwargs: Extra model-builder arguments.
        data_options: Extra :func:`tfprune.data.load_dataset` options.
        precision: Keras dtype policy it is built and trained in.
        jit_compile: Train it with XLA.
    """

    dataset: str
    model: str
    base: dict
    seed: int
    data_dir: str | None = None
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    data_options: dict = dataclasses.field(default_factory=dict)
    precision: str = "float32"
    jit_compile: bool = False

    def recipe(self) -> TrainingRecipe:
        """The training recipe (:attr:`base`), defaults filled in."""
        return base_recipe(self.base, self.dataset)

    def base_id(self) -> str:
        """Id of the base model: (dataset, data_dir, model, recipe, seed, model/data options)."""
        base = dict(self.base)
        if "batch_size" not in base:  # the dataset's default is part of what is trained
            base["batch_size"] = defaults.batch_size(self.dataset)
        key = {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "model": self.model,
            "base": base,
            "seed": self.seed,
            "model_kwargs": self.model_kwargs,
            "data_options": self.data_options,
            "weight_decay_mode": self.base.get("weight_decay_mode", "coupled"),
        }
        # A base trained in another precision, or compiled by XLA, is another base model; the
        # keys appear only when set, so float32 ids stay what they were.
        if self.precision != "float32":
            key["precision"] = self.precision
        if self.jit_compile:
            key["jit_compile"] = self.jit_compile
        return hashlib.sha1(canonical_json(key).encode("utf-8")).hexdigest()[:12]


_SCRATCH_BUDGETS = (None, "E", "B")
_SCRATCH_B_VARIANTS = ("why", "rethink_cifar", "rethink_imagenet")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The typed options of a :class:`RunSpec` (every key of ``RunSpec.options``).

    An unknown (e.g. misspelt) key or a value of the wrong type is a :class:`ConfigError` when
    the spec is built, before anything trains.

    Attributes:
        jsv_samples: Training images for the mean JSV (0 disables it). Default 1000 (10 × 100).
        jsv_every_epoch: Also measure the mean JSV after every retraining epoch.
        eval_every_epoch: Test accuracy after every retraining epoch (``val_accuracy``).
        model_kwargs: Extra model-builder arguments.
        data_options: Extra :func:`tfprune.data.load_dataset` options.
        skip: Layer names never pruned.
        scratch_budget: Scratch runs: ``None`` (the recipe's epochs), ``"E"`` (the pipeline's
            total epochs) or ``"B"`` (its total FLOPs).
        scratch_b_variant: Scratch-B formula (``why``, ``rethink_cifar``, ``rethink_imagenet``).
        pipeline_epochs: Retraining epochs of the pipeline a scratch budget is matched to.
        pipeline_prune_epochs: Pruning-stage epochs of that pipeline.
        squeeze_base_by_speedup: SX-B: pretrain ``base.epochs / k`` epochs' worth of steps
            (k = measured speed-up), so the pipeline's FLOPs equal Scratch-E's.
        squeezed_from: Set by SX-B: the unsqueezed pretraining epochs.
        regularization: Keyword arguments of the regularized method's callback.
        prune_max_epochs: Upper bound of a regularized pruning stage (it stops when the callback
            finishes).
        prune_schedule: LR schedule of the regularized pruning stage (default constant 1e-3,
            the authors' ``lr_prune``).
        target: A matched operating point instead of the ratio, e.g.
            ``{"flops_reduction": 2.0}`` or ``{"params_reduction": 3.0}``: the uniform ratio
            (or the scale of a ``{regex: ratio}`` scheme) is searched with
            :func:`tfprune.find_sparsity_for_target` so that every method of a grid prunes to
            the same achieved reduction (within 1 %).
        precision: Keras dtype policy of every model the run builds and trains
            (``float32``, ``mixed_float16`` or ``mixed_bfloat16``); set from the config's
            ``runtime`` section or the binaries' ``--mixed_precision``. Part of the base model's
            id and of the comparison setup.
        jit_compile: Compile training and evaluation with XLA (``--jit_compile``).
        recalibrate_batch_norm: Re-estimate the BatchNorm statistics on training batches
            (:func:`tfprune.recalibrate_batch_norm`) after pruning and after retraining, before
            each evaluation; the accuracy after pruning without it is kept as
            ``acc_after_prune_raw``. Off by default: the papers' recipes evaluate the model as
            trained. Part of the comparison setup (``hyper``) and of the run id when set.
        retrain_masked: One-shot criteria only: retrain the masked model (the pruned filters
            held at zero by masks) instead of the stripped one; the record's params and FLOPs
            are the stripped model's. What ``tfprune-prune`` runs, so that it can show the
            masked and the stripped model side by side.
    """

    jsv_samples: int = 1000
    jsv_every_epoch: bool = False
    eval_every_epoch: bool = True
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    data_options: dict = dataclasses.field(default_factory=dict)
    skip: tuple = ()
    scratch_budget: str | None = None
    scratch_b_variant: str = "why"
    pipeline_epochs: int | None = None
    pipeline_prune_epochs: int = 0
    squeeze_base_by_speedup: bool = False
    squeezed_from: int | None = None
    regularization: dict = dataclasses.field(default_factory=dict)
    prune_max_epochs: int = 30
    prune_schedule: str = "0:0.001"
    target: dict | None = None
    precision: str = "float32"
    jit_compile: bool = False
    recalibrate_batch_norm: bool = False
    retrain_masked: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunOptions:
        """Validated options; unknown keys raise :class:`ConfigError` naming the allowed ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            hints = [f"{key!r}{did_you_mean(key, names)}" for key in unknown]
            raise ConfigError(
                f"options: unknown key(s) {', '.join(hints)}; allowed: {', '.join(names)}"
            )
        kw = dict(data)
        for key in ("jsv_samples", "pipeline_prune_epochs", "prune_max_epochs"):
            if key in kw:
                kw[key] = _int_option(key, kw[key], low=0 if key != "prune_max_epochs" else 1)
        for key in ("pipeline_epochs", "squeezed_from"):
            if kw.get(key) is not None:
                kw[key] = _int_option(key, kw[key], low=0)
        flags = (
            "jsv_every_epoch",
            "eval_every_epoch",
            "squeeze_base_by_speedup",
            "jit_compile",
            "recalibrate_batch_norm",
            "retrain_masked",
        )
        for key in flags:
            if key in kw and not isinstance(kw[key], bool):
                raise ConfigError(f"options.{key} must be true or false, got {kw[key]!r}")
        if kw.get("target") is not None and not isinstance(kw["target"], Mapping):
            raise ConfigError(
                f"options.target must be a mapping such as {{flops_reduction: 2.0}}, got "
                f"{kw['target']!r}"
            )
        for key in ("model_kwargs", "data_options", "regularization"):
            if key in kw and not isinstance(kw[key], Mapping):
                raise ConfigError(f"options.{key} must be a mapping, got {kw[key]!r}")
        if "skip" in kw:
            if isinstance(kw["skip"], str) or not all(isinstance(x, str) for x in kw["skip"]):
                raise ConfigError(f"options.skip must be a list of layer names, got {kw['skip']!r}")
            kw["skip"] = tuple(kw["skip"])
        if kw.get("scratch_budget") not in _SCRATCH_BUDGETS:
            raise ConfigError(
                f"options.scratch_budget must be 'E', 'B' or null, got {kw['scratch_budget']!r}"
            )
        if kw.get("scratch_b_variant", "why") not in _SCRATCH_B_VARIANTS:
            raise ConfigError(
                f"options.scratch_b_variant must be one of {_SCRATCH_B_VARIANTS}, got "
                f"{kw['scratch_b_variant']!r}"
            )
        if kw.get("precision", "float32") not in PRECISIONS:
            raise ConfigError(
                f"options.precision must be one of {', '.join(PRECISIONS)}, got "
                f"{kw['precision']!r} (set it with the config's runtime.mixed_precision)"
            )
        if "prune_schedule" in kw and (
            not isinstance(kw["prune_schedule"], str) or not kw["prune_schedule"].strip()
        ):
            raise ConfigError(
                f"options.prune_schedule must be an LR schedule text, got {kw['prune_schedule']!r}"
            )
        return cls(**kw)


def _int_option(key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"options.{key} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"options.{key} must be >= {low}, got {value!r}")
    return int(value)


def _normalize_ratio(ratio: Any) -> float | dict[str, float]:
    if not isinstance(ratio, (int, float, Mapping)) or isinstance(ratio, bool):
        raise ConfigError(f"ratio must be a number or a {{regex: ratio}} dict, got {ratio!r}")
    checked = check_ratio(ratio, "ratio")
    return {str(k): v for k, v in checked.items()} if isinstance(checked, dict) else checked


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a protocol: one grid cell and one seed.

    Attributes:
        protocol: Protocol name (a key of :data:`tfprune.protocols.grids.PROTOCOLS`).
        cell: Human label of the grid cell, e.g. ``"L1+OrthP / lr=1e-2 / 30ep"``.
        dataset: :func:`tfprune.data.load_dataset` name.
        model: :func:`tfprune.models.get_model` name.
        method: A key of :data:`tfprune.protocols.methods.METHODS`: ``"dense"``,
            ``"scratch"``, a one-shot criterion (``"l1"``, ``"l2"``, ``"random"``,
            ``"bn_scale"``, ``"taylor"``, ``"fpgm"``, each also with ``"_orthp"``) or a
            regularized method (``"greg1"``, ``"greg2"``, ``"tpp"``, ``"slimming"``,
            ``"group_lasso"``).
        ratio: Uniform pruning ratio or ``{layer-name regex: ratio}``.
        retrain: The retraining (or scratch-training) recipe.
        seed: Seed of data order, initialisation and random choices.
        base: Base-model recipe (``schedule``, ``epochs``, optional ``batch_size``, ``momentum``,
            ``weight_decay``, ``optimizer``, ``model_kwargs``, ``data_options``); identifies the
            shared base model together with dataset, model and seed.
        data_dir: Dataset directory (``None``: the dataset's default).
        options: Extra knobs, validated as :class:`RunOptions` (unknown keys fail); only the
            keys given are stored, so defaults do not change run ids.
    """

    protocol: str
    cell: str
    dataset: str
    model: str
    method: str
    ratio: float | dict
    retrain: TrainingRecipe
    seed: int
    base: dict
    data_dir: str | None = None
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("protocol", "cell", "dataset", "model", "method"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if isinstance(self.retrain, Mapping):
            retrain = dict(self.retrain)
            retrain.setdefault("batch_size", defaults.batch_size(self.dataset))
            object.__setattr__(self, "retrain", TrainingRecipe.from_dict(retrain, "retrain"))
        if not isinstance(self.retrain, TrainingRecipe):
            raise ConfigError(
                f"retrain must be a TrainingRecipe, got {type(self.retrain).__name__}"
            )
        object.__setattr__(self, "ratio", _normalize_ratio(self.ratio))
        if isinstance(self.seed, bool) or int(self.seed) != self.seed:
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if not isinstance(self.base, Mapping):
            raise ConfigError(f"base must be a dict (the base-model recipe), got {self.base!r}")
        object.__setattr__(self, "base", _plain(dict(self.base)))
        object.__setattr__(self, "options", _plain(dict(self.options or {})))
        # Unknown or ill-typed options fail here; the typed options are kept, parsed once.
        object.__setattr__(self, "_opts", RunOptions.from_dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the spec (``retrain`` as a nested dict)."""
        return {
            "protocol": self.protocol,
            "cell": self.cell,
            "dataset": self.dataset,
            "model": self.model,
            "method": self.method,
            "ratio": self.ratio,
            "retrain": self.retrain.to_dict(),
            "seed": self.seed,
            "base": self.base,
            "data_dir": self.data_dir,
            "options": self.options,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"run spec: unknown field(s) {unknown}; allowed: {sorted(names)}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise ConfigError(f"run spec: missing field(s) {missing}; the record is damaged")
        return cls(**dict(data))

    def run_id(self) -> str:
        """Stable content id: the first 12 hex digits of the SHA-1 of the canonical JSON."""
        return hashlib.sha1(canonical_json(self.to_dict()).encode("utf-8")).hexdigest()[:12]

    @property
    def opts(self) -> RunOptions:
        """:attr:`options` as validated, typed :class:`RunOptions` (defaults filled in)."""
        return self._opts

    def base_spec(self) -> BaseSpec:
        """The base model this run starts from (scratch runs train none)."""
        opts = self.opts
        return BaseSpec(
            dataset=self.dataset,
            model=self.model,
            base=self.base,
            seed=self.seed,
            data_dir=self.data_dir,
            model_kwargs=dict(opts.model_kwargs),
            data_options=dict(opts.data_options),
            precision=opts.precision,
            jit_compile=opts.jit_compile,
        )

    def base_recipe(self) -> TrainingRecipe:
        """The base-model recipe (:attr:`base`) as a :class:`TrainingRecipe`, defaults filled in."""
        return base_recipe(self.base, self.dataset)

    def base_id(self) -> str:
        """Id of the shared base model (:meth:`BaseSpec.base_id`)."""
        return self.base_spec().base_id()


class RunMetrics(TypedDict, total=False):
    """The scalars of a run (``RunRecord.metrics``), each with its type; methods may add more.

    Accuracies are fractions in [0, 1]; ``None`` where a figure was not measured.
    """

    final_acc: float
    best_acc: float
    acc_after_prune: float
    acc_after_prune_raw: float | None
    train_acc: float | None
    acc_gap: float | None
    batch_norm_gap: bool
    base_acc: float | None
    params: int
    flops: int
    base_params: int
    base_flops: int
    speedup: float
    param_reduction: float
    jsv_base: float | None
    jsv_after_prune: float | None
    jsv_final: float | None
    trainability_acc: float | None
    retrain_epochs: int
    prune_epochs: float
    weight_decay_mode: str
    seconds: float
    train_seconds: float
    base_seconds: float
    base_cached: bool
    wall_seconds: float
    precision: str
    jit_compile: bool
    strip_max_rel_error: float | None
    strip_max_rel_error_float32: float | None
    target_metric: str
    target: float
    target_achieved: float
    target_ratio: float
    flops_vs_scratch_e: float
    base_train_steps: int


class RunSetup(TypedDict, total=False):
    """The fairness descriptors of a run (``RunRecord.setup``), read by ``setup_check``."""

    dataset: str
    model: str
    base_id: str | None
    params: int
    flops: int
    base_epochs: float
    finetune_schedule: str
    finetune_epochs: int
    prune_epochs: float
    prune_schedule: str
    overall_schedule: str
    total_epochs: float
    total_flops: float
    hyper: dict
    scratch: bool


_READ_FIX = (
    "the record is damaged or was written by other code, so rerun the run (delete its folder)"
)
_WRITE_FIX = (
    "the run itself produced this value, so this is a bug in tfprune (the record was not "
    "written); please report it with this message"
)


def check_record(
    data: Mapping[str, Any], where: str = "run record", *, writing: bool = False
) -> None:
    """Check the sections of a record dict against :class:`RunMetrics` and :class:`RunSetup`.

    Keys these do not list are accepted (methods add their own); every ``history`` entry must
    be a per-epoch list.

    Args:
      data: The record dict.
      where: How the message names the record.
      writing: The record is being made by a run (a problem is then a bug in tfprune, not a
        damaged file).

    Raises:
      InvalidArgumentError: names the record, the key, the type it needs, the value and the fix.
    """
    fix = _WRITE_FIX if writing else _READ_FIX
    for section, schema in (("metrics", RunMetrics), ("setup", RunSetup)):
        values = data.get(section) or {}
        if not isinstance(values, Mapping):
            raise InvalidArgumentError(
                f"{where}: {section} must be a mapping, got {values!r}; {fix}"
            )
        problem = type_problem(schema, values, f"{where}: {section}")
        if problem:
            raise InvalidArgumentError(f"{problem}; {fix}")
    for key, value in (data.get("history") or {}).items():
        if not isinstance(value, (list, tuple)):
            raise InvalidArgumentError(
                f"{where}: history.{key} must be a per-epoch list, got {type(value).__name__}; "
                f"{fix}"
            )


@dataclasses.dataclass
class RunRecord:
    """The result of one run.

    Attributes:
        spec: ``RunSpec.to_dict()`` of the run.
        metrics: Scalars: ``final_acc``, ``best_acc``, ``acc_after_prune``, ``base_acc``,
            ``params``, ``flops``, ``base_params``, ``base_flops``, ``speedup``,
            ``param_reduction``, ``jsv_after_prune``, ``jsv_base``, ``trainability_acc``,
            ``seconds``, ``base_seconds``; ``train_acc`` (the last retraining epoch's),
            ``acc_gap`` (it minus ``final_acc``) and ``batch_norm_gap`` (true when that gap
            is large in a model with BatchNormalization: see
            :func:`tfprune.batch_norm.check_accuracy_gap`).
        history: Per-epoch lists of retraining: ``loss``, ``accuracy``, ``val_accuracy``,
            ``lr`` and ``jsv_mean`` (when measured; entry 0 of ``jsv_mean`` is right after
            pruning).
        setup: Fairness descriptors read by :func:`tfprune.protocols.setups.setup_check`:
            ``dataset``, ``model``, ``base_id``, ``params``, ``flops``, ``finetune_schedule``,
            ``finetune_epochs``, ``prune_epochs``, ``prune_schedule``, ``total_epochs``,
            ``total_flops``, ``hyper`` (batch/momentum/WD/optimizer), ``scratch``.
        run_id: The run's id (:meth:`RunSpec.run_id` of ``spec``), the name of its folder.
            Computed once when the record is made, stored in ``record.json`` and checked
            against ``spec`` when the record is read back, so a record can never be filed
            under one run and reported as another. Empty for a record without a spec.
    """

    spec: dict
    metrics: dict
    history: dict
    setup: dict
    run_id: str = ""

    def __post_init__(self) -> None:
        self._check_id(fill=True)

    def _check_id(self, fill: bool = False) -> None:
        """Raises unless ``run_id`` is the spec's id (with ``fill``, an empty one becomes it)."""
        derived = RunSpec.from_dict(self.spec).run_id() if self.spec else ""
        if fill and not self.run_id:
            self.run_id = derived
        if self.run_id != derived:
            raise InvalidArgumentError(
                f"record of run {self.run_id}: its spec is that of run {derived or '(none)'}; "
                "the record was edited or written by another tfprune version, so rerun the run "
                "(delete its folder)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the record, its metrics and setup checked by :func:`check_record`."""
        self._check_id()  # the spec was not changed after the record was made
        out = _plain(dataclasses.asdict(self))
        check_record(out, f"run record of {self.spec.get('cell', '?')!r}", writing=True)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict` (missing sections become empty dicts; types checked)."""
        check_record(data)
        return cls(
            spec=dict(data.get("spec", {})),
            metrics=dict(data.get("metrics", {})),
            history=dict(data.get("history", {})),
            setup=dict(data.get("setup", {})),
            run_id=str(data.get("run_id", "")),
        )

    def run_spec(self) -> RunSpec:
        """The :class:`RunSpec` this record was produced from."""
        return RunSpec.from_dict(self.spec)
