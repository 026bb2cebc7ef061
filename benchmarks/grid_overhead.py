"""The fixed cost per run of a protocol grid, with compiled twins on and off.

Every run of a grid builds new models; Keras traces ``fit``'s and ``evaluate``'s functions and
the mean-JSV Jacobian once per model object. With twins on (the default,
:mod:`tfprune.training.twins`) the runs of one model shape train, evaluate and measure one
compiled twin, so these functions are traced once per shape; off, once per run. This script
runs the grid of a protocol config (``tfprune.protocols.execute`` on each of its runs, in a
fresh folder) both ways in ``--rounds`` interleaved rounds (the order is swapped every other
round) in one process, and prints per way: the median over rounds of the grid's wall time and
process CPU time (user+sys, which a shared machine disturbs less), the per-run mean, the twins
built and reused, and the ratios off/on. The records of both ways are compared: their metrics
(timings aside) and histories must be equal.

    python benchmarks/grid_overhead.py [--config configs/finetune_lr.yaml]
        [--params_override='seeds=[0]'] [--rounds 2]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import app, flags  # noqa: E402

from tfprune.protocols import execute, resolve_config  # noqa: E402
from tfprune.protocols.runner import expand_config  # noqa: E402
from tfprune.training import twins  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "configs/finetune_lr.yaml", "Protocol config file (YAML).")
flags.DEFINE_multi_string(
    "params_override", ["seeds=[0]"], "Overrides on top of --config, as tfprune-compare takes."
)
flags.DEFINE_integer("rounds", 2, "Interleaved rounds (each runs the grid with twins off and on).")

TIMINGS = ("seconds", "train_seconds", "base_seconds", "wall_seconds")


def run_grid(specs: list, enabled: bool) -> dict:
    """The grid's records, wall and CPU seconds and twin counts, with twins on or off."""
    with tempfile.TemporaryDirectory() as workdir, twins.sharing(enabled):
        wall, cpu = time.perf_counter(), time.process_time()
        records = [execute(spec, workdir, log=lambda _msg: None) for spec in specs]
        return {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "stats": twins.stats(),
            "records": records,
        }


def _comparable(record) -> tuple:
    metrics = {k: v for k, v in record.metrics.items() if k not in TIMINGS}
    return metrics, record.history


def main(argv: list[str]) -> None:
    del argv
    specs = expand_config(resolve_config(None, FLAGS.config, FLAGS.params_override))
    print(f"{FLAGS.config} {FLAGS.params_override}: {len(specs)} runs, {FLAGS.rounds} rounds")
    results: dict[bool, list[dict]] = {False: [], True: []}
    for i in range(FLAGS.rounds):
        for enabled in (False, True) if i % 2 == 0 else (True, False):
            out = run_grid(specs, enabled)
            results[enabled].append(out)
            print(
                f"round {i + 1} twins {'on ' if enabled else 'off'}: wall {out['wall']:.1f}s "
                f"cpu {out['cpu']:.1f}s ({out['stats']})"
            )
    summary = {}
    for enabled, outs in results.items():
        wall = statistics.median(o["wall"] for o in outs)
        cpu = statistics.median(o["cpu"] for o in outs)
        summary[enabled] = (wall, cpu)
        print(
            f"twins {'on ' if enabled else 'off'}: grid wall {wall:.1f}s cpu {cpu:.1f}s; "
            f"per run wall {wall / len(specs):.2f}s cpu {cpu / len(specs):.2f}s; "
            f"{outs[-1]['stats']}"
        )
    (w_off, c_off), (w_on, c_on) = summary[False], summary[True]
    print(f"off/on: wall {w_off / w_on:.2f}x, cpu {c_off / c_on:.2f}x")
    same = all(
        [_comparable(r) for r in off["records"]] == [_comparable(r) for r in on["records"]]
        for off, on in zip(results[False], results[True])
    )
    print("records (metrics without timings, histories): " + ("equal" if same else "DIFFERENT"))


if __name__ == "__main__":
    app.run(main)
