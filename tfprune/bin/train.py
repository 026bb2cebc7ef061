"""tfprune-train: train one base model and save it with its history.

Defaults train the MLP-7-Linear on the embedded digits data::

    python -m tfprune.bin.train --output_dir=/tmp/base --epochs=30 --schedule=0:0.01,20:0.001

Writes ``model.keras``, ``history.csv``, ``metrics.json``, ``environment.json`` and
``config.yaml`` into ``--output_dir``; the weights are also cached under
``<output_dir>/base_models/<base_id>/``, where ``tfprune-compare --output_dir=<same folder>``
finds and reuses them for runs with the same dataset, model, recipe and seed.
"""

from __future__ import annotations

import json

from absl import app, flags

from tfprune.bin.common import progress, run_main, runtime_overrides
from tfprune.configs import RecipeConfig, TrainConfig
from tfprune.distribute import STRATEGIES
from tfprune.errors import TfpruneError
from tfprune.protocols.runner import train_base_model

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits", "digits (embedded), mnist, cifar10, cifar100 or imagenet.")
flags.DEFINE_string("data_dir", None, "Folder with the dataset files (not for digits).")
flags.DEFINE_string("model", "mlp7_linear", "Zoo model name (see tfprune.models.list_models()).")
flags.DEFINE_string(
    "schedule", "0:0.01,20:0.001", "LR schedule, e.g. 0:0.1,80:0.01 or cosine:0.1:0."
)
flags.DEFINE_integer("epochs", 30, "Training epochs.")
flags.DEFINE_integer("batch_size", 100, "Global batch size.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.")
flags.DEFINE_integer("seed", 1, "Random seed (>= 0).")
flags.DEFINE_string("output_dir", None, "Where the model and its history go.")
flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.")
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> None:
    """Flags -> TrainConfig -> train_base_model -> metrics."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = TrainConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        model=FLAGS.model,
        recipe=RecipeConfig(
            schedule=FLAGS.schedule,
            epochs=FLAGS.epochs,
            batch_size=FLAGS.batch_size,
            momentum=FLAGS.momentum,
            weight_decay=FLAGS.weight_decay,
            optimizer=FLAGS.optimizer,
        ),
        seed=FLAGS.seed,
        output_dir=FLAGS.output_dir,
        strategy=FLAGS.strategy,
        **runtime_overrides(),
    )
    try:
        metrics = train_base_model(config, log=progress)
    except TfpruneError as err:
        raise app.UsageError(str(err)) from None
    print(json.dumps(metrics, indent=1))


def run() -> None:
    """Console-script entry point (``tfprune-train``)."""
    run_main(main, "tfprune-train")


if __name__ == "__main__":
    run()
