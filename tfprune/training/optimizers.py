"""Optimizers with PyTorch's weight-decay semantics (coupled L2 through momentum).

PyTorch's ``torch.optim.SGD(weight_decay=wd)`` adds ``wd * w`` to the gradient *before* the
momentum buffer, so the decay is amplified by momentum (about ``1 / (1 - momentum)``). Keras'
``weight_decay`` argument is *decoupled* (``w -= lr * wd * w`` outside momentum), roughly 10×
weaker at momentum 0.9. Every recipe of the pruning papers uses the PyTorch rule, so it is the
default here; ``"decoupled"`` is available as an explicit choice.

Example: lr 0.1, wd 1e-2, momentum 0.9, 100 steps of a zero loss from ``w = 1``: coupled leaves
``w ≈ 0.369``, decoupled ``w ≈ 0.905``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfprune.compat import keras
from tfprune.errors import ConfigError

__all__ = [
    "WEIGHT_DECAY_MODES",
    "CoupledAdam",
    "CoupledSGD",
    "make_optimizer",
]

WEIGHT_DECAY_MODES = ("coupled", "decoupled")
"""``coupled``: L2 added to the gradient before momentum (PyTorch); ``decoupled``: Keras/AdamW."""


def _with_l2(gradient: Any, variable: Any, l2: float) -> Any:
    """``gradient + l2 * variable`` (sparse gradients are made dense first)."""
    if isinstance(gradient, tf.IndexedSlices):
        gradient = tf.convert_to_tensor(gradient)
    return gradient + tf.cast(l2, variable.dtype) * variable


class _CoupledL2:
    """The coupled-L2 part shared by :class:`CoupledSGD` and :class:`CoupledAdam`."""

    def _set_l2(self, l2: float) -> None:
        if not float(l2) >= 0.0:
            raise ConfigError(f"l2 (weight decay) must be >= 0, got {l2!r}")
        self.l2 = float(l2)

    def update_step(self, gradient: Any, variable: Any) -> Any:
        """The base optimizer's update of ``variable`` with ``gradient + l2 * variable``."""
        if self.l2:
            gradient = _with_l2(gradient, variable, self.l2)
        return super().update_step(gradient, variable)

    def get_config(self) -> dict[str, Any]:
        """The base optimizer's config plus ``l2``."""
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="tfprune")
class CoupledSGD(_CoupledL2, keras.optimizers.SGD):
    """SGD whose ``l2`` term is added to the gradient before momentum (``torch.optim.SGD``).

    The term is added per variable inside the optimizer's update step, i.e. after gradients are
    aggregated across replicas, so it is counted once under ``tf.distribute`` and works inside
    ``tf.function`` (``model.fit``). It applies to every trainable variable, as PyTorch's
    ``weight_decay`` does.

    Args:
      learning_rate: Learning rate (float or schedule).
      momentum: Momentum in ``[0, 1)``.
      l2: Coupled weight-decay coefficient (>= 0).
      **kwargs: Other ``keras.optimizers.SGD`` arguments (``nesterov``, ``clipnorm``, ...).
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.0,
        l2: float = 0.0,
        name: str = "CoupledSGD",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        self._set_l2(l2)


@keras.saving.register_keras_serializable(package="tfprune")
class CoupledAdam(_CoupledL2, keras.optimizers.Adam):
    """Adam with ``l2`` added to the gradient before the moment estimates (``torch.optim.Adam``).

    Args:
      learning_rate: Learning rate (float or schedule).
      l2: Coupled weight-decay coefficient (>= 0).
      **kwargs: Other ``keras.optimizers.Adam`` arguments.
    """

    def __init__(
        self, learning_rate: Any = 0.001, l2: float = 0.0, name: str = "CoupledAdam", **kwargs: Any
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self._set_l2(l2)


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    weight_decay_mode: str = "coupled",
) -> Any:
    """The optimizer of a training recipe.

    Args:
      name: ``"sgd"`` or ``"adam"``.
      learning_rate: Initial learning rate (the LR callbacks change it during ``fit``).
      momentum: SGD momentum.
      weight_decay: Decay coefficient (>= 0; 0 disables it).
      weight_decay_mode: ``"coupled"`` (PyTorch: L2 through momentum, the default) or
        ``"decoupled"`` (Keras' ``weight_decay``: ``w -= lr * wd * w``; AdamW for Adam).

    Raises:
      ConfigError: unknown optimizer or mode, negative decay.
    """
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise ConfigError(
            f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {weight_decay_mode!r}"
        )
    if not float(weight_decay) >= 0.0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay!r}")
    wd = float(weight_decay)
    if name == "sgd":
        if weight_decay_mode == "coupled":
            return CoupledSGD(learning_rate, momentum=momentum, l2=wd)
        return keras.optimizers.SGD(learning_rate, momentum=momentum, weight_decay=wd or None)
    if name == "adam":
        if weight_decay_mode == "coupled":
            return CoupledAdam(learning_rate, l2=wd)
        return keras.optimizers.Adam(learning_rate, weight_decay=wd or None)
    raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {name!r}")
