"""Torch-Pruning side of benchmarks/deploy_speed.py: CIFAR ResNet-56, conv1 of every block at 0.5.

Run by deploy_speed.py in its own process (CPU torch, ``pip install torch==2.13.0`` then
``pip install 'tfprune[bench]'``); prints its lines and Markdown table rows::

    python benchmarks/torch_pruning_resnet56.py --batches=1,32,64 --rounds=8
"""

from __future__ import annotations

import copy
import math
import os
import time
import types
from typing import Any

import numpy as np
from absl import app, flags


class Timing:
    """Per-round mean call times of each arm (wall clock and this process's CPU time)."""

    def __init__(self, wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
        self.wall, self.cpu = wall, cpu

    def median(self, arm: str) -> float:
        return float(np.median(self.wall[arm]))

    def speedup(self, base: str, arm: str, cpu: bool = False) -> float:
        """Median over rounds of base / arm (pairs measured next to each other in time)."""
        times = self.cpu if cpu else self.wall
        return float(np.median(np.asarray(times[base]) / np.asarray(times[arm])))


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def bench_torch(args: Any) -> list[str]:
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
        f"Torch-Pruning ResNet-56 (torch {torch.__version__}, {torch.get_num_threads()} "
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
            wall = {k: [] for k in arms}
            cpu = {k: [] for k in arms}
            for r in range(args.rounds):
                for k in list(arms)[r % 2 :] + list(arms)[: r % 2]:
                    t0, c0 = time.perf_counter(), time.process_time()
                    for _ in range(calls[k]):
                        arms[k](x)
                    wall[k].append((time.perf_counter() - t0) / calls[k])
                    cpu[k].append((time.process_time() - c0) / calls[k])
            res = Timing(wall, cpu)
            speed = res.speedup("dense", "pruned")
            speed_cpu = res.speedup("dense", "pruned", cpu=True)
            print(
                f"  b{batch:<3d} dense {res.median('dense') * 1e3:.2f} ms  pruned "
                f"{res.median('pruned') * 1e3:.2f} ms  speed-up {speed:.2f}x  efficiency "
                f"{speed / reduction:.2f} (CPU time {speed_cpu / reduction:.2f}; BN fused by "
                "torch.fx, eager)"
            )
            rows.append(
                f"| Torch-Pruning ResNet-56 (BN fused) | {reduction:.2f}x | {batch} | "
                f"{res.median('dense') * 1e3:.1f} | — | — | {res.median('pruned') * 1e3:.1f} | "
                f"— | {speed:.2f}x | **{speed / reduction:.2f}** | {speed_cpu / reduction:.2f} | "
                "— | — |"
            )
    rows.append(f"<!-- Torch-Pruning dependency graph + prune: {t_tp:.2f} s -->")
    return rows


flags.DEFINE_list("batches", ["1", "32", "64"], "Comma-separated batch sizes to time.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds of the two arms.", lower_bound=1)
flags.DEFINE_float("min_time", 0.3, "Seconds of calls per arm per round.", lower_bound=0.0)


def main(argv: list[str]) -> None:
    """Read the flags, run, print the rows."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = types.SimpleNamespace(**flags.FLAGS.flag_values_dict())
    args.batches = [int(b) for b in args.batches]
    for row in bench_torch(args):
        print(row)


if __name__ == "__main__":
    app.run(main)
