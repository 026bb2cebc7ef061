"""Prune every tf_keras.applications architecture at 50% and print the coverage table.

For each model (built with ``weights=None``): fraction of produced channels that are prunable,
FLOPs (MACs) and params before/after ``tfprune.shrink(model, 0.5)``, the max relative error
between the masked and the stripped model, and the layers that block pruning.

    python benchmarks/coverage.py [--models ResNet50,MobileNetV2] [--json out.json]
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import tfprune  # noqa: E402
from tfprune.batch_norm import recalibrate_batch_norm  # noqa: E402
from tfprune.compat import keras  # noqa: E402
from tfprune.flops import count_flops, count_params  # noqa: E402

SMALL_INPUT = {"NASNetLarge": (331, 331, 3), "NASNetMobile": (224, 224, 3)}


def all_applications() -> list[str]:
    """Names of every architecture builder in tf_keras.applications."""
    return sorted(n for n in dir(keras.applications) if n[0].isupper())


def measure(name: str, size: int) -> dict:
    """Prune one application at 50% and compare masked vs stripped outputs."""
    shape = SMALL_INPUT.get(name, (size, size, 3))
    builder = getattr(keras.applications, name)
    kwargs = {"weights": None, "classifier_activation": None}  # compare logits, not softmax
    try:
        model = builder(input_shape=shape, **kwargs)
    except Exception:  # noqa: BLE001 - some models only accept their default size
        model = builder(**kwargs)
        shape = tuple(model.input_shape[1:])
    rng = np.random.default_rng(0)
    recalibrate_batch_norm(model, rng.normal(size=(16, *shape)).astype(np.float32))
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    report = tfprune.explain(model)
    t0 = time.perf_counter()
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    seconds = time.perf_counter() - t0
    a, b = masked(x, training=False).numpy(), small(x, training=False).numpy()
    rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
    f0, f1 = count_flops(model).total, count_flops(small).total
    p0, p1 = count_params(model).total, count_params(small).total
    return {
        "model": name,
        "input": "x".join(map(str, shape)),
        "prunable_fraction": report.prunable_fraction,
        "flops_before": f0,
        "flops_after": f1,
        "flops_reduction": 1 - f1 / f0,
        "params_before": p0,
        "params_after": p1,
        "rel_error": rel,
        "same_output_shape": small.output_shape == model.output_shape,
        "prune_strip_seconds": seconds,
        "blocking": report.blocking_layers[:3],
    }


HEADER = (
    "| model | input | prunable channels | FLOPs reduction at 50% | params | rel. error "
    "| blocked by |\n|---|---|---|---|---|---|---|"
)


def row_markdown(r: dict) -> str:
    """One table row (the blocking reasons of models that are not fully prunable)."""
    if "error" in r:
        return f"| {r['model']} | FAILED: {r['error'][:120]} | | | | | |"
    blocked = "; ".join(r.get("blocking", [])[:2]) if r["prunable_fraction"] < 0.995 else ""
    return (
        f"| {r['model']} | {r['input']} | {r['prunable_fraction']:.0%} | "
        f"{r['flops_reduction']:.0%} | {r['params_before'] / 1e6:.1f}M → "
        f"{r['params_after'] / 1e6:.1f}M | {r['rel_error']:.1e} | {blocked} |"
    )


flags.DEFINE_string(
    "models",
    "",
    "Comma-separated Keras Application names (e.g. ResNet50,MobileNetV2); default all.",
)
flags.DEFINE_integer(
    "size", 96, "Input size (pixels) where the architecture allows it.", lower_bound=1
)
flags.DEFINE_string("json", "", "Also write the rows to this JSON file.")
flags.DEFINE_string("from_json", "", "Only print the table of rows saved with --json.")


def main(argv: list[str]) -> None:
    """Run the coverage sweep and print a Markdown table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            print(HEADER)
            for r in json.load(f):
                print(row_markdown(r))
        return
    names = [n for n in args.models.split(",") if n] or all_applications()
    rows = []
    print(HEADER)
    for name in names:
        try:
            r = measure(name, args.size)
            rows.append(r)
            print(row_markdown(r), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            rows.append({"model": name, "error": f"{type(e).__name__}: {e}"})
            print(row_markdown(rows[-1]), flush=True)
            traceback.print_exc(file=sys.stderr)
        keras.backend.clear_session()
        gc.collect()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
