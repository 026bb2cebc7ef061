"""Step-time overhead of the regularization callbacks against plain ``fit``, side by side.

The same masked ResNet-20 (``tfprune.prune_filters(model, 0.0)``, random CIFAR-sized data) is
trained with no callback ("plain"), with GReg-1, GReg-2, TPP, network slimming and group lasso
(the spec's default schedules: a penalty update every 10 steps). The configurations are timed
in interleaved rounds; within a round each gets a fresh model, ``--warmup`` untimed steps
(tracing), then ``--steps`` timed steps. A step's time is the wall time between consecutive
``on_train_batch_end`` calls, so it includes every callback's own work. Reported: the median
step time of each configuration over all rounds and its ratio to plain (goal: <= 1.10x).

    python benchmarks/regularization_speed.py [--steps 60] [--rounds 3] [--batch 128]
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import tfprune  # noqa: E402
from tfprune.compat import keras, tf  # noqa: E402
from tfprune.models.resnet_cifar import resnet20  # noqa: E402
from tfprune.regularization import (  # noqa: E402
    GroupLasso,
    GrowingRegularization,
    NetworkSlimming,
    TrainabilityPreserving,
)

CONFIGS = {
    "plain": lambda: None,
    "greg1": lambda: GrowingRegularization(0.5, variant="greg1"),
    "greg2": lambda: GrowingRegularization(0.5, variant="greg2"),
    "tpp": lambda: TrainabilityPreserving(0.5),
    "slimming": lambda: NetworkSlimming(0.5, apply_masks=False),
    "group_lasso": lambda: GroupLasso(0.5, apply_masks=False),
}


class _StepTimer(keras.callbacks.Callback):
    """Records the wall time between consecutive training batch ends."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def _run(name: str, weights: list, data: tf.data.Dataset, warmup: int, steps: int) -> list:
    keras.utils.set_random_seed(0)
    base = resnet20()
    base.set_weights(weights)
    masked = tfprune.prune_filters(base, 0.0)
    masked.compile(
        keras.optimizers.SGD(1e-3, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    cb = CONFIGS[name]()
    callbacks = [cb] if cb is not None else []
    masked.fit(data, epochs=1, steps_per_epoch=warmup, callbacks=callbacks, verbose=0)
    timer = _StepTimer()
    masked.fit(data, epochs=1, steps_per_epoch=steps + 1, callbacks=callbacks + [timer], verbose=0)
    return timer.times


flags.DEFINE_integer("steps", 60, "Timed steps per configuration and round.", lower_bound=1)
flags.DEFINE_integer("warmup", 12, "Untimed steps (tracing) before the timed ones.", lower_bound=0)
flags.DEFINE_integer("rounds", 3, "Interleaved rounds of all configurations.", lower_bound=1)
flags.DEFINE_integer("batch", 128, "Training batch size of ResNet-20.", lower_bound=1)
flags.DEFINE_list(
    "only", list(CONFIGS), "Comma-separated configurations to time, of " + ",".join(CONFIGS) + "."
)


def main(argv: list[str]) -> None:
    """Run the interleaved rounds and print the table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    unknown = sorted(set(args.only) - set(CONFIGS))
    if unknown:
        raise app.UsageError(f"--only: unknown {unknown}; choose from {', '.join(CONFIGS)}")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch * 8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=(args.batch * 8,)).astype(np.int64)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).repeat().prefetch(2)
    keras.utils.set_random_seed(0)
    weights = resnet20().get_weights()

    names = [n for n in CONFIGS if n in args.only]
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].extend(_run(name, weights, data, args.warmup, args.steps))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    plain = float(np.median(times["plain"])) if "plain" in times else float("nan")
    print(f"\nResNet-20, batch {args.batch}, {args.rounds} rounds x {args.steps} steps, median")
    print(f"{'config':<12} {'step ms':>9} {'vs plain':>9}")
    for name in names:
        med = float(np.median(times[name]))
        print(f"{name:<12} {1000 * med:9.2f} {med / plain:8.3f}x")


if __name__ == "__main__":
    app.run(main)
