"""Trainability accuracy: the mean accuracy over the first learning-rate stage of retraining."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfprune.compat import keras, keras_of
from tfprune.errors import InvalidArgumentError
from tfprune.trainability.jsv import check_positive_int

__all__ = ["trainability_accuracy"]


def trainability_accuracy(
    history: keras.callbacks.History | Mapping[str, Sequence[float]],
    first_stage_epochs: int,
    metric: str = "val_accuracy",
) -> float:
    """Trainability accuracy: mean accuracy over the first LR stage of retraining (Eq. 1).

    Eq. 1 of Wang et al. 2023, "Why is the State of Neural Network Pruning so Confusing?".

    ``TA = (1 / N) * sum_{i=1..N} acc_i`` where ``acc_i`` is the accuracy after retraining epoch
    ``i`` and ``N`` the number of epochs of the first learning-rate stage. Only comparable
    between runs with the same LR schedule. The value is returned on the scale it was recorded
    on (fractions for Keras metrics).

    Args:
        history: The ``History`` returned by ``model.fit`` or its ``.history`` dict
            (``{metric: [value per epoch]}``).
        first_stage_epochs: ``N``, the number of epochs of the first LR stage (positive, at most
            the number of recorded epochs).
        metric: Key of the per-epoch accuracy, e.g. ``"val_accuracy"`` (default; the papers use
            test accuracy) or ``"accuracy"``.

    Returns:
        The mean of the first ``first_stage_epochs`` values of ``metric``.

    Raises:
        InvalidArgumentError: ``history`` is not a History/mapping, ``metric`` is missing, or
            ``first_stage_epochs`` is not in ``[1, recorded epochs]``.
    """
    if isinstance(history, keras_of(history).callbacks.History):  # either Keras flavour
        logs = history.history
    elif isinstance(history, Mapping):
        logs = history
    else:
        raise InvalidArgumentError(
            "history must be a keras.callbacks.History or a mapping of metric name to per-epoch "
            f"values; got {type(history).__name__}."
        )
    if not isinstance(metric, str):
        raise InvalidArgumentError(f"metric must be a string; got {metric!r}.")
    if metric not in logs:
        raise InvalidArgumentError(
            f"metric {metric!r} is not in the history; recorded metrics are {sorted(logs)}."
        )
    check_positive_int("first_stage_epochs", first_stage_epochs)
    values = np.asarray(list(logs[metric]), dtype=np.float64)
    if first_stage_epochs > values.size:
        raise InvalidArgumentError(
            f"first_stage_epochs={first_stage_epochs} exceeds the {values.size} epoch(s) "
            f"recorded for {metric!r}."
        )
    return float(values[:first_stage_epochs].mean())


# --------------------------------------------------------------------------------------------
# OrthP
