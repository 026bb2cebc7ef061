"""Other runtimes: convert a SavedModel to TFLite and ONNX, run them, compare with TensorFlow.

TFLite conversion uses TensorFlow's own converter; the model runs with ``ai-edge-litert``'s
interpreter when installed, else ``tf.lite.Interpreter``. ONNX conversion uses ``tf2onnx`` and
runs with ``onnxruntime`` (the ``deploy`` extra: :data:`DEPLOY_EXTRA`). Both are float32
conversions (no quantisation), so outputs match TensorFlow's up to float rounding and kernel choice.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from tfprune.compat import KERAS3, conv_base_class, flavour_of, keras3_sublayers, tf
from tfprune.errors import TfpruneError
from tfprune.files import atomic_write_bytes
from tfprune.nested import all_layers

__all__ = [
    "DEPLOY_EXTRA",
    "convert_to_onnx",
    "convert_to_tflite",
    "onnx_blockers",
    "require",
    "run_onnx",
    "run_tflite",
]


#: How to install the optional packages of exports (ONNX, TF Serving warm-up requests).
DEPLOY_EXTRA = "pip install 'tfprune[deploy]' (from a clone of tfprune: pip install -e '.[deploy]')"


def require(*, tflite: bool = False, onnx: bool = False) -> None:
    """Raises TfpruneError naming the install command if a wanted runtime's packages are missing.

    TFLite needs nothing beyond TensorFlow; ONNX needs tf2onnx and onnxruntime.
    """
    del tflite  # part of TensorFlow
    if onnx:
        missing = [m for m in ("tf2onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise TfpruneError(
                f"ONNX export needs {' and '.join(missing)} (or pass onnx=False / --noonnx): "
                f"{DEPLOY_EXTRA}"
            )


def convert_to_tflite(
    saved_model_dir: str, output_path: str, *, signature_name: str = "serving_default"
) -> str:
    """Convert the SavedModel's ``signature_name`` to a float32 ``.tflite`` file (path returned)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[signature_name]
    )
    try:
        flatbuffer = converter.convert()
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise TfpruneError(f"TFLite conversion of {saved_model_dir!r} failed: {err}") from err
    with open(output_path, "wb") as f:
        f.write(flatbuffer)
    return output_path


def _interpreter(path: str) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter  # noqa: N806 - a class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return Interpreter(model_path=path)


def run_tflite(
    path: str, inputs: Mapping[str, np.ndarray], *, signature_name: str = "serving_default"
) -> dict[str, np.ndarray]:
    """Run a ``.tflite`` file's signature on ``inputs`` (by input name); outputs by name."""
    interpreter = _interpreter(path)
    runner = interpreter.get_signature_runner(signature_name)
    return {k: np.asarray(v) for k, v in runner(**dict(inputs)).items()}


