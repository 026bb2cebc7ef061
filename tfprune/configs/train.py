"""The typed config of ``tfprune-train``: one base model, its recipe and where it is saved.

:class:`TrainConfig` has ``validate()``, which raises :class:`~tfprune.errors.ConfigError` /
:class:`~tfprune.errors.DatasetNotFoundError` naming the field and the fix, before any training
starts. Its recipe is a :class:`tfprune.training.TrainingRecipe`, the one recipe class of every
training phase.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfprune import defaults
from tfprune.choices import STRATEGIES
from tfprune.configs import checks
from tfprune.configs.base import config_to_dict
from tfprune.errors import ConfigError, InvalidArgumentError
from tfprune.runtime import Runtime
from tfprune.training.recipe import TrainingRecipe

__all__ = ["TrainConfig"]


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
    recipe: TrainingRecipe = dataclasses.field(
        default_factory=lambda: TrainingRecipe(
            schedule="0:0.01,20:0.001", epochs=30, batch_size=defaults.batch_size("digits")
        )
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
        if not isinstance(self.recipe, TrainingRecipe):
            raise ConfigError(f"recipe must be a TrainingRecipe, got {self.recipe!r}")
        checks.check_schedule(self.recipe.schedule, "recipe.schedule", self.recipe.epochs)
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
