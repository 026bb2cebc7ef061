"""tfprune-prune: train (or load) a model, prune its filters, retrain, strip and export.

Runs on the embedded scikit-learn digits data by default and prints a before/after table
(params, FLOPs, accuracy, measured latency); with --export_dir it writes the stripped model
as a SavedModel there::

    python -m tfprune.bin.prune --sparsity=0.5 --importance=l1 --export_dir=/tmp/small

A model saved by tfprune-train (--load_model=<its output_dir>/model.keras) is tested on the
same held-out split it was trained beside (its split.json gives the dataset and seed).
"""

from __future__ import annotations

from absl import flags

from tfprune.bin.common import (
    Binary,
    define_data_flags,
    define_model_flags,
    define_runtime_flags,
    define_strategy_flag,
    define_training_flags,
)
from tfprune.choices import IMPORTANCE_NAMES

FLAGS = flags.FlagValues()
define_data_flags(FLAGS)
define_model_flags(FLAGS)
flags.DEFINE_string(
    "load_model",
    None,
    "Saved Keras model (.keras, .h5 or SavedModel folder) to prune instead of training one; "
    "its split.json (written by tfprune-train) sets the dataset split and default seed.",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "sparsity", 0.5, "Fraction of filters to remove per prunable layer.", flag_values=FLAGS
)
flags.DEFINE_enum(
    "importance", "l1", list(IMPORTANCE_NAMES), "Filter importance criterion.", flag_values=FLAGS
)
flags.DEFINE_integer("train_epochs", 15, "Epochs to train the base model.", flag_values=FLAGS)
flags.DEFINE_integer("retrain_epochs", 10, "Epochs to retrain the pruned model.", flag_values=FLAGS)
define_training_flags(FLAGS)
flags.DEFINE_float(
    "learning_rate", 0.05, "Base training learning rate (SGD, momentum 0.9).", flag_values=FLAGS
)
flags.DEFINE_float("retrain_learning_rate", 0.01, "Retraining learning rate.", flag_values=FLAGS)
flags.DEFINE_enum(
    "weight_decay_mode",
    "coupled",
    ["coupled", "decoupled"],
    "coupled: L2 added to the gradient before momentum (PyTorch SGD); decoupled: Keras'.",
    flag_values=FLAGS,
)
flags.DEFINE_boolean(
    "recalibrate_batch_norm",
    True,
    "Re-estimate the BatchNorm statistics on training batches after masking and after "
    "retraining; the table gives the accuracy before retraining both raw and recalibrated.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "export_dir",
    None,
    "Where to write the stripped SavedModel (a new or empty folder); nothing is saved without it.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Replace the tfprune export already in --export_dir (a folder holding other files is "
    "never replaced).",
    flag_values=FLAGS,
)
flags.DEFINE_string("plan_path", None, "Where to write the pruning plan (JSON).", flag_values=FLAGS)
flags.DEFINE_string(
    "output_dir",
    None,
    "Folder where the trained base model is cached (base_models/<base_id>/, the layout of "
    "tfprune-compare --output_dir: a later run with the same data, model, recipe and seed "
    "reuses it); without it the base model is trained in a temporary folder and not kept.",
    flag_values=FLAGS,
)
define_strategy_flag(FLAGS)
define_runtime_flags(FLAGS)

BINARY = Binary(
    "tfprune-prune",
    __doc__,
    FLAGS,
    job="tfprune.bin.jobs.prune",
    interrupted="rerun the same command (a base model finished in --output_dir is reused)",
)


def run() -> None:
    """Console-script entry point (``tfprune-prune``)."""
    BINARY.run()


if __name__ == "__main__":
    run()
