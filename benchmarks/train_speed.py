"""Training throughput: plain, masked and GReg ``fit`` under float32, mixed precision and XLA.

For ResNet-56 (CIFAR, 32x32x3, 10 classes) and ResNet-50 (``keras.applications``,
``--image_size`` square inputs, 1000 classes), three ways of training are timed:

* ``plain``  - ``fit`` of the dense model;
* ``masked`` - ``fit`` of ``tfprune.prune_filters(model, 0.5, "l1")`` (trainable copy with masks);
* ``GReg``   - ``fit`` of ``tfprune.prune_filters(model, 0.0)`` with the callback
  ``tfprune.GrowingRegularization(sparsity=0.5, variant="greg1")`` (its schedule is stretched
  so that it keeps growing the penalty and never sets masks or stops within the timed steps),

each in three runtimes (:mod:`tfprune.runtime`): ``float32``, ``mixed`` (``Runtime("auto")``:
mixed_float16 on a GPU, mixed_bfloat16 on CPU) and ``xla`` (``Runtime(jit_compile=True)``,
float32). Models are built and compiled (``tfprune.training.pipeline.compile_model``, SGD
momentum 0.9, coupled weight decay 1e-4, float32 loss) inside ``use_runtime``.

Every model trains on one cached batch repeated (``Dataset.from_tensors((x, y)).repeat()``), so
there is no input cost. After a warm-up ``fit`` of 2 steps (tracing / XLA compilation, not
timed), the nine (runtime, config) pairs of a model are timed in ``--rounds`` interleaved rounds
(order reversed every other round), one ``fit(steps_per_epoch=--steps)`` each per round. A fit
is timed from its first batch's start to its last batch's end (every step and every callback's
per-step work; not ``fit``'s own setup or the per-epoch callbacks), in wall-clock and in process
CPU time. Reported: the median examples/s over rounds, and the ratios masked/plain and GReg/plain
(within a runtime) and mixed/float32, XLA/float32 (within a config), each the median of
per-round ratios; then the same from CPU time, which a shared machine disturbs less. Keep
``--steps`` a multiple of 10 (GReg's ``update_every``) so that every timed window holds exactly
one penalty update. A runtime or config that fails (e.g. an op XLA cannot compile on this
device) is shown as "n/a (reason)".

    python benchmarks/train_speed.py [--models resnet56,resnet50] [--batch 8] [--steps 10]
        [--rounds 3] [--image_size 64] [--runtimes float32,mixed,xla]
"""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import tfprune  # noqa: E402
from tfprune.compat import keras, tf  # noqa: E402
from tfprune.models import get_model  # noqa: E402
from tfprune.runtime import Runtime, model_precision, use_runtime  # noqa: E402
from tfprune.training.pipeline import compile_model  # noqa: E402
from tfprune.training.recipe import TrainingRecipe  # noqa: E402

CONFIGS = ("plain", "masked", "GReg")
RUNTIMES: dict[str, Callable[[], Runtime]] = {
    "float32": lambda: Runtime("float32"),
    "mixed": lambda: Runtime("auto"),
    "xla": lambda: Runtime("float32", jit_compile=True),
}
RECIPE = TrainingRecipe(schedule="0:0.01", epochs=1, batch_size=100)


def build_model(name: str, image_size: int) -> Any:
    """ResNet-56 (CIFAR) or ResNet-50 (ImageNet-style head) under the current dtype policy."""
    keras.utils.set_random_seed(0)
    if name == "resnet56":
        return get_model("resnet56", input_shape=(32, 32, 3), num_classes=10)
    if name == "resnet50":
        return get_model(
            "keras:ResNet50", input_shape=(image_size, image_size, 3), num_classes=1000
        )
    raise SystemExit(f"unknown model {name!r}; use resnet56 or resnet50")


def model_data(name: str, image_size: int, batch: int) -> tf.data.Dataset:
    """One random batch held in memory, repeated forever."""
    size, classes = (32, 10) if name == "resnet56" else (image_size, 1000)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, classes, size=(batch,)).astype(np.int64))
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def greg_callback() -> Any:
    """GReg-1 at 0.5 whose schedule cannot finish (or stop ``fit``) within a benchmark."""
    return tfprune.GrowingRegularization(
        sparsity=0.5,
        variant="greg1",
        ceiling=1e6,
        stabilize_steps=10**9,
        mag_ratio_limit=1e30,
        stop_training=False,
    )


