"""Prune every Keras Applications architecture at 50% and print the coverage table.

For each model (built with ``weights=None``): fraction of produced channels that are prunable,
FLOPs (MACs) and params before/after ``tfprune.shrink(model, 0.5)``, the max relative error
between the masked and the stripped model, and the layers that block pruning.

``--flavour keras3`` builds each architecture with Keras 3 (``keras.applications``) and adds
whether its FLOPs count equals the count of the same architecture built with tf_keras; where
tfprune cannot prune a Keras 3 model yet, the pruning columns say so.

    python benchmarks/coverage.py [--flavour keras3] [--models ResNet50,MobileNetV2]
        [--json out.json]
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
from tfprune import compat  # noqa: E402
from tfprune.batch_norm import recalibrate_batch_norm  # noqa: E402
from tfprune.compat import keras  # noqa: E402
from tfprune.errors import UnsupportedModelError  # noqa: E402
from tfprune.flops import count_flops, count_params  # noqa: E402

SMALL_INPUT = {"NASNetLarge": (331, 331, 3), "NASNetMobile": (224, 224, 3)}


def keras_of(flavour: str) -> object:
    """The Keras module that builds the applications of ``flavour``."""
    return compat.keras3() if flavour == compat.KERAS3 else keras


def all_applications(flavour: str = compat.TF_KERAS) -> list[str]:
    """Names of every architecture builder in ``keras.applications`` of ``flavour``."""
    applications = keras_of(flavour).applications
    return sorted(n for n in dir(applications) if n[0].isupper())


def build(name: str, size: int, flavour: str) -> tuple[object, tuple]:
    """One application with random weights and logits out, and its input shape."""
    shape = SMALL_INPUT.get(name, (size, size, 3))
    builder = getattr(keras_of(flavour).applications, name)
    kwargs = {"weights": None, "classifier_activation": None}  # compare logits, not softmax
    try:
        model = builder(input_shape=shape, **kwargs)
    except Exception:  # noqa: BLE001 - some models only accept their default size
        model = builder(**kwargs)
        shape = tuple(model.input_shape[1:])
    return model, shape


def _prune(model: object, shape: tuple, flavour: str) -> dict:
    """Masked at 50% and stripped: FLOPs, params and the masked/stripped relative error."""
    rng = np.random.default_rng(0)
    if flavour == compat.TF_KERAS:
        recalibrate_batch_norm(model, rng.normal(size=(16, *shape)).astype(np.float32))
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    t0 = time.perf_counter()
    try:
        masked = tfprune.prune_filters(model, 0.5)
        small = tfprune.strip_filters(masked)
    except UnsupportedModelError as e:
        return {"prune_error": str(e)}
    seconds = time.perf_counter() - t0
    a = np.asarray(masked(x, training=False))
    b = np.asarray(small(x, training=False))
    f1 = count_flops(small).total
    return {
        "flops_after": f1,
        "flops_reduction": 1 - f1 / count_flops(model).total,
        "params_after": count_params(small).total,
        "rel_error": float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)),
        "same_output_shape": small.output_shape == model.output_shape,
        "prune_strip_seconds": seconds,
    }


def measure(name: str, size: int, flavour: str = compat.TF_KERAS) -> dict:
    """Prune one application at 50% and compare masked vs stripped outputs."""
    model, shape = build(name, size, flavour)
    report = tfprune.explain(model)
    row = {
        "model": name,
        "flavour": flavour,
        "input": "x".join(map(str, shape)),
        "prunable_fraction": report.prunable_fraction,
        "flops_before": count_flops(model).total,
        "params_before": count_params(model).total,
        "blocking": report.blocking_layers[:3],
    }
    if flavour == compat.KERAS3:
        twin, _ = build(name, size, compat.TF_KERAS)
        row["flops_tf_keras"] = count_flops(twin).total
    row.update(_prune(model, shape, flavour))
    return row


HEADER = (
    "| model | input | prunable channels | FLOPs reduction at 50% | params | rel. error "
    "| blocked by |\n|---|---|---|---|---|---|---|"
)
HEADER_KERAS3 = (
    "| model (Keras 3) | input | prunable channels | MACs | = tf_keras twin | FLOPs "
    "reduction at 50% | params | rel. error | blocked by |\n|---|---|---|---|---|---|---|---|---|"
)


def header(flavour: str) -> str:
    """The table header for ``flavour``."""
    return HEADER_KERAS3 if flavour == compat.KERAS3 else HEADER


def row_markdown(r: dict) -> str:
    """One table row (the blocking reasons of models that are not fully prunable)."""
    keras3 = r.get("flavour") == compat.KERAS3
    if "error" in r:
        return f"| {r['model']} | FAILED: {r['error'][:120]} |" + " |" * (7 if keras3 else 5)
    blocked = "; ".join(r.get("blocking", [])[:2]) if r["prunable_fraction"] < 0.995 else ""
    twin = ""
    if keras3:
        same = "yes" if r["flops_before"] == r["flops_tf_keras"] else f"no ({r['flops_tf_keras']})"
        twin = f" {r['flops_before']} | {same} |"
    if "prune_error" in r:
        pruned = f" not pruned: {r['prune_error'][:60]} | {r['params_before'] / 1e6:.1f}M | |"
    else:
        pruned = (
            f" {r['flops_reduction']:.0%} | {r['params_before'] / 1e6:.1f}M → "
            f"{r['params_after'] / 1e6:.1f}M | {r['rel_error']:.1e} |"
        )
    return (
        f"| {r['model']} | {r['input']} | {r['prunable_fraction']:.0%} |{twin}{pruned} {blocked} |"
    )


flags.DEFINE_string(
    "models",
    "",
    "Comma-separated Keras Application names (e.g. ResNet50,MobileNetV2); default all.",
)
flags.DEFINE_integer(
    "size", 96, "Input size (pixels) where the architecture allows it.", lower_bound=1
)
flags.DEFINE_enum(
    "flavour",
    "tf_keras",
    ["tf_keras", "keras3"],
    "Which Keras builds the applications: tf_keras (Keras 2) or keras3 (import keras).",
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
            rows = json.load(f)
        print(header(rows[0].get("flavour", compat.TF_KERAS) if rows else compat.TF_KERAS))
        for r in rows:
            print(row_markdown(r))
        return
    names = [n for n in args.models.split(",") if n] or all_applications(args.flavour)
    rows = []
    print(header(args.flavour))
    for name in names:
        try:
            r = measure(name, args.size, args.flavour)
            rows.append(r)
            print(row_markdown(r), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            rows.append(
                {"model": name, "flavour": args.flavour, "error": f"{type(e).__name__}: {e}"}
            )
            print(row_markdown(rows[-1]), flush=True)
            traceback.print_exc(file=sys.stderr)
        keras_of(args.flavour).backend.clear_session()
        gc.collect()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
