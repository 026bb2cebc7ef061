"""Network slimming (Liu et al. 2017): L1 on BatchNorm gamma, then select by |gamma|.

A classic regularized baseline on the same channel groups as GReg/TPP: during ``fit`` the
loss gets ``strength * Σ |γ|`` over the gamma of every BatchNormalization in the regularized
groups; when training ends the ``ceil(ratio * n)`` units of smallest mean |γ| (over the
group's BatchNorms; groups without one use L1 of the filters) are masked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfprune.compat import keras, tf
from tfprune.importance.criteria import BNScale
from tfprune.regularization.penalty import GroupRegularizer, check_number

__all__ = ["NetworkSlimming"]


@keras.utils.register_keras_serializable(package="tfprune")
class NetworkSlimming(GroupRegularizer):
    """L1 sparsity on BatchNorm scales during ``fit``; masks by ``bn_scale`` at train end.

    Args:
      sparsity: fraction of each prunable layer's filters to remove, in [0, 1), or
        ``{layer_name_regex: ratio}``.
      strength: L1 coefficient ``s`` on gamma (> 0; the paper's 1e-4 for VGG on CIFAR,
        1e-5 for ResNet/DenseNet).
      apply_masks: set the masks when training ends (default True).
      skip: producer layer names never regularized.
      log_prefix: prefix of the ``{prefix}/l1_gamma`` epoch log key.
    """

    state_key = "slimming"

    def __init__(
        self,
        sparsity: Any = 0.5,
        *,
        strength: float = 1e-4,
        apply_masks: bool = True,
        skip: Any = (),
        log_prefix: str = "slimming",
    ) -> None:
        super().__init__(sparsity, skip, log_prefix)
        self.strength = check_number(
            "strength", strength, low=0.0, low_open=True, hint=" (e.g. 1e-4)"
        )
        self.apply_masks = bool(apply_masks)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **self._base_config(),
            "strength": self.strength,
            "apply_masks": self.apply_masks,
        }

    def _slice_kinds(self) -> tuple[str, ...]:
        return ("norm",)

    def _gammas(self) -> list[Any]:
        return [s for g in self.groups for s in self.slices[g.id] if s.name == "gamma"]

    def _loss(self) -> Any:
        total = tf.constant(0.0, tf.float32)
        for s in self._gammas():
            total += tf.reduce_sum(tf.abs(tf.cast(s.variable, tf.float32)))
        return self.strength * total

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs[f"{self.log_prefix}/l1_gamma"] = float(
                sum(np.abs(s.variable.numpy()).sum() for s in self._gammas())
            )

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.apply_masks and self._wired_model is not None:
            self._apply_masks(self.select(BNScale()))
        self._remove_loss()
