"""SavedModel export for TF Serving, checked honestly before anything is put in place.

:func:`export_saved_model` writes one SavedModel folder; :func:`export_for_serving` writes the
TF Serving layout ``<base>/<version>/`` (next free version by default) with warm-up requests.
Both

1. refuse models that still hold tfprune masks or TF-MOT wrappers (strip them first),
2. optimise the model for inference (BatchNorm/Rescaling folded, Dropout and noise dropped; see
   :func:`tfprune.deploy.optimize_for_inference`) unless ``fold=False``; a Keras 3 model is
   written with Keras 3's own ``ExportArchive``,
3. write a ``serving_default`` signature with one named argument per model input and a dict of
   named outputs, plus an optional signature that runs a preprocessing model first,
4. reload the SavedModel with ``tf.saved_model.load`` (the path TF Serving takes: no Python
   classes) and compare its outputs with the original model run as a ``tf.function`` (graph
   mode, as served). The tolerance is ``max(rtol, 10 x the model's own eager-vs-graph
   difference, 2 x the float rounding folding measurably introduced)``, relative to the largest
   output value; the tolerance and the measured difference are stated in the result and in any
   error,
5. optionally convert to TFLite and ONNX next to ``saved_model.pb`` and check those runtimes,
   and reload the export in a fresh Python process that never imports tfprune.

Everything is written to a temporary folder next to the target and renamed into place only after
every check passed, so a failure never leaves a half-written or unchecked export behind. The
model passed in is never modified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from tfprune.compat import KERAS3, flavour_of, keras, keras3, tf
from tfprune.deploy import runtimes, serving
from tfprune.deploy.fold import FoldReport, check_no_masks, optimize_for_inference
from tfprune.deploy.inputs import (
    call_model,
    example_inputs,
    input_names,
    input_specs,
    normalise_inputs,
)
from tfprune.errors import (
    ExportDirectoryNotEmptyError,
    ExportError,
    ExportMismatchError,
    InvalidArgumentError,
    RuntimeMismatchError,
    UnsupportedModelError,
)
from tfprune.files import (
    describe_entries,
    foreign_entries,
    mark_as_tfprune,
    protected_folder,
    staging_dir,
)

__all__ = [
    "ExportResult",
    "check_export_dir",
    "export_for_serving",
    "export_saved_model",
    "serving_signature",
]

#: Tolerance factor on the model's own eager-vs-graph difference.
NOISE_FACTOR = 10.0
#: Tolerance factor on the measured float rounding of BatchNorm folding.
FOLD_FACTOR = 2.0
#: Folding is exact in real arithmetic; beyond this relative error it is a bug, not rounding.
FOLD_RTOL = 1e-3
#: Above this relative tolerance a check says nothing; the export is refused instead.
MAX_RTOL = 1e-2


@dataclasses.dataclass(eq=False)
class ExportResult(str):
    """What an export wrote and what its checks measured; also the export path itself.

    Both :func:`export_saved_model` and :func:`export_for_serving` return one. It is a ``str``
    equal to :attr:`path`, so it works wherever a path does (``os.path.join(result, ...)``,
    ``tf.saved_model.load(result)``, ``print(result)``), and its attributes hold the rest.

    Attributes:
        path: the SavedModel folder (``<base>/<version>`` for :func:`export_for_serving`).
        version: the TF Serving version (None for :func:`export_saved_model`).
        signatures: signature names written.
        tolerance: relative tolerance the checks used.
        eager_graph_difference: the original model's own eager-vs-graph relative difference.
        fold_difference: the folded model's relative difference from the original (eager).
        max_relative_difference: reloaded SavedModel vs the original model in graph mode.
        fold_report: what inference optimisation folded/dropped/kept (None with ``fold=False``).
        warmup_path: the warm-up requests file, if written.
        tflite_path / onnx_path: converted models, if asked.
        runtime_differences: relative difference of each converted runtime vs the SavedModel.
        runtime_tolerance: relative tolerance of those runtime checks.
        verify: the fresh-process check's summary (``signatures`` holds its printed text).
        notes: what the export left as it was and why.
    """

    path: str
    version: int | None = None
    signatures: list[str] = dataclasses.field(default_factory=list)
    tolerance: float = 0.0
    eager_graph_difference: float = 0.0
    fold_difference: float = 0.0
    max_relative_difference: float = 0.0
    fold_report: FoldReport | None = None
    warmup_path: str | None = None
    tflite_path: str | None = None
    onnx_path: str | None = None
    runtime_differences: dict[str, float] = dataclasses.field(default_factory=dict)
    runtime_tolerance: float = 0.0
    verify: dict[str, Any] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def __new__(cls, path: str, *args: Any, **kwargs: Any) -> ExportResult:
        return super().__new__(cls, path)

    def summary(self) -> str:
        """A few lines for a terminal: where, what was checked, with which tolerance."""
        lines = [
            f"SavedModel: {self.path}" + (f" (version {self.version})" if self.version else "")
        ]
        lines.append(f"signatures: {', '.join(self.signatures)}")
        if self.fold_report is not None:
            lines.append("inference optimisation: " + str(self.fold_report).replace("\n", "\n  "))
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append(
            f"reloaded vs model (graph mode): max relative difference "
            f"{self.max_relative_difference:.2e} (tolerance {self.tolerance:.1e}; the model's own "
            f"eager-vs-graph difference {self.eager_graph_difference:.1e}, folding's rounding "
            f"{self.fold_difference:.1e})"
        )
        for name, diff in self.runtime_differences.items():
            lines.append(
                f"{name} vs SavedModel: max relative difference {diff:.2e} "
                f"(tolerance {self.runtime_tolerance:.0e})"
            )
        if self.warmup_path:
            lines.append(f"warm-up requests: {self.warmup_path}")
        if self.verify is not None:
            lines.append(
                f"fresh process (no tfprune): max relative difference "
                f"{self.verify['max_relative_difference']:.2e} -> ok"
            )
        return "\n".join(lines)


def serving_signature(model: keras.Model) -> tf.types.experimental.ConcreteFunction:
    """The concrete serving function: named inputs (batch dim free) -> ``{output name: tensor}``.

    Input names are the model's input layer names, output names its output layer names.
    """
    return _serving_function(model).get_concrete_function()


def _serving_function(model: Any) -> tf.types.experimental.PolymorphicFunction:
    """:func:`serving_signature` as a traced ``tf.function`` (what Keras 3's export takes)."""

    @tf.function(input_signature=input_specs(model))
    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = call_model(model, args)
        return {name: tf.identity(t, name=name) for name, t in outputs.items()}

    serve.get_concrete_function()
    return serve


def _preprocessing_function(
    model: Any, preprocessing: Any
) -> tf.types.experimental.PolymorphicFunction:
    flavour = flavour_of(model)
    if (
        flavour_of(preprocessing) != flavour
        or not isinstance(preprocessing, _model_class(flavour))
        or getattr(preprocessing, "inputs", None) is None
    ):
        raise InvalidArgumentError(
            f"preprocessing must be a {flavour} functional or Sequential model (the flavour of "
            "the model) built with an input shape (raw input -> model input), got "
            f"{type(preprocessing).__name__}"
        )
    outs = tf.nest.flatten(preprocessing.outputs)
    ins = tf.nest.flatten(model.inputs)
    if len(outs) != len(ins) or any(
        not tf.TensorShape(o.shape[1:]).is_compatible_with(i.shape[1:])
        or tf.as_dtype(o.dtype) != tf.as_dtype(i.dtype)
        for o, i in zip(outs, ins)
    ):
        got = [(tuple(o.shape), tf.as_dtype(o.dtype).name) for o in outs]
        want = [(tuple(i.shape), tf.as_dtype(i.dtype).name) for i in ins]
        raise InvalidArgumentError(
            f"preprocessing outputs {got} do not fit the model inputs {want}; its outputs must "
            "be the model's inputs, in order, with the same shapes and dtypes"
        )

    @tf.function(input_signature=input_specs(preprocessing))
    def serve_raw(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        prepared = tf.nest.flatten(call_model(preprocessing, args))
        outputs = call_model(model, prepared)
        return {name: tf.identity(t, name=name) for name, t in outputs.items()}

    serve_raw.get_concrete_function()
    return serve_raw


def _model_class(flavour: str | None) -> type:
    """The Model class of ``flavour`` (tf_keras unless it is Keras 3)."""
    return keras3().Model if flavour == KERAS3 else keras.Model


def _write_keras3(
    model: Any,
    preprocessing: Any,
    functions: Mapping[str, tf.types.experimental.PolymorphicFunction],
    path: str,
) -> None:
    """Writes a Keras 3 model's SavedModel with Keras 3's ``ExportArchive`` (variables tracked)."""
    archive = keras3().export.ExportArchive()
    archive.track(model)
    if preprocessing is not None:
        archive.track(preprocessing)
    for name, fn in functions.items():
        archive.add_endpoint(name, fn)
    archive.write_out(path, verbose=False)


def _relative(want: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> float:
    worst = 0.0
    for name, a in want.items():
        a = np.asarray(a, np.float64)
        b = np.asarray(got[name], np.float64)
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), 1e-12))
    return worst


