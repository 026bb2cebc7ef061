"""A Keras callback that logs mean-JSV (dynamical isometry) statistics during training."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.trainability.jsv import (
    InputsLike,
    JSVMeter,
    JSVStats,
    check_positive_int,
    iter_input_batches,
)

__all__ = ["JacobianSingularValues"]

_LOGGED_FIELDS = ("mean", "std", "min", "max", "condition_number", "mean_sq_dev_from_one")


@keras.saving.register_keras_serializable(package="tfprune")
class JacobianSingularValues(keras.callbacks.Callback):
    """Logs Jacobian singular value statistics (see :func:`tfprune.trainability.mean_jsv`).

    At the end of every ``every_n_epochs``-th epoch the statistics of the model's
    logits-input Jacobian are computed on a fixed sample and written into the epoch ``logs`` as
    ``{log_prefix}_mean``, ``_std``, ``_min``, ``_max``, ``_condition_number`` and
    ``_mean_sq_dev_from_one``, so they appear in ``History`` and in any later callback such as
    ``TensorBoard`` (list this callback *before* TensorBoard / CSVLogger). Epochs that are skipped
    have no such keys, like ``val_*`` keys with ``validation_freq``.

    Every measurement is also appended to :attr:`history` as a dict
    ``{"epoch": e, **JSVStats.to_dict()}``; ``epoch`` is the 0-based Keras epoch, or ``-1`` for
    the measurement taken at the start of training (``log_on_train_begin``; e.g. right after
    pruning). That one cannot go into ``History``, which is reset when training begins; it is
    also kept as :attr:`initial_stats`.

    The sample is fixed: the first ``num_samples`` samples of ``inputs`` (all if None) are read
    into memory at the first measurement (a ``tf.data.Dataset`` is iterated only then) and reused
    for every later one. The Jacobian function is
    compiled once per model and reused every epoch. It works with models trained under a
    ``tf.distribute`` strategy (the statistics are computed outside the replica context), and
    in ``fit`` of tf_keras and of Keras 3 models alike.

    Serialisation: :meth:`get_config` stores the scalar arguments only; the input sample is data,
    not configuration. :meth:`from_config` therefore needs the inputs again, either as an
    ``"inputs"`` entry in the config or as the ``inputs`` keyword.

    Args:
        inputs: The fixed sample: an array/tensor ``(N, *input_shape)`` or a ``tf.data.Dataset``
            yielding ``x`` or ``(x, y[, w])`` (the reference protocol uses 1,000 training images).
        every_n_epochs: Measure after every n-th epoch (positive).
        batch_size: Samples per Jacobian computation (positive).
        num_samples: Use the first ``num_samples`` samples of ``inputs`` (positive), or all if
            None. Required when ``inputs`` is an infinite dataset.
        log_prefix: Prefix of the log keys (a non-empty string).
        log_on_train_begin: Also measure once when training begins.
        output_index: Passed to ``mean_jsv``: which output of a multi-output model to use.
        logits_layer: Passed to ``mean_jsv``: name of the layer whose output are the logits.
        strip_softmax: Passed to ``mean_jsv``: strip a final softmax activation.
        verbose: If positive, print the mean JSV at each measurement.
        meter: A :class:`~tfprune.trainability.JSVMeter` of the model this callback will see,
            whose traced Jacobian function is reused (its options replace ``output_index``,
            ``logits_layer`` and ``strip_softmax``); None builds one per model.
    """

    def __init__(
        self,
        inputs: InputsLike,
        *,
        every_n_epochs: int = 1,
        batch_size: int = 100,
        num_samples: int | None = None,
        log_prefix: str = "jsv",
        log_on_train_begin: bool = True,
        output_index: int = 0,
        logits_layer: str | None = None,
        strip_softmax: bool = True,
        verbose: int = 0,
        meter: JSVMeter | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("every_n_epochs", every_n_epochs)
        check_positive_int("batch_size", batch_size)
        check_positive_int("num_samples", num_samples, allow_none=True)
        if not isinstance(log_prefix, str) or not log_prefix:
            raise InvalidArgumentError(
                f"log_prefix must be a non-empty string; got {log_prefix!r}."
            )
        if logits_layer is not None and not isinstance(logits_layer, str):
            raise InvalidArgumentError(
                f"logits_layer must be a layer name (str) or None; got {logits_layer!r}."
            )
        self.every_n_epochs = int(every_n_epochs)
        self.batch_size = int(batch_size)
        self.num_samples = None if num_samples is None else int(num_samples)
        self.log_prefix = log_prefix
        self.log_on_train_begin = bool(log_on_train_begin)
        self.output_index = output_index
        self.logits_layer = logits_layer
        self.strip_softmax = bool(strip_softmax)
        self.verbose = int(verbose)
        self.history: list[dict[str, Any]] = []
        self.initial_stats: JSVStats | None = None
        self._inputs = self._check_inputs(inputs)
        self._sample: np.ndarray | None = None
        self._meter = meter

    def _check_inputs(self, inputs: InputsLike) -> InputsLike:
        """Validates the kind (and, for arrays, the size) of the sample."""
        if isinstance(inputs, tf.data.Dataset):
            return inputs
        if isinstance(inputs, (np.ndarray, tf.Tensor)) or hasattr(inputs, "__array__"):
            array = inputs if isinstance(inputs, tf.Tensor) else np.asarray(inputs)
            if len(array.shape) < 1 or int(array.shape[0]) == 0:
                raise InvalidArgumentError(
                    f"inputs must hold at least one sample; got shape {tuple(array.shape)}."
                )
            if self.num_samples is not None and int(array.shape[0]) < self.num_samples:
                raise InvalidArgumentError(
                    f"num_samples={self.num_samples} but inputs only provide "
                    f"{int(array.shape[0])} samples."
                )
            return array
        raise InvalidArgumentError(
            "inputs must be a numpy array, a tf.Tensor or a tf.data.Dataset; "
            f"got {type(inputs).__name__}."
        )

    def set_model(self, model: keras.Model) -> None:
        """Sets the model and drops a Jacobian function compiled for a previous model."""
        super().set_model(model)
        if self._meter is not None and self._meter.model is not model:
            self._meter = None

    def compute(self) -> JSVStats:
        """Computes the statistics of the current model on the fixed sample now."""
        if self.model is None:
            raise InvalidArgumentError(
                "JacobianSingularValues has no model yet; use it in model.fit(callbacks=[...])."
            )
        if self._meter is None:
            self._meter = JSVMeter(
                self.model,
                batch_size=self.batch_size,
                output_index=self.output_index,
                logits_layer=self.logits_layer,
                strip_softmax=self.strip_softmax,
            )
        spectrum = self._meter.spectrum()  # float32 singular values under mixed precision
        expected = spectrum.expected_shape
        if self._sample is None:
            # Read once (a dataset is iterated only here), then reused every epoch.
            self._sample = np.concatenate(
                [
                    np.asarray(batch)
                    for batch in iter_input_batches(
                        self._inputs, self.batch_size, self.num_samples, expected
                    )
                ],
                axis=0,
            )
            self._inputs = None
        parts = [
            spectrum(batch)
            for batch in iter_input_batches(self._sample, self.batch_size, None, expected)
        ]
        return JSVStats.from_singular_values(np.concatenate(parts, axis=0))

    def _record(self, epoch: int) -> JSVStats:
        stats = self.compute()
        self.history.append({"epoch": epoch, **stats.to_dict()})
        if self.verbose > 0:
            where = "train begin" if epoch < 0 else f"epoch {epoch + 1}"
            print(f"{self.log_prefix} at {where}: mean {stats.mean:.4f} (std {stats.std:.4f})")
        return stats

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Measures once before training if ``log_on_train_begin``."""
        if self.log_on_train_begin:
            self.initial_stats = self._record(-1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Measures after every ``every_n_epochs``-th epoch and writes the values into ``logs``."""
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        stats = self._record(epoch)
        if logs is not None:
            values = stats.to_dict()
            for field in _LOGGED_FIELDS:
                logs[f"{self.log_prefix}_{field}"] = values[field]

    def get_config(self) -> dict[str, Any]:
        """The scalar constructor arguments (the ``inputs`` sample is not stored)."""
        return {
            "every_n_epochs": self.every_n_epochs,
            "batch_size": self.batch_size,
            "num_samples": self.num_samples,
            "log_prefix": self.log_prefix,
            "log_on_train_begin": self.log_on_train_begin,
            "output_index": self.output_index,
            "logits_layer": self.logits_layer,
            "strip_softmax": self.strip_softmax,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], inputs: InputsLike | None = None
    ) -> JacobianSingularValues:
        """Rebuilds the callback from :meth:`get_config` plus the input sample.

        Args:
            config: A dict from :meth:`get_config`, optionally with an ``"inputs"`` entry.
            inputs: The input sample, if not in ``config``.

        Raises:
            InvalidArgumentError: If no inputs are given either way.
        """
        config = dict(config)
        sample = config.pop("inputs", None)
        if inputs is not None:
            sample = inputs
        if sample is None:
            raise InvalidArgumentError(
                "JacobianSingularValues.from_config needs the input sample: the config holds "
                "only scalar arguments. Pass from_config(config, inputs=x) or add "
                "config['inputs']."
            )
        return cls(sample, **config)
