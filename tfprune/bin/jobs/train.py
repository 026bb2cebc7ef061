"""What ``tfprune-train`` does once its flags have parsed (see :mod:`tfprune.bin.train`)."""

from __future__ import annotations

import json

from absl import flags

from tfprune import defaults
from tfprune.bin.common import progress, runtime_overrides
from tfprune.configs import TrainConfig
from tfprune.files import new_output_dir
from tfprune.protocols.runner import train_base_model
from tfprune.protocols.single_run import write_split
from tfprune.training import TrainingRecipe


def main(args: flags.FlagValues) -> None:
    """Flags -> TrainConfig -> train_base_model -> split record and metrics."""
    config = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        model=args.model,
        recipe=TrainingRecipe(
            schedule=args.schedule,
            epochs=args.epochs,
            batch_size=args.batch_size or defaults.batch_size(args.dataset),
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            optimizer=args.optimizer,
        ),
        seed=args.seed,
        output_dir=args.output_dir,
        strategy=args.strategy,
        **runtime_overrides(args),
    )
    config.validate()  # a bad flag creates no folder
    with new_output_dir(config.output_dir) as out:
        progress(f"held-out test split: {config.dataset}, seed {config.seed}")
        metrics = train_base_model(config, log=progress)
        split = write_split(metrics["model_path"], config.dataset, config.data_dir, config.seed)
    progress(f"saved {metrics['model_path']} and {split} (tfprune-prune --load_model reuses it)")
    progress(f"results in {out}")
    print(json.dumps(metrics, indent=1))