class Entry:
    """One (runtime, config): its compiled model, callbacks, timings or the error."""

    def __init__(self) -> None:
        self.model: Any = None
        self.callbacks: list = []
        self.rates: list[float] = []  # examples per wall-clock second, one per round
        self.cpu_rates: list[float] = []  # examples per process CPU second, one per round
        self.error: str | None = None
        self.precision = "?"

    def fail(self, err: BaseException) -> None:
        text = f"{type(err).__name__}: {err}".strip().splitlines()[0]
        self.error = text[:160]
        self.model, self.callbacks = None, []


def prepare(
    model_name: str, rt_name: str, image_size: int, data: tf.data.Dataset
) -> dict[str, Entry]:
    """Build, compile and warm up the three configs of one runtime (errors are kept)."""
    entries = {c: Entry() for c in CONFIGS}
    try:
        runtime = RUNTIMES[rt_name]()
    except Exception as err:  # noqa: BLE001 - reported in the table
        for e in entries.values():
            e.fail(err)
        return entries
    with use_runtime(runtime):
        try:
            base = build_model(model_name, image_size)
        except Exception as err:  # noqa: BLE001
            for e in entries.values():
                e.fail(err)
            return entries
        makers: dict[str, Callable[[], tuple[Any, list]]] = {
            "plain": lambda: (base, []),
            "masked": lambda: (tfprune.prune_filters(base, 0.5, "l1"), []),
            "GReg": lambda: (tfprune.prune_filters(base, 0.0), [greg_callback()]),
        }
        for config in CONFIGS:
            entry = entries[config]
            try:
                entry.model, entry.callbacks = makers[config]()
                entry.precision = model_precision(entry.model)
                compile_model(entry.model, RECIPE, 0.01, steps_per_execution=1)
            except Exception as err:  # noqa: BLE001
                entry.fail(err)
    # Warm-up outside the block: the policy and jit_compile are fixed at build/compile time.
    for entry in entries.values():
        if entry.model is None:
            continue
        try:
            entry.model.fit(data, epochs=1, steps_per_epoch=2, callbacks=entry.callbacks, verbose=0)
        except Exception as err:  # noqa: BLE001
            entry.fail(err)
    return entries


class StepWindow(keras.callbacks.Callback):
    """Wall and process CPU time from the first batch's start to the last batch's end.

    Listed after the other callbacks, so the window holds every step and every callback's
    per-step work, but not ``fit``'s setup or per-epoch/per-fit callback work.
    """

    def __init__(self) -> None:
        super().__init__()
        self.start = self.end = (0.0, 0.0)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if batch == 0:
            self.start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.end = (time.perf_counter(), time.process_time())


def time_fit(entry: Entry, data: tf.data.Dataset, steps: int, batch: int) -> None:
    """One timed ``fit`` of ``steps`` steps; appends examples/s (or records the error)."""
    if entry.model is None:
        return
    window = StepWindow()
    try:
        entry.model.fit(
            data, epochs=1, steps_per_epoch=steps, callbacks=[*entry.callbacks, window], verbose=0
        )
        if entry.model.stop_training:
            raise RuntimeError("fit stopped early (model.stop_training set)")
        entry.rates.append(steps * batch / (window.end[0] - window.start[0]))
        entry.cpu_rates.append(steps * batch / max(window.end[1] - window.start[1], 1e-9))
    except Exception as err:  # noqa: BLE001
        entry.fail(err)


def median_ratio(a: Entry, b: Entry, cpu: bool = False) -> float | None:
    """Median over rounds of a's rate / b's rate (same round), None when either failed."""
    ra, rb = (a.cpu_rates, b.cpu_rates) if cpu else (a.rates, b.rates)
    if a.error or b.error or not ra or len(ra) != len(rb):
        return None
    return float(np.median(np.asarray(ra) / np.asarray(rb)))


