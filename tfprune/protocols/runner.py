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
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tfprune.compat import tf
from tfprune.configs import dump_yaml
from tfprune.configs.protocol import ProtocolConfig, save_config
from tfprune.distribute import get_strategy, is_chief, is_multi_worker
from tfprune.errors import ConfigError
from tfprune.files import atomic_write_json, atomic_write_text, ensure_output_dir
from tfprune.flops import count_flops, count_params
from tfprune.protocols.execute import execute, get_base_model
from tfprune.protocols.grids import PROTOCOLS
from tfprune.protocols.report import write_report
from tfprune.protocols.spec import RetrainRecipe, RunRecord, RunSpec
from tfprune.protocols.store import RunStore, environment_info, history_to_csv
from tfprune.runtime import Runtime

__all__ = [
    "GRID_FILE",
    "RunFailedError",
    "apply_runtime",
    "check_shard",
    "expand_config",
    "plan_shard",
    "run_protocol",
    "train_base_model",
]

logger = logging.getLogger(__name__)

GRID_FILE = "grid.json"

ExecuteFn = Callable[..., RunRecord]


class RunFailedError(RuntimeError):
    """One or more runs raised; their ``error.json`` files say why.

    Attributes:
      failed: ``{run_id: "ExceptionType: message"}``.
    """

    def __init__(self, failed: Mapping[str, str], output_dir: str | Path):
        self.failed = dict(failed)
        lines = "\n".join(f"  {rid}: {msg}" for rid, msg in self.failed.items())
        super().__init__(
            f"{len(self.failed)} run(s) failed (see {Path(output_dir) / 'runs'}/<id>/error.json; "
            f"rerun to retry only the unfinished runs):\n{lines}"
        )


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


def _run_one(
    spec: RunSpec,
    store: RunStore,
    output_dir: Path,
    execute_fn: ExecuteFn,
    strategy: Any,
    log: Callable[[str], None],
    environment: Mapping[str, Any],
    bar: str,
) -> RunRecord:
    """Execute one run and store it: spec and environment first, ``record.json`` last.

    A failing run leaves its ``error.json`` and re-raises.
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
) -> list[RunRecord]:
    """Run (this shard of) the protocol grid into ``output_dir`` and return its records.

    Args:
      config: A resolved :class:`~tfprune.configs.ProtocolConfig` (or its flat dict form).
      output_dir: Results folder (``config.yaml``, ``grid.json``, ``runs/<id>/``, ``report/``).
      shard_index: This process's shard, in ``[0, num_shards)``.
      num_shards: Number of shards the grid is split into (cluster job arrays).
      strategy: ``tf.distribute`` strategy name (see :data:`tfprune.distribute.STRATEGIES`) or
        object, passed to every run.
      log: Progress lines go here.
      results: The results table (verdicts and the compact table) goes here (default: ``log``).
      registry: Protocol registry (default :data:`tfprune.protocols.grids.PROTOCOLS`).
      execute_fn: Runs one spec: ``execute_fn(spec, workdir, strategy=..., log=...)``
        (default :func:`tfprune.protocols.execute.execute`).

    Returns:
      The records of this shard's runs (finished earlier or now), sorted by run id.

    Raises:
      ConfigError: unknown protocol, bad shard arguments.
      RunFailedError: with ``runner.continue_on_error``, after the other runs, if any run failed.
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
            record = _run_one(
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
                claim.release()
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
    if failed:
        raise RunFailedError(failed, output_dir)
    missing = [s.run_id() for s in grid if not store.is_finished(s.run_id())]
    if missing:
        log(
            f"{len(grid) - len(missing)}/{len(grid)} runs of the grid are finished; when every "
            f"shard is done, run: tfprune-report --output_dir={output_dir}"
        )
    elif config.runner.summarize and writer:
        report = write_report(
            output_dir,
            registry=registry,
            plots=config.output.plots,
            tables=config.output.report,
            log=log,
        )
        (results or log)(report.markdown)
    return records


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
      The metrics (``base_id``, ``acc``, ``seconds``, ``params``, ``flops``, ``model_path``).
    """
    log = log or logger.info
    config.validate()
    out = ensure_output_dir(config.output_dir)
    recipe = config.recipe
    spec = RunSpec(
        protocol="train",
        cell="base",
        dataset=config.dataset,
        model=config.model,
        method="dense",
        ratio=0.0,
        retrain=RetrainRecipe(schedule=recipe.schedule, epochs=0),
        seed=config.seed,
        base=recipe.to_dict(),
        data_dir=config.data_dir,
    )
    runtime = config.runtime()
    spec = apply_runtime([spec], runtime)[0]
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
        "seconds": base.meta.get("seconds"),
        "cached": base.meta.get("cached"),
        "params": int(count_params(base.model).total),
        "flops": int(count_flops(base.model).total),
        "model_path": str(model_path),
        **runtime.to_dict(),
    }
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
