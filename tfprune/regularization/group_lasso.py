"""Group lasso (L2,1) over the units of channel groups, then select by the unit norms.

Each unit's weights *across the whole group* - the producers' filters and biases, the
BatchNorm gamma/beta, the consumers' input slices - form one lasso group:
``strength * Σ_units sqrt(Σ w² + eps)``. When training ends the ``ceil(ratio * n)`` units of
smallest norm are masked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfprune.compat import keras, tf
from tfprune.regularization.penalty import GroupRegularizer, check_number
from tfprune.regularization.terms import SLICE_KINDS, unit_sq_norms

__all__ = ["GroupLasso"]


@keras.utils.register_keras_serializable(package="tfprune")
class GroupLasso(GroupRegularizer):
    """L2,1 penalty on every unit's weights across its group; masks by unit norm at train end.

    Args:
      sparsity: fraction of each prunable layer's filters to remove, in [0, 1), or
        ``{layer_name_regex: ratio}``.
      strength: coefficient of the L2,1 term (> 0). Default 1e-4.
      eps: added under the square root for a finite gradient at 0 (>= 0). Default 1e-8.
      apply_masks: set the masks when training ends (default True).
      skip: producer layer names never regularized.
      log_prefix: prefix of the ``{prefix}/l21`` epoch log key.
    """

    state_key = "group_lasso"

    def __init__(
        self,
        sparsity: Any = 0.5,
        *,
        strength: float = 1e-4,
        eps: float = 1e-8,
        apply_masks: bool = True,
        skip: Any = (),
        log_prefix: str = "group_lasso",
    ) -> None:
        super().__init__(sparsity, skip, log_prefix)
        self.strength = check_number(
            "strength", strength, low=0.0, low_open=True, hint=" (e.g. 1e-4)"
        )
        self.eps = check_number("eps", eps, low=0.0, hint=" (e.g. 1e-8)")
        self.apply_masks = bool(apply_masks)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **self._base_config(),
            "strength": self.strength,
            "eps": self.eps,
            "apply_masks": self.apply_masks,
        }

    def _slice_kinds(self) -> tuple[str, ...]:
        return SLICE_KINDS

    def _on_wired(self) -> None:
        self._cand_t = {
            g.id: tf.constant(self.candidates[g.id].astype(np.float32)) for g in self.groups
        }

    def _loss(self) -> Any:
        total = tf.constant(0.0, tf.float32)
        cache: dict = {}
        for g in self.groups:
            sq = unit_sq_norms(self.slices[g.id], self.units_t[g.id], g.n_units, cache)
            total += tf.reduce_sum(self._cand_t[g.id] * tf.sqrt(sq + self.eps))
        return self.strength * total

    def unit_norms(self, group: Any) -> np.ndarray:
        """L2 norm of each unit's weights across ``group``."""
        return np.sqrt(
            unit_sq_norms(self.slices[group.id], self.units_t[group.id], group.n_units).numpy()
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs[f"{self.log_prefix}/l21"] = float(
                sum(self.unit_norms(g)[self.candidates[g.id]].sum() for g in self.groups)
            )

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.apply_masks and self._wired_model is not None:
            self._apply_masks(self.select(self.unit_norms))
        self._remove_loss()
