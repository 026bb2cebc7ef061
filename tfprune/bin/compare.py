r"""tfprune-compare: run a pruning comparison protocol's grid and print its results table.

With no flags it runs the default protocol (``finetune_lr``) on the embedded digits data::

    python -m tfprune.bin.compare --output_dir=results
    python -m tfprune.bin.compare --config=configs/finetune_lr_mnist.yaml --output_dir=/tmp/m
    python -m tfprune.bin.compare --output_dir=/tmp/d --params_override='seeds=[1,2,3]'
    python -m tfprune.bin.compare --output_dir=/tmp/mp --mixed_precision --jit_compile
    # know the cost first: the runs, their epochs, MACs and training FLOPs, and (with
    # --calibrate, a few seconds per distinct model) the estimated wall time on this machine:
    python -m tfprune.bin.compare --dry_run --calibrate
    # a cluster job array, task i of N (together they do exactly the runs of one process):
    python -m tfprune.bin.compare --config=... --output_dir=/shared/out \
        --shard_index=$i --num_shards=$N

Layers: the protocol's registered default → ``--config`` YAML → ``--params_override`` (repeatable;
``"a.b=1,c=x"`` or a YAML/JSON mapping). The resolved config is validated before anything trains
and saved as ``<output_dir>/config.yaml``; each run lands in ``<output_dir>/runs/<run_id>/``
(finished iff ``record.json`` exists, so a rerun only does the missing runs), the report in
``<output_dir>/report/``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from tfprune.bin.common import progress, run_main, runtime_overrides
from tfprune.distribute import STRATEGIES
from tfprune.errors import TfpruneError
from tfprune.protocols.calibration import process_seconds
from tfprune.protocols.cost import CostEstimator
from tfprune.protocols.cost_report import format_cost, format_count, format_seconds, format_totals
from tfprune.protocols.grids import PROTOCOLS, resolve_config
from tfprune.protocols.runner import check_shard, expand_config, plan_shard, run_protocol
from tfprune.protocols.spec import RunSpec

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "YAML config file (see configs/).")
flags.DEFINE_multi_string(
    "params_override", [], "Overrides on top of --config: 'a.b=1,c=x' or a YAML/JSON mapping."
)
flags.DEFINE_string(
    "protocol", None, "Protocol name (default: the config file's, else finetune_lr)."
)
flags.DEFINE_string(
    "output_dir", None, "Results folder (default: results/<protocol>); reruns resume in it."
)
flags.DEFINE_integer("shard_index", 0, "This process's shard, in [0, num_shards).", lower_bound=0)
flags.DEFINE_integer("num_shards", 1, "Number of shards the grid is split into.", lower_bound=1)
flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy of every run.")
flags.DEFINE_bool(
    "dry_run",
    False,
    "Validate the config, print it, the runs of this shard and their cost (epochs, examples, "
    "MACs, training FLOPs); run nothing.",
)
flags.DEFINE_bool(
    "calibrate",
    False,
    "With --dry_run: time each distinct model on this machine (a few seconds each) and print "
    "the estimated wall time of every run, of this shard and of the grid.",
)
flags.DEFINE_bool("list_protocols", False, "Print the protocols and exit.")


def _print_cost(specs: list[RunSpec], mine: list[RunSpec]) -> None:
    """The cost of this shard's runs, then the grid's (and every shard's) totals."""
    startup = process_seconds() or 0.0  # this process's start and imports, as a real run's
    estimator = CostEstimator(calibrate=FLAGS.calibrate, log=progress)
    if FLAGS.calibrate:
        progress(f"# calibrating on this machine (process start so far: {format_seconds(startup)})")
    sharded = FLAGS.num_shards > 1
    where = f"shard {FLAGS.shard_index}/{FLAGS.num_shards}" if sharded else "the grid"
    cost = estimator.estimate(mine, startup)
    print(f"\n# cost of {where} (one process, runs in this order):")
    print(format_cost(cost))
    if not sharded:
        return
    print(f"\n# the whole grid ({len(specs)} runs in one process):")
    print("\n".join(format_totals(estimator.estimate(specs, startup))))
    print("# every shard (each trains the bases its runs need unless another shard cached them):")
    for k in range(FLAGS.num_shards):
        cost = estimator.estimate(plan_shard(specs, k, FLAGS.num_shards), startup)
        line = f"#   shard {k}: {len(cost.runs)} runs, {len(cost.bases)} bases, "
        line += f"training FLOPs {format_count(cost.train_flops)}"
        if cost.seconds is not None:
            line += f", estimated {format_seconds(cost.seconds)}"
        print(line)


def main(argv: list[str]) -> None:
    """Flags -> ProtocolConfig -> run_protocol (prints progress and the results table)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.calibrate and not FLAGS.dry_run:
        raise app.UsageError(
            "--calibrate only estimates the wall time of a dry run; add --dry_run (nothing is "
            "trained then), or drop --calibrate to run the grid"
        )
    if FLAGS.list_protocols:
        for name, proto in sorted(PROTOCOLS.items()):
            print(f"{name}: {proto.description}")
        return
    try:
        check_shard(FLAGS.shard_index, FLAGS.num_shards)
        overrides = list(FLAGS.params_override)
        if runtime_overrides():
            overrides.append({"runtime": runtime_overrides()})
        config = resolve_config(FLAGS.protocol, FLAGS.config, overrides)
        output_dir = FLAGS.output_dir or os.path.join("results", config.protocol)
        if FLAGS.dry_run:
            specs = plan_shard(expand_config(config))
            mine = plan_shard(specs, FLAGS.shard_index, FLAGS.num_shards)
            print(config.to_yaml())
            print(f"# {len(specs)} runs in the grid, {len(mine)} in shard {FLAGS.shard_index}:")
            for spec in mine:
                print(f"#   {spec.run_id()}  {spec.cell}  seed={spec.seed}")
            _print_cost(specs, mine)
            return
        run_protocol(
            config,
            output_dir,
            shard_index=FLAGS.shard_index,
            num_shards=FLAGS.num_shards,
            strategy=FLAGS.strategy,
            log=progress,
            results=print,
        )
    except TfpruneError as err:
        raise app.UsageError(str(err)) from None


def run() -> None:
    """Console-script entry point (``tfprune-compare``)."""
    sys.stdout.reconfigure(line_buffering=True)
    run_main(main, "tfprune-compare")


if __name__ == "__main__":
    run()
