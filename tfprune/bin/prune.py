"""tfprune-prune: train (or load) a model, prune its filters, retrain, strip and export.

Runs on the embedded scikit-learn digits data by default and prints a before/after table
(params, FLOPs, accuracy, measured latency)::

    python -m tfprune.bin.prune --sparsity=0.5 --importance=l1 --export_dir=/tmp/small
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from tfprune.bin.common import progress, run_main, runtime_overrides
from tfprune.distribute import STRATEGIES
from tfprune.errors import TfpruneError
from tfprune.importance import IMPORTANCE_NAMES
from tfprune.protocols.single_run import PruneRunConfig, run_prune

_D = "digits"
FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", _D, "digits (embedded), mnist, cifar10, cifar100 or imagenet.")
flags.DEFINE_string("data_dir", None, "Folder with the dataset files (not needed for digits).")
flags.DEFINE_string("model", "small_cnn", "Zoo model name (see tfprune.models.list_models()).")
flags.DEFINE_string("load_model", None, "Saved Keras model to prune instead of training one.")
flags.DEFINE_float("sparsity", 0.5, "Fraction of filters to remove per prunable layer.")
flags.DEFINE_enum("importance", "l1", list(IMPORTANCE_NAMES), "Filter importance criterion.")
flags.DEFINE_integer("train_epochs", 15, "Epochs to train the base model.")
flags.DEFINE_integer("retrain_epochs", 10, "Epochs to retrain the pruned model.")
flags.DEFINE_integer("batch_size", 64, "Per-replica batch size.")
flags.DEFINE_float("learning_rate", 0.05, "Base training learning rate (SGD, momentum 0.9).")
flags.DEFINE_float("retrain_learning_rate", 0.01, "Retraining learning rate.")
flags.DEFINE_float("weight_decay", 0.0, "Weight decay of training and retraining.")
flags.DEFINE_enum(
    "weight_decay_mode",
    "coupled",
    ["coupled", "decoupled"],
    "coupled: L2 added to the gradient before momentum (PyTorch SGD); decoupled: Keras'.",
)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_string("export_dir", None, "Where to write the stripped SavedModel.")
flags.DEFINE_string("plan_path", None, "Where to write the pruning plan (JSON).")


def main(argv: list[str]) -> None:
    """Flags -> PruneRunConfig -> run_prune -> table."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = PruneRunConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        model=FLAGS.model,
        load_model=FLAGS.load_model,
        sparsity=FLAGS.sparsity,
        importance=FLAGS.importance,
        train_epochs=FLAGS.train_epochs,
        retrain_epochs=FLAGS.retrain_epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        retrain_learning_rate=FLAGS.retrain_learning_rate,
        weight_decay=FLAGS.weight_decay,
        weight_decay_mode=FLAGS.weight_decay_mode,
        seed=FLAGS.seed,
        strategy=FLAGS.strategy,
        export_dir=FLAGS.export_dir,
        **runtime_overrides(),
    )
    try:
        result = run_prune(config, log=progress)
    except TfpruneError as e:
        raise app.UsageError(str(e)) from None
    print(result.table())
    if FLAGS.plan_path:
        result.plan.save(FLAGS.plan_path)
        print(f"plan written to {os.path.abspath(FLAGS.plan_path)}")
    print(json.dumps({"groups_pruned": len(result.plan.groups)}))


def run() -> None:
    """Console-script entry point (``tfprune-prune``)."""
    run_main(main, "tfprune-prune")


if __name__ == "__main__":
    run()
