"""Deployed speed of pruned models: SavedModel serving_default, measured side by side in one run.

For each model, the dense, the stripped (tfprune.strip_filters) and the stripped + folded
(BatchNorm folded, tfprune.export_saved_model's default) exports are loaded with
``tf.saved_model.load`` and timed at several batch sizes: warm-up calls first, then interleaved
rounds (the arms' order rotates every round), median and p90 of the per-call times.
Speed-ups are medians of per-round ratios (the two arms of a ratio ran next to each other,
which keeps a shared machine's load out of them); the CPU-time column uses this process's CPU
time instead of wall time (steadier on a busy machine). Efficiency = speed-up / MAC
reduction. Two pairings are printed: against the dense export *folded too* (what pruning alone
buys, the fair one) and against the plain dense export.

Side by side on CIFAR ResNet-56: TF-MOT (``prune_low_magnitude`` 50 % + ``strip_pruning``:
zeros, same shapes) and the same architecture pruned with Torch-Pruning on CPU torch
(``benchmarks/torch_pruning_resnet56.py``, run in its own process: its dependency-graph + prune
time vs tfprune's analysis + mask + strip time, and its eager speed-up with BatchNorm fused by
``torch.fx``). ``round_to=8/16`` variants of ResNet-56 show whether
channel counts in multiples of 8/16 change CPU efficiency.

    python benchmarks/deploy_speed.py                       # everything (long on 2 cores)
    python benchmarks/deploy_speed.py --models=resnet56 --rounds=3 --batches=1,32
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import tfprune  # noqa: E402
from tfprune.compat import keras, tf  # noqa: E402
from tfprune.graph.groups import analyze  # noqa: E402
from tfprune.models import keras_application  # noqa: E402
from tfprune.models.resnet_cifar import resnet56  # noqa: E402

RESNET56_SCHEME = {r"stage\d_block\d+_conv1": 0.5}

#: name -> (builder(image_size), sparsity spec, round_to, input size or None for --image_size)
MODELS = {
    "resnet56": (lambda s: resnet56(), RESNET56_SCHEME, None, 32),
    "resnet56_r8": (lambda s: resnet56(), RESNET56_SCHEME, 8, 32),
    "resnet56_r16": (lambda s: resnet56(), RESNET56_SCHEME, 16, 32),
    "resnet50_2x": (lambda s: keras_application("ResNet50", input_shape=(s, s, 3)), 0.3, None, 0),
    "resnet50_4x": (lambda s: keras_application("ResNet50", input_shape=(s, s, 3)), 0.5, None, 0),
    "mobilenetv2_2x": (
        lambda s: keras_application("MobileNetV2", input_shape=(s, s, 3)),
        0.3,
        None,
        0,
    ),
}


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _macs(model: keras.Model) -> int:
    return tfprune.count_flops(model).total


def _serving_fn(path: str):
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    name = list(fn.structured_input_signature[1])[0]
    return loaded, lambda x: fn(**{name: x})


class Timing:
    """Per-round mean call times of each arm (wall clock and this process's CPU time)."""

    def __init__(self, wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
        self.wall, self.cpu = wall, cpu

    def median(self, arm: str) -> float:
        return float(np.median(self.wall[arm]))

    def p90(self, arm: str) -> float:
        return float(np.percentile(self.wall[arm], 90))

    def speedup(self, base: str, arm: str, cpu: bool = False) -> float:
        """Median over rounds of base / arm (pairs measured next to each other in time)."""
        times = self.cpu if cpu else self.wall
        return float(np.median(np.asarray(times[base]) / np.asarray(times[arm])))


def time_arms(arms: dict, batch: int, shape: tuple, rounds: int, min_time: float) -> Timing:
    """Interleaved timing: every round calls each arm (rotating order) for ~``min_time`` s."""
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32))
    calls = {}
    for name, fn in arms.items():  # warm-up and calls per round
        for _ in range(2):
            fn(x)
        t0 = time.perf_counter()
        fn(x)
        calls[name] = max(1, math.ceil(min_time / max(time.perf_counter() - t0, 1e-6)))
    wall: dict[str, list[float]] = {k: [] for k in arms}
    cpu: dict[str, list[float]] = {k: [] for k in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(calls[name]):
                out = arms[name](x)
                tf.nest.map_structure(lambda t: t.numpy(), out)
            wall[name].append((time.perf_counter() - t0) / calls[name])
            cpu[name].append((time.process_time() - c0) / calls[name])
    return Timing(wall, cpu)


def _tfmot_stripped(model: keras.Model) -> keras.Model:
    import tensorflow_model_optimization as tfmot

    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)

    def wrap(layer):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, schedule)
        return layer.__class__.from_config(layer.get_config())

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    for src, dst in zip(model.layers, wrapped.layers):  # copy the trained weights in
        if isinstance(dst, keras.layers.Wrapper):  # PruneLowMagnitude
            dst.layer.set_weights(src.get_weights())
        else:
            dst.set_weights(src.get_weights())
    step = tfmot.sparsity.keras.UpdatePruningStep()
    step.set_model(wrapped)
    step.on_train_begin()
    step.on_train_batch_begin(0)
    x = np.zeros((1, *model.input_shape[1:]), np.float32)
    wrapped(x, training=True)  # a training call applies the 50 % masks
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    kernels = [w.numpy() for w in stripped.weights if w.name.endswith("kernel:0")]
    zeros = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
    print(f"  TF-MOT: {zeros:.0%} of conv/dense weights are zero after strip_pruning")
    return stripped


