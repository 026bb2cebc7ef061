"""What ``tfprune-compare`` does once its flags have parsed (see :mod:`tfprune.bin.compare`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from absl import app, flags

from tfprune.bin.common import progress, runtime_overrides
from tfprune.configs import ProtocolConfig, parse_params_override
from tfprune.errors import ConfigError, DatasetNotFoundError, InvalidArgumentError
from tfprune.files import new_output_dir
from tfprune.protocols.cost.calibration import process_seconds
from tfprune.protocols.cost.estimate import CostEstimator
from tfprune.protocols.cost.report import format_cost, format_count, format_seconds, format_totals
from tfprune.protocols.grids import PROTOCOLS, resolve_config
from tfprune.protocols.runner import (
    check_output_config,
    check_shard,
    expand_config,
    plan_shard,
    run_protocol,
)
from tfprune.protocols.spec import RunSpec
from tfprune.protocols.store import RunStore
from tfprune.protocols.tuning import TUNING_DIR, tune_grid_methods
from tfprune.runtime import resolve_precision


def _flag_text(name: str, value: bool) -> str:
    return f"--{name}" if value else f"--no{name}"


def _same_setting(name: str, flag: bool, value: Any) -> bool:
    """Whether a ``runtime.<name>`` override says what the flag says (an unreadable value: yes).

    ``--mixed_precision`` and a mixed policy name agree: the name picks the policy.
    """
    if name == "jit_compile":
        return not isinstance(value, bool) or value == flag
    try:
        return (resolve_precision(value) != "float32") == flag
    except InvalidArgumentError:
        return True  # the config's own check names the bad value


def _apply_runtime_flags(config: ProtocolConfig, args: flags.FlagValues) -> ProtocolConfig:
    """``--mixed_precision``/``--jit_compile`` over the resolved config (see the tool's doc).

    A flag replaces the config file's value; a ``--params_override`` of the same field that
    disagrees with it is refused, naming both.
    """
    given: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for text in args.params_override:
        runtime = parse_params_override(text).get("runtime")
        if isinstance(runtime, dict):
            given.update(runtime)
    for name, flag in runtime_overrides(args).items():
        if name in given and not _same_setting(name, flag, given[name]):
            value = given[name]
            shown = str(value).lower() if isinstance(value, bool) else value
            raise ConfigError(
                f"{_flag_text(name, flag)} and --params_override runtime.{name}={shown} "
                f"disagree; give the setting once (drop the flag or the override)"
            )
        if name == "mixed_precision" and flag and config.runtime.mixed_precision:
            continue  # the config already names a mixed policy
        changes[name] = flag
    runtime = dataclasses.replace(config.runtime, **changes).validated()
    return dataclasses.replace(config, runtime=runtime)


def _print_cost(
    specs: list[RunSpec], mine: list[RunSpec], args: flags.FlagValues, skipped: int = 0
) -> None:
    """The cost of ``mine``, then the grid's totals and every shard's.

    ``mine`` are this shard's runs still to do; ``skipped`` of the shard are finished already.
    """
    startup = process_seconds() or 0.0  # this process's start and imports, as a real run's
    estimator = CostEstimator(calibrate=args.calibrate, log=progress)
    if args.calibrate:
        progress(f"# calibrating on this machine (process start so far: {format_seconds(startup)})")
    sharded = args.num_shards > 1
    where = f"shard {args.shard_index}/{args.num_shards}" if sharded else "the grid"
    cost = estimator.estimate(mine, startup)
    left = f", the {len(mine)} runs not finished yet" if skipped else ""
    print(f"\n# cost of {where}{left} (one process, runs in this order):")
    print(format_cost(cost))
    if not sharded:
        return
    print(f"\n# the whole grid ({len(specs)} runs in one process):")
    print("\n".join(format_totals(estimator.estimate(specs, startup))))
    print("# every shard (each trains the bases its runs need unless another shard cached them):")
    for k in range(args.num_shards):
        cost = estimator.estimate(plan_shard(specs, k, args.num_shards), startup)
        line = f"#   shard {k}: {len(cost.runs)} runs, {len(cost.bases)} bases, "
        line += f"training FLOPs {format_count(cost.train_flops)}"
        if cost.seconds is not None:
            line += f", estimated {format_seconds(cost.seconds)}"
        print(line)


def main(args: flags.FlagValues) -> None:
    """Flags -> ProtocolConfig -> run_protocol (prints progress and the results table)."""
    if args.calibrate and not args.dry_run:
        raise app.UsageError(
            "--calibrate only estimates the wall time of a dry run; add --dry_run (nothing is "
            "trained then), or drop --calibrate to run the grid"
        )
    if args.list_protocols:
        for name, proto in sorted(PROTOCOLS.items()):
            print(f"{name}: {proto.description}")
        return
    check_shard(args.shard_index, args.num_shards)
    if args.tune_lr and (args.dry_run or args.num_shards > 1):
        raise app.UsageError(
            "--tune_lr tunes in one process before the grid; drop --dry_run and --num_shards"
        )
    overrides = list(args.params_override)
    if args.dry_run:
        _dry_run(args, overrides)
        return
    config = _apply_runtime_flags(resolve_config(args.protocol, args.config, overrides), args)
    output_dir = args.output_dir or os.path.join("results", config.protocol)
    if args.tune_lr:
        _tune(config, output_dir, args)
        return
    with new_output_dir(output_dir):  # a run that fails before any result leaves no folder
        run_protocol(
            config,
            output_dir,
            shard_index=args.shard_index,
            num_shards=args.num_shards,
            strategy=args.strategy,
            log=progress,
            results=print,
            replace_config=args.replace_config,
        )


def _dry_run(args: flags.FlagValues, overrides: list) -> None:
    """Print the config, this shard's runs (marking those finished in --output_dir) and the cost.

    The dataset files need not exist: the grid is sized from the datasets' standard sizes.
    """
    try:
        config = resolve_config(args.protocol, args.config, overrides)
        missing_data = None
    except DatasetNotFoundError as err:
        config = resolve_config(args.protocol, args.config, overrides, check_files=False)
        missing_data = str(err).splitlines()[0].split(". Expected")[0].rstrip(":. ")
    config = _apply_runtime_flags(config, args)
    output_dir = args.output_dir or os.path.join("results", config.protocol)
    specs = plan_shard(expand_config(config))
    mine = plan_shard(specs, args.shard_index, args.num_shards)
    try:
        check_output_config(config, output_dir, args.replace_config)
        used_by_another = None
    except ConfigError as err:
        used_by_another = str(err)
    store = RunStore(output_dir)
    finished = {s.run_id() for s in specs if store.is_finished(s.run_id())}
    todo = [s for s in mine if s.run_id() not in finished]
    print(config.to_yaml())
    if used_by_another:
        print(f"# a run would fail: {used_by_another}")
    if missing_data:
        print(f"# {missing_data}: sized from the dataset's standard size (a run needs the files)")
    print(
        f"# {len(specs)} runs in the grid, {len(mine)} in shard {args.shard_index}; "
        f"{len(finished)} of the grid already finished in {output_dir}, {len(todo)} of this "
        "shard to run:"
    )
    for spec in mine:
        mark = "  (finished)" if spec.run_id() in finished else ""
        print(f"#   {spec.run_id()}  {spec.cell}  seed={spec.seed}{mark}")
    _print_cost(specs, todo, args, skipped=len(mine) - len(todo))


def _lrs(values: list[str]) -> list[float]:
    """The --tune_lr values as LRs > 0."""
    try:
        lrs = [float(v) for v in values]
    except ValueError:
        lrs = []
    if not lrs or any(not lr > 0 for lr in lrs):
        raise app.UsageError(f"--tune_lr must be LRs > 0 like 0.1,0.01, got {','.join(values)}")
    return lrs


def _tune(config: ProtocolConfig, output_dir: str, args: flags.FlagValues) -> None:
    """--tune_lr: each method's LR search, then one line per method with its best LR."""
    lrs = _lrs(args.tune_lr)
    with new_output_dir(output_dir):
        results = tune_grid_methods(
            config,
            output_dir,
            lrs,
            schedule_template=args.tune_schedule,
            strategy=args.strategy,
            log=progress,
            replace_config=args.replace_config,
        )
    for method, res in results.items():
        tried = ", ".join(f"{lr:g}: {res.values[lr]:.4f}" for lr in lrs if lr in res.values)
        print(f"{method}: best LR {res.best_lr:g} ({tried})")
    print(f"trials and best_lr.json: {os.path.join(output_dir, TUNING_DIR)}")
