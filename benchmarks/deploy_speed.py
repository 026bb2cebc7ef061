"""Deployed speed of pruned models: SavedModel serving_default, measured side by side in one run.

For each model, the dense, the stripped (tfprune.strip_filters) and the stripped + folded
(BatchNorm folded, tfprune.export_saved_model's default) exports are loaded with
``tf.saved_model.load`` and timed at several batch sizes: warm-up calls first, then interleaved
rounds (the arms' order rotates every round), median and p90 of the per-call times. Efficiency
= speed-up / MAC reduction. Two pairings are printed: against the dense export *folded too*
(what pruning alone buys, the fair one) and against the plain dense export.

Side by side on CIFAR ResNet-56: TF-MOT (``prune_low_magnitude`` 50 % + ``strip_pruning``:
zeros, same shapes) and the same architecture pruned with Torch-Pruning on CPU torch (its
dependency-graph + prune time vs tfprune's analysis + mask + strip time, and its eager speed-up
with BatchNorm fused by ``torch.fx``). ``round_to=8/16`` variants of ResNet-56 show whether
channel counts in multiples of 8/16 change CPU efficiency.

    python benchmarks/deploy_speed.py                       # everything (long on 2 cores)
    python benchmarks/deploy_speed.py --models=resnet56 --rounds=3 --batches=1,32
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

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


def time_arms(arms: dict, batch: int, shape: tuple, rounds: int, min_time: float) -> dict:
    """Interleaved timing: ``{arm: (median s, p90 s)}`` per call at ``batch``."""
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32))
    calls = {}
    for name, fn in arms.items():  # warm-up and calls per round
        for _ in range(2):
            fn(x)
        t0 = time.perf_counter()
        fn(x)
        calls[name] = max(1, math.ceil(min_time / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for _ in range(calls[name]):
                t0 = time.perf_counter()
                out = arms[name](x)
                tf.nest.map_structure(lambda t: t.numpy(), out)
                times[name].append(time.perf_counter() - t0)
    return {k: (float(np.median(v)), float(np.percentile(v, 90))) for k, v in times.items()}


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


def bench_model(name: str, args: argparse.Namespace, workdir: str) -> list[str]:
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
        d, df = res["dense"][0], res["dense+fold"][0]
        sf = res["stripped+fold"][0]
        line = f"  b{batch:<3d} " + "  ".join(
            f"{arm} {m * 1e3:.2f}/{p * 1e3:.2f} ms" for arm, (m, p) in res.items()
        )
        print(line + "   (median/p90)")
        speed_fair, speed_plain = df / sf, d / sf
        eff = speed_fair / reduction
        print(
            f"        stripped+fold vs dense+fold {speed_fair:.2f}x (efficiency {eff:.2f}); "
            f"vs dense {speed_plain:.2f}x ({speed_plain / reduction:.2f}); stripped vs dense "
            f"{d / res['stripped'][0]:.2f}x; folding alone {d / df:.2f}x"
        )
        extra = f"{d / res['tfmot'][0]:.2f}x" if "tfmot" in res else "—"
        rows.append(
            f"| {name} | {reduction:.2f}x | {batch} | {d * 1e3:.2f} | {df * 1e3:.2f} | "
            f"{res['stripped'][0] * 1e3:.2f} | {sf * 1e3:.2f} | {d / res['stripped'][0]:.2f}x | "
            f"{speed_fair:.2f}x | **{eff:.2f}** | {speed_plain / reduction:.2f} | {extra} |"
        )
    return rows


def bench_torch(args: argparse.Namespace) -> list[str]:
    """ResNet-56 (1x1-conv shortcuts where shapes change) pruned with Torch-Pruning on CPU."""
    try:
        import torch
        import torch_pruning as tp
        from torch import nn
        from torch.fx.experimental.optimization import fuse
    except ImportError as err:
        print(f"\nTorch-Pruning skipped: {err} (pip install 'tfprune[bench]', CPU torch)")
        return []

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.short = nn.Identity()
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.short(x))

    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for stage, width in enumerate((16, 32, 64)):
        for b in range(9):
            layers.append(Block(cin, width, 2 if stage and b == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    dense = nn.Sequential(*layers).eval()
    pruned = copy.deepcopy(dense)
    example = torch.randn(1, 3, 32, 32)
    t0 = time.perf_counter()
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=example)
    for block in [m for m in pruned.modules() if isinstance(m, Block)]:
        scores = block.conv1.weight.detach().abs().mean((1, 2, 3))
        idxs = torch.argsort(scores)[: block.conv1.out_channels // 2].tolist()
        group = graph.get_pruning_group(block.conv1, tp.prune_conv_out_channels, idxs=idxs)
        group.prune()
    t_tp = time.perf_counter() - t0
    n_dense = sum(p.numel() for p in dense.parameters())
    n_pruned = sum(p.numel() for p in pruned.parameters())
    macs_dense, _ = tp.utils.count_ops_and_params(dense, example)
    macs_pruned, _ = tp.utils.count_ops_and_params(pruned, example)
    reduction = macs_dense / macs_pruned
    arms = {"dense": fuse(dense), "pruned": fuse(pruned)}
    print(
        f"\nTorch-Pruning ResNet-56 (torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads): {n_dense:,} -> {n_pruned:,} params, MACs / {reduction:.2f}, dependency "
        f"graph + prune {t_tp:.2f} s  ({_load()})"
    )
    rows = []
    with torch.inference_mode():
        for batch in args.batches:
            x = torch.randn(batch, 3, 32, 32)
            calls = {}
            for k, m in arms.items():
                m(x)
                t0 = time.perf_counter()
                m(x)
                calls[k] = max(1, math.ceil(args.min_time / (time.perf_counter() - t0)))
            times = {k: [] for k in arms}
            for r in range(args.rounds):
                for k in list(arms)[r % 2 :] + list(arms)[: r % 2]:
                    for _ in range(calls[k]):
                        t0 = time.perf_counter()
                        arms[k](x)
                        times[k].append(time.perf_counter() - t0)
            med = {k: float(np.median(v)) for k, v in times.items()}
            speed = med["dense"] / med["pruned"]
            print(
                f"  b{batch:<3d} dense {med['dense'] * 1e3:.2f} ms  pruned "
                f"{med['pruned'] * 1e3:.2f} ms  speed-up {speed:.2f}x  efficiency "
                f"{speed / reduction:.2f}  (BN fused by torch.fx, eager)"
            )
            rows.append(
                f"| Torch-Pruning ResNet-56 (BN fused) | {reduction:.2f}x | {batch} | "
                f"{med['dense'] * 1e3:.2f} | — | — | {med['pruned'] * 1e3:.2f} | — | "
                f"{speed:.2f}x | **{speed / reduction:.2f}** | — | — |"
            )
    rows.append(f"<!-- Torch-Pruning dependency graph + prune: {t_tp:.2f} s -->")
    return rows


def main() -> None:
    """Run the chosen models and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="resnet56,resnet56_r8,resnet56_r16,resnet50_2x,resnet50_4x,mobilenetv2_2x",
        help=f"comma-separated, from {', '.join(MODELS)}",
    )
    parser.add_argument("--batches", default="1,32,64")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min_time", type=float, default=0.3, help="seconds per arm per round")
    parser.add_argument("--image_size", type=int, default=224, help="ImageNet models' input")
    parser.add_argument("--no_tfmot", dest="tfmot", action="store_false")
    parser.add_argument("--no_torch", dest="torch", action="store_false")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
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
        "stripped vs dense | stripped+fold vs dense+fold | efficiency | efficiency vs "
        "unfolded dense | TF-MOT vs dense |"
    )
    print("|" + "---|" * 12)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
