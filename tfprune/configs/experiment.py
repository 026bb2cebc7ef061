"""Typed experiment configs: training recipes, one experiment, and base-model training.

:class:`RecipeConfig` mirrors :class:`tfprune.protocols.spec.RetrainRecipe` (schedule, epochs,
batch size, momentum, weight decay, optimizer); :class:`ExperimentConfig` is one pruning
experiment (dataset, model, method, ratio, base and retraining recipes, seed);
:class:`TrainConfig` is what ``tfprune-train`` needs. Every class has ``validate()`` that raises
:class:`~tfprune.errors.ConfigError` / :class:`~tfprune.errors.DatasetNotFoundError` naming the
field and the fix, before any training starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfprune import defaults
from tfprune.choices import STRATEGIES
from tfprune.configs import checks
from tfprune.configs.base import config_from_dict, config_to_dict
from tfprune.errors import ConfigError, InvalidArgumentError
from tfprune.runtime import Runtime

__all__ = ["ExperimentConfig", "RecipeConfig", "TrainConfig"]

OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass
class RecipeConfig:
    """A training recipe (base-model training or retraining).

    Attributes:
      schedule: LR schedule (``"0:0.01,30:0.001"``, ``"cosine:0.01:1e-4"``, ``"ft:0.001"``, ...).
      epochs: Number of epochs (>= 0).
      batch_size: Global batch size (>= 1).
      momentum: SGD momentum in [0, 1).
      weight_decay: Weight-decay coefficient (>= 0).
      optimizer: ``"sgd"`` or ``"adam"``.
      weight_decay_mode: ``"coupled"`` (PyTorch: L2 added to the gradient before momentum, the
        default of every recipe in the pruning papers) or ``"decoupled"`` (Keras/AdamW).
    """

    schedule: str = "0:0.01,30:0.001,60:0.0001"
    epochs: int = 90
    batch_size: int = 100
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    weight_decay_mode: str = "coupled"

    def validate(self, where: str = "recipe") -> RecipeConfig:
        """Check every field; returns ``self``."""
        checks.check_epochs(self.epochs, f"{where}.epochs")
        checks.check_schedule(self.schedule, f"{where}.schedule", self.epochs)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ConfigError(f"{where}.batch_size must be an integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size must be >= 1, got {self.batch_size}")
        if not isinstance(self.momentum, (int, float)) or not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{where}.momentum must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ConfigError(f"{where}.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"{where}.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.weight_decay_mode not in ("coupled", "decoupled"):
            raise ConfigError(
                f"{where}.weight_decay_mode must be 'coupled' (PyTorch SGD) or 'decoupled', "
                f"got {self.weight_decay_mode!r}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (the :class:`~tfprune.protocols.spec.RetrainRecipe` fields)."""
        return config_to_dict(self)


@dataclasses.dataclass
class ExperimentConfig:
    """One pruning experiment: what is pruned, how much, and how it is (re)trained.

    Attributes:
      dataset: ``digits``, ``mnist``, ``cifar10``, ``cifar100`` or ``imagenet``.
      data_dir: Folder of the dataset files (``None``: the dataset's default; must be ``None``
        for the embedded ``digits``).
      model: A :func:`tfprune.models.list_models` name.
      method: Pruning method (``l1``, ``random``, ``l1_orthp``, ``greg1``, ``scratch``, ...).
      ratio: Uniform ratio in [0, 1) or ``{layer-name regex: ratio}``.
      base: Base-model training recipe.
      retrain: Retraining recipe.
      seed: Seed (>= 1).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "mlp7_linear"
    method: str = "l1"
    ratio: Any = 0.5
    base: RecipeConfig = dataclasses.field(default_factory=RecipeConfig)
    retrain: RecipeConfig = dataclasses.field(default_factory=RecipeConfig)
    seed: int = 1

    def validate(self, check_files: bool = True) -> ExperimentConfig:
        """Check every field (and that the dataset files exist); returns ``self``."""
        checks.check_dataset(self.dataset)
        checks.check_model(self.model)
        if not isinstance(self.method, str) or not self.method:
            raise ConfigError(f"method must be a non-empty string, got {self.method!r}")
        checks.check_ratio(self.ratio)
        self.base.validate("base")
        self.retrain.validate("retrain")
        checks.check_seeds([self.seed], "seed")
        if check_files:
            checks.check_dataset_files(self.dataset, self.data_dir)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Strictly typed construction (unknown keys raise with a "did you mean" hint)."""
        return config_from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict."""
        return config_to_dict(self)


@dataclasses.dataclass
class TrainConfig:
    """What ``tfprune-train`` needs to train and save one base model.

    Attributes:
      dataset: Dataset name.
      data_dir: Dataset folder (``None`` for ``digits``).
      model: Zoo model name.
      recipe: Training recipe (schedule, epochs, batch size, ...).
      seed: Seed (>= 0) of the weights, the shuffling and the held-out test split (the tools'
        default, :data:`tfprune.defaults.SEED`).
      output_dir: Where the model, ``history.csv``, ``metrics.json`` and ``config.yaml`` go.
      strategy: ``tf.distribute`` strategy name.
      mixed_precision: ``false``, ``true`` (``mixed_float16`` on a GPU, ``mixed_bfloat16`` on
        CPU/TPU) or a policy name; see :class:`tfprune.runtime.Runtime`.
      jit_compile: Compile training steps with XLA.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "mlp7_linear"
    recipe: RecipeConfig = dataclasses.field(
        default_factory=lambda: RecipeConfig(schedule="0:0.01,20:0.001", epochs=30)
    )
    seed: int = defaults.SEED
    output_dir: str = "base_model"
    strategy: str = "default"
    mixed_precision: Any = False
    jit_compile: bool = False

    def runtime(self) -> Runtime:
        """The precision and XLA setting of the training."""
        try:
            return Runtime(self.mixed_precision, self.jit_compile)
        except InvalidArgumentError as err:
            raise ConfigError(str(err)) from None

    def validate(self) -> TrainConfig:
        """Check every field (and the dataset files); returns ``self``."""
        checks.check_dataset(self.dataset)
        checks.check_model(self.model)
        self.recipe.validate("recipe")
        checks.check_seeds([self.seed], "seed")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy={self.strategy!r} is unknown; use one of {', '.join(STRATEGIES)}"
            )
        if not self.output_dir:
            raise ConfigError("output_dir must be a folder path")
        self.runtime()
        checks.check_dataset_files(self.dataset, self.data_dir)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict."""
        return config_to_dict(self)
