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

from absl import flags

from tfprune.bin.common import Binary, define_model_flags

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "model_path", None, "A saved tf_keras model (.keras, .h5 or SavedModel).", flag_values=FLAGS
)
flags.DEFINE_string(
    "model", None, "Zoo model name instead (--list_models prints them).", flag_values=FLAGS
)
define_model_flags(FLAGS, model=False)
flags.DEFINE_list(
    "input_shape", None, "Input shape H,W,C for a keras:<Application> model.", flag_values=FLAGS
)
flags.DEFINE_float(
    "sparsity", 0.0, "Prune and strip this fraction of filters first (0: none).", flag_values=FLAGS
)
flags.DEFINE_string(
    "base_dir",
    None,
    "TF Serving base folder (its --model_base_path): new, empty, or holding version folders.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "version", None, "Version folder (default: the next free one).", flag_values=FLAGS
)
flags.DEFINE_string(
    "signature_name", "serving_default", "Key of the serving signature.", flag_values=FLAGS
)
flags.DEFINE_bool(
    "fold", True, "Fold BatchNorm/Rescaling and drop Dropout/noise first.", flag_values=FLAGS
)
flags.DEFINE_bool(
    "warmup", True, "Write TF Serving warm-up requests (assets.extra/).", flag_values=FLAGS
)
flags.DEFINE_string("model_name", None, "Model name in the warm-up requests.", flag_values=FLAGS)
flags.DEFINE_float(
    "preprocess_scale",
    None,
    "Add a signature that takes raw inputs x and serves x*scale+offset.",
    flag_values=FLAGS,
)
flags.DEFINE_float("preprocess_offset", 0.0, "Offset of that preprocessing.", flag_values=FLAGS)
flags.DEFINE_enum(
    "raw_dtype",
    "uint8",
    ["uint8", "int32", "float32"],
    "dtype of the raw preprocessing input.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "preprocess_signature", "serving_preprocess", "Key of that signature.", flag_values=FLAGS
)
flags.DEFINE_bool("tflite", False, "Also write and check model.tflite.", flag_values=FLAGS)
flags.DEFINE_bool("onnx", False, "Also write and check model.onnx.", flag_values=FLAGS)
flags.DEFINE_bool(
    "verify",
    False,
    "Reload in a fresh process without tfprune; print signatures.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "allow_masked", False, "Export a model that still holds masks at full size.", flag_values=FLAGS
)
flags.DEFINE_float(
    "rtol", 1e-5, "Smallest relative tolerance of the reload check.", flag_values=FLAGS
)
flags.DEFINE_float(
    "runtime_rtol", 1e-4, "Relative tolerance of the TFLite/ONNX checks.", flag_values=FLAGS
)
flags.DEFINE_integer("batch_size", 2, "Batch of the random check inputs.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the random check inputs.", flag_values=FLAGS)
flags.mark_flag_as_required("base_dir", flag_values=FLAGS)

BINARY = Binary(
    "tfprune-export",
    __doc__,
    FLAGS,
    job="tfprune.bin.jobs.export",
    interrupted="rerun the same command (no version folder was written)",
)


def run() -> None:
    """Console-script entry point (``tfprune-export``)."""
    BINARY.run()


if __name__ == "__main__":
    run()
