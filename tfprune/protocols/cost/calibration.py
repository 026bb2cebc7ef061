"""How long a grid's runs take on this machine, found by timing their models here.

:class:`Calibration` turns the cost of a run (:class:`~tfprune.protocols.cost.model.RunCost`,
counted by :class:`~tfprune.protocols.cost.estimate.CostEstimator`) into seconds. Each distinct
(architecture, batch size) is timed in the run's precision, compiled as a run compiles it
(:func:`tfprune.training.pipeline.compile_model` with the run's ``steps_per_execution``): whole
training epochs on the real data when an epoch is cheap (so the input pipeline's per-epoch cost
is included), else a few steps (on random inputs of the right shape when the data is not here),
warm-up excluded, median of ``repeats``; one evaluation pass; one mean-JSV measurement; and the
one-off costs a run pays (loading the data, building and pruning the model, the first (tracing)
call of each compiled function). Every timing is kept, so a model shape shared by many runs is
timed once. The runs of a shape that has a compiled twin (:mod:`tfprune.training.twins`) pay
each first call once per process; :meth:`Calibration.new_process` starts counting again. Not
included: the report written at the end (about a second for small grids).

:func:`process_seconds` gives how long this process has been running (its start and imports),
the fixed cost every run of a shard pays once.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.compat import tf
from tfprune.data import load_dataset
from tfprune.errors import TfpruneError
from tfprune.protocols.cost.model import FLOPS_PER_MAC, TRAIN_PASSES, Arch, Phase, RunCost
from tfprune.protocols.cost.report import format_count
from tfprune.protocols.execute import run_runtime
from tfprune.protocols.spec import RunSpec, canonical_json
from tfprune.runtime import use_runtime
from tfprune.trainability import orthp
from tfprune.training import pipeline, twins

__all__ = ["Calibration", "process_seconds"]


def _key(*parts: Any) -> str:
    return canonical_json(list(parts))


class Calibration:
    """Times models on this machine and gives the wall time of a run; keeps every timing.

    Args:
      repeats: Timed repetitions per measurement (the median is kept).
      log: Progress lines go here (``None``: silent).
    """

    def __init__(self, *, repeats: int = 3, log: Callable[[str], None] | None = None) -> None:
        self.repeats = max(1, int(repeats))
        self.log = log or (lambda _msg: None)
        self._timings: dict[str, Any] = {}
        self._traced: set[str] = set()

    def new_process(self) -> None:
        """The next runs start a new process: their compiled twins are traced again."""
        self._traced.clear()

    def _first(self, seconds: float, arch: Arch, *setting: Any) -> float:
        """The extra of a first (tracing) call: every run's, or once per process for a twin."""
        key = _key("first", arch.key, *setting)
        if key in self._traced:
            return 0.0
        shared = _key("shared", arch.key)
        if shared not in self._timings:
            with use_runtime(run_runtime(arch.spec)):
                self._timings[shared] = twins.shape_key(self._model(arch)) is not None
        if self._timings[shared]:
            self._traced.add(key)
        return seconds

    def run_seconds(self, spec: RunSpec, cost: RunCost, dense: Arch, small: Arch) -> float:
        """Wall time of one run on this machine, following the steps of ``execute``.

        Args:
          spec: The run.
          cost: Its counted cost (stages, evaluations, JSV measurements).
          dense: The dense model shape (the base and the pruning stage train it).
          small: The shape the run retrains (the dense one for dense runs).
        """
        jsv_n = spec.opts.jsv_samples
        batch = spec.retrain.batch_size
        num_test = cost.num_test
        seconds = self._data(spec, batch)[1] + dense.build_seconds  # data, base/fresh model
        if cost.base is not None:
            base_batch = spec.base_recipe().batch_size
            seconds += self._data(spec, base_batch)[1]  # the base model loads the data too
            if cost.trains_base:
                seconds += self._phase_seconds(cost.base, dense, spec, num_test)
                ev = self._eval_timing(dense, spec, base_batch, num_test)
                seconds += self._first(ev["first"], dense, "eval", "base") + ev["pass"]
                if jsv_n:
                    jv = self._jsv_timing(dense, jsv_n)
                    seconds += self._first(jv["first"], dense, "jsv", "base") + jv["call"]
        if cost.prune is not None:  # a regularized stage trains its own model: no twin
            seconds += self._phase_seconds(cost.prune, dense, spec, num_test, shared=False)
        seconds += small.prune_seconds  # one-shot masks and removal (0 for dense)
        if spec.method == "scratch":
            seconds += small.build_seconds
        if spec.method.endswith("_orthp"):
            seconds += self._orthp_seconds(small)
        ev = self._eval_timing(small, spec, batch, num_test)
        seconds += self._first(ev["first"], small, "eval", "retrain") + ev["pass"]
        if jsv_n:  # mean JSV right after pruning
            jv = self._jsv_timing(small, jsv_n)
            seconds += self._first(jv["first"], small, "jsv", "retrain") + jv["call"]
        seconds += self._phase_seconds(cost.retrain, small, spec, num_test)
        if cost.retrain.epochs:
            seconds += ev["pass"]  # final accuracy
        return seconds

    def _phase_seconds(
        self, phase: Phase, arch: Arch, spec: RunSpec, num_test: int, *, shared: bool = True
    ) -> float:
        """One ``fit``: first call, steps, epoch overheads, per-epoch evaluation and JSV."""
        if phase.epochs <= 0:
            return 0.0
        t = self._train_timing(phase, arch, spec)
        steps = phase.epochs * phase.steps_per_epoch
        first = self._first(t["first"], arch, "train", phase.kind) if shared else t["first"]
        seconds = first + t["call"] + math.ceil(phase.epochs) * t["epoch"] + steps * t["step"]
        if phase.eval_every_epoch:
            seconds += (
                phase.epochs * self._eval_timing(arch, spec, phase.batch_size, num_test)["pass"]
            )
        if phase.jsv_every_epoch:
            jv = self._jsv_timing(arch, spec.opts.jsv_samples)
            first = self._first(jv["first"], arch, "jsv", phase.kind) if shared else jv["first"]
            seconds += first + phase.epochs * jv["call"]
        return seconds

    def _median(self, fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def _data(self, spec: RunSpec, batch: int) -> tuple[Any, float]:
        """The run's dataset at ``batch`` (``None`` when not loadable here) and its load time."""
        opts = dict(spec.opts.data_options)
        if spec.model.startswith("mlp"):
            opts.setdefault("flatten", True)
        key = _key("data", spec.dataset, spec.data_dir, opts, batch)  # the seed costs nothing
        if key not in self._timings:
            data, seconds = None, 0.0
            if spec.dataset != "imagenet":  # its decoding pipeline is not timed: random inputs

                def load() -> Any:
                    return load_dataset(
                        spec.dataset, spec.data_dir, batch_size=batch, seed=spec.seed, **opts
                    )

                try:
                    t0 = time.perf_counter()
                    data = load()
                    seconds = time.perf_counter() - t0
                    if seconds < 1.0:  # the first load also imports the reader: time another
                        seconds = self._median(load)
                except TfpruneError as err:
                    self.log(
                        f"timing: {spec.dataset} is not here ({type(err).__name__}); "
                        "random inputs are used and loading is not timed"
                    )
            self._timings[key] = (data, seconds)
        return self._timings[key]

    def _model(self, arch: Arch) -> Any:
        key = _key("model", arch.key)
        if key not in self._timings:
            with use_runtime(run_runtime(arch.spec)):
                self._timings[key] = arch.build()
        return self._timings[key]

    def _train_timing(self, phase: Phase, arch: Arch, spec: RunSpec) -> dict[str, float]:
        """Seconds per step, per epoch, per ``fit`` call and of the first call (tracing).

        ``arch`` is the shape ``phase`` trains. On the real training pipeline when the dataset is
        here: whole epochs when one is cheap (the per-epoch cost of the input pipeline is then
        included), else a few steps; on random inputs of the right shape otherwise.
        """
        recipe = spec.retrain if phase.kind != "base" else spec.base_recipe()
        batch = phase.batch_size
        data, _ = self._data(spec, batch)
        key = _key("train", arch.key, batch, phase.steps_per_execution, recipe.optimizer)
        if key in self._timings:
            return self._timings[key]
        flops_per_step = TRAIN_PASSES * FLOPS_PER_MAC * arch.macs * batch
        spe_exec = phase.steps_per_execution
        whole_epochs = data is not None and flops_per_step * phase.steps_per_epoch < 2e10
        if not whole_epochs and flops_per_step * spe_exec > 5e9:
            spe_exec = 1  # a big model: the Python overhead saved by spe_exec is negligible
        a, b = spe_exec, 3 * spe_exec
        if flops_per_step * b > 2e10:
            a, b = 1, 2
        if data is not None:
            ds = data.train if whole_epochs else data.train.repeat()
        else:
            rng = np.random.default_rng(0)
            x = rng.random((batch * 4, *arch.input_shape), dtype=np.float32)
            y = np.arange(batch * 4) % arch.num_classes
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
        t_start = time.perf_counter()
        with use_runtime(run_runtime(arch.spec)):
            firsts = []  # the first call traces the train function: twice for a cheap model
            for _ in range(2 if whole_epochs else 1):
                model = arch.build()
                pipeline.compile_model(model, recipe, 0.01, spe_exec)
                t0 = time.perf_counter()
                model.fit(ds, epochs=1, steps_per_epoch=None if whole_epochs else a, verbose=0)
                firsts.append(time.perf_counter() - t0)
            first = statistics.median(firsts)

            def fit(epochs: int, steps: int | None) -> None:
                model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0)

            if whole_epochs:
                t_1 = self._median(lambda: fit(1, None))
                t_3 = self._median(lambda: fit(3, None))
                epoch_all = max((t_3 - t_1) / 2, 1e-9)
                step, epoch = epoch_all / phase.steps_per_epoch, 0.0
                call = max(t_1 - epoch_all, 0.0)
                t_first = t_1
            else:
                t_a = self._median(lambda: fit(1, a))
                t_b = self._median(lambda: fit(1, b))
                t_2a = self._median(lambda: fit(2, a))
                step = max((t_b - t_a) / (b - a), 1e-9)
                epoch = max(t_2a - t_a - a * step, 0.0)
                call = max(t_a - epoch - a * step, 0.0)
                t_first = t_a
        out = {"step": step, "epoch": epoch, "call": call, "first": max(first - t_first, 0.0)}
        source = "" if data is not None else ", random inputs"
        per_epoch = step * phase.steps_per_epoch + epoch
        took = time.perf_counter() - t_start
        self.log(
            f"timed {_arch_label(arch)} batch {batch}: {per_epoch:.3g} s/epoch, "
            f"first fit +{out['first']:.2f}s{source} ({took:.1f}s)"
        )
        self._timings[key] = out
        return out

    def _eval_timing(
        self, arch: Arch, spec: RunSpec, batch: int, num_test: int
    ) -> dict[str, float]:
        """Seconds of one evaluation pass over ``num_test`` examples and extra of the first one."""
        data, _ = self._data(spec, batch)
        key = _key("eval", arch.key, batch, num_test)
        if key in self._timings:
            return self._timings[key]
        n_batches = -(-num_test // batch)
        probe = min(n_batches, 8)
        if data is not None:
            ds = data.test.take(probe)
        else:
            rng = np.random.default_rng(1)
            x = rng.random((batch * probe, *arch.input_shape), dtype=np.float32)
            y = np.arange(batch * probe) % arch.num_classes
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
        with use_runtime(run_runtime(arch.spec)):
            model = self._model(arch)
            pipeline.compile_model(model, arch.spec.retrain, 0.01)
            t0 = time.perf_counter()
            model.evaluate(ds, verbose=0)
            first = time.perf_counter() - t0
            t_probe = self._median(lambda: model.evaluate(ds, verbose=0))
            if probe < n_batches:
                t_one = self._median(lambda: model.evaluate(ds.take(1), verbose=0))
                per = max((t_probe - t_one) / (probe - 1), 0.0) if probe > 1 else t_one
                t_pass = t_one + per * (n_batches - 1)
            else:
                t_pass = t_probe
        out = {"pass": t_pass, "first": max(first - t_probe, 0.0)}
        self._timings[key] = out
        return out

    def _jsv_timing(self, arch: Arch, samples: int) -> dict[str, float]:
        """Seconds of a mean-JSV measurement: a steady one (per-epoch callback) and a first."""
        key = _key("jsv", arch.key, samples)
        if key in self._timings:
            return self._timings[key]
        n = min(samples, 100 if arch.macs * arch.num_classes > 1e9 else samples)
        x = np.random.default_rng(2).random((n, *arch.input_shape), dtype=np.float32)
        with use_runtime(run_runtime(arch.spec)):
            model = self._model(arch)
            callback = JacobianSingularValues(x, log_on_train_begin=False)
            callback.set_model(model)
            t0 = time.perf_counter()
            callback.compute()
            first = time.perf_counter() - t0
            steady = self._median(callback.compute)
        scale = samples / n
        out = {"call": steady * scale, "first": max(first - steady, 0.0)}
        self._timings[key] = out
        return out

    def _orthp_seconds(self, arch: Arch) -> float:
        key = _key("orthp", arch.key)
        if key not in self._timings:
            with use_runtime(run_runtime(arch.spec)):
                model = arch.build()
                self._timings[key] = self._median(lambda: orthp(model))
        return self._timings[key]


def _arch_label(arch: Arch) -> str:
    ratio = "dense" if arch.ratio is None else f"ratio {json.dumps(arch.ratio)}"
    return f"{arch.spec.model} {ratio} ({format_count(arch.macs)} MACs)"


def process_seconds() -> float | None:
    """Seconds since this process started (Linux ``/proc``), ``None`` where unknown."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None
