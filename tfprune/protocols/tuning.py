"""Fair retraining-LR search: every method gets its own best LR within the same budget.

The point of Wang et al. 2023, "Why is the State of Neural Network Pruning so Confusing?":
a method that is retrained with a better LR looks better. To compare
methods fairly when their recipes differ, tune the retraining LR of *each* method over the same
grid and the same number of epochs, and compare every method at its own best LR.

:class:`RetrainLRTuner` is a :class:`keras_tuner.Tuner` subclass whose :meth:`run_trial` builds,
fits and measures itself through :func:`tfprune.protocols.execute.execute` (keras-tuner's default
build path expects a hypermodel returning a Keras 3 model and rejects tf_keras models). The LR
grid is a :class:`keras_tuner.oracles.GridSearchOracle` over one ``Choice("lr", lrs)``; the
tuner's state lives under ``workdir/tuning/<project>`` so an interrupted search resumes, and the
shared base model is reused from ``workdir/base_models``.

Distributed search (not covered by tests): keras-tuner's chief/worker mode is configured
entirely by environment variables; start the same script once as the chief and N times as
workers::

    export KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000
    KERASTUNER_TUNER_ID=chief python run.py    # on the chief
    KERASTUNER_TUNER_ID=tuner0 python run.py   # on each worker (tuner0, tuner1, ...)

The chief serves the oracle and hands out LRs; each worker runs its trials with a shared
``workdir`` (a shared file system, so the base model is trained once: the cache write is atomic).

From the command line, ``tfprune-compare --tune_lr=0.1,0.01,0.001`` tunes every pruning method
of a config's grid this way before the grid is run (:func:`tune_grid_methods`): each trial is
stored like a grid run, under ``<output_dir>/tuning/runs/<run id>/``, and the best LRs in
``<output_dir>/tuning/best_lr.json``.

Note on selection data: trials are scored on the dataset's test split (``best_acc`` by default),
as the papers' tables do; pass ``data_options`` with a held-out split (e.g. MNIST ``holdout``) in
the spec to select on held-out data instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras_tuner

from tfprune.configs import ProtocolConfig, save_config
from tfprune.distribute import get_strategy
from tfprune.errors import ConfigError
from tfprune.files import atomic_write_json, ensure_output_dir
from tfprune.protocols.execute import execute
from tfprune.protocols.methods import get_method
from tfprune.protocols.runner import check_output_config, expand_config, run_one
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.protocols.store import RunStore, environment_info
from tfprune.training.schedules import parse_schedule

__all__ = [
    "BEST_LR_FILE",
    "TUNING_DIR",
    "RetrainLRTuner",
    "TuneResult",
    "compare_at_best_lr",
    "tune_grid_methods",
    "tune_retrain_lr",
]

#: The folder under a results folder that holds the LR search: its trials and the best LRs.
TUNING_DIR = "tuning"
#: ``{method: {"best_lr", "metric", "best_value", "values": {lr: value}}}`` under TUNING_DIR.
BEST_LR_FILE = "best_lr.json"

logger = logging.getLogger(__name__)


def _with_lr(spec: RunSpec, template: str, lr: float) -> RunSpec:
    schedule = template.replace("{lr}", f"{lr:g}")
    parse_schedule(schedule, spec.retrain.epochs, field="schedule_template")
    retrain = dataclasses.replace(spec.retrain, schedule=schedule)
    return dataclasses.replace(spec, retrain=retrain, cell=f"{spec.cell} / lr={lr:g}")


class RetrainLRTuner(keras_tuner.Tuner):
    """Grid search of the retraining LR of one run spec (see the module doc).

    Args:
        spec: The run to tune (method, ratio, budget ``retrain.epochs``, seed, base...).
        lrs: The LR grid.
        workdir: Results root: the base-model cache and ``tuning/<project_name>``.
        schedule_template: Retraining schedule with ``{lr}`` for the initial LR, e.g.
            ``"steps:{lr}:1e-4"`` or ``"0:{lr},10:1e-4"``.
        metric: Record metric to maximise (``best_acc``, ``final_acc``, ``trainability_acc``).
        project_name: Folder under ``workdir/tuning`` (default: method and spec id).
        strategy: Passed to :func:`execute`.
        log: Progress messages.
        store: Where each trial is stored like a grid run (``runs/<run id>/``: spec,
            environment, history, ``record.json``); a trial already finished there is read
            back, not run again. None: trials are only kept in memory.
        **kwargs: Other :class:`keras_tuner.Tuner` arguments (``overwrite``, ``tuner_id``...).
    """

    def __init__(
        self,
        spec: RunSpec,
        lrs: Sequence[float],
        workdir: str,
        *,
        schedule_template: str = "steps:{lr}:1e-4",
        metric: str = "best_acc",
        project_name: str | None = None,
        strategy: Any = None,
        log: Callable[[str], None] | None = None,
        store: RunStore | None = None,
        **kwargs: Any,
    ) -> None:
        log = log or logger.info
        lrs = [float(x) for x in lrs]
        if not lrs or any(not x > 0 for x in lrs):
            raise ConfigError(f"tuning: lrs must be a non-empty list of LRs > 0, got {lrs!r}")
        if "{lr}" not in schedule_template:
            raise ConfigError(
                f"tuning: schedule_template {schedule_template!r} must contain '{{lr}}'"
            )
        for lr in lrs:  # validate every schedule before any work
            _with_lr(spec, schedule_template, lr)
        hp = keras_tuner.HyperParameters()
        hp.Choice("lr", lrs)
        oracle = keras_tuner.oracles.GridSearchOracle(
            objective=keras_tuner.Objective(metric, direction="max"),
            max_trials=len(lrs),
            hyperparameters=hp,
            tune_new_entries=False,
            seed=spec.seed,
        )
        super().__init__(
            oracle=oracle,
            directory=os.path.join(workdir, "tuning"),
            project_name=project_name or f"{spec.method}-{spec.run_id()}",
            **kwargs,
        )
        self.spec = spec
        self.lrs = lrs
        self.workdir = workdir
        self.schedule_template = schedule_template
        self.metric = metric
        self.strategy = strategy
        self.log = log
        self.store = store
        self.records: dict[float, RunRecord] = {}
        self.error: Exception | None = None  # what stopped the search (raised by the search)

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Run the spec at this trial's LR and return its metrics (no Keras model is built here).

        A failing trial stops the search: :func:`tune_retrain_lr` raises its error.
        """
        try:
            return self._run_trial(float(trial.hyperparameters.get("lr")))
        except Exception as err:
            self.error = err
            raise keras_tuner.errors.FatalError(str(err)) from err

    def _run_trial(self, lr: float) -> dict[str, float]:
        spec = _with_lr(self.spec, self.schedule_template, lr)
        run_id = spec.run_id()
        if self.store is None:
            record = execute(spec, self.workdir, strategy=self.strategy, log=self.log)
            self.records[lr] = record
        elif self.store.is_finished(run_id):
            (record,) = self.store.load_records([run_id])
        else:
            environment = environment_info(
                seeds=[spec.seed], extra={"run_id": run_id, "protocol": spec.protocol}
            )
            record = run_one(
                spec,
                self.store,
                self.workdir,
                execute,
                self.strategy,
                self.log,
                environment,
                bar=f"[tuning {spec.method} lr={lr:g}]",
            )
            self.records[lr] = record
        out = {
            k: float(v)
            for k, v in record.metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k.endswith("acc")
        }
        if self.metric not in out:
            raise ConfigError(f"tuning: metric {self.metric!r} is not in the run's metrics")
        self.log(f"[tuning {spec.method} lr={lr:g}] {self.metric}={out[self.metric]:.4f}")
        return out

    def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
        """Nothing to save: run records hold the results."""

    def load_model(self, trial: Any) -> Any:
        """Not supported: this tuner keeps records, not models."""
        raise NotImplementedError("RetrainLRTuner keeps run records, not models")