def bench_model(name: str, args: types.SimpleNamespace, workdir: str) -> list[str]:
    """Build, prune, export and time one model; returns Markdown table rows."""
    build, sparsity, round_to, size = MODELS[name]
    size = size or args.image_size
    model = build(size)
    t0 = time.perf_counter()
    analyze(model)
    masked = tfprune.prune_filters(model, sparsity, round_to=round_to)
    small = tfprune.strip_filters(masked)
    t_tfprune = time.perf_counter() - t0
    reduction = _macs(model) / _macs(small)
    shape = tuple(model.input_shape[1:])
    check = np.random.default_rng(1).normal(size=(2, *shape)).astype(np.float32)
    paths = {}
    variants = {
        "dense": (model, False),
        "dense+fold": (model, True),
        "stripped": (small, False),
        "stripped+fold": (small, True),
    }
    if args.tfmot and name == "resnet56":
        variants["tfmot"] = (_tfmot_stripped(model), False)
    for arm, (m, fold) in variants.items():
        paths[arm] = tfprune.export_saved_model(
            m, os.path.join(workdir, f"{name}-{arm}"), fold=fold, check_inputs=check, rtol=1e-4
        )
    loaded = {arm: _serving_fn(p) for arm, p in paths.items()}
    fns = {arm: fn for arm, (_, fn) in loaded.items()}
    print(
        f"\n{name}: {model.count_params():,} -> {small.count_params():,} params, MACs / "
        f"{reduction:.2f}, tfprune analysis+mask+strip {t_tfprune:.2f} s  ({_load()})"
    )
    rows = []
    for batch in args.batches:
        res = time_arms(fns, batch, shape, args.rounds, args.min_time)
        line = f"  b{batch:<3d} " + "  ".join(
            f"{arm} {res.median(arm) * 1e3:.2f}/{res.p90(arm) * 1e3:.2f} ms" for arm in fns
        )
        print(line + "   (median/p90 wall)")
        fair = res.speedup("dense+fold", "stripped+fold")
        plain = res.speedup("dense", "stripped+fold")
        unfolded = res.speedup("dense", "stripped")
        fair_cpu = res.speedup("dense+fold", "stripped+fold", cpu=True)
        print(
            f"        stripped+fold vs dense+fold {fair:.2f}x (efficiency {fair / reduction:.2f}; "
            f"CPU time {fair_cpu:.2f}x, {fair_cpu / reduction:.2f}); vs dense {plain:.2f}x; "
            f"stripped vs dense {unfolded:.2f}x; folding alone "
            f"{res.speedup('dense', 'dense+fold'):.2f}x"
        )
        extra = f"{res.speedup('dense', 'tfmot'):.2f}x" if "tfmot" in fns else "—"
        rows.append(
            f"| {name} | {reduction:.2f}x | {batch} | {res.median('dense') * 1e3:.1f} | "
            f"{res.median('dense+fold') * 1e3:.1f} | {res.median('stripped') * 1e3:.1f} | "
            f"{res.median('stripped+fold') * 1e3:.1f} | {unfolded:.2f}x | {fair:.2f}x | "
            f"**{fair / reduction:.2f}** | {fair_cpu / reduction:.2f} | "
            f"{plain / reduction:.2f} | {extra} |"
        )
    return rows


