"""Trainability metrics and methods: mean JSV, trainability accuracy and OrthP.

Three tools from the pruning-trainability literature (paper spec sections 3.1, 3.2 and 3.4):

* :func:`mean_jsv` — *dynamical isometry* statistics. For every sample ``x`` the Jacobian
  ``J(x) = d logits / d x`` of the network's logits with respect to the flattened input is formed
  (shape ``C x D``); its ``min(C, D)`` singular values are computed per sample and the statistics of
  all singular values of all samples are returned as a :class:`JSVStats`. An ideally trainable
  network has every singular value close to 1; pruning typically collapses them towards 0.
  :func:`jacobian_singular_values` returns the raw per-sample singular values.
* :func:`trainability_accuracy` — mean accuracy over the first LR stage of retraining (Eq. 1 of
  the WHY paper), read from a Keras ``History``.
* :func:`orthp` — OrthP re-initialisation: every conv / dense kernel is replaced by the
  sign-corrected ``Q`` factor of the QR decomposition of its (tall-oriented) weight matrix, scaled
  by one gain for the whole network (that of its activation, as in the authors' code). On a
  pruned *linear* MLP this restores exact isometry (mean JSV = 1).

The Jacobians are computed with ``tf.GradientTape.batch_jacobian`` (vectorised with ``pfor``)
inside one ``tf.function``, followed by a batched ``tf.linalg.svd(compute_uv=False)``; the model is
always run with ``training=False``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tfprune.compat import keras, outbound_nodes, producing_layer, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.runtime import float32_twin, model_precision

__all__ = [
    "JSVStats",
    "jacobian_singular_values",
    "mean_jsv",
    "trainability_accuracy",
    "orthp",
    "activation_gain",
]

InputsLike = np.ndarray | tf.Tensor | tf.data.Dataset
"""What :func:`mean_jsv` accepts as ``inputs``: an array/tensor ``(N, *input_shape)`` or a
``tf.data.Dataset`` yielding ``x`` or ``(x, y[, sample_weight])`` batches."""

_SOFTMAX_NAMES = frozenset({"softmax", "log_softmax"})


# --------------------------------------------------------------------------------------------
# Mean JSV
# --------------------------------------------------------------------------------------------


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


def _check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = "a positive integer or None" if allow_none else "a positive integer"
        raise InvalidArgumentError(f"{name} must be {allowed}; got {value!r}.")


def _is_softmax(activation: Any) -> bool:
    return getattr(activation, "__name__", None) in _SOFTMAX_NAMES


def _producing_layer(model: keras.Model, output_index: int) -> keras.layers.Layer | None:
    """The layer that produces ``model``'s output number ``output_index`` (None if unknown)."""
    try:
        outputs = model.outputs
    except AttributeError:
        outputs = None
    if outputs:
        layer = producing_layer(outputs[output_index])
        if layer is not None:
            return layer
    if isinstance(model, keras.Sequential) and model.layers:
        return model.layers[-1]
    return None


def _terminal_layer(layer: keras.layers.Layer | None) -> Any:
    """Descends through nested models (first output) to the innermost producing layer."""
    for _ in range(64):
        if not isinstance(layer, keras.Model):
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
                if isinstance(model, keras.Model)
                else None
            )

        if strip_softmax and target is not None:
            if isinstance(target, keras.layers.Softmax):
                # A standalone Softmax layer: its input holds the logits.
                if logits_layer is None and isinstance(model, keras.Model):
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
        try:
            outputs = model.outputs
        except AttributeError:
            return None
        return len(outputs) if outputs else None

    @staticmethod
    def _resolve_layer(model: Any, logits_layer: str | keras.layers.Layer) -> Any:
        if not isinstance(model, keras.Model):
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
        if isinstance(logits_layer, keras.layers.Layer):
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
            return keras.Model(model.inputs, output)
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
        layer.activation = keras.activations.linear
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
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        return None
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"mean_jsv needs a single-input model; this model has {len(inputs)} inputs."
        )
    return tuple(inputs[0].shape[1:])


def _input_dtype(model: Any) -> tf.DType:
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if inputs and inputs[0].dtype.is_floating:
        return inputs[0].dtype
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


def _iter_input_batches(
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
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("num_samples", num_samples, allow_none=True)
    if isinstance(model, keras.Model) and model_precision(model) != "float32":
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
        for batch in _iter_input_batches(inputs, batch_size, num_samples, spectrum.expected_shape)
    ]
    return np.concatenate(parts, axis=0)


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
        model: A single-input ``keras.Model`` (functional, Sequential or subclassed) or any
            callable ``f(x, training=False)`` returning logits.
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


