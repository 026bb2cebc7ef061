"""Jacobian singular values (JSV) of a network's logits with respect to its input.

:func:`mean_jsv` and :func:`jacobian_singular_values` measure dynamical isometry; the Jacobian
machinery and the input batching helpers here are shared with the JSV callback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from tfprune.compat import KERAS3, flavour_of, keras, keras3_producer, keras_of, producing_layer, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.runtime import float32_twin, model_precision

__all__ = [
    "JSVMeter",
    "JSVStats",
    "check_positive_int",
    "iter_input_batches",
    "jacobian_singular_values",
    "mean_jsv",
]

InputsLike = np.ndarray | tf.Tensor | tf.data.Dataset
"""What :func:`mean_jsv` accepts as ``inputs``: an array/tensor ``(N, *input_shape)`` or a
``tf.data.Dataset`` yielding ``x`` or ``(x, y[, sample_weight])`` batches."""

_SOFTMAX_NAMES = frozenset({"softmax", "log_softmax"})


@dataclasses.dataclass(frozen=True)
class JSVStats:
    """Statistics of the input-output Jacobian singular values (JSV) of a network.

    All statistics pool every singular value of every sample (``num_samples * min(C, D)`` values
    for ``C`` logits and ``D`` input features), except ``condition_number``.

    Attributes:
        mean: Mean singular value ("mean JSV"); 1 for a dynamically isometric network.
        std: Population standard deviation (``ddof=0``) of the singular values.
        min: Smallest singular value over all samples.
        max: Largest singular value over all samples.
        condition_number: Mean over samples of ``sigma_max / sigma_min`` of that sample's
            Jacobian (``inf`` if some Jacobian is singular).
        mean_sq_dev_from_one: Mean of ``(sigma - 1)**2`` ("JSV_diff" in the reference code).
        num_samples: Number of input samples the statistics were computed on.
    """

    mean: float
    std: float
    min: float
    max: float
    condition_number: float
    mean_sq_dev_from_one: float
    num_samples: int

    @classmethod
    def from_singular_values(cls, singular_values: np.ndarray) -> JSVStats:
        """Builds the statistics from a ``(num_samples, k)`` array of singular values."""
        s = np.asarray(singular_values, dtype=np.float64)
        if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
            raise InvalidArgumentError(
                "singular_values must be a non-empty 2-D array (num_samples, k); "
                f"got shape {s.shape}."
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            per_sample_cond = s.max(axis=1) / s.min(axis=1)
        per_sample_cond = np.where(s.max(axis=1) == 0.0, np.inf, per_sample_cond)
        return cls(
            mean=float(s.mean()),
            std=float(s.std()),
            min=float(s.min()),
            max=float(s.max()),
            condition_number=float(per_sample_cond.mean()),
            mean_sq_dev_from_one=float(np.mean((s - 1.0) ** 2)),
            num_samples=int(s.shape[0]),
        )

    def to_dict(self) -> dict[str, float | int]:
        """Returns the fields as a plain ``{name: value}`` dict (JSON-friendly)."""
        return dataclasses.asdict(self)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raises InvalidArgumentError naming ``name`` unless ``value`` is an integer >= 1.

    ``allow_none`` also accepts None (e.g. "all samples"). Booleans are refused.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = "a positive integer or None" if allow_none else "a positive integer"
        raise InvalidArgumentError(f"{name} must be {allowed}; got {value!r}.")


def _is_softmax(activation: Any) -> bool:
    return getattr(activation, "__name__", None) in _SOFTMAX_NAMES


def _symbolic(model: Any, attr: str) -> list | None:
    """``model.inputs`` or ``model.outputs``; None for a model without a graph (subclassed)."""
    try:
        return getattr(model, attr)
    except (AttributeError, ValueError):  # Keras 3: ValueError for an unbuilt Sequential model
        return None


def _producing_layer(model: keras.Model, output_index: int) -> keras.layers.Layer | None:
    """The layer (or Keras 3 op) that produces ``model``'s output ``output_index`` (or None)."""
    outputs = _symbolic(model, "outputs")
    if outputs:
        tensor = outputs[output_index]
        layer = keras3_producer(tensor) if flavour_of(model) == KERAS3 else producing_layer(tensor)
        if layer is not None:
            return layer
    if isinstance(model, keras_of(model).Sequential) and model.layers:
        return model.layers[-1]
    return None


def _terminal_layer(layer: keras.layers.Layer | None) -> Any:
    """Descends through nested models (first output) to the innermost producing layer."""
    for _ in range(64):
        if not isinstance(layer, keras_of(layer).Model):
            break
        layer = _producing_layer(layer, 0)
    return layer


