"""The contract between protocols, the runner and the run store.

A protocol expands a config into :class:`RunSpec` objects (one per run: grid cell × seed);
:func:`execute` runs one spec and returns a :class:`RunRecord` (final metrics, per-epoch history
and the fairness descriptors that :func:`tfprune.protocols.setups.setup_check` compares). Every
dataclass here round-trips through plain JSON (``to_dict`` / ``from_dict``), and
:meth:`RunSpec.run_id` is a stable content hash, so a run is identified by what it does, not by
where it sits in a grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from tfprune.errors import ConfigError

__all__ = ["RetrainRecipe", "RunRecord", "RunSpec", "canonical_json", "execute"]


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


@dataclasses.dataclass(frozen=True)
class RetrainRecipe:
    """How the pruned (or scratch) model is trained.

    Attributes:
        schedule: LR schedule spec, parsed by :func:`tfprune.protocols.schedules.parse_schedule`:
            ``"0:0.01,30:0.001"`` (epoch:lr, piecewise constant), ``"cosine:0.01:1e-4"``,
            ``"halving:0.01:1e-5"``, ``"ft:0.001"``, ``"lrw:..."``, ``"slr:..."``, ``"clr:..."``.
        epochs: Number of training epochs (>= 0).
        batch_size: Global batch size.
        momentum: SGD momentum.
        weight_decay: L2 coefficient added to the loss for every conv/dense kernel.
        optimizer: ``"sgd"`` or ``"adam"``.
    """

    schedule: str
    epochs: int
    batch_size: int = 100
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, str) or not self.schedule.strip():
            raise ConfigError(f"retrain.schedule must be a non-empty string, got {self.schedule!r}")
        if int(self.epochs) != self.epochs or self.epochs < 0:
            raise ConfigError(f"retrain.epochs must be an integer >= 0, got {self.epochs!r}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ConfigError(f"retrain.batch_size must be >= 1, got {self.batch_size!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"retrain.momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"retrain.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"retrain.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        object.__setattr__(self, "epochs", int(self.epochs))
        object.__setattr__(self, "batch_size", int(self.batch_size))
        object.__setattr__(self, "momentum", float(self.momentum))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the recipe."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainRecipe:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"retrain: unknown field(s) {unknown}; allowed: {sorted(names)}")
        return cls(**dict(data))


def _normalize_ratio(ratio: Any) -> float | dict[str, float]:
    if isinstance(ratio, Mapping):
        out = {}
        for k, v in ratio.items():
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
                raise ConfigError(f"ratio[{k!r}] must be a number in [0, 1), got {v!r}")
            out[str(k)] = float(v)
        return out
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise ConfigError(f"ratio must be a number or a {{regex: ratio}} dict, got {ratio!r}")
    if not 0.0 <= float(ratio) < 1.0:
        raise ConfigError(f"ratio must be in [0, 1), got {ratio!r}")
    return float(ratio)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a protocol: one grid cell and one seed.

    Attributes:
        protocol: Protocol name (a key of :data:`tfprune.protocols.grids.PROTOCOLS`).
        cell: Human label of the grid cell, e.g. ``"L1+OrthP / lr=1e-2 / 30ep"``.
        dataset: :func:`tfprune.data.load_dataset` name.
        model: :func:`tfprune.models.get_model` name.
        method: ``"dense"``, ``"scratch"``, ``"random"``, ``"l1"``, ``"l1_orthp"``, ``"greg1"``,
            ``"greg2"``, ``"tpp"`` or any importance name accepted by
            :func:`tfprune.prune_filters` (``"l2"``, ``"bn_scale"``, ...); a ``"_orthp"`` suffix
            adds OrthP to any criterion.
        ratio: Uniform pruning ratio or ``{layer-name regex: ratio}``.
        retrain: The retraining (or scratch-training) recipe.
        seed: Seed of data order, initialisation and random choices.
        base: Base-model recipe (``schedule``, ``epochs``, optional ``batch_size``, ``momentum``,
            ``weight_decay``, ``optimizer``, ``model_kwargs``, ``data_options``); identifies the
            shared base model together with dataset, model and seed.
        data_dir: Dataset directory (``None``: the dataset's default).
        options: Extra knobs (see :mod:`tfprune.protocols.execute`): ``jsv_samples``,
            ``jsv_every_epoch``, ``prune_epoch``, ``scratch_budget``, ``model_kwargs``,
            ``data_options``, ``regularization``, ...
    """

    protocol: str
    cell: str
    dataset: str
    model: str
    method: str
    ratio: float | dict
    retrain: RetrainRecipe
    seed: int
    base: dict
    data_dir: str | None = None
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("protocol", "cell", "dataset", "model", "method"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if isinstance(self.retrain, Mapping):
            object.__setattr__(self, "retrain", RetrainRecipe.from_dict(self.retrain))
        if not isinstance(self.retrain, RetrainRecipe):
            raise ConfigError(f"retrain must be a RetrainRecipe, got {type(self.retrain).__name__}")
        object.__setattr__(self, "ratio", _normalize_ratio(self.ratio))
        if isinstance(self.seed, bool) or int(self.seed) != self.seed:
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if not isinstance(self.base, Mapping):
            raise ConfigError(f"base must be a dict (the base-model recipe), got {self.base!r}")
        object.__setattr__(self, "base", _plain(dict(self.base)))
        object.__setattr__(self, "options", _plain(dict(self.options or {})))

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
        kw = dict(data)
        if isinstance(kw.get("retrain"), Mapping):
            kw["retrain"] = RetrainRecipe.from_dict(kw["retrain"])
        return cls(**kw)

    def run_id(self) -> str:
        """Stable content id: the first 12 hex digits of the SHA-1 of the canonical JSON."""
        return hashlib.sha1(canonical_json(self.to_dict()).encode("utf-8")).hexdigest()[:12]

    def base_id(self) -> str:
        """Id of the shared base model: (dataset, data_dir, model, base recipe, seed)."""
        key = {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "model": self.model,
            "base": self.base,
            "seed": self.seed,
            "model_kwargs": self.options.get("model_kwargs", {}),
            "data_options": self.options.get("data_options", {}),
        }
        return hashlib.sha1(canonical_json(key).encode("utf-8")).hexdigest()[:12]


@dataclasses.dataclass
class RunRecord:
    """The result of one run.

    Attributes:
        spec: ``RunSpec.to_dict()`` of the run.
        metrics: Scalars: ``final_acc``, ``best_acc``, ``acc_after_prune``, ``base_acc``,
            ``params``, ``flops``, ``base_params``, ``base_flops``, ``speedup``,
            ``param_reduction``, ``jsv_after_prune``, ``jsv_base``, ``trainability_acc``,
            ``seconds``, ``base_seconds``.
        history: Per-epoch lists of retraining: ``loss``, ``accuracy``, ``val_accuracy``,
            ``lr`` and ``jsv_mean`` (when measured; entry 0 of ``jsv_mean`` is right after
            pruning).
        setup: Fairness descriptors read by :func:`tfprune.protocols.setups.setup_check`:
            ``dataset``, ``model``, ``base_id``, ``params``, ``flops``, ``finetune_schedule``,
            ``finetune_epochs``, ``prune_epochs``, ``prune_schedule``, ``total_epochs``,
            ``total_flops``, ``hyper`` (batch/momentum/WD/optimizer), ``scratch``.
    """

    spec: dict
    metrics: dict
    history: dict
    setup: dict

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the record."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict` (missing sections become empty dicts)."""
        return cls(
            spec=dict(data.get("spec", {})),
            metrics=dict(data.get("metrics", {})),
            history=dict(data.get("history", {})),
            setup=dict(data.get("setup", {})),
        )

    def run_spec(self) -> RunSpec:
        """The :class:`RunSpec` this record was produced from."""
        return RunSpec.from_dict(self.spec)


def execute(
    spec: RunSpec,
    workdir: str,
    *,
    strategy: Any = None,
    log: Callable[[str], None] = print,
) -> RunRecord:
    """Run one spec end to end and return its record (see :mod:`tfprune.protocols.execute`).

    Deterministic given ``spec.seed``; the base model is cached under
    ``workdir/base_models/<base_id>/`` and shared by every spec with the same base; nothing else is
    written outside ``workdir``.
    """
    from tfprune.protocols.execute import execute_spec

    return execute_spec(spec, workdir, strategy=strategy, log=log)