# --------------------------------------------------------------------------------------------
# Trainability accuracy
# --------------------------------------------------------------------------------------------


def trainability_accuracy(
    history: keras.callbacks.History | Mapping[str, Sequence[float]],
    first_stage_epochs: int,
    metric: str = "val_accuracy",
) -> float:
    """Trainability accuracy: mean accuracy over the first LR stage of retraining (WHY Eq. 1).

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
    if isinstance(history, keras.callbacks.History):
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
    _check_positive_int("first_stage_epochs", first_stage_epochs)
    values = np.asarray(list(logs[metric]), dtype=np.float64)
    if first_stage_epochs > values.size:
        raise InvalidArgumentError(
            f"first_stage_epochs={first_stage_epochs} exceeds the {values.size} epoch(s) "
            f"recorded for {metric!r}."
        )
    return float(values[:first_stage_epochs].mean())


# --------------------------------------------------------------------------------------------
# OrthP
# --------------------------------------------------------------------------------------------

_RELU_GAIN = math.sqrt(2.0)
_GAIN_TABLE: dict[str, float] = {
    "linear": 1.0,
    "sigmoid": 1.0,
    "softmax": 1.0,
    "log_softmax": 1.0,
    "hard_sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "softsign": 5.0 / 3.0,
    "relu": _RELU_GAIN,
    "relu6": _RELU_GAIN,
    "elu": _RELU_GAIN,
    "gelu": _RELU_GAIN,
    "swish": _RELU_GAIN,
    "silu": _RELU_GAIN,
    "mish": _RELU_GAIN,
    "softplus": _RELU_GAIN,
    "selu": 3.0 / 4.0,
    "leaky_relu": math.sqrt(2.0 / (1.0 + 0.2**2)),
}

# Layers that pass a kernel's output on channel-wise unchanged in kind, so the activation behind
# them decides the gain (Conv -> BatchNorm -> ReLU).
_TRANSPARENT_LAYERS: tuple[type, ...] = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.Add,
    keras.layers.Flatten,
    keras.layers.Reshape,
)


def activation_gain(activation: Any) -> float:
    """The OrthP gain for an activation function, name or activation layer.

    Gain table (``torch.nn.init.calculate_gain`` conventions where they exist): ``None`` /
    linear / sigmoid / hard_sigmoid / softmax: 1; tanh / softsign: 5/3; selu: 3/4;
    leaky ReLU with slope ``a``: ``sqrt(2 / (1 + a**2))`` (``a = 0.2`` for the function); ReLU and
    ReLU-like activations (relu6, elu, gelu, swish/silu, mish, softplus): ``sqrt(2)`` — for the
    smooth ones this is the usual ReLU approximation, not an exact value. Layers ``ReLU``,
    ``LeakyReLU``, ``ELU``, ``Softmax`` and ``Activation`` are resolved to their function.

    Raises:
        InvalidArgumentError: For an activation not in the table (pass an explicit ``gain`` to
            :func:`orthp` instead).
    """
    if activation is None:
        return 1.0
    if isinstance(activation, keras.layers.ReLU):
        slope = float(activation.negative_slope)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if isinstance(activation, keras.layers.LeakyReLU):
        return math.sqrt(2.0 / (1.0 + float(activation.alpha) ** 2))
    if isinstance(activation, keras.layers.ELU):
        return _RELU_GAIN
    if isinstance(activation, keras.layers.Softmax):
        return 1.0
    if isinstance(activation, keras.layers.Activation):
        return activation_gain(activation.activation)
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", None)
    if name in _GAIN_TABLE:
        return _GAIN_TABLE[name]
    raise InvalidArgumentError(
        f"No OrthP gain is known for activation {activation!r}; pass gain=<float> or "
        "gain={layer_name: float} to orthp."
    )


def _is_activation_layer(layer: Any) -> bool:
    return isinstance(
        layer,
        (
            keras.layers.Activation,
            keras.layers.ReLU,
            keras.layers.LeakyReLU,
            keras.layers.ELU,
            keras.layers.Softmax,
        ),
    )


def _following_activation(layer: Any) -> Any:
    """The activation applied after ``layer`` (own ``activation`` or a following layer).

    Looks through the layer's own ``activation``; if that is linear/absent, follows a single
    chain of consumers through normalisation/dropout/Add/reshape layers to an activation layer.
    Returns None (linear) when there is none or the consumers disagree.
    """
    own = getattr(layer, "activation", None)
    if own is not None and getattr(own, "__name__", None) != "linear":
        return own
    current = layer
    for _ in range(8):
        consumers = {id(n.outbound_layer): n.outbound_layer for n in outbound_nodes(current)}
        if len(consumers) != 1:
            return None
        (nxt,) = consumers.values()
        if _is_activation_layer(nxt):
            return nxt
        if not isinstance(nxt, _TRANSPARENT_LAYERS):
            return None
        current = nxt
    return None


def _iter_layers(root: Any) -> Iterator[Any]:
    """Every layer inside ``root`` (nested models and wrappers included), each once."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        children: list[Any] = []
        if isinstance(layer, keras.Model):
            children.extend(layer.layers)
        inner = getattr(layer, "layer", None)
        if isinstance(inner, keras.layers.Layer):
            children.append(inner)
        for attr in ("forward_layer", "backward_layer"):
            inner = getattr(layer, attr, None)
            if isinstance(inner, keras.layers.Layer):
                children.append(inner)
        stack.extend(reversed(children))