class _LogitsFunction:
    """Maps a batch of inputs to flattened logits ``(B, C)``, stripping a final softmax.

    When the output-producing layer has ``activation=softmax`` (or ``log_softmax``), the
    activation is swapped for the identity *only while the forward pass is traced*, so the
    traced graph computes the pre-activation logits without creating or copying any variable.
    A standalone ``Softmax`` layer at the end is handled by cutting the graph at its input.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        output_index: int,
        logits_layer: str | keras.layers.Layer | None,
        strip_softmax: bool,
    ) -> None:
        if not callable(model):
            raise InvalidArgumentError(f"model must be a callable Keras model; got {model!r}.")
        if isinstance(output_index, bool) or not isinstance(output_index, numbers.Integral):
            raise InvalidArgumentError(
                f"output_index must be a non-negative integer; got {output_index!r}."
            )
        if output_index < 0:
            raise InvalidArgumentError(
                f"output_index must be a non-negative integer; got {output_index!r}."
            )
        k = keras_of(model)
        self._output_index = int(output_index)
        self._swap_layer: Any = None
        self._select_output = True
        net: Callable[..., Any] = model

        if logits_layer is not None:
            layer = self._resolve_layer(model, logits_layer)
            net = self._submodel(model, self._layer_output(layer, logits_layer))
            self._select_output = False
            target = _terminal_layer(layer)
        else:
            n_outputs = self._num_outputs(model)
            if n_outputs is not None and self._output_index >= n_outputs:
                raise InvalidArgumentError(
                    f"output_index={output_index} is out of range: the model has {n_outputs} "
                    "output(s)."
                )
            target = (
                _terminal_layer(_producing_layer(model, self._output_index))
                if isinstance(model, k.Model)
                else None
            )

        if strip_softmax and target is not None:
            if isinstance(target, k.layers.Softmax):
                # A standalone Softmax layer: its input holds the logits.
                if logits_layer is None and isinstance(model, k.Model):
                    try:
                        net = self._submodel(model, target.input)
                        self._select_output = False
                    except (AttributeError, ValueError) as err:
                        raise UnsupportedModelError(
                            "The model ends in a Softmax layer that cannot be cut off "
                            f"({err}). Pass logits_layer=<name of the layer before it>."
                        ) from err
                else:
                    raise UnsupportedModelError(
                        f"logits_layer {target.name!r} is a Softmax layer; pass the layer that "
                        "feeds it instead."
                    )
            elif _is_softmax(getattr(target, "activation", None)):
                self._swap_layer = target
        self._net = net

    @staticmethod
    def _num_outputs(model: Any) -> int | None:
        outputs = _symbolic(model, "outputs")
        return len(outputs) if outputs else None

    @staticmethod
    def _resolve_layer(model: Any, logits_layer: str | keras.layers.Layer) -> Any:
        if not isinstance(model, keras_of(model).Model):
            raise InvalidArgumentError("logits_layer requires model to be a keras.Model.")
        if isinstance(logits_layer, str):
            try:
                return model.get_layer(logits_layer)
            except ValueError as err:
                names = [layer.name for layer in model.layers]
                raise InvalidArgumentError(
                    f"logits_layer={logits_layer!r} is not a layer of the model; top-level "
                    f"layers are {names}."
                ) from err
        if isinstance(logits_layer, keras_of(model).layers.Layer):
            return logits_layer
        raise InvalidArgumentError(
            f"logits_layer must be a layer name, a Layer or None; got {logits_layer!r}."
        )

    @staticmethod
    def _layer_output(layer: Any, spec: Any) -> Any:
        try:
            return layer.output
        except (AttributeError, ValueError) as err:
            raise InvalidArgumentError(
                f"logits_layer={spec!r} has no single symbolic output in this model ({err})."
            ) from err

    @staticmethod
    def _submodel(model: Any, output: Any) -> keras.Model:
        try:
            return keras_of(model).Model(model.inputs, output)
        except (AttributeError, TypeError, ValueError) as err:
            raise UnsupportedModelError(
                "Cannot take an intermediate output of this model (it is not a functional or "
                f"Sequential graph: {err}). Pass a model that outputs logits instead."
            ) from err

    @contextlib.contextmanager
    def _linear_output(self) -> Iterator[None]:
        layer = self._swap_layer
        if layer is None:
            yield
            return
        saved = layer.activation
        layer.activation = keras_of(layer).activations.linear
        try:
            yield
        finally:
            layer.activation = saved

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Returns the logits of ``x`` flattened to ``(B, C)``."""
        with self._linear_output():
            y = self._net(x, training=False)
        if self._select_output and isinstance(y, (list, tuple)):
            y = y[self._output_index]
        elif self._select_output and isinstance(y, Mapping):
            y = list(y.values())[self._output_index]
        elif self._output_index > 0 and self._select_output:
            raise InvalidArgumentError(
                f"output_index={self._output_index} but the model has a single output."
            )
        return tf.reshape(y, (tf.shape(y)[0], -1))