def bench_torch(args: types.SimpleNamespace) -> list[str]:
    """Torch-Pruning's side, in its own process (TensorFlow's thread pools stay out of it)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_pruning_resnet56.py")
    done = subprocess.run(
        [sys.executable, script, f"--batches={','.join(map(str, args.batches))}"]
        + [f"--rounds={args.rounds}", f"--min_time={args.min_time}"],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS=str(args.torch_threads)),
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith(("|", "<!--"))]
    print("\n" + "\n".join(line for line in done.stdout.splitlines() if line not in rows))
    if done.returncode != 0:
        print(done.stderr[-2000:])
    return rows


flags.DEFINE_list(
    "models",
    ["resnet56", "resnet56_r8", "resnet56_r16", "resnet50_2x", "resnet50_4x", "mobilenetv2_2x"],
    f"Comma-separated models to time, of {', '.join(MODELS)}.",
)
flags.DEFINE_list("batches", ["1", "32", "64"], "Comma-separated batch sizes to time.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds of all arms.", lower_bound=1)
flags.DEFINE_float("min_time", 0.3, "Seconds of calls per arm per round.", lower_bound=0.0)
flags.DEFINE_integer(
    "image_size", 224, "Input size (pixels) of the ImageNet models.", lower_bound=1
)
flags.DEFINE_boolean("no_tfmot", False, "Skip TF-MOT's prune_low_magnitude arm.")
flags.DEFINE_boolean(
    "no_torch", False, "Skip Torch-Pruning (benchmarks/torch_pruning_resnet56.py)."
)
flags.DEFINE_integer(
    "torch_threads",
    1,
    "torch's OpenMP threads (more than the free cores makes it spin, far slower).",
    lower_bound=1,
)


def main(argv: list[str]) -> None:
    """Run the chosen models and print a Markdown table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = types.SimpleNamespace(**flags.FLAGS.flag_values_dict())
    args.batches = [int(b) for b in args.batches]
    args.tfmot, args.torch = not args.no_tfmot, not args.no_torch
    names = list(args.models)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise app.UsageError(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    print(f"tensorflow {tf.__version__}, {_load()}")
    rows = []
    workdir = tempfile.mkdtemp(prefix="tfprune-deploy-speed-")
    try:
        for name in names:
            rows += bench_model(name, args, workdir)
            shutil.rmtree(workdir, ignore_errors=True)
            os.makedirs(workdir, exist_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.torch and any(n.startswith("resnet56") for n in names):
        rows += bench_torch(args)
    print(f"\n{_load()} (end)\n")
    print(
        "| model | MACs ÷ | batch | dense ms | dense+fold ms | stripped ms | stripped+fold ms | "
        "stripped vs dense | stripped+fold vs dense+fold | efficiency | efficiency (CPU time) "
        "| efficiency vs unfolded dense | TF-MOT vs dense |"
    )
    print("|" + "---|" * 13)
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
