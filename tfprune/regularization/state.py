"""The training state of a regularization method, and its loss on the model.

:class:`RegularizationState` holds a method's state (penalties, phase, step) as
``tf.Variable`` s attached to the model as a checkpoint dependency: ``model.save_weights`` (TF
format), ``tf.train.Checkpoint(model=model)`` and ``keras.callbacks.BackupAndRestore`` save and
restore it, also when the checkpoint is restored before the callback creates the variables.
The variables are not model weights (``model.weights`` is unchanged). On a Keras 3 model
the state is also a Keras 3 saveable (:func:`tfprune.compat.keras3_saveable`):
``tf.train.Checkpoint(model=model)``, ``model.save_weights`` (``.weights.h5``), ``.keras``
files and Keras 3's ``BackupAndRestore`` save it; ``load_weights`` restores it when the state
exists at that time (the callback's ``set_model`` creates it).

:func:`attach_loss` / :func:`detach_loss` add and remove the penalty as a zero-argument model
loss: ``model.add_loss(fn)`` on tf_keras; on Keras 3, which has no such loss, a weight
regularizer that adds ``fn()`` (:func:`tfprune.compat.keras3_attach_penalty`). Either way
the penalty is part of ``model.losses`` and of the ``loss`` that ``fit`` and ``evaluate``
report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import (
    KERAS3,
    AutoTrackable,
    flavour_of,
    keras3_attach_penalty,
    keras3_detach_penalty,
    keras3_saveable,
    remove_callable_losses,
    tf,
)

__all__ = ["RegularizationState", "attach_loss", "detach_loss", "keep_loss"]


# ---------------------------------------------------------------------------------------------
# Training state carried by checkpoints


class RegularizationState(AutoTrackable):
    """``tf.Variable`` s of a regularization method, tracked by the model for checkpoints.

    Attached to the model as attribute ``_tfprune_<key>``; not part of ``model.weights``.
    Variables are created under the model's distribution strategy (aggregation
    ``ONLY_FIRST_REPLICA``) and are updated by the callbacks between training steps.
    """

    def __init__(self, specs: Mapping[str, tuple[tuple[int, ...], Any, Any]]) -> None:
        variables = {}
        for name, (shape, dtype, init) in specs.items():
            variables[name] = tf.Variable(
                tf.cast(tf.fill(shape, init), dtype) if shape else tf.cast(init, dtype),
                trainable=False,
                name=name,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self.variables = variables

    def __getitem__(self, name: str) -> Any:
        return self.variables[name]

    def matches(self, specs: Mapping[str, tuple[tuple[int, ...], Any, Any]]) -> bool:
        """Whether this state has exactly these variables (names and shapes)."""
        if set(self.variables) != set(specs):
            return False
        return all(
            tuple(self.variables[k].shape) == tuple(shape) for k, (shape, _, _) in specs.items()
        )

    def numpy(self) -> dict[str, np.ndarray]:
        """Current values."""
        return {k: np.asarray(v.numpy()) for k, v in self.variables.items()}

    @classmethod
    def attach(
        cls, model: Any, key: str, specs: Mapping[str, tuple[tuple[int, ...], Any, Any]]
    ) -> RegularizationState:
        """The model's state ``key`` (created under its strategy scope if missing)."""
        attr = f"_tfprune_{key}"
        existing = getattr(model, attr, None)
        if isinstance(existing, cls) and existing.matches(specs):
            return existing
        kind = keras3_saveable(cls) if flavour_of(model) == KERAS3 else cls
        with model.distribute_strategy.scope():
            state = kind(specs)
        setattr(model, attr, state)  # tracked: restored now if a checkpoint awaits it
        return state


# ---------------------------------------------------------------------------------------------
# Loss wiring


def attach_loss(model: Any, fn: Callable[[], Any]) -> None:
    """Add the zero-argument loss ``fn`` to ``model.losses`` and force fit/evaluate to retrace."""
    if flavour_of(model) == KERAS3:
        keras3_attach_penalty(model, fn)
    else:
        model.add_loss(fn)
    model.train_function = None
    model.test_function = None


def keep_loss(model: Any, fn: Callable[[], Any]) -> None:
    """Make sure a loss added by :func:`attach_loss` still counts; called as each ``fit`` starts.

    tf_keras counts a callable loss whatever changed. Keras 3 counts the penalty's carrier
    variable only while it trains: after its layer was frozen the penalty moves to another
    trainable variable (and fit/evaluate retrace).
    """
    if flavour_of(model) == KERAS3 and keras3_attach_penalty(model, fn):
        model.train_function = None
        model.test_function = None


def detach_loss(model: Any, fn: Callable[[], Any]) -> bool:
    """Remove a loss added by :func:`attach_loss` (True if it was there)."""
    if flavour_of(model) == KERAS3:
        removed = keras3_detach_penalty(model, fn)
    else:
        removed = remove_callable_losses(model, fn)
    if removed:
        model.train_function = None
        model.test_function = None
    return removed
