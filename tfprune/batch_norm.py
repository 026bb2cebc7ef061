"""Re-estimate BatchNormalization statistics from data (after pruning, or for random weights)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tfprune.compat import keras, keras_of, tf
from tfprune.errors import InvalidArgumentError
from tfprune.nested import all_layers

__all__ = [
    "RECALIBRATION_BATCHES",
    "STALE_GAP",
    "AccuracyGap",
    "batch_norm_layers",
    "check_accuracy_gap",
    "recalibrate_batch_norm",
]

#: Training batches the tools read to re-estimate BatchNorm statistics (fewer if an epoch is
#: shorter).
RECALIBRATION_BATCHES = 100

#: A held-out accuracy this many points (as a fraction) below the last training accuracy, in a
#: model with BatchNormalization, is reported by :func:`check_accuracy_gap`.
STALE_GAP = 0.2


def recalibrate_batch_norm(model: keras.Model, data: Any, steps: int | None = None) -> int:
    """Set every BatchNormalization's moving statistics to those of ``data``; return the count.

    Pruning changes the activations that reach each BatchNormalization, so its moving mean
    and variance no longer match them; re-estimating them on a few training batches (no
    gradient step) recovers much of the accuracy lost before fine-tuning. It also gives
    randomly initialised networks outputs of a usable scale, which benchmarks and export checks
    need. ``data`` is one batch of inputs (an array, a tensor, or a list of them for several
    inputs) or an iterable of batches (a ``tf.data.Dataset`` of inputs or of ``(x, y)``
    pairs); ``steps`` caps how many batches are read. The statistics are the running average
    over the batches read, each batch weighted equally. Weights, momentum and everything else
    in the model are left as they were. Works on tf_keras and Keras 3 models alike.
    """
    if steps is not None and steps < 1:
        raise InvalidArgumentError(f"steps must be >= 1, got {steps}")
    norms = batch_norm_layers(model)
    if not norms:
        return 0
    batches = _batches(data)
    saved = [layer.momentum for layer in norms]
    seen = 0
    try:
        for batch in batches:
            if steps is not None and seen >= steps:
                break
            # A running mean over the batches seen: weight 1/(n+1) on batch n.
            for layer in norms:
                layer.momentum = seen / (seen + 1)
            model(batch, training=True)
            seen += 1
    finally:
        for layer, momentum in zip(norms, saved, strict=True):
            layer.momentum = momentum
    if not seen:
        raise InvalidArgumentError("data holds no batch; pass at least one batch of inputs")
    return len(norms)


def batch_norm_layers(model: Any) -> list[Any]:
    """The BatchNormalization layers of ``model`` (nested models entered), of its flavour."""
    norm_class = keras_of(model).layers.BatchNormalization
    return [la for la in all_layers(model) if isinstance(la, norm_class)]


def _batches(data: Any) -> Iterable[Any]:
    """One batch (an array or tensor, or a list of them) or an iterable of batches."""
    if isinstance(data, (np.ndarray, tf.Tensor)):
        return [data]
    if isinstance(data, list) and data and isinstance(data[0], (np.ndarray, tf.Tensor)):
        return [data]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        return (b[0] if isinstance(b, tuple) else b for b in data)
    raise InvalidArgumentError(
        "data must be a batch of inputs (an array, a tensor, or a list of them) or an iterable "
        f"of batches such as a tf.data.Dataset, got {type(data).__name__}"
    )


@dataclasses.dataclass(frozen=True)
class AccuracyGap:
    """How far a model's held-out accuracy falls below its last training accuracy.

    Attributes:
      train_acc: Accuracy of the last training epoch (None: the model was not trained).
      test_acc: Held-out accuracy.
      momenta: The distinct momenta of the model's BatchNormalization layers (empty: none).
      batch_norms: How many BatchNormalization layers the model has.
      threshold: The gap (a fraction) from which :attr:`flagged` is true.
    """

    train_acc: float | None
    test_acc: float
    momenta: tuple[float, ...]
    batch_norms: int
    threshold: float = STALE_GAP

    @property
    def gap(self) -> float | None:
        """Training minus held-out accuracy (None without a training accuracy)."""
        return None if self.train_acc is None else self.train_acc - self.test_acc

    @property
    def flagged(self) -> bool:
        """True when the gap reaches the threshold in a model with BatchNormalization."""
        gap = self.gap
        return bool(self.batch_norms) and gap is not None and gap >= self.threshold

    def metrics(self) -> dict[str, Any]:
        """The figures a run records: ``train_acc``, ``acc_gap`` and ``batch_norm_gap``."""
        return {"train_acc": self.train_acc, "acc_gap": self.gap, "batch_norm_gap": self.flagged}

    def message(self, what: str = "the model") -> str:
        """The warning, naming cause and fixes (empty when not :attr:`flagged`)."""
        if not self.flagged:
            return ""
        momenta = ", ".join(f"{m:g}" for m in self.momenta)
        return (
            f"held-out accuracy of {what} is {self.test_acc:.1%}, {self.gap * 100:.1f} points "
            f"below its last training accuracy {self.train_acc:.1%}; its {self.batch_norms} "
            f"BatchNormalization layers (momentum {momenta}) evaluate with moving statistics "
            "that may still describe earlier weights. Train for more steps, re-estimate them "
            "with tfprune.recalibrate_batch_norm(model, training batches) before evaluating, or "
            "build BatchNormalization with a lower momentum (0.9 is PyTorch's 0.1)"
        )


def check_accuracy_gap(
    model: keras.Model,
    history: Mapping[str, Sequence[float]] | None,
    test_acc: float,
    *,
    what: str = "the model",
    log: Callable[[str], None] | None = None,
    threshold: float = STALE_GAP,
) -> AccuracyGap:
    """Compare held-out with training accuracy; warn through ``log`` when BatchNorm may be stale.

    A held-out accuracy far below the last training accuracy of a model with
    BatchNormalization most often means its moving statistics, which inference uses, lag the
    weights (few steps at a high momentum, or weights changed by pruning). The check only
    reports: it never changes the model or the recipe.

    Args:
      model: The evaluated model.
      history: Its per-epoch training history (``{"accuracy": [...], ...}``, as Keras' ``fit``
        and :func:`tfprune.training.fit` return it); the last ``accuracy`` is compared. Empty
        or None: the model was not trained, nothing is compared.
      test_acc: Its held-out accuracy.
      what: How the warning names the model.
      log: Where the warning goes when the gap is flagged.
      threshold: The gap (a fraction) from which it is flagged.
    """
    norms = batch_norm_layers(model)
    train_acc = list((history or {}).get("accuracy") or [])[-1:]
    check = AccuracyGap(
        train_acc=float(train_acc[0]) if train_acc else None,
        test_acc=float(test_acc),
        momenta=tuple(sorted({float(la.momentum) for la in norms})),
        batch_norms=len(norms),
        threshold=threshold,
    )
    if check.flagged and log is not None:
        log("warning: " + check.message(what))
    return check