@dataclasses.dataclass
class TuneResult:
    """The LR search of one method.

    Attributes:
        method: The spec's method.
        best_lr: LR with the highest metric (the first in grid order on ties).
        best_value: Its metric value.
        values: ``{lr: metric}`` for every LR tried.
        records: ``{lr: RunRecord}`` of the trials run in this process.
    """

    method: str
    best_lr: float
    best_value: float
    values: dict[float, float]
    records: dict[float, RunRecord]


def tune_retrain_lr(
    spec: RunSpec,
    lrs: Sequence[float],
    workdir: str,
    *,
    schedule_template: str = "steps:{lr}:1e-4",
    metric: str = "best_acc",
    strategy: Any = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
    store: RunStore | None = None,
) -> TuneResult:
    """Grid-search the retraining LR of ``spec`` and return the best LR and all values.

    ``store`` keeps each trial like a grid run (see :class:`RetrainLRTuner`).
    """
    log = log or logger.info
    tuner = RetrainLRTuner(
        spec,
        lrs,
        workdir,
        schedule_template=schedule_template,
        metric=metric,
        strategy=strategy,
        log=log,
        overwrite=overwrite,
        store=store,
    )
    try:
        tuner.search(verbose=0)
    except keras_tuner.errors.FatalError:
        if tuner.error is None:
            raise
        raise tuner.error from None
    values: dict[float, float] = {}
    for trial in tuner.oracle.trials.values():
        lr = float(trial.hyperparameters.get("lr"))
        value = trial.metrics.get_best_value(metric) if trial.metrics.exists(metric) else None
        if value is not None:
            values[lr] = float(value)
    if not values:
        raise ConfigError("tuning: no trial finished")
    order = [lr for lr in tuner.lrs if lr in values]
    best_lr = max(order, key=lambda lr: (values[lr], -order.index(lr)))
    return TuneResult(spec.method, best_lr, values[best_lr], values, dict(tuner.records))


