"""Run a protocol's grid: expand → shard → skip finished runs → execute → record → report.

:func:`run_protocol` is what ``tfprune-compare`` calls. Runs are identified by
:meth:`RunSpec.run_id` (a content hash), sharded deterministically (sorted by id, index modulo
``num_shards``) so that any number of processes or cluster array jobs together produce exactly the
runs one process would, and stored with :class:`~tfprune.protocols.store.RunStore` (a run is
finished iff its ``record.json`` exists), so that a rerun after a crash or kill only does the
runs that are missing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tfprune.compat import tf
from tfprune.configs import dump_yaml
from tfprune.configs.base import load_yaml
from tfprune.configs.protocol import CONFIG_FILE, ProtocolConfig, save_config
from tfprune.distribute import get_strategy, is_chief, is_multi_worker
from tfprune.errors import ConfigError, RunFailedError, TfpruneError
from tfprune.files import atomic_write_json, atomic_write_text, ensure_output_dir
from tfprune.flops import count_flops, count_params
from tfprune.protocols.execute import execute, get_base_model
from tfprune.protocols.grids import PROTOCOLS
from tfprune.protocols.report import check_report_dir, write_report
from tfprune.protocols.spec import BaseSpec, RunRecord, RunSpec, canonical_json
from tfprune.protocols.store import GRID_FILE, RunStore, environment_info, history_to_csv
from tfprune.runtime import Runtime

__all__ = [
    "apply_runtime",
    "check_output_config",
    "check_shard",
    "expand_config",
    "plan_shard",
    "run_one",
    "run_protocol",
    "train_base_model",
]

logger = logging.getLogger(__name__)

ExecuteFn = Callable[..., RunRecord]


def check_shard(shard_index: int, num_shards: int) -> None:
    """``0 <= shard_index < num_shards`` with ``num_shards >= 1``, else :class:`ConfigError`."""
    for name, value in (("shard_index", shard_index), ("num_shards", num_shards)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if num_shards < 1:
        raise ConfigError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ConfigError(
            f"shard_index must be in [0, {num_shards - 1}] for num_shards={num_shards}, "
            f"got {shard_index}"
        )


def plan_shard(
    specs: Sequence[RunSpec], shard_index: int = 0, num_shards: int = 1
) -> list[RunSpec]:
    """The runs of one shard: unique specs sorted by run id, every ``num_shards``-th from index.

    The union over ``shard_index = 0 .. num_shards-1`` is exactly the whole (deduplicated) grid,
    and the shards are disjoint.
    """
    check_shard(shard_index, num_shards)
    unique = {s.run_id(): s for s in specs}
    ordered = [unique[k] for k in sorted(unique)]
    return [s for i, s in enumerate(ordered) if i % num_shards == shard_index]


def apply_runtime(specs: Sequence[RunSpec], runtime: Runtime) -> list[RunSpec]:
    """``specs`` computing under ``runtime``: its precision and XLA setting in their options.

    Only settings other than the default (``float32``, no XLA) are written, so the run ids of
    float32 runs stay what they were; a mixed-precision run is another run with another base.
    """
    extra: dict[str, Any] = {}
    if runtime.precision != "float32":
        extra["precision"] = runtime.precision
    if runtime.jit_compile:
        extra["jit_compile"] = True
    if not extra:
        return list(specs)
    return [dataclasses.replace(s, options={**s.options, **extra}) for s in specs]


def expand_config(
    config: ProtocolConfig | Mapping[str, Any], registry: Mapping[str, Any] | None = None
) -> list[RunSpec]:
    """Every run of a resolved protocol config: the protocol's grid under the config's runtime.

    Raises:
      ConfigError: unknown protocol, or a bad ``runtime`` section.
    """
    config = _as_config(config)
    if registry is None:
        registry = PROTOCOLS
    if config.protocol not in registry:
        raise ConfigError(
            f"unknown protocol {config.protocol!r}; known: {', '.join(sorted(registry))}"
        )
    specs = registry[config.protocol].expand(config.params)
    return apply_runtime(specs, config.runtime.resolve())


def _as_config(config: ProtocolConfig | Mapping[str, Any]) -> ProtocolConfig:
    if isinstance(config, ProtocolConfig):
        return config
    return ProtocolConfig.from_flat_dict(config)


def _defining(config: ProtocolConfig) -> dict[str, Any]:
    """The parts of a config that decide its runs and report (not how the runner behaves)."""
    out = {k: v for k, v in config.to_dict().items() if k not in ("runner", "output")}
    return json.loads(canonical_json(out))


def _value_text(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_output_config(
    config: ProtocolConfig, output_dir: str | Path, replace_config: bool = False
) -> None:
    """Refuse to run ``config`` into a results folder whose ``config.yaml`` is another config.

    A folder's ``config.yaml`` says which config made its runs and its report; running another
    config there would silently replace both. The same config (a rerun, another shard) or a
    folder without ``config.yaml`` passes; so does anything with ``replace_config``.

    Raises:
      ConfigError: naming both configs (the settings that differ) and the fixes.
    """
    path = Path(output_dir) / CONFIG_FILE
    if replace_config or not path.exists():
        return
    fix = (
        f"give another --output_dir, or add --replace_config (replace_config=True from Python) "
        f"to run this config there: {path} and the report are rewritten, finished runs are kept"
    )
    try:
        saved = _defining(ProtocolConfig.from_flat_dict(load_yaml(path)))
    except TfpruneError as err:
        reason = " ".join(str(err).split())
        raise ConfigError(
            f"--output_dir={str(output_dir)!r} was used, but its {CONFIG_FILE}, which says "
            f"what config made its runs, cannot be read ({reason}); {fix}"
        ) from None
    new = _defining(config)
    if saved == new:
        return
    keys = [k for k in (*saved, *(k for k in new if k not in saved)) if saved.get(k) != new.get(k)]
    shown = ", ".join(
        f"{k}: {_value_text(saved.get(k))} there, {_value_text(new.get(k))} here" for k in keys[:4]
    )
    more = f" (and {len(keys) - 4} more)" if len(keys) > 4 else ""
    raise ConfigError(
        f"--output_dir={str(output_dir)!r} holds the runs of another config ({path} "
        f"differs from this command's config in {shown}{more}); {fix}"
    )


def _device_names() -> list[str]:
    return [d.name for d in tf.config.list_logical_devices()]


def _bar(done: int, total: int, started: float) -> str:
    """``[#####     ] 3/18 (00:45 elapsed, ETA 03:46)``: tqdm's meter as one log line."""
    return tqdm.format_meter(
        done,
        total,
        time.monotonic() - started,
        ascii=" #",
        bar_format="[{bar:20}] {n_fmt}/{total_fmt} ({elapsed} elapsed, ETA {remaining})",
    )


def _metric_text(record: RunRecord) -> str:
    m = record.metrics
    parts = []
    for key in ("final_acc", "best_acc"):
        if isinstance(m.get(key), (int, float)):
            parts.append(f"{key}={m[key]:.4f}")
    return " ".join(parts)


def run_one(
    spec: RunSpec,
    store: RunStore,
    output_dir: str | Path,
    execute_fn: ExecuteFn,
    strategy: Any,
    log: Callable[[str], None],
    environment: Mapping[str, Any],
    bar: str,
) -> RunRecord:
    """Execute one run and store it: spec and environment first, ``record.json`` last.

    ``output_dir`` is the results folder ``execute_fn`` works in (its base-model cache);
    ``store`` keeps the run's files; ``bar`` starts the progress line. A failing run leaves its
    ``error.json`` and re-raises.
    """
    run_id = spec.run_id()
    log(f"{bar} run {run_id} ({spec.cell}, seed {spec.seed}) starting")
    store.prepare(run_id, spec.to_dict(), environment)
    t0 = time.monotonic()
    try:
        record = execute_fn(spec, str(output_dir), strategy=strategy, log=log)
        if not isinstance(record, RunRecord):
            raise TypeError(f"execute returned {type(record).__name__}, not a RunRecord")
        if record.run_id != run_id:
            raise RuntimeError(
                f"run {run_id}: its record describes another run "
                f"({record.run_id}); the report would drop it. This is a bug "
                "in the method that ran; please report it"
            )
        record.metrics.setdefault("wall_seconds", time.monotonic() - t0)
        store.write_history(run_id, record.history)
        store.write_record(run_id, record.to_dict())
    except Exception as err:
        store.write_error(run_id, err)
        raise
    return record


def run_protocol(
    config: ProtocolConfig | Mapping[str, Any],
    output_dir: str | Path,
    *,
    shard_index: int = 0,
    num_shards: int = 1,
    strategy: Any = "default",
    log: Callable[[str], None] | None = None,
    results: Callable[[str], None] | None = None,
    registry: Mapping[str, Any] | None = None,
    execute_fn: ExecuteFn | None = None,
    replace_config: bool = False,
) -> list[RunRecord]:
    """Run (this shard of) the protocol grid into ``output_dir`` and return its records.

    Args:
      config: A resolved :class:`~tfprune.configs.ProtocolConfig` (or its flat dict form).
      output_dir: Results folder (``config.yaml``, ``grid.json``, ``runs/<id>/``, ``report/``).
      shard_index: This process's shard, in ``[0, num_shards)``.
      num_shards: Number of shards the grid is split into (cluster job arrays).
      strategy: ``tf.distribute`` strategy name (see :data:`tfprune.choices.STRATEGIES`) or
        object, passed to every run.
      log: Progress lines go here.
      results: The results table (verdicts and the compact table) goes here (default: ``log``).
      registry: Protocol registry (default :data:`tfprune.protocols.grids.PROTOCOLS`).
      execute_fn: Runs one spec: ``execute_fn(spec, workdir, strategy=..., log=...)``
        (default :func:`tfprune.protocols.execute.execute`).
      replace_config: Run even when ``output_dir`` holds the runs of another config (its
        ``config.yaml`` and report are then rewritten; finished runs are kept).

    Returns:
      The records of this shard's runs (finished earlier or now), sorted by run id.

    Raises:
      ConfigError: unknown protocol, bad shard arguments, ``output_dir`` holds another
        config's runs (see :func:`check_output_config`) or its ``report`` is not a folder.
      RunFailedError: with ``runner.continue_on_error``, after the other runs, if any run
        failed (the report of the finished runs is written first).
      Exception: without it, the first failing run's exception (after its ``error.json``).
    """
    log = log or logger.info
    config = _as_config(config)
    check_shard(shard_index, num_shards)
    specs = expand_config(config, registry)
    runtime = config.runtime.resolve()
    if execute_fn is None:
        execute_fn = execute
    output_dir = ensure_output_dir(output_dir)
    check_output_config(config, output_dir, replace_config)
    if config.runner.summarize:
        check_report_dir(output_dir)
    strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
    strategy_obj = get_strategy(strategy) if isinstance(strategy, str) else strategy
    # Every multi-worker process runs every run; only the chief writes what the store holds.
    writer = is_chief(strategy_obj)
    store = RunStore(output_dir, writer=writer)

    grid = plan_shard(specs, 0, 1)
    mine = plan_shard(grid, shard_index, num_shards)
    if writer:
        save_config(config, output_dir)
        atomic_write_json(
            output_dir / GRID_FILE,
            {
                "protocol": config.protocol,
                "runs": [{"run_id": s.run_id(), "cell": s.cell, "seed": s.seed} for s in grid],
            },
        )
    damaged = store.damaged_records([s.run_id() for s in mine])
    for where in damaged.values():
        log(f"{where}: the run counts as unfinished and runs again")
    todo = [s for s in mine if not store.is_finished(s.run_id())]
    log(
        f"{config.protocol}: {len(grid)} runs in the grid; shard {shard_index}/{num_shards} has "
        f"{len(mine)}, {len(mine) - len(todo)} already finished, {len(todo)} to run "
        f"(output {output_dir})"
    )

    failed: dict[str, str] = {}
    fresh: dict[str, RunRecord] = {}
    started = time.monotonic()
    # Runs are claimed (an OS file lock), so concurrent copies of this command or overlapping
    # shards never run one twice. Multi-worker processes run in lockstep and do not claim.
    use_claims = writer and not is_multi_worker(strategy_obj)
    for k, spec in enumerate(todo):
        run_id = spec.run_id()
        claim = store.claim(run_id) if use_claims else None
        if use_claims and claim is None:
            log(
                f"{_bar(k + 1, len(todo), started)} run {run_id} ({spec.cell}, seed {spec.seed}) "
                f"is being run by {store.claim_owner(run_id)}; skipped"
            )
            continue
        try:
            if use_claims and store.is_finished(run_id):
                bar = _bar(k + 1, len(todo), started)
                log(f"{bar} run {run_id} was finished by another process")
                continue
            record = run_one(
                spec,
                store,
                output_dir,
                execute_fn,
                strategy_obj,
                log,
                environment_info(
                    seeds=[spec.seed],
                    strategy=strategy_name,
                    shard_index=shard_index,
                    num_shards=num_shards,
                    extra={
                        "run_id": run_id,
                        "protocol": config.protocol,
                        "runtime": runtime.to_dict(),
                        "devices": _device_names(),
                    },
                ),
                bar=_bar(k, len(todo), started),
            )
        except Exception as err:  # noqa: BLE001 - recorded in error.json, logged, re-raised
            log(f"run {run_id} ({spec.cell}, seed {spec.seed}) FAILED: {type(err).__name__}: {err}")
            if not config.runner.continue_on_error:
                raise
            failed[run_id] = f"{type(err).__name__}: {err}"
            continue
        finally:
            if claim is not None:
                store.release(run_id, claim)
        fresh[run_id] = record
        log(
            f"{_bar(k + 1, len(todo), started)} run {run_id} done in "
            f"{tqdm.format_interval(record.metrics['wall_seconds'])} {_metric_text(record)}"
        )

    records = store.load_records([s.run_id() for s in mine])
    if not writer:  # a non-chief worker holds its records in memory only
        by_id = {r.run_id: r for r in records}
        by_id.update(fresh)
        records = [by_id[k] for k in sorted(by_id)]
    missing = [s.run_id() for s in grid if not store.is_finished(s.run_id())]
    if failed:
        if records and config.runner.summarize and writer:
            log(f"report of the {len(grid) - len(missing)} finished runs of {len(grid)}:")
            _report(output_dir, config, registry, log, results)
        labels = {s.run_id(): f"{s.cell}, seed {s.seed}" for s in todo}
        raise RunFailedError(failed, output_dir, total=len(todo), labels=labels)
    if missing:
        log(
            f"{len(grid) - len(missing)}/{len(grid)} runs of the grid are finished; when every "
            f"shard is done, run: tfprune-report --output_dir={output_dir}"
        )
    elif writer:
        store.remove_finished_claims([s.run_id() for s in grid])
        if config.runner.summarize:
            _report(output_dir, config, registry, log, results)
    return records


def _report(
    output_dir: Path,
    config: ProtocolConfig,
    registry: Mapping[str, Any] | None,
    log: Callable[[str], None],
    results: Callable[[str], None] | None,
) -> None:
    """Write the report of the finished runs and print its results table."""
    report = write_report(
        output_dir,
        registry=registry,
        plots=config.output.plots,
        tables=config.output.report,
        log=log,
    )
    (results or log)(report.markdown)


def train_base_model(
    config: Any, *, log: Callable[[str], None] | None = None, strategy: Any = None
) -> dict[str, Any]:
    """Train (or load from the cache) one base model and save it (what ``tfprune-train`` runs).

    The model is trained by the protocols' own base-model code
    (:func:`tfprune.protocols.execute.get_base_model`), so it is also cached under
    ``<output_dir>/base_models/<base_id>/`` and a ``tfprune-compare`` run with the same dataset,
    model, base recipe and seed and ``--output_dir`` reuses it. The model is tested on the
    held-out split after every epoch: ``history.csv`` has ``val_loss`` and ``val_accuracy``
    beside the training loss and accuracy. Writes into ``output_dir``: ``model.keras``,
    ``history.csv``, ``metrics.json``, ``environment.json`` and ``config.yaml``.

    Args:
      config: A :class:`tfprune.configs.TrainConfig` (validated here).
      log: Progress lines go here, one per epoch while the model trains.
      strategy: Strategy object (default: ``config.strategy`` by name).

    Returns:
      The metrics (``base_id``, ``acc``, ``train_acc``, ``acc_gap``, ``batch_norm_gap``,
      ``seconds``, ``params``, ``flops``, ``model_path``).
    """
    log = log or logger.info
    config.validate()
    out = ensure_output_dir(config.output_dir)
    runtime = config.runtime()
    spec = BaseSpec(
        dataset=config.dataset,
        model=config.model,
        base=config.recipe.to_dict(),
        seed=config.seed,
        data_dir=config.data_dir,
        precision=runtime.precision,
        jit_compile=runtime.jit_compile,
    )
    if strategy is None:
        strategy = get_strategy(config.strategy)
    environment = environment_info(
        seeds=[config.seed],
        strategy=config.strategy,
        extra={"runtime": runtime.to_dict(), "devices": _device_names()},
    )
    base = get_base_model(spec, str(out), strategy=strategy, log=log, progress=log)
    # Written once the model exists: a bad model/data pair leaves nothing behind.
    atomic_write_text(out / "config.yaml", dump_yaml(config.to_dict()))
    atomic_write_json(out / "environment.json", environment)
    model_path = out / "model.keras"
    base.model.save(model_path)
    history = base.meta.get("history") or {}
    atomic_write_text(out / "history.csv", history_to_csv(history))
    metrics = {
        "base_id": spec.base_id(),
        "acc": base.meta.get("acc"),
        # The last epoch's training accuracy, the gap to ``acc`` and whether it was flagged.
        **{k: base.meta.get(k) for k in ("train_acc", "acc_gap", "batch_norm_gap")},
        "seconds": base.meta.get("seconds"),
        "cached": base.meta.get("cached"),
        "params": int(count_params(base.model).total),
        "flops": int(count_flops(base.model).total),
        "model_path": str(model_path),
        **runtime.to_dict(),
    }
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
