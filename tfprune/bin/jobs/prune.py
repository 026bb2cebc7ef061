"""What ``tfprune-prune`` does once its flags have parsed (see :mod:`tfprune.bin.prune`)."""

from __future__ import annotations

import os

from absl import flags

from tfprune.bin.common import progress, runtime_overrides
from tfprune.protocols.single_run import PruneRunConfig, run_prune


def main(args: flags.FlagValues) -> None:
    """Flags -> PruneRunConfig -> run_prune -> table, and where the results were saved."""
    config = PruneRunConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        model=args.model,
        load_model=args.load_model,
        sparsity=args.sparsity,
        importance=args.importance,
        train_epochs=args.train_epochs,
        retrain_epochs=args.retrain_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        retrain_learning_rate=args.retrain_learning_rate,
        weight_decay=args.weight_decay,
        weight_decay_mode=args.weight_decay_mode,
        recalibrate_batch_norm=args.recalibrate_batch_norm,
        # Unset: the loaded model's split seed (its split.json), else the shared default.
        seed=args.seed if args["seed"].present else None,
        strategy=args.strategy,
        export_dir=args.export_dir,
        overwrite=args.overwrite,
        output_dir=args.output_dir,
        **runtime_overrides(args),
    )
    result = run_prune(config, log=progress)
    print(result.table())
    print(f"{len(result.plan.groups)} channel groups pruned")
    if args.plan_path:
        result.plan.save(args.plan_path)
        print(f"plan written to {os.path.abspath(args.plan_path)}")
    if result.export_path:
        print(f"stripped model exported to {result.export_path}")
    elif not args.plan_path:
        print("nothing was saved (--export_dir saves the stripped model, --plan_path the plan)")
