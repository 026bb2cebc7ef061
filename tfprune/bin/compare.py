r"""tfprune-compare: run a pruning comparison protocol's grid and print its results table.

With no flags it runs the default protocol (``finetune_lr``) on the embedded digits data::

    python -m tfprune.bin.compare --output_dir=results
    python -m tfprune.bin.compare --config=configs/finetune_lr_mnist.yaml --output_dir=/tmp/m
    python -m tfprune.bin.compare --output_dir=/tmp/d --params_override='seeds=[1,2,3]'
    python -m tfprune.bin.compare --output_dir=/tmp/mp --mixed_precision --jit_compile
    # know the cost first: the runs, their epochs, MACs and training FLOPs, and (with
    # --calibrate, a few seconds per distinct model) the estimated wall time on this machine:
    python -m tfprune.bin.compare --dry_run --calibrate
    # first tune each method's retraining LR (the fair comparison: each at its best LR):
    python -m tfprune.bin.compare --output_dir=/tmp/d --tune_lr=0.1,0.01,0.001
    # a cluster job array, task i of N (together they do exactly the runs of one process):
    python -m tfprune.bin.compare --config=... --output_dir=/shared/out \
        --shard_index=$i --num_shards=$N

Layers: the protocol's registered default → ``--config`` YAML → ``--params_override`` (repeatable;
``"a.b=1,c=x"`` or a YAML/JSON mapping). ``--mixed_precision`` and ``--jit_compile`` replace the
config file's ``runtime`` values; a ``--params_override`` of the same field that disagrees with
the flag is an error naming both (``--mixed_precision`` and
``runtime.mixed_precision=mixed_bfloat16`` agree: the override names the policy). The resolved
config is validated before anything trains and saved as ``<output_dir>/config.yaml``; each run
lands in ``<output_dir>/runs/<run_id>/`` (finished iff ``record.json`` exists, so a rerun only
does the missing runs), the report in ``<output_dir>/report/``. ``--output_dir`` must be new,
empty, or a folder tfprune wrote.
"""

from __future__ import annotations

import sys

from absl import flags

from tfprune.bin.common import Binary, define_runtime_flags, define_strategy_flag

FLAGS = flags.FlagValues()
flags.DEFINE_string("config", None, "YAML config file (see configs/).", flag_values=FLAGS)
flags.DEFINE_multi_string(
    "params_override",
    [],
    "Overrides on top of --config: 'a.b=1,c=x' or a YAML/JSON mapping.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "protocol",
    None,
    "Protocol name (default: the config file's, else finetune_lr).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "output_dir",
    None,
    "Results folder (default: results/<protocol>); reruns resume in it.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "replace_config",
    False,
    "Run into an --output_dir that holds the runs of another config: its config.yaml and "
    "report are rewritten for this config (finished runs are kept). Without it, that is an "
    "error.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "shard_index", 0, "This process's shard, in [0, num_shards).", lower_bound=0, flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_shards", 1, "Number of shards the grid is split into.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_bool(
    "dry_run",
    False,
    "Validate the config, print it, the runs of this shard and their cost (epochs, examples, "
    "MACs, training FLOPs); run nothing.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "calibrate",
    False,
    "With --dry_run: time each distinct model on this machine (a few seconds each) and print "
    "the estimated wall time of every run, of this shard and of the grid.",
    flag_values=FLAGS,
)
flags.DEFINE_list(
    "tune_lr",
    [],
    "Instead of the grid, tune each pruning method's retraining LR over these LRs first "
    "(keras-tuner; each method's first run of the grid, its budget, --tune_schedule): trials "
    "are stored like runs under <output_dir>/tuning/, the best LRs printed and saved to "
    "<output_dir>/tuning/best_lr.json. Then set each method's LR in the config and run the grid.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "tune_schedule",
    "steps:{lr}:1e-4",
    "With --tune_lr: the retraining schedule of a trial, {lr} standing for the LR tried.",
    flag_values=FLAGS,
)
flags.DEFINE_bool("list_protocols", False, "Print the protocols and exit.", flag_values=FLAGS)
define_strategy_flag(FLAGS)
define_runtime_flags(FLAGS)

BINARY = Binary("tfprune-compare", __doc__, FLAGS, job="tfprune.bin.jobs.compare")


def run() -> None:
    """Console-script entry point (``tfprune-compare``)."""
    sys.stdout.reconfigure(line_buffering=True)  # one progress line per run, also into a log
    BINARY.run()


if __name__ == "__main__":
    run()
