"""Export every Keras Application and zoo model the way ``tfprune-export --verify`` does.

For each model (random weights, BatchNormalization statistics re-estimated on one random batch
so outputs have a usable scale): prune 50 % of every prunable group and strip
(``tfprune.shrink``), then ``tfprune.export_for_serving`` with BatchNorm folding, warm-up
requests, TFLite and ONNX conversions (ONNX only where tf2onnx can convert the model: not
tf_keras' grouped convolutions, shown as n/a) and ``verify=True`` (the export reloaded in a fresh
Python process that never imports tfprune). Each model runs in its own process, with a time
limit, so one crash or a model too large for this machine is reported and the sweep goes on.
The table gives each check's measured relative difference and its tolerance.

    python benchmarks/export_verify.py                        # every model (long on 2 cores)
    python benchmarks/export_verify.py --models=resnet20,keras:MobileNetV2 --no_runtimes
    python benchmarks/export_verify.py --from_json=rows.json  # only render saved rows
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HEADER = (
    "| model | input | MACs ÷ | folded / converted | reload (graph) | fresh process | TFLite "
    "| ONNX | tolerance | seconds | result |\n|---|---|---|---|---|---|---|---|---|---|---|"
)

#: Applications that accept only their own input size.
FIXED_INPUT = ("NASNetLarge", "NASNetMobile")


def _build(name: str, size: int):
    """The model ``name`` at ``size``² input where the builder allows it, else its own size."""
    from tfprune.models import get_model

    if not name.startswith("keras:") or name[len("keras:") :] in FIXED_INPUT:
        return get_model(name)
    try:
        return get_model(name, input_shape=(size, size, 3))
    except ValueError:  # this application needs a larger (or its default) input
        return get_model(name)


def measure(name: str, size: int, runtimes: bool) -> dict:
    """Shrink one model at 50 %, export it with every check, return the measured row."""
    import numpy as np

    import tfprune
    from tfprune.batch_norm import recalibrate_batch_norm
    from tfprune.deploy.runtimes import onnx_blockers

    t0 = time.perf_counter()
    model = _build(name, size)
    shape = tuple(model.input_shape[1:])
    row = {"model": name, "input": "x".join(map(str, shape))}
    rng = np.random.default_rng(0)
    if np.issubdtype(np.dtype(model.inputs[0].dtype.name), np.floating):
        recalibrate_batch_norm(model, rng.normal(size=(16, *shape)).astype(np.float32))
    before = tfprune.count_flops(model).total
    if tfprune.explain(model).prunable_fraction > 0:
        model = tfprune.shrink(model, 0.5)
    row["mac_reduction"] = before / max(tfprune.count_flops(model).total, 1)
    onnx = runtimes and not onnx_blockers(tfprune.optimize_for_inference(model))
    with tempfile.TemporaryDirectory() as base:
        result = tfprune.export_for_serving(model, base, tflite=runtimes, onnx=onnx, verify=True)
    if runtimes and not onnx:
        row["onnx_note"] = "n/a: grouped conv"
    row.update(
        folded=len(result.fold_report.folded) if result.fold_report else 0,
        converted=len(result.fold_report.converted) if result.fold_report else 0,
        reload=result.max_relative_difference,
        fresh=result.verify["max_relative_difference"],
        tolerance=result.tolerance,
        runtime_tolerance=result.runtime_tolerance,
        tflite=result.runtime_differences.get("tflite"),
        onnx=result.runtime_differences.get("onnx"),
        seconds=time.perf_counter() - t0,
        result="ok",
    )
    return row


def row_markdown(r: dict) -> str:
    """One table row; a failed model shows its error in the last column."""
    if r.get("result") != "ok":
        return f"| {r['model']} | {r.get('input', '')} | | | | | | | | | {r['result'][:160]} |"

    def num(v):
        return "—" if v is None else f"{v:.1e}"

    tol = f"{r['tolerance']:.0e}" + (
        f" / {r['runtime_tolerance']:.0e}" if r["tflite"] is not None else ""
    )
    return (
        f"| {r['model']} | {r['input']} | {r['mac_reduction']:.2f}x | "
        f"{r['folded']} / {r.get('converted', 0)} | "
        f"{num(r['reload'])} | {num(r['fresh'])} | {num(r['tflite'])} | "
        f"{r.get('onnx_note') or num(r['onnx'])} | "
        f"{tol} | {r['seconds']:.0f} | ok |"
    )


def _child(name: str, size: int, runtimes: bool, timeout: float) -> dict:
    """Run one model in its own process; a crash or a timeout becomes the row's result."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        cmd = [sys.executable, __file__, "--one", name, "--size", str(size), "--out", out.name]
        if not runtimes:
            cmd.append("--no_runtimes")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"model": name, "result": f"not finished in {timeout:.0f} s on this machine"}
        text = out.read()
        if proc.returncode == 0 and text:
            return json.loads(text)
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"model": name, "result": f"FAILED (exit {proc.returncode}): {last}"}


flags.DEFINE_string(
    "models", "", "Comma-separated zoo names and keras:<Application> names; default all models."
)
flags.DEFINE_integer("size", 96, "Input size (pixels) of the Keras Applications.", lower_bound=1)
flags.DEFINE_boolean("no_runtimes", False, "Skip the TFLite and ONNX conversions and checks.")
flags.DEFINE_float(
    "timeout", 900, "Seconds each model may take (in its own process).", lower_bound=1
)
flags.DEFINE_string("json", "", "Also write the rows to this JSON file (after every model).")
flags.DEFINE_string("from_json", "", "Only print the table of rows saved with --json.")
flags.DEFINE_string("one", "", "Internal: measure this one model in this process...")
flags.DEFINE_string("out", "", "Internal: ...and write its row to this JSON file.")


def main(argv: list[str]) -> None:
    """Sweep the models (each in a child process) and print a Markdown table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    runtimes = not args.no_runtimes
    if args.one:
        try:
            row = measure(args.one, args.size, runtimes)
        except Exception as err:  # noqa: BLE001 - the row carries the error
            msg = " ".join(str(err).split())
            row = {"model": args.one, "result": f"FAILED: {type(err).__name__}: {msg}"}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(row, f)
        return
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            rows = json.load(f)
    else:
        from tfprune.models import list_models

        names = [n for n in args.models.split(",") if n] or list_models()
        print(
            f"# {len(names)} models; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        rows = []
        print(HEADER, flush=True)
        for name in names:
            rows.append(_child(name, args.size, runtimes, args.timeout))
            print(row_markdown(rows[-1]), flush=True)
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(rows, f, indent=1)
    if args.from_json:
        print(HEADER)
        for r in rows:
            print(row_markdown(r))
    ok = sum(r.get("result") == "ok" for r in rows)
    load = "" if args.from_json else f"; load average {os.getloadavg()[0]:.1f}"
    print(f"\n{ok} of {len(rows)} models exported, reloaded and matched{load}")


if __name__ == "__main__":
    app.run(main)
