"""tfprune-export: write a checked TF Serving export (``<base_dir>/<version>/``) of a model.

Loads a saved Keras model (``--model_path``) or builds a zoo model (``--model``, e.g. ``resnet20``
or ``keras:MobileNetV2``), optionally prunes and strips it (``--sparsity``), folds BatchNorm for
inference (``--nofold`` to keep it), writes the SavedModel with warm-up requests into the next
free version folder, and checks the reloaded export against the model. ``--tflite`` / ``--onnx``
write converted models beside ``saved_model.pb``; ``--verify`` reloads the export in a fresh
Python process that never imports tfprune and prints its signatures::

    python -m tfprune.bin.export --model=resnet20 --sparsity=0.5 --base_dir=/tmp/serving --verify
"""

from __future__ import annotations

import os

from absl import app, flags

import tfprune
from tfprune.bin.common import run_main
from tfprune.compat import keras
from tfprune.deploy.serving import signature_text
from tfprune.errors import TfpruneError
from tfprune.models import get_model
from tfprune.pruning import custom_objects

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A saved tf_keras model (.keras, .h5 or SavedModel).")
flags.DEFINE_string("model", None, "Zoo model name instead (see tfprune.models.list_models()).")
flags.DEFINE_list("input_shape", None, "Input shape H,W,C for a keras:<Application> model.")
flags.DEFINE_float("sparsity", 0.0, "Prune and strip this fraction of filters first (0: none).")
flags.DEFINE_string("base_dir", None, "TF Serving base folder (--model_base_path).")
flags.DEFINE_integer("version", None, "Version folder (default: the next free one).")
flags.DEFINE_string("signature_name", "serving_default", "Key of the serving signature.")
flags.DEFINE_bool("fold", True, "Fold BatchNorm/Rescaling and drop Dropout/noise first.")
flags.DEFINE_bool("warmup", True, "Write TF Serving warm-up requests (assets.extra/).")
flags.DEFINE_string("model_name", None, "Model name in the warm-up requests.")
flags.DEFINE_float(
    "preprocess_scale", None, "Add a signature that takes raw inputs x and serves x*scale+offset."
)
flags.DEFINE_float("preprocess_offset", 0.0, "Offset of that preprocessing.")
flags.DEFINE_enum(
    "raw_dtype", "uint8", ["uint8", "int32", "float32"], "dtype of the raw preprocessing input."
)
flags.DEFINE_string("preprocess_signature", "serving_preprocess", "Key of that signature.")
flags.DEFINE_bool("tflite", False, "Also write and check model.tflite.")
flags.DEFINE_bool("onnx", False, "Also write and check model.onnx.")
flags.DEFINE_bool("verify", False, "Reload in a fresh process without tfprune; print signatures.")
flags.DEFINE_bool("allow_masked", False, "Export a model that still holds masks at full size.")
flags.DEFINE_float("rtol", 1e-5, "Smallest relative tolerance of the reload check.")
flags.DEFINE_float("runtime_rtol", 1e-4, "Relative tolerance of the TFLite/ONNX checks.")
flags.DEFINE_integer("batch_size", 2, "Batch of the random check inputs.")
flags.DEFINE_integer("seed", 0, "Seed of the random check inputs.")
flags.mark_flag_as_required("base_dir")


def _load_model():
    """The model from --model_path or --model (with --input_shape)."""
    if (FLAGS.model_path is None) == (FLAGS.model is None):
        raise app.UsageError("pass exactly one of --model_path and --model")
    if FLAGS.model_path is not None:
        if not os.path.exists(FLAGS.model_path):
            raise app.UsageError(f"--model_path={FLAGS.model_path!r} does not exist")
        with keras.utils.custom_object_scope(custom_objects()):
            return keras.models.load_model(FLAGS.model_path, compile=False)
    kwargs = {}
    if FLAGS.input_shape:
        if not FLAGS.model.startswith("keras:"):
            raise app.UsageError("--input_shape applies to keras:<Application> models only")
        try:
            kwargs["input_shape"] = tuple(int(d) for d in FLAGS.input_shape)
        except ValueError:
            msg = f"--input_shape must be integers, got {FLAGS.input_shape}"
            raise app.UsageError(msg) from None
    return get_model(FLAGS.model, **kwargs)


def _preprocessing(model):
    """A Rescaling model raw -> model input, from the --preprocess_* flags (or None)."""
    if FLAGS.preprocess_scale is None:
        return None
    if len(model.inputs) != 1:
        raise app.UsageError("--preprocess_scale needs a model with one input")
    (inp,) = model.inputs
    raw = keras.Input(tuple(inp.shape[1:]), dtype=FLAGS.raw_dtype, name=model.input_names[0])
    # Rescaling casts its input to its own float dtype first.
    x = keras.layers.Rescaling(FLAGS.preprocess_scale, FLAGS.preprocess_offset, name="rescale")(raw)
    return keras.Model(raw, x, name="preprocessing")


def main(argv: list[str]) -> None:
    """Flags -> model -> (shrink) -> export_for_serving -> summary and signatures."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not 0.0 <= FLAGS.sparsity < 1.0:
        raise app.UsageError(f"--sparsity must be in [0, 1), got {FLAGS.sparsity}")
    try:
        model = _load_model()
        if FLAGS.sparsity > 0:
            model = tfprune.shrink(model, FLAGS.sparsity)
        result = tfprune.export_for_serving(
            model,
            FLAGS.base_dir,
            version=FLAGS.version,
            signature_name=FLAGS.signature_name,
            fold=FLAGS.fold,
            preprocessing=_preprocessing(model),
            preprocessing_signature_name=FLAGS.preprocess_signature,
            warmup=FLAGS.warmup,
            model_name=FLAGS.model_name,
            tflite=FLAGS.tflite,
            onnx=FLAGS.onnx,
            verify=FLAGS.verify,
            allow_masked=FLAGS.allow_masked,
            rtol=FLAGS.rtol,
            runtime_rtol=FLAGS.runtime_rtol,
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
        )
    except TfpruneError as err:
        raise app.UsageError(str(err)) from None
    print(result.summary())
    if result.verify is not None:
        print(result.verify["signatures"])
    else:
        print(signature_text(result.path))


def run() -> None:
    """Console-script entry point (``tfprune-export``)."""
    run_main(main, "tfprune-export")


if __name__ == "__main__":
    run()