class _JacobianSpectrum:
    """A compiled ``x -> per-sample singular values of d logits / d x`` function.

    Built once and reused (the JSV callback calls it every epoch without retracing). The
    ``tf.function`` has a ``None`` batch dimension, so a short last batch does not retrace.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        output_index: int = 0,
        logits_layer: str | keras.layers.Layer | None = None,
        strip_softmax: bool = True,
    ) -> None:
        self._logits = _LogitsFunction(
            model,
            output_index=output_index,
            logits_layer=logits_layer,
            strip_softmax=strip_softmax,
        )
        self.expected_shape = _expected_input_shape(model)
        self._dtype = _input_dtype(model)
        self._fn: Any = None
        self._sample_shape: tuple[int, ...] | None = None

    def _build(self, sample_shape: tuple[int, ...]) -> None:
        spec = tf.TensorSpec((None, *sample_shape), self._dtype)
        logits = self._logits

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def spectrum(x: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = logits(x)
            jac = tape.batch_jacobian(y, x, experimental_use_pfor=True)
            batch = tf.shape(jac)[0]
            jac = tf.reshape(jac, (batch, tf.shape(y)[1], -1))
            return tf.linalg.svd(tf.cast(jac, tf.float64), compute_uv=False)

        self._fn = spectrum
        self._sample_shape = sample_shape

    def __call__(self, x: Any) -> np.ndarray:
        """Singular values ``(B, min(C, D))`` (float64) for a batch ``x``."""
        x = tf.convert_to_tensor(x)
        sample_shape = tuple(int(d) for d in x.shape[1:])
        if self._fn is None or sample_shape != self._sample_shape:
            _check_sample_shape(sample_shape, self.expected_shape)
            self._build(sample_shape)
        if x.dtype != self._dtype:
            x = tf.cast(x, self._dtype)
        return self._fn(x).numpy()


def _check_sample_shape(
    sample_shape: tuple[int, ...], expected: tuple[int | None, ...] | None
) -> None:
    """Raises InvalidArgumentError if one sample's shape does not fit the model input."""
    if expected is None:
        return
    ok = len(expected) == len(sample_shape) and all(
        e is None or e == s for e, s in zip(expected, sample_shape)
    )
    if not ok:
        raise InvalidArgumentError(
            f"inputs have per-sample shape {tuple(sample_shape)} but the model expects "
            f"{tuple(expected)} (batch dimension first, then one sample)."
        )


def _expected_input_shape(model: Any) -> tuple[int | None, ...] | None:
    inputs = _symbolic(model, "inputs")
    if not inputs:
        return None
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"mean_jsv needs a single-input model; this model has {len(inputs)} inputs."
        )
    return tuple(inputs[0].shape[1:])


def _input_dtype(model: Any) -> tf.DType:
    inputs = _symbolic(model, "inputs")
    dtype = tf.as_dtype(inputs[0].dtype) if inputs else None  # Keras 3 names it: "float32"
    if dtype is not None and dtype.is_floating:
        return dtype
    return tf.float32


def _features(element: Any) -> Any:
    """``x`` from a dataset element ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``."""
    if isinstance(element, (tuple, list)):
        if not element:
            raise InvalidArgumentError("The dataset yields empty tuples; expected x or (x, y).")
        element = element[0]
    if isinstance(element, Mapping):
        raise InvalidArgumentError(
            "The dataset yields dicts; mean_jsv needs plain tensors x or (x, y) tuples."
        )
    return element


