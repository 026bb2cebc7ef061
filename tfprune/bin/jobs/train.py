"""What ``tfprune-train`` does once its flags have parsed (see :mod:`tfprune.bin.train`)."""

from __future__ import annotations

import json

from absl import flags

from tfprune.bin.common import progress, runtime_overrides
from tfprune.configs import RecipeConfig, TrainConfig
from tfprune.protocols.runner import train_base_model


def main(args: flags.FlagValues) -> None:
    """Flags -> TrainConfig -> train_base_model -> metrics."""
    config = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        model=args.model,
        recipe=RecipeConfig(
            schedule=args.schedule,
            epochs=args.epochs,
            batch_size=args.batch_size,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            optimizer=args.optimizer,
        ),
        seed=args.seed,
        output_dir=args.output_dir,
        strategy=args.strategy,
        **runtime_overrides(args),
    )
    metrics = train_base_model(config, log=progress)
    print(json.dumps(metrics, indent=1))
