"""tfprune-train: train one base model and save it with its history.

Defaults train the MLP-7-Linear on the embedded digits data::

    python -m tfprune.bin.train --output_dir=/tmp/base --epochs=30 --schedule=0:0.01,20:0.001

Writes ``model.keras``, ``history.csv``, ``metrics.json``, ``environment.json`` and
``config.yaml`` into ``--output_dir``; the weights are also cached under
``<output_dir>/base_models/<base_id>/``, where ``tfprune-compare --output_dir=<same folder>``
finds and reuses them for runs with the same dataset, model, recipe and seed.
"""

from __future__ import annotations

from absl import flags

from tfprune.bin.common import Binary, define_data_flags, define_runtime_flags, define_strategy_flag

FLAGS = flags.FlagValues()
define_data_flags(FLAGS)
flags.DEFINE_string(
    "model", "mlp7_linear", "Zoo model name (see tfprune.models.list_models()).", flag_values=FLAGS
)
flags.DEFINE_string(
    "schedule",
    "0:0.01,20:0.001",
    "LR schedule, e.g. 0:0.1,80:0.01 or cosine:0.1:0.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("epochs", 30, "Training epochs.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 100, "Global batch size.", flag_values=FLAGS)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", flag_values=FLAGS)
flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay.", flag_values=FLAGS)
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 1, "Random seed (>= 0).", flag_values=FLAGS)
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