def _orthogonalize(matrix: np.ndarray) -> np.ndarray:
    """Sign-corrected Q of the QR of ``matrix`` (made tall first), in the original orientation."""
    rows, cols = matrix.shape
    transposed = rows < cols
    a = matrix.T if transposed else matrix
    q, r = np.linalg.qr(a, mode="reduced")
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q = q * signs[np.newaxis, :]
    return q.T if transposed else q


def _to_matrix(kernel: np.ndarray, kind: str) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """(out, fan_in) weight matrix in PyTorch layout and the inverse map back to Keras layout."""
    shape = kernel.shape
    if kind == "dense":  # (in, out) -> (out, in)
        return kernel.T, lambda m: m.T.reshape(shape)
    nd = kernel.ndim
    if kind == "conv":  # (k..., in, out) -> (out, in, k...) -> (out, in*prod(k))
        perm = (nd - 1, nd - 2, *range(nd - 2))
    elif kind == "conv_transpose":  # (k..., out, in) -> (out, in, k...)
        perm = (nd - 2, nd - 1, *range(nd - 2))
    elif kind == "depthwise":  # (k..., in, mult) -> (in, mult, k...) -> (in*mult, prod(k))
        perm = (nd - 2, nd - 1, *range(nd - 2))
    else:  # pragma: no cover - internal misuse
        raise ValueError(kind)
    moved = np.transpose(kernel, perm)
    rows = moved.shape[0] * moved.shape[1] if kind == "depthwise" else moved.shape[0]
    inverse_perm = np.argsort(perm)

    def back(m: np.ndarray) -> np.ndarray:
        return np.transpose(m.reshape(moved.shape), inverse_perm)

    return moved.reshape(rows, -1), back


_CONV_LAYERS: tuple[type, ...] = tuple(
    getattr(keras.layers, name)
    for name in (
        "Conv1D",
        "Conv2D",
        "Conv3D",
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "SeparableConv1D",
        "SeparableConv2D",
    )
    if hasattr(keras.layers, name)
)


def _kernels_of(layer: Any) -> list[tuple[Any, str]]:
    """The (variable, layout kind) pairs OrthP re-initialises in ``layer``."""
    conv_transpose = (
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.Conv3DTranspose,
    )
    if isinstance(layer, keras.layers.Dense):
        return [(layer.kernel, "dense")]
    if not isinstance(layer, _CONV_LAYERS):
        return []
    found: list[tuple[Any, str]] = []
    if getattr(layer, "depthwise_kernel", None) is not None:
        found.append((layer.depthwise_kernel, "depthwise"))
    if getattr(layer, "pointwise_kernel", None) is not None:
        found.append((layer.pointwise_kernel, "conv"))
    if not found and getattr(layer, "kernel", None) is not None:
        kind = "conv_transpose" if isinstance(layer, conv_transpose) else "conv"
        found.append((layer.kernel, kind))
    return found


def _one_gain(
    plan: list[tuple[Any, float, list[tuple[Any, str]]]],
) -> list[tuple[Any, float, list[tuple[Any, str]]]]:
    """The authors' single gain: that of the network's (one) non-linear activation, else 1."""
    gains = {}
    for layer, scale, _ in plan:
        if scale != 1.0:
            gains.setdefault(round(scale, 12), []).append(layer.name)
    if len(gains) > 1:
        listing = "; ".join(f"{g:.4g}: {', '.join(names[:3])}" for g, names in gains.items())
        raise InvalidArgumentError(
            f"orthp uses one gain for every layer, but the activations of this model have "
            f"different gains ({listing}); pass gain=<float> (e.g. math.sqrt(2) for ReLU) or "
            "gain='per_layer'."
        )
    value = next(iter(gains), 1.0)
    return [(layer, float(value), kernels) for layer, _, kernels in plan]