def compare_at_best_lr(
    specs: Mapping[str, RunSpec] | Sequence[RunSpec],
    lrs: Sequence[float],
    workdir: str,
    **kwargs: Any,
) -> dict[str, TuneResult]:
    """Tune every method's LR over the same grid and budget; ``{method: TuneResult}``.

    All specs must share the budget (``retrain.epochs``) and everything but the method; the
    comparison is then each method at its own best LR.
    """
    items = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
    if not items:
        raise ConfigError("tuning: no specs to compare")
    budgets = {s.retrain.epochs for s in items}
    if len(budgets) != 1:
        raise ConfigError(f"tuning: every method needs the same budget, got epochs {budgets}")
    return {s.method: tune_retrain_lr(s, lrs, workdir, **kwargs) for s in items}


def tune_grid_methods(
    config: ProtocolConfig,
    output_dir: str | os.PathLike[str],
    lrs: Sequence[float],
    *,
    schedule_template: str = "steps:{lr}:1e-4",
    metric: str | None = None,
    strategy: Any = None,
    log: Callable[[str], None] | None = None,
    replace_config: bool = False,
) -> dict[str, TuneResult]:
    """Tune the retraining LR of every pruning method of ``config``'s grid, before the grid.

    Each method of the grid that prunes a trained base (not ``dense``, not ``scratch``) is
    tuned on its first run (lowest seed, first cell): retrained at every LR of ``lrs`` with
    ``schedule_template``, over that run's budget, the same for every method
    (:func:`compare_at_best_lr`). Trials are stored like runs under
    ``<output_dir>/tuning/runs/<run id>/`` (a rerun reads finished trials back), the base
    models are those the grid uses (``<output_dir>/base_models``), and the result is written to
    ``<output_dir>/tuning/best_lr.json``. The grid itself is not run: compare the methods at
    these LRs by setting each method's retraining LR in the config.

    Args:
      config: A resolved protocol config (its ``config.yaml`` is saved in ``output_dir``).
      output_dir: The grid's results folder.
      lrs: The LRs to try.
      schedule_template: Retraining schedule with ``{lr}`` for the tried LR.
      metric: Record metric to maximise (default: the protocol's ``metric``, else
        ``best_acc``).
      strategy: Passed to every trial's :func:`execute`.
      log: Progress messages.
      replace_config: Tune into an ``output_dir`` that holds the runs of another config.

    Returns:
      ``{method: TuneResult}`` in the grid's method order.

    Raises:
      ConfigError: the grid has no method to tune, the methods' budgets differ, a template or
        LR is invalid, or ``output_dir`` holds another config's runs.
    """
    log = log or logger.info
    metric = metric or str(getattr(config.params, "metric", None) or "best_acc")
    if isinstance(strategy, str):
        strategy = get_strategy(strategy)
    firsts: dict[str, RunSpec] = {}
    for spec in sorted(expand_config(config), key=lambda s: s.seed):
        method = get_method(spec.method)
        if spec.method != "dense" and method.needs_base and spec.method not in firsts:
            # Named by method and budget only: the grid's cell may name a grid LR.
            cell = f"{method.label or spec.method} / {spec.retrain.epochs}ep"
            firsts[spec.method] = dataclasses.replace(spec, cell=cell)
    if not firsts:
        raise ConfigError(
            f"tuning: the {config.protocol} grid has no pruning method to tune (dense and "
            "scratch runs have no retraining LR of a pruned model); add a method such as l1"
        )
    output_dir = ensure_output_dir(output_dir)
    check_output_config(config, output_dir, replace_config)
    save_config(config, output_dir)
    store = RunStore(Path(output_dir) / TUNING_DIR)
    log(
        f"tuning the retraining LR of {', '.join(firsts)} over {[float(x) for x in lrs]} "
        f"({schedule_template}, {metric}) in {output_dir / TUNING_DIR}"
    )
    results = compare_at_best_lr(
        list(firsts.values()),
        lrs,
        str(output_dir),
        schedule_template=schedule_template,
        metric=metric,
        strategy=strategy,
        log=log,
        store=store,
    )
    atomic_write_json(
        output_dir / TUNING_DIR / BEST_LR_FILE,
        {
            method: {
                "best_lr": res.best_lr,
                "metric": metric,
                "best_value": res.best_value,
                "values": {f"{lr:g}": v for lr, v in sorted(res.values.items())},
            }
            for method, res in results.items()
        },
    )
    return results