def iter_input_batches(
    inputs: InputsLike,
    batch_size: int,
    num_samples: int | None,
    expected_shape: tuple[int | None, ...] | None,
) -> Iterator[tf.Tensor]:
    """Yields tensors of at most ``batch_size`` samples, ``num_samples`` samples in total.

    Raises InvalidArgumentError when fewer than ``num_samples`` samples are available.
    """
    if isinstance(inputs, tf.data.Dataset):
        if num_samples is None and inputs.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise InvalidArgumentError(
                "inputs is an infinite tf.data.Dataset; pass num_samples to bound it."
            )
        spec = _features(inputs.element_spec)
        if (
            expected_shape is not None
            and isinstance(spec, tf.TensorSpec)
            and spec.shape.rank == len(expected_shape)
        ):
            # Unbatched dataset of single samples.
            inputs = inputs.map(_features).batch(batch_size)
        source: Iterator[Any] = (tf.convert_to_tensor(_features(e)) for e in inputs)
    elif isinstance(inputs, (np.ndarray, tf.Tensor)) or hasattr(inputs, "__array__"):
        array = inputs if isinstance(inputs, tf.Tensor) else np.asarray(inputs)
        if array.ndim < 1:
            raise InvalidArgumentError(
                f"inputs must have a leading batch dimension; got a scalar of shape {array.shape}."
            )
        source = iter([array])
    else:
        raise InvalidArgumentError(
            "inputs must be a numpy array, a tf.Tensor or a tf.data.Dataset; "
            f"got {type(inputs).__name__}."
        )

    taken = 0
    for chunk in source:
        if len(chunk.shape) < 1:
            raise InvalidArgumentError(
                "inputs must have a leading batch dimension; got a scalar batch."
            )
        _check_sample_shape(tuple(int(d) for d in chunk.shape[1:]), expected_shape)
        n = int(chunk.shape[0])
        start = 0
        while start < n:
            if num_samples is not None and taken >= num_samples:
                return
            stop = min(n, start + batch_size)
            if num_samples is not None:
                stop = min(stop, start + num_samples - taken)
            yield chunk[start:stop]
            taken += stop - start
            start = stop
        if num_samples is not None and taken >= num_samples:
            return
    if taken == 0:
        raise InvalidArgumentError("inputs contain no samples.")
    if num_samples is not None and taken < num_samples:
        raise InvalidArgumentError(
            f"num_samples={num_samples} but inputs only provide {taken} samples."
        )


def jacobian_singular_values(
    model: keras.Model,
    inputs: InputsLike,
    *,
    batch_size: int = 100,
    num_samples: int | None = None,
    output_index: int = 0,
    logits_layer: str | keras.layers.Layer | None = None,
    strip_softmax: bool = True,
) -> np.ndarray:
    """Per-sample singular values of the logits-input Jacobian.

    Arguments are those of :func:`mean_jsv`.

    Returns:
        A float64 array of shape ``(num_samples, min(C, D))``, each row sorted in descending
        order, where ``C`` is the number of logits and ``D`` the flattened input size.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("num_samples", num_samples, allow_none=True)
    if isinstance(model, keras_of(model).Model) and model_precision(model) != "float32":
        # Singular values of the float32 network the mixed-precision one approximates.
        model = float32_twin(model)
        logits_layer = getattr(logits_layer, "name", logits_layer)
    spectrum = _JacobianSpectrum(
        model,
        output_index=output_index,
        logits_layer=logits_layer,
        strip_softmax=strip_softmax,
    )
    return _singular_values_with(spectrum, inputs, batch_size, num_samples)


def _singular_values_with(
    spectrum: _JacobianSpectrum,
    inputs: InputsLike,
    batch_size: int,
    num_samples: int | None,
) -> np.ndarray:
    parts = [
        spectrum(batch)
        for batch in iter_input_batches(inputs, batch_size, num_samples, spectrum.expected_shape)
    ]
    return np.concatenate(parts, axis=0)


class JSVMeter:
    """Measures the JSV statistics of one model again and again, tracing its Jacobian once.

    What :func:`mean_jsv` computes, for a model whose weights change between measurements
    (during training, or when other weights are copied in): the Jacobian function is built at
    the first measurement and reused. Under mixed precision the singular values are those of
    the model's float32 twin (:func:`tfprune.runtime.float32_twin`), refreshed with the current
    weights at each measurement.

    Args:
        model: A single-input ``keras.Model`` (see :func:`mean_jsv`).
        batch_size: Samples per Jacobian computation (positive).
        output_index: See :func:`mean_jsv`.
        logits_layer: See :func:`mean_jsv`.
        strip_softmax: See :func:`mean_jsv`.
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        batch_size: int = 100,
        output_index: int = 0,
        logits_layer: str | keras.layers.Layer | None = None,
        strip_softmax: bool = True,
    ) -> None:
        check_positive_int("batch_size", batch_size)
        self.model = model
        self.batch_size = int(batch_size)
        self._options = {
            "output_index": output_index,
            "logits_layer": getattr(logits_layer, "name", logits_layer),
            "strip_softmax": strip_softmax,
        }
        self._twin: Any = None
        self._spectrum: _JacobianSpectrum | None = None

    def _float32_model(self) -> Any:
        """The model, or under mixed precision its float32 twin holding the current weights."""
        if model_precision(self.model) == "float32":
            return self.model
        if self._twin is None:
            self._twin = float32_twin(self.model)
        else:
            self._twin.set_weights(self.model.get_weights())
        return self._twin

    def spectrum(self) -> _JacobianSpectrum:
        """The compiled Jacobian function (refreshes a float32 twin's weights first)."""
        model = self._float32_model()
        if self._spectrum is None:
            self._spectrum = _JacobianSpectrum(model, **self._options)
        return self._spectrum

    def singular_values(self, inputs: InputsLike, num_samples: int | None = None) -> np.ndarray:
        """Per-sample singular values ``(N, min(C, D))`` of the model's current weights."""
        check_positive_int("num_samples", num_samples, allow_none=True)
        return _singular_values_with(self.spectrum(), inputs, self.batch_size, num_samples)

    def __call__(self, inputs: InputsLike, num_samples: int | None = None) -> JSVStats:
        """The statistics of the model's current weights on ``inputs`` (see :func:`mean_jsv`)."""
        return JSVStats.from_singular_values(self.singular_values(inputs, num_samples))