def orthp(
    model: keras.Model,
    *,
    gain: float | str | Mapping[str, float] | None = None,
) -> keras.Model:
    """OrthP: re-initialises every conv/dense kernel, in place, to a scaled (semi-)orthogonal one.

    For each kernel, with ``W`` its weight matrix in ``(out, fan_in)`` layout (PyTorch order
    ``(out, in, k...)``, so results match the reference implementation exactly):
    ``A = W`` (or ``W.T`` if ``W`` is wide), reduced QR ``A = Q R``, ``Q <- Q * sign(diag(R))``
    (a zero diagonal entry counts as +1), transpose back if needed, reshape to the Keras kernel
    layout and multiply by the gain. Rows (if ``out <= fan_in``) or columns of ``W`` become
    orthonormal times the gain. It keeps the existing weights' row/column space orientation; it
    is the Q of QR, not the nearest orthogonal matrix. Biases, BatchNorm and all other variables
    are left untouched.

    Re-initialised layers (found recursively in nested models and wrappers):

    * ``Dense`` and ``Conv1D/2D/3D`` kernels (grouped convs as ``(out, in/groups * k...)``).
    * ``Conv1D/2D/3DTranspose`` kernels as ``(filters, in * k...)``.
    * ``DepthwiseConv1D/2D`` depthwise kernels as an ``(in * multiplier, k...)`` matrix, i.e. one
      row per output channel, as a PyTorch grouped ``Conv2d`` weight is treated.
    * ``SeparableConv1D/2D``: the depthwise kernel as above and the pointwise kernel as a 1x1 conv.

    Gain: as in the authors' code, one gain multiplies every kernel, the gain of the network's
    activation (:func:`activation_gain`: linear 1, ReLU ``sqrt(2)``, tanh 5/3, ...) - also for
    the layers that are not followed by it, such as the logits layer. By default it is read
    from the model: the activations that follow the kernels (a layer's own ``activation``, or
    an activation layer reached through BatchNormalization/LayerNormalization/Dropout/Add/
    Flatten/Reshape layers, so ``Conv -> BN -> ReLU`` counts as ReLU) must agree on one
    non-linear gain, or there are none (a linear network: gain 1). ``gain="per_layer"`` gives
    every layer the gain of its own following activation instead (1 for the logits layer).

    Args:
        model: A built Keras model (or layer); modified in place.
        gain: None (one gain, from the network's activation), a float used for every kernel,
            ``"per_layer"`` (each layer's own activation), or a dict ``{layer_name: gain}``
            overriding the per-layer gain of the named layers.

    Returns:
        ``model`` itself.

    Raises:
        InvalidArgumentError: A bad ``gain``, a dict naming no re-initialised layer, an
            activation without a known gain (and no override), or (default ``gain``) a network
            whose activations have different gains.
        UnsupportedModelError: The model is unbuilt or has no conv/dense kernel.
    """
    if gain is not None and gain != "per_layer" and not isinstance(gain, Mapping):
        if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not gain > 0:
            raise InvalidArgumentError(
                f"gain must be a positive number, 'per_layer', a dict of layer name to gain, "
                f"or None; got {gain!r}."
            )
    overrides: Mapping[str, float] = gain if isinstance(gain, Mapping) else {}
    for name, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise InvalidArgumentError(f"gain[{name!r}] must be a positive number; got {value!r}.")
    if not getattr(model, "built", True):
        raise UnsupportedModelError(
            "orthp needs a built model; call it on data or build it with an input shape first."
        )

    plan: list[tuple[Any, float, list[tuple[Any, str]]]] = []
    for layer in _iter_layers(model):
        kernels = _kernels_of(layer)
        if not kernels:
            continue
        if isinstance(gain, numbers.Real):
            scale = float(gain)
        elif layer.name in overrides:
            scale = float(overrides[layer.name])
        else:
            try:
                scale = activation_gain(_following_activation(layer))
            except InvalidArgumentError as err:
                raise InvalidArgumentError(f"Layer {layer.name!r}: {err}") from err
        plan.append((layer, scale, kernels))

    if gain is None and plan:
        plan = _one_gain(plan)
    if not plan:
        raise UnsupportedModelError(
            f"orthp found no Dense/Conv kernel in {getattr(model, 'name', model)!r}; is the model "
            "built?"
        )
    names = [layer.name for layer, _, _ in plan]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InvalidArgumentError(
            f"gain names layers that orthp does not re-initialise: {unknown}; the re-initialised "
            f"layers are {names}."
        )
    for _, scale, kernels in plan:
        for variable, kind in kernels:
            kernel = variable.numpy().astype(np.float64)
            matrix, back = _to_matrix(kernel, kind)
            new = back(scale * _orthogonalize(matrix))
            variable.assign(new.astype(variable.dtype.as_numpy_dtype))
    return model
