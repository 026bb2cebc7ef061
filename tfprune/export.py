"""SavedModel export for TF Serving, with a reload-and-compare check.

:func:`export_saved_model` writes a SavedModel whose serving signature takes the model's inputs
and returns its outputs under their Keras names, reloads it with ``tf.saved_model.load`` (the
path TF Serving takes: no Python classes, only the traced graph) and checks that it computes what
the Keras model computes. The export is written to a temporary folder next to the target and
renamed into place only after the check passed, so a failure never leaves a half-written or
unchecked export behind.

The SavedModel needs nothing but TensorFlow to load and run. It is also loadable with
``tf_keras.models.load_model`` when the model contains only stock Keras layers (as the output of
tfprune's surgery does).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError, TfpruneError

__all__ = [
    "ExportError",
    "ExportDirectoryNotEmptyError",
    "ExportMismatchError",
    "export_saved_model",
    "serving_signature",
]


class ExportError(TfpruneError):
    """Exporting a model failed; nothing was left at the target path."""


class ExportDirectoryNotEmptyError(ExportError):
    """The export directory exists and is not empty (pass ``overwrite=True`` to replace it)."""


class ExportMismatchError(ExportError):
    """The reloaded SavedModel computes something different from the Keras model."""


def _input_names(model: keras.Model) -> list[str]:
    return [str(n) for n in model.input_names]


def _input_specs(model: keras.Model) -> list[tf.TensorSpec]:
    if getattr(model, "inputs", None) is None:
        raise InvalidArgumentError(
            f"model '{model.name}' has no symbolic inputs (subclassed or unbuilt); export a "
            "functional or Sequential model built with an input shape"
        )
    return [
        tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=name)
        for t, name in zip(model.inputs, _input_names(model))
    ]


def _call_model(model: keras.Model, args: Sequence[Any]) -> dict[str, tf.Tensor]:
    """Calls the model in inference mode; returns ``{output name: tensor}``."""
    if len(args) == 1:
        result = model(args[0], training=False)
    else:
        result = model(dict(zip(_input_names(model), args)), training=False)
    if isinstance(result, Mapping):
        return {str(k): v for k, v in result.items()}
    flat = tf.nest.flatten(result)
    names = [str(n) for n in model.output_names]
    if len(names) != len(flat) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(flat))]
    return dict(zip(names, flat))


def serving_signature(model: keras.Model) -> tf.types.experimental.ConcreteFunction:
    """The concrete serving function: named inputs (batch dim free) -> ``{output name: tensor}``.

    Input names are the model's input layer names, output names its output layer names.
    """
    specs = _input_specs(model)

    @tf.function(input_signature=specs)
    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = _call_model(model, args)
        return {name: tf.identity(t, name=name) for name, t in outputs.items()}

    return serve.get_concrete_function()


def _random_inputs(model: keras.Model, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in _input_specs(model):
        dims = spec.shape.as_list()[1:]
        if any(d is None for d in dims):
            raise InvalidArgumentError(
                f"input '{spec.name}' has unknown dimensions {spec.shape}; pass check_inputs= "
                "with example data of the shape you serve"
            )
        shape = (batch_size, *dims)
        dtype = spec.dtype
        if dtype.is_floating:
            value = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            value = rng.integers(0, 2, size=shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            value = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InvalidArgumentError(
                f"cannot make random data of dtype {dtype.name} for input '{spec.name}'; pass "
                "check_inputs="
            )
        inputs[spec.name] = value
    return inputs


def _normalise_inputs(model: keras.Model, check_inputs: Any) -> dict[str, np.ndarray]:
    names = _input_names(model)
    if isinstance(check_inputs, Mapping):
        missing = [n for n in names if n not in check_inputs]
        if missing:
            raise InvalidArgumentError(
                f"check_inputs is missing inputs {missing}; the model's inputs are {names}"
            )
        values = [check_inputs[n] for n in names]
    elif isinstance(check_inputs, (list, tuple)):
        values = list(check_inputs)
    else:
        values = [check_inputs]
    if len(values) != len(names):
        raise InvalidArgumentError(
            f"check_inputs has {len(values)} arrays but the model has {len(names)} inputs {names}"
        )
    specs = _input_specs(model)
    return {n: np.asarray(v, dtype=s.dtype.as_numpy_dtype) for n, v, s in zip(names, values, specs)}


def _compare(
    expected: Mapping[str, Any], got: Mapping[str, Any], rtol: float, atol: float
) -> list[str]:
    problems = []
    if set(expected) != set(got):
        return [f"output names differ: keras {sorted(expected)} vs SavedModel {sorted(got)}"]
    for name, value in expected.items():
        a = np.asarray(value)
        b = np.asarray(got[name])
        if a.shape != b.shape:
            problems.append(f"output '{name}': shape {a.shape} vs {b.shape}")
        elif not np.allclose(a, b, rtol=rtol, atol=atol):
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            problems.append(f"output '{name}': max |difference| {diff:.3g}")
    return problems


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike[str],
    *,
    signature_name: str = "serving_default",
    check_inputs: Any = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    overwrite: bool = False,
    seed: int = 0,
    batch_size: int = 2,
) -> str:
    """Exports ``model`` as a checked SavedModel for TF Serving; returns the export path.

    The signature ``signature_name`` takes one keyword argument per model input (named after the
    input layers, batch dimension free) and returns a dict keyed by the output layer names, so
    multi-input/multi-output models are supported. After writing, the SavedModel is reloaded with
    ``tf.saved_model.load`` and run on ``check_inputs`` (or random inputs of batch ``batch_size``
    drawn with ``seed``) next to the Keras model in inference mode.

    Args:
        model: a functional or Sequential tf_keras model with symbolic inputs.
        export_dir: target folder; must not exist or be empty unless ``overwrite``.
        signature_name: key of the serving signature.
        check_inputs: one array, a list of arrays in model input order, or a dict keyed by input
            names; default random normal floats (integers in {0, 1} for integer inputs).
        rtol: relative tolerance of the comparison (``numpy.allclose``).
        atol: absolute tolerance of the comparison.
        overwrite: replace a non-empty ``export_dir`` (only after the new export passed).
        seed: seed of the random check inputs.
        batch_size: batch of the random check inputs.

    Returns:
        The absolute export path.

    Raises:
        ExportDirectoryNotEmptyError: ``export_dir`` is non-empty and ``overwrite`` is False.
        ExportMismatchError: the reloaded SavedModel's outputs differ from the Keras model's.
        ExportError: writing or reloading failed.
        InvalidArgumentError: bad arguments (message names the argument).
    """
    if not isinstance(model, keras.Model):
        raise InvalidArgumentError(f"model must be a tf_keras Model, got {type(model).__name__}")
    if not signature_name or not isinstance(signature_name, str):
        raise InvalidArgumentError(
            f"signature_name must be a non-empty str, got {signature_name!r}"
        )
    if rtol < 0 or atol < 0:
        raise InvalidArgumentError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    target = os.path.abspath(os.fspath(export_dir))
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise ExportError(f"export_dir {target!r} exists and is not a directory")
        if os.listdir(target) and not overwrite:
            raise ExportDirectoryNotEmptyError(
                f"export_dir {target!r} exists and is not empty; choose a new directory or pass "
                "overwrite=True to replace it"
            )
    inputs = (
        _random_inputs(model, batch_size, seed)
        if check_inputs is None
        else _normalise_inputs(model, check_inputs)
    )
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        signature = serving_signature(model)
        try:
            keras.models.save_model(
                model,
                staging,
                save_format="tf",
                include_optimizer=False,
                signatures={signature_name: signature},
            )
        except Exception as err:  # noqa: BLE001 - re-raised as a tfprune error with context.
            raise ExportError(f"writing the SavedModel failed: {err}") from err
        _check_export(model, staging, signature_name, inputs, rtol, atol)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_export(
    model: keras.Model,
    path: str,
    signature_name: str,
    inputs: Mapping[str, np.ndarray],
    rtol: float,
    atol: float,
) -> None:
    names = _input_names(model)
    expected = _call_model(model, [tf.constant(inputs[n]) for n in names])
    expected = {k: v.numpy() for k, v in expected.items()}
    try:
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures[signature_name]
        got = fn(**{n: tf.constant(v) for n, v in inputs.items()})
    except Exception as err:  # noqa: BLE001 - re-raised as a tfprune error with context.
        raise ExportError(f"reloading and running the exported SavedModel failed: {err}") from err
    got = {k: v.numpy() for k, v in got.items()}
    problems = _compare(expected, got, rtol, atol)
    if problems:
        raise ExportMismatchError(
            f"the exported SavedModel does not reproduce the Keras model (rtol={rtol}, "
            f"atol={atol}): " + "; ".join(problems) + ". Nothing was written."
        )


def _move_into_place(staging: str, target: str) -> None:
    """Renames ``staging`` to ``target``, replacing an existing ``target`` folder."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    backup = tempfile.mkdtemp(
        prefix=f".{os.path.basename(target)}.old-", dir=os.path.dirname(target)
    )
    os.rmdir(backup)
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