@contextlib.contextmanager
def _tf2onnx_warnings_only() -> Iterator[None]:
    """tf2onnx's INFO lines (opset, rewriters, node counts) hidden while it converts."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        logger.setLevel(level)


def convert_to_onnx(
    saved_model_dir: str,
    output_path: str,
    *,
    signature_name: str = "serving_default",
    opset: int | None = None,
) -> str:
    """Convert the SavedModel's ``signature_name`` to ONNX with tf2onnx; returns the path.

    Input and output names of the ONNX graph are the signature's input and output names.
    """
    try:
        import tf2onnx
    except ImportError as err:
        raise TfpruneError(f"ONNX export needs tf2onnx: {DEPLOY_EXTRA}") from err
    loaded = tf.saved_model.load(saved_model_dir)  # keeps the variables alive while converting
    fn = loaded.signatures[signature_name]
    _, kwargs = fn.structured_input_signature
    specs = [tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in kwargs.items()]

    @tf.function(input_signature=specs)
    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        outs = fn(**{name: a for name, a in zip(kwargs, args)})
        return {k: tf.identity(v, name=k) for k, v in outs.items()}

    # Constants the loaded functions capture (a Normalization layer's mean and variance, say)
    # reach tf2onnx as extra graph inputs; they become initializers below.
    captured = {
        inner.name: outer.numpy()
        for outer, inner in serve.get_concrete_function().graph.captures
        if outer.dtype != tf.resource and hasattr(outer, "numpy")
    }
    try:
        with _tf2onnx_warnings_only():
            model_proto, _ = tf2onnx.convert.from_function(
                serve,
                input_signature=specs,
                opset=opset,
                custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
            )
        _inputs_to_initializers(model_proto, captured)
        atomic_write_bytes(output_path, model_proto.SerializeToString())
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise TfpruneError(f"ONNX conversion of {saved_model_dir!r} failed: {err}") from err
    return output_path


def _inputs_to_initializers(model_proto: Any, values: Mapping[str, np.ndarray]) -> None:
    """Turn the ONNX graph inputs named in ``values`` into constant initializers (or drop them)."""
    from onnx import numpy_helper  # installed with tf2onnx

    graph = model_proto.graph
    used = {name for node in graph.node for name in node.input}
    for inp in [i for i in graph.input if i.name in values]:
        graph.input.remove(inp)
        if inp.name in used:
            value = np.asarray(values[inp.name])
            graph.initializer.append(numpy_helper.from_array(value, inp.name))


def onnx_blockers(model: Any) -> list[str]:
    """Layers of ``model`` tf2onnx cannot convert, each with the reason (empty: none known).

    tf_keras and Keras 3 run a grouped convolution (``groups > 1``) through an XLA-compiled
    function, which tf2onnx leaves as a call it cannot translate; for tf_keras, one group per
    input channel is rewritten as a depthwise convolution by
    :func:`tfprune.optimize_for_inference` first.
    """
    if flavour_of(model) == KERAS3:
        who = "Keras 3"
        convs = [la for la in keras3_sublayers(model) if hasattr(la, "kernel")]
    else:
        who = "tf_keras"
        convs = [la for la in all_layers(model) if isinstance(la, conv_base_class)]
    out = []
    for layer in convs:
        groups = int(getattr(layer, "groups", 1) or 1)
        if groups > 1:
            out.append(
                f"{layer.name!r} ({type(layer).__name__}, groups={groups}): {who} runs a "
                "grouped convolution as an XLA-compiled function, which tf2onnx cannot convert"
            )
    return out


def _erfc_as_one_minus_erf(ctx: Any, node: Any, name: str, args: list) -> Any:
    """tf2onnx handler: ``erfc(x)`` as ``1 - erf(x)`` (ONNX has Erf, not Erfc).

    Keras' exact GELU (ConvNeXt, ViTs) computes ``0.5 * x * erfc(-x / sqrt(2))``; without this
    tf2onnx leaves an ``Erfc`` node that onnxruntime cannot load.
    """
    from tf2onnx.utils import map_onnx_to_numpy_type  # optional dependency, present here

    (x,) = node.input
    dtype = map_onnx_to_numpy_type(ctx.get_dtype(x))
    erf = ctx.make_node("Erf", [x], op_name_scope=node.name)
    one = ctx.make_const(f"{node.name}/one", np.array(1, dtype=dtype))
    node.type = "Sub"
    node.domain = ""
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
    return node


def run_onnx(path: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX file with onnxruntime (CPU) on ``inputs``; outputs by signature name."""
    try:
        import onnxruntime
    except ImportError as err:
        raise TfpruneError(f"running ONNX needs onnxruntime: {DEPLOY_EXTRA}") from err
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {}
    for info in session.get_inputs():
        name = info.name.split(":")[0]
        feeds[info.name] = np.asarray(inputs[name])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    return {_onnx_output_name(n): np.asarray(v) for n, v in zip(names, values)}


def _onnx_output_name(name: str) -> str:
    """tf2onnx names outputs after the graph tensors (``Identity:0``, ``fc:0``)."""
    return name.split(":")[0]
