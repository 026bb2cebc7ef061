"""tfprune-train: train one base model and save it with its history.

Defaults train small_cnn on the embedded digits data, printing each epoch::

    python -m tfprune.bin.train --output_dir=/tmp/base --epochs=30 --schedule=0:0.01,20:0.001

Writes ``model.keras``, ``split.json`` (the dataset, data folder and seed of its held-out test
split, which ``tfprune-prune --load_model`` reuses), ``history.csv``, ``metrics.json``,
``environment.json`` and ``config.yaml`` into ``--output_dir`` (a new or empty folder, or one
tfprune wrote); the weights are also cached under
``<output_dir>/base_models/<base_id>/``, where ``tfprune-compare --output_dir=<same folder>``
finds and reuses them for runs with the same dataset, model, recipe and seed.
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

FLAGS = flags.FlagValues()
define_data_flags(FLAGS)
define_model_flags(FLAGS)
flags.DEFINE_string(
    "schedule",
    "0:0.01,20:0.001",
    "LR schedule, e.g. 0:0.1,80:0.01 or cosine:0.1:0.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("epochs", 30, "Training epochs.", flag_values=FLAGS)
define_training_flags(FLAGS)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", flag_values=FLAGS)
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", None, "Where the model and its history go.", flag_values=FLAGS)
flags.mark_flag_as_required("output_dir", flag_values=FLAGS)
define_strategy_flag(FLAGS)
define_runtime_flags(FLAGS)

BINARY = Binary("tfprune-train", __doc__, FLAGS, job="tfprune.bin.jobs.train")


def run() -> None:
    """Console-script entry point (``tfprune-train``)."""
    BINARY.run()


if __name__ == "__main__":
    run()
