"""The callback that drives gradual filter pruning during ``fit``."""

from __future__ import annotations

from typing import Any

from tfprune.compat import keras
from tfprune.pruning import FilterPruner

__all__ = ["UpdateFilterMasks"]


@keras.utils.register_keras_serializable(package="tfprune")
class UpdateFilterMasks(keras.callbacks.Callback):
    """Update filter masks on the pruning schedule, like TF-MOT's ``UpdatePruningStep``.

    Use with a model from :func:`tfprune.prune_filters` whose sparsity is a TF-MOT
    ``PruningSchedule`` (or a per-layer mapping with schedules). Before each training batch it
    asks the schedule whether to prune at the current optimizer step; if so it recomputes
    importance and removes more units (units once removed stay removed). The masked fraction of
    prunable units is logged as ``filter_sparsity`` at the end of each epoch. The same callback
    serves ``fit`` of tf_keras and of Keras 3 models.

    Args:
      log_sparsity: add ``filter_sparsity`` to the epoch logs.
    """

    def __init__(self, log_sparsity: bool = True) -> None:
        super().__init__()
        self.log_sparsity = log_sparsity
        self._pruner = None
        self._last_step = -1
        self._epoch_start: int | None = None

    def _get_pruner(self) -> Any:
        if self._pruner is None or self._pruner.model is not self.model:
            self._pruner = FilterPruner.for_model(self.model)
        return self._pruner

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._get_pruner().driven = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self._get_pruner().driven = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # One read of the optimizer's step per epoch; batches count from it (a read per batch
        # waits for the device to finish the previous step).
        self._epoch_start = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pruner = self._get_pruner()
        if not pruner.policy.is_gradual:
            return
        if self._epoch_start is None:  # called outside fit's epoch loop
            step = int(self.model.optimizer.iterations.numpy())
        else:
            step = self._epoch_start + int(batch)
        if step != self._last_step:
            self._last_step = step
            pruner.update(step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.log_sparsity and logs is not None:
            logs["filter_sparsity"] = self._get_pruner().sparsity()

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"log_sparsity": self.log_sparsity}

    @classmethod
    def from_config(cls, config: dict) -> UpdateFilterMasks:
        """Inverse of :meth:`get_config`."""
        return cls(**config)
