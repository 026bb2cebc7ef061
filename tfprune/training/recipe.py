"""The training recipe: how a model is trained, whether it is a base model or a pruned one.

One class serves every training phase of tfprune (the dense base model, the retraining after
pruning, a scratch baseline, ``tfprune-train`` and ``tfprune-prune``): schedule, epochs, batch
size, momentum, weight decay, optimizer and the weight-decay mode. Where a recipe does not give
a batch size, the dataset's default (:func:`tfprune.defaults.batch_size`) is used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfprune.errors import ConfigError, RecipeValueError, did_you_mean

__all__ = ["OPTIMIZERS", "TrainingRecipe"]

#: The optimizers a recipe can name.
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """How a model is trained (its base training, retraining or scratch training).

    Attributes:
        schedule: LR schedule spec, parsed by :func:`tfprune.training.schedules.parse_schedule`:
            ``"0:0.01,30:0.001"`` (epoch:lr, piecewise constant), ``"cosine:0.01:1e-4"``,
            ``"halving:0.01:1e-5"``, ``"ft:0.001"``, ``"lrw:..."``, ``"slr:..."``, ``"clr:..."``.
        epochs: Number of training epochs (>= 0).
        batch_size: Global batch size (examples per step over all replicas), >= 1.
        momentum: SGD momentum, in [0, 1).
        weight_decay: Weight-decay coefficient for every trainable variable (>= 0).
        optimizer: ``"sgd"`` or ``"adam"``.
        weight_decay_mode: ``"coupled"`` (default: ``weight_decay * w`` is added to the
            gradient before momentum, as PyTorch's SGD does in every recipe of the pruning
            papers) or ``"decoupled"`` (Keras' ``weight_decay``: ``w -= lr * wd * w``, about
            ``1 - momentum`` times as strong).

    A bad value raises :class:`~tfprune.errors.RecipeValueError` (a ``ConfigError``) naming
    the field as ``recipe.<field>``; :meth:`from_dict` names it after the section it was read
    from.
    """

    schedule: str
    epochs: int
    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    weight_decay_mode: str = "coupled"

    def __post_init__(self) -> None:
        bad = RecipeValueError

        if not isinstance(self.schedule, str) or not self.schedule.strip():
            raise bad("schedule", "a non-empty string", self.schedule)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            low = 0 if name == "epochs" else 1
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(name, "an integer", value)
            if int(value) != value or value < low:
                raise bad(name, f"an integer >= {low}", value)
            object.__setattr__(self, name, int(value))
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(name, "a number", value)
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "in [0, 1)", self.momentum)
        if self.weight_decay < 0:
            raise bad("weight_decay", ">= 0", self.weight_decay)
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", "'sgd' or 'adam'", self.optimizer)
        if self.weight_decay_mode not in ("coupled", "decoupled"):
            raise bad(
                "weight_decay_mode",
                "'coupled' (PyTorch SGD) or 'decoupled'",
                self.weight_decay_mode,
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the recipe."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "recipe") -> TrainingRecipe:
        """The recipe of ``data``; errors name each field as ``<where>.<field>``.

        Raises:
          ConfigError: an unknown field (with a "did you mean" hint), a missing ``schedule``,
            ``epochs`` or ``batch_size``, or a bad value.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            hints = ", ".join(f"{k!r}{did_you_mean(k, names)}" for k in unknown)
            raise ConfigError(f"{where}: unknown field(s) {hints}; allowed: {', '.join(names)}")
        missing = [n for n in ("schedule", "epochs", "batch_size") if n not in data]
        if missing:
            raise ConfigError(f"{where}: needs {', '.join(missing)} (the training recipe)")
        try:
            return cls(**dict(data))
        except RecipeValueError as err:
            raise err.renamed(f"{where}.{err.field}") from None