def _compare(
    expected: Mapping[str, Any], got: Mapping[str, Any], rtol: float, atol: float
) -> list[str]:
    """Problems where ``max |got - expected| > atol + rtol * max |expected|``."""
    if set(expected) != set(got):
        return [f"output names differ: keras {sorted(expected)} vs SavedModel {sorted(got)}"]
    problems = []
    for name, value in expected.items():
        a = np.asarray(value, np.float64)
        b = np.asarray(got[name], np.float64)
        if a.shape != b.shape:
            problems.append(f"output '{name}': shape {a.shape} vs {b.shape}")
            continue
        if not a.size:
            continue
        diff = float(np.max(np.abs(a - b)))
        scale = float(np.max(np.abs(a)))
        if not diff <= atol + rtol * scale:
            problems.append(
                f"output '{name}': max |difference| {diff:.3g} ({diff / max(scale, 1e-12):.3g} "
                f"relative to max |output| {scale:.3g})"
            )
    return problems


def _graph_reference(
    model: keras.Model, inputs: Mapping[str, np.ndarray], rtol: float
) -> tuple[dict[str, np.ndarray], float, float]:
    """The model's outputs in graph mode, its eager-vs-graph difference, and the tolerance."""
    names = input_names(model)
    args = [tf.constant(inputs[n]) for n in names]
    graph_fn = tf.function(lambda *a: call_model(model, a))
    first = {k: v.numpy() for k, v in graph_fn(*args).items()}
    second = {k: v.numpy() for k, v in graph_fn(*args).items()}
    eager = {k: v.numpy() for k, v in call_model(model, args).items()}
    repeat = _relative(first, second)
    if repeat > rtol:
        problems = _compare(first, second, rtol, 0.0)
        raise ExportMismatchError(
            f"model {model.name!r} computes different outputs on the same inputs in two graph "
            f"runs (relative difference {repeat:.3g}): " + "; ".join(problems) + ". It has a "
            "random or stateful op that a served model cannot have. Nothing was written."
        )
    noise = _relative(first, eager)
    tolerance = max(rtol, NOISE_FACTOR * noise)
    if tolerance > MAX_RTOL:
        raise ExportMismatchError(
            f"model {model.name!r} differs from itself between eager and graph mode by "
            f"{noise:.3g} relative on the check inputs, so no check is meaningful (tolerance "
            f"would be {tolerance:.3g} > {MAX_RTOL}). Pass check_inputs= with realistic data "
            "(random inputs can saturate an untrained model). Nothing was written."
        )
    return first, noise, tolerance