def mean_jsv(
    model: keras.Model,
    inputs: InputsLike,
    *,
    batch_size: int = 100,
    num_samples: int | None = None,
    output_index: int = 0,
    logits_layer: str | keras.layers.Layer | None = None,
    strip_softmax: bool = True,
) -> JSVStats:
    """Mean singular value of the input-output Jacobian (dynamical isometry measure).

    For each sample the Jacobian of the model's *logits* with respect to the flattened input is
    computed (``C x D``), its singular values are taken, and statistics over all singular values
    of all samples are returned. The model is run with ``training=False``. For a purely linear
    network the Jacobian is the constant product of the weight matrices, so the result does not
    depend on the data.

    The model should output logits. If the layer producing the selected output has
    ``activation="softmax"`` (or ``log_softmax``) and ``strip_softmax`` is true, the Jacobian of
    its pre-activation is used; a trailing standalone ``keras.layers.Softmax`` layer is cut off.
    Use ``logits_layer`` to take another layer's output as the logits. Nested models at the end
    are searched for their output layer. A subclassed model's output layer cannot be found, so
    it must return logits itself. (The activation is swapped for the identity only while the
    Jacobian function is traced; do not trace the same model in another thread meanwhile.)

    Cost: one vectorised ``batch_jacobian`` per batch holds a ``(batch_size, C, D)`` tensor, so
    lower ``batch_size`` for large inputs (e.g. ImageNet-sized images with 1,000 classes).

    Args:
        model: A single-input ``keras.Model`` (functional, Sequential or subclassed; tf_keras
            or Keras 3, which give the same values for the same weights) or any callable
            ``f(x, training=False)`` returning logits.
        inputs: A numpy array or tensor ``(N, *input_shape)``, or a ``tf.data.Dataset`` yielding
            ``x`` or ``(x, y[, w])`` batches (an unbatched dataset of single samples is batched
            here). Values are cast to the model's input dtype; apply the model's preprocessing
            first. The reference protocol uses 1,000 training images (10 batches of 100).
        batch_size: Samples per Jacobian computation (positive).
        num_samples: Use exactly the first ``num_samples`` samples (positive), or all of them
            if None. Required for an infinite dataset. Fewer available samples is an error.
        output_index: Which output of a multi-output model to use.
        logits_layer: Name of (or reference to) a top-level layer whose output is used as the
            logits instead of the model output (its softmax is stripped as above).
        strip_softmax: Whether to strip a final softmax activation (see above).

    Returns:
        A :class:`JSVStats`.

    Raises:
        InvalidArgumentError: Bad ``batch_size`` / ``num_samples`` / ``output_index`` /
            ``logits_layer``, inputs of the wrong shape or kind, or too few samples.
        UnsupportedModelError: Multi-input models, or a softmax that cannot be cut off.
    """
    return JSVStats.from_singular_values(
        jacobian_singular_values(
            model,
            inputs,
            batch_size=batch_size,
            num_samples=num_samples,
            output_index=output_index,
            logits_layer=logits_layer,
            strip_softmax=strip_softmax,
        )
    )