def fmt_rate(e: Entry, cpu: bool = False) -> str:
    rates = e.cpu_rates if cpu else e.rates
    if e.error:
        return f"n/a ({e.error})"
    return f"{float(np.median(rates)):.1f}" if rates else "n/a (not run)"


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def print_table(entries: dict[str, dict[str, Entry]], runtimes: list[str], cpu: bool) -> None:
    """Rows plain/masked/GReg: median rate per runtime, then the side-by-side ratios."""
    unit = "ex/cpu-s" if cpu else "ex/s"
    header = ["config"] + [f"{rt} {unit}" for rt in runtimes]
    header += [f"÷plain ({rt})" for rt in runtimes]
    others = [rt for rt in runtimes if rt != "float32" and "float32" in runtimes]
    header += [f"{rt}÷float32" for rt in others]
    rows = []
    for c in CONFIGS:
        row = [c] + [fmt_rate(entries[rt][c], cpu) for rt in runtimes]
        row += [
            fmt_ratio(median_ratio(entries[rt][c], entries[rt]["plain"], cpu)) for rt in runtimes
        ]
        row += [
            fmt_ratio(median_ratio(entries[rt][c], entries["float32"][c], cpu)) for rt in others
        ]
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in [header, *rows]:
        print(
            "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
        )


def bench_model(name: str, args: Any, runtimes: list[str]) -> None:
    """Prepare every (runtime, config), time them in interleaved rounds, print the table."""
    data = model_data(name, args.image_size, args.batch)
    entries: dict[str, dict[str, Entry]] = {}
    t0 = time.perf_counter()
    for rt in runtimes:
        t = time.perf_counter()
        entries[rt] = prepare(name, rt, args.image_size, data)
        print(f"  {name} / {rt}: built, compiled and warmed up in {time.perf_counter() - t:.0f} s")
    print(f"  setup total {time.perf_counter() - t0:.0f} s", flush=True)
    pairs = [(rt, c) for rt in runtimes for c in CONFIGS]
    for r in range(args.rounds):
        for rt, c in pairs if r % 2 == 0 else pairs[::-1]:
            time_fit(entries[rt][c], data, args.steps, args.batch)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)

    shape = (
        "32x32x3, 10 classes"
        if name == "resnet56"
        else (f"{args.image_size}x{args.image_size}x3, 1000 classes")
    )
    print(
        f"\n{name} ({shape}), batch {args.batch}, {args.rounds} rounds x {args.steps} steps, "
        "median examples/s"
    )
    print_table(entries, runtimes, cpu=False)
    print("same rounds, examples per process CPU second (steadier on a shared machine):")
    print_table(entries, runtimes, cpu=True)
    for rt in runtimes:
        policies = {c: entries[rt][c].precision for c in CONFIGS}
        greg = entries[rt]["GReg"].callbacks
        phase = f", GReg phase after timing: {greg[0].phase}" if greg else ""
        print(f"  {rt}: model policies {policies}{phase}")
    del entries
    keras.backend.clear_session()
    gc.collect()


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            try:
                names.append(
                    tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                )
            except Exception:  # noqa: BLE001
                names.append(gpu.name)
        return "GPU: " + ", ".join(names)
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name in ("", platform.machine()):
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"})
    native = f"native bf16: {', '.join(bf16)}" if bf16 else "no native bf16 flags"
    if not flags:
        native = "bf16 support unknown"
    return f"CPU: {name}, {os.cpu_count()} cores, {native}"


flags.DEFINE_list("models", ["resnet56", "resnet50"], "Comma-separated models: resnet56, resnet50.")
flags.DEFINE_integer("batch", 8, "Training batch size.", lower_bound=1)
flags.DEFINE_integer("steps", 10, "Timed fit steps per round.", lower_bound=1)
flags.DEFINE_integer(
    "rounds", 3, "Interleaved rounds of all (runtime, config) pairs.", lower_bound=1
)
flags.DEFINE_integer("image_size", 64, "ResNet-50 input size (pixels).", lower_bound=1)
flags.DEFINE_list(
    "runtimes",
    ["float32", "mixed", "xla"],
    "Comma-separated runtimes: float32, mixed (mixed precision), xla (float32 + jit_compile).",
)


def main(argv: list[str]) -> None:
    """Time every model under every runtime and print the tables."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    runtimes = list(args.runtimes)
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise app.UsageError(f"unknown runtime(s) {unknown}; use {', '.join(RUNTIMES)}")
    models = list(args.models)

    mixed = Runtime("auto").precision
    print(
        f"TF {tf.__version__}, {device_name()}, mixed = {mixed}, xla = float32 + jit_compile; "
        f"load average before: {os.getloadavg()}",
        flush=True,
    )
    start = time.perf_counter()
    for name in models:
        bench_model(name, args, runtimes)
    print(f"\nload average after: {os.getloadavg()}, total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