def check_export_dir(export_dir: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Raises unless :func:`export_saved_model` may write ``export_dir`` (checked before work).

    A missing or empty folder may be written; a tfprune export only with ``overwrite=True``;
    anything else (someone's files, the current folder, a git checkout) never.

    Raises:
      ExportDirectoryNotEmptyError: the folder is not empty and may not be replaced (the
        message names the argument, its flag and the fix).
      ExportError: the path exists and is not a folder.
    """
    target = os.path.abspath(os.fspath(export_dir))
    where = f"export_dir={os.fspath(export_dir)!r} (--export_dir)"
    if os.path.exists(target) and not os.path.isdir(target):
        raise ExportError(f"{where} exists and is not a folder; give a new or empty folder")
    if not os.path.isdir(target) or not os.listdir(target):
        return
    foreign = foreign_entries(target)
    if foreign:
        raise ExportDirectoryNotEmptyError(
            f"{where} holds {describe_entries(foreign)}, which tfprune did not write; give a "
            "new or empty folder (tfprune replaces only its own exports)"
        )
    why = protected_folder(target)
    if why:
        raise ExportDirectoryNotEmptyError(
            f"{where} is never replaced: {why}; give a new or empty folder"
        )
    if not overwrite:
        raise ExportDirectoryNotEmptyError(
            f"{where} holds a tfprune export; pass overwrite=True (--overwrite) to replace it, "
            "or give a new or empty folder"
        )


class _DropUnbuiltMetricsNote(logging.Filter):
    """Drops tf_keras' "compiled metrics have yet to be built" note.

    tf_keras logs it whenever it saves a model that was never trained or evaluated (a stripped
    or folded model always is); it says nothing about the export.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "compiled metrics have yet to be built" not in record.getMessage()


@contextlib.contextmanager
def _quiet_saving() -> Iterator[None]:
    """While exporting: no tf_keras note about unbuilt metrics (the export's own logs stay)."""
    logger = logging.getLogger("tensorflow")  # tf_keras logs through TensorFlow's logger
    note = _DropUnbuiltMetricsNote()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


def _export(model: keras.Model, target: str, **kwargs: Any) -> ExportResult:
    with _quiet_saving():
        return _export_quietly(model, target, **kwargs)


def _export_quietly(
    model: keras.Model,
    target: str,
    *,
    overwrite: bool,
    version: int | None,
    signature_name: str,
    check_inputs: Any,
    rtol: float,
    atol: float,
    seed: int,
    batch_size: int,
    fold: bool | None,
    preprocessing: keras.Model | None,
    preprocessing_signature_name: str,
    warmup: bool,
    model_name: str | None,
    tflite: bool,
    onnx: bool,
    runtime_rtol: float,
    verify: bool,
    allow_masked: bool,
) -> ExportResult:
    flavour = flavour_of(model)
    _check_arguments(
        model,
        signature_name,
        preprocessing,
        preprocessing_signature_name,
        (rtol, atol, runtime_rtol),
        batch_size,
    )
    try:
        check_no_masks(model)
    except UnsupportedModelError as err:
        if not allow_masked:
            raise UnsupportedModelError(
                f"{err} (or pass allow_masked=True / --allow_masked to export the masked model "
                "at its full size)"
            ) from None
        warnings.warn(f"exporting a model with masks at full size: {err}", stacklevel=3)
        fold = False
    notes: list[str] = []
    if fold is None:
        fold = True
    input_names(model)  # raises for a model without symbolic inputs
    inputs = (
        example_inputs(model, batch_size, seed)
        if check_inputs is None
        else normalise_inputs(model, check_inputs)
    )
    expected, noise, tolerance = _graph_reference(model, inputs, rtol)
    result = ExportResult(path=target, version=version, tolerance=tolerance)
    result.eager_graph_difference = noise
    result.notes = notes
    served = model
    if fold:
        served, result.fold_report = optimize_for_inference(
            model, check_inputs=inputs, rtol=FOLD_RTOL, return_report=True
        )
        result.fold_difference = result.fold_report.max_relative_error or 0.0
        tolerance = result.tolerance = max(tolerance, FOLD_FACTOR * result.fold_difference)
    blockers = runtimes.onnx_blockers(served) if onnx else []
    if blockers:
        raise UnsupportedModelError(
            f"ONNX export of {model.name!r} is not possible: {blockers[0]}"
            + (f" (and {len(blockers) - 1} more such layers)" if len(blockers) > 1 else "")
            + ". Export without onnx (--noonnx); the SavedModel and TFLite exports work. "
            "Nothing was written."
        )
    functions = {signature_name: _serving_function(served)}
    raw_inputs = raw_expected = None
    if preprocessing is not None:
        functions[preprocessing_signature_name] = _preprocessing_function(served, preprocessing)
        raw_inputs = example_inputs(preprocessing, batch_size, seed)
        prepared = tf.nest.flatten(
            call_model(
                preprocessing, [tf.constant(raw_inputs[n]) for n in input_names(preprocessing)]
            )
        )
        raw_expected = {k: v.numpy() for k, v in call_model(model, prepared).items()}
    result.signatures = list(functions)

    runtimes.require(tflite=tflite, onnx=onnx)  # before anything is written
    if warmup:
        serving.require_serving_apis()
    # Readable by a serving process, renamed into place when complete.
    parent = os.path.dirname(target)
    parent_existed = os.path.isdir(parent)
    staging = staging_dir(parent, os.path.basename(target))
    try:
        try:
            if flavour == KERAS3:
                _write_keras3(served, preprocessing, functions, staging)
                if "serving_default" not in functions:  # ExportArchive adds it for TF Serving
                    result.signatures.append("serving_default")
            else:
                keras.models.save_model(
                    served,
                    staging,
                    save_format="tf",
                    include_optimizer=False,
                    signatures={k: f.get_concrete_function() for k, f in functions.items()},
                    # Per-layer call traces are only needed to reload custom layers in Keras
                    # without their classes; skipping them makes saving and loading several
                    # times faster.
                    save_traces=not _only_stock_layers(served),
                )
        except Exception as err:  # noqa: BLE001 - re-raised as a tfprune error with context.
            raise ExportError(f"writing the SavedModel failed: {err}") from err
        got = _run_saved_model(staging, signature_name, inputs)
        _raise_on_mismatch(expected, got, tolerance, atol, noise, result.fold_difference, rtol, "")
        result.max_relative_difference = _relative(expected, got)
        if raw_inputs is not None:
            got_raw = _run_saved_model(staging, preprocessing_signature_name, raw_inputs)
            _raise_on_mismatch(
                raw_expected,
                got_raw,
                tolerance,
                atol,
                noise,
                result.fold_difference,
                rtol,
                preprocessing_signature_name,
            )
        if warmup:
            written = serving.write_warmup_requests(
                staging,
                inputs,
                signature_name=signature_name,
                model_name=model_name or served.name,
            )
            result.warmup_path = os.path.join(target, os.path.relpath(written, staging))
        result.runtime_tolerance = runtime_rtol
        kinds = [kind for wanted, kind in ((tflite, "tflite"), (onnx, "onnx")) if wanted]
        for kind in kinds:
            _convert_and_check(staging, target, kind, inputs, got, signature_name, result, atol)
        if verify:
            result.verify = _verify_in_fresh_process(
                staging, inputs, expected, signature_name, tolerance, atol
            )
        mark_as_tfprune(staging)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not parent_existed and not os.listdir(parent):
            os.rmdir(parent)  # a serving base folder this export created for nothing
        raise
    return result


def _check_arguments(
    model: Any,
    signature_name: Any,
    preprocessing: Any,
    preprocessing_signature_name: Any,
    tolerances: tuple[float, float, float],
    batch_size: int,
) -> None:
    """Raises InvalidArgumentError naming the first bad export argument."""
    if not isinstance(model, _model_class(flavour_of(model))):
        raise InvalidArgumentError(
            f"model must be a tf_keras or Keras 3 Model, got {type(model).__name__}"
        )
    for name, value in (
        ("signature_name", signature_name),
        ("preprocessing_signature_name", preprocessing_signature_name),
    ):
        if not value or not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a non-empty str, got {value!r}")
    if preprocessing is not None and preprocessing_signature_name == signature_name:
        raise InvalidArgumentError("preprocessing_signature_name must differ from signature_name")
    if min(tolerances) < 0:
        rtol, atol, runtime_rtol = tolerances
        raise InvalidArgumentError(
            f"rtol, atol and runtime_rtol must be >= 0, got {rtol}, {atol}, {runtime_rtol}"
        )
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")


def _convert_and_check(
    staging: str,
    target: str,
    kind: str,
    inputs: Any,
    saved_outputs: Mapping[str, np.ndarray],
    signature_name: str,
    result: ExportResult,
    atol: float,
) -> None:
    """Writes ``model.<kind>`` (tflite or onnx) beside the SavedModel and checks its outputs."""
    file = os.path.join(staging, f"model.{kind}")
    if kind == "tflite":
        runtimes.convert_to_tflite(staging, file, signature_name=signature_name)
        outs = runtimes.run_tflite(file, inputs, signature_name=signature_name)
        result.tflite_path = os.path.join(target, os.path.basename(file))
    else:
        runtimes.convert_to_onnx(staging, file, signature_name=signature_name)
        outs = runtimes.run_onnx(file, inputs)
        result.onnx_path = os.path.join(target, os.path.basename(file))
    runtime_rtol = result.runtime_tolerance
    problems = _compare(saved_outputs, outs, runtime_rtol, atol)
    if problems:
        raise RuntimeMismatchError(
            f"{kind} outputs differ from the SavedModel's beyond runtime_rtol="
            f"{runtime_rtol}: " + "; ".join(problems) + ". Nothing was written."
        )
    result.runtime_differences[kind] = _relative(saved_outputs, outs)


def _verify_in_fresh_process(
    staging: str,
    inputs: Any,
    expected: Mapping[str, np.ndarray],
    signature_name: str,
    tolerance: float,
    atol: float,
) -> dict[str, Any]:
    """Reloads the export in a Python process without tfprune; its report, or an error."""
    report = serving.verify_in_fresh_process(
        staging, inputs, expected, signature_name=signature_name, rtol=tolerance, atol=atol
    )
    if not report["ok"] or report["tfprune_imported"]:
        raise ExportMismatchError(
            "the export does not reproduce the model in a fresh TensorFlow process: max "
            f"relative difference {report['max_relative_difference']:.3g} (tolerance "
            f"{tolerance:.3g}), tfprune imported: {report['tfprune_imported']}. Nothing "
            "was written."
        )
    return report


def _only_stock_layers(model: keras.Model) -> bool:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if not _only_stock_layers(layer):
                return False
        elif not type(layer).__module__.startswith("tf_keras."):
            return False
    return type(model).__module__.startswith("tf_keras.")


def _run_saved_model(
    path: str, signature_name: str, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    try:
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures[signature_name]
        got = fn(**{n: tf.constant(v) for n, v in inputs.items()})
    except Exception as err:  # noqa: BLE001 - re-raised as a tfprune error with context.
        raise ExportError(f"reloading and running the exported SavedModel failed: {err}") from err
    return {k: v.numpy() for k, v in got.items()}


def _raise_on_mismatch(
    expected: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    tolerance: float,
    atol: float,
    noise: float,
    fold_difference: float,
    rtol: float,
    what: str,
) -> None:
    problems = _compare(expected, got, tolerance, atol)
    if problems:
        where = f" (signature {what!r})" if what else ""
        raise ExportMismatchError(
            f"the exported SavedModel{where} does not reproduce the Keras model in graph mode: "
            + "; ".join(problems)
            + f". Tolerance: {tolerance:.3g} relative (max of rtol={rtol}, {NOISE_FACTOR:g} x "
            f"the model's own eager-vs-graph difference {noise:.3g} and {FOLD_FACTOR:g} x "
            f"folding's measured rounding {fold_difference:.3g}) + atol={atol}. If folding is "
            "the cause, export with fold=False. Nothing was written."
        )


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
    fold: bool | None = None,
    preprocessing: keras.Model | None = None,
    preprocessing_signature_name: str = "serving_preprocess",
    warmup: bool = False,
    model_name: str | None = None,
    tflite: bool = False,
    onnx: bool = False,
    runtime_rtol: float = 1e-4,
    verify: bool = False,
    allow_masked: bool = False,
    return_result: bool = True,
) -> ExportResult:
    """Exports ``model`` as a checked SavedModel folder; returns an :class:`ExportResult`.

    The result is a ``str`` (the export path) that also carries what was written and measured,
    the same type :func:`export_for_serving` returns.

    The signature ``signature_name`` takes one keyword argument per model input (named after the
    input layers, batch dimension free) and returns a dict keyed by the output layer names, so
    multi-input/multi-output models are supported. See the module docstring for the checks.

    Args:
        model: a functional or Sequential tf_keras or Keras 3 model with symbolic inputs
            (stripped). A Keras 3 model is written with Keras 3's ``ExportArchive``,
            which also names the first signature ``serving_default``.
        export_dir: target folder; must not exist or be empty, or be a tfprune export with
            ``overwrite``.
        overwrite: replace the tfprune export in ``export_dir`` (only after the new export
            passed). A folder holding anything tfprune did not write is never replaced.
        return_result: ignored; an :class:`ExportResult` (a ``str`` of the path) is always
            returned.
        signature_name: key of the serving signature.
        check_inputs: one array, a list of arrays in model input order, or a dict keyed by input
            names; default random inputs (standard normal floats; integer inputs that feed an
            Embedding are ids within its vocabulary).
        rtol: smallest relative tolerance of the reload check (relative to max |output|).
        atol: absolute tolerance added to it.
        seed: seed of the random check inputs.
        batch_size: batch of the random check inputs.
        fold: optimise for inference first (fold BatchNorm/Rescaling, drop Dropout and noise);
            default True for tf_keras models and False for Keras 3 models (``True`` is an error
            there).
        preprocessing: optional model (the model's flavour) from raw inputs to the model's
            inputs; adds the signature ``preprocessing_signature_name`` that runs it first.
        preprocessing_signature_name: key of that signature.
        warmup: write TF Serving warm-up requests (the check inputs) into ``assets.extra/``.
        model_name: model name in the warm-up requests (default the Keras model's name).
        tflite: also write ``model.tflite`` beside ``saved_model.pb`` and check it.
        onnx: also write ``model.onnx`` beside ``saved_model.pb`` and check it.
        runtime_rtol: relative tolerance of the TFLite/ONNX checks against the SavedModel.
        verify: reload the export in a fresh Python process that never imports tfprune.
        allow_masked: export a model that still holds tfprune masks (with a warning) instead of
            refusing it.

    Raises:
        ExportDirectoryNotEmptyError: ``export_dir`` is not empty and may not be replaced.
        ExportMismatchError: the reloaded SavedModel's outputs differ from the model's.
        UnsupportedModelError: the model still holds tfprune masks or TF-MOT wrappers.
        ExportError: writing, reloading or converting failed.
        InvalidArgumentError: bad arguments (the message names the argument).
    """
    target = os.path.abspath(os.fspath(export_dir))
    check_export_dir(target, overwrite)
    result = _export(
        model,
        target,
        overwrite=overwrite,
        version=None,
        signature_name=signature_name,
        check_inputs=check_inputs,
        rtol=rtol,
        atol=atol,
        seed=seed,
        batch_size=batch_size,
        fold=fold,
        preprocessing=preprocessing,
        preprocessing_signature_name=preprocessing_signature_name,
        warmup=warmup,
        model_name=model_name,
        tflite=tflite,
        onnx=onnx,
        runtime_rtol=runtime_rtol,
        verify=verify,
        allow_masked=allow_masked,
    )
    return result


def export_for_serving(
    model: keras.Model,
    base_dir: str | os.PathLike[str],
    *,
    version: int | None = None,
    signature_name: str = "serving_default",
    check_inputs: Any = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seed: int = 0,
    batch_size: int = 2,
    fold: bool | None = None,
    preprocessing: keras.Model | None = None,
    preprocessing_signature_name: str = "serving_preprocess",
    warmup: bool = True,
    model_name: str | None = None,
    tflite: bool = False,
    onnx: bool = False,
    runtime_rtol: float = 1e-4,
    verify: bool = False,
    allow_masked: bool = False,
) -> ExportResult:
    """Exports ``model`` into the TF Serving layout ``<base_dir>/<version>/``.

    ``version=None`` takes the next free version (1 + the largest integer folder, or 1); an
    existing version folder is an error (versions are immutable in TF Serving). Warm-up
    requests are written by default. Returns an :class:`ExportResult`.

    Args:
        model: a functional or Sequential tf_keras or Keras 3 model with symbolic inputs
            (stripped). A Keras 3 model is written with Keras 3's ``ExportArchive``,
            which also names the first signature ``serving_default``.
        base_dir: the folder TF Serving watches (``--model_base_path``).
        version: the version number; default the next free one.
        signature_name: key of the serving signature.
        check_inputs: one array, a list of arrays in model input order, or a dict keyed by input
            names; default random inputs (standard normal floats; integer inputs that feed an
            Embedding are ids within its vocabulary).
        rtol: smallest relative tolerance of the reload check (relative to max |output|).
        atol: absolute tolerance added to it.
        seed: seed of the random check inputs.
        batch_size: batch of the random check inputs.
        fold: optimise for inference first (fold BatchNorm/Rescaling, drop Dropout and noise);
            default True for tf_keras models and False for Keras 3 models (``True`` is an error
            there).
        preprocessing: optional model (the model's flavour) from raw inputs to the model's
            inputs; adds the signature ``preprocessing_signature_name`` that runs it first.
        preprocessing_signature_name: key of that signature.
        warmup: write TF Serving warm-up requests (the check inputs) into ``assets.extra/``.
        model_name: model name in the warm-up requests (default the Keras model's name).
        tflite: also write ``model.tflite`` beside ``saved_model.pb`` and check it.
        onnx: also write ``model.onnx`` beside ``saved_model.pb`` and check it.
        runtime_rtol: relative tolerance of the TFLite/ONNX checks against the SavedModel.
        verify: reload the export in a fresh Python process that never imports tfprune.
        allow_masked: export a model that still holds tfprune masks (with a warning) instead of
            refusing it.

    Raises:
        VersionExistsError: the version folder exists.
        ExportMismatchError: the reloaded SavedModel's outputs differ from the model's.
        UnsupportedModelError: the model still holds tfprune masks or TF-MOT wrappers.
        ExportError: writing, reloading or converting failed.
    """
    target, version = serving.version_dir(base_dir, version)
    return _export(
        model,
        target,
        overwrite=False,
        version=version,
        signature_name=signature_name,
        check_inputs=check_inputs,
        rtol=rtol,
        atol=atol,
        seed=seed,
        batch_size=batch_size,
        fold=fold,
        preprocessing=preprocessing,
        preprocessing_signature_name=preprocessing_signature_name,
        warmup=warmup,
        model_name=model_name,
        tflite=tflite,
        onnx=onnx,
        runtime_rtol=runtime_rtol,
        verify=verify,
        allow_masked=allow_masked,
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
