"""Speed of the structured-pruning core, measured side by side in one run.

1. Channel-group analysis, masking and strip on keras.applications.ResNet50 (goal: analysis +
   strip under 5 s on a 2-core CPU).
2. Training-step time of a masked ResNet-20 (``tfprune.prune_filters``) against plain ``fit``
   of the same model and against TF-MOT's ``prune_low_magnitude`` (goal: masked ≤ 1.05× plain).
   The three are timed in interleaved rounds and the median step time of each is reported.

    python benchmarks/core_speed.py [--steps 30] [--rounds 3] [--batch 128]
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from absl import app, flags  # noqa: E402

import tfprune  # noqa: E402
from tfprune.compat import keras, tf  # noqa: E402
from tfprune.graph.groups import analyze  # noqa: E402
from tfprune.models.resnet_cifar import resnet20  # noqa: E402


def bench_resnet50() -> None:
    """Time analysis, masking and strip of ResNet50 at 50%."""
    model = keras.applications.ResNet50(weights=None)
    t0 = time.perf_counter()
    analyze(model)
    t_analysis = time.perf_counter() - t0
    t0 = time.perf_counter()
    masked = tfprune.prune_filters(model, 0.5)
    t_mask = time.perf_counter() - t0
    t0 = time.perf_counter()
    small = tfprune.strip_filters(masked)
    t_strip = time.perf_counter() - t0
    print("ResNet50 (keras.applications, 25.6M params), 50% filter sparsity")
    print(f"  channel-group analysis       {t_analysis:6.2f} s")
    print(f"  prune_filters (masked copy)  {t_mask:6.2f} s")
    print(f"  strip_filters (surgery)      {t_strip:6.2f} s")
    print(f"  analysis + strip             {t_analysis + t_strip:6.2f} s   (goal < 5 s)")
    print(f"  params {model.count_params():,} -> {small.count_params():,}")


class _StepTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def _compiled(model: keras.Model) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def bench_training(steps: int, rounds: int, batch: int) -> None:
    """Interleaved step-time measurement of plain, tfprune-masked and TF-MOT models."""
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, batch * steps)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()

    base = resnet20()
    plain = _compiled(keras.models.clone_model(base))
    plain.set_weights(base.get_weights())
    masked = _compiled(tfprune.prune_filters(base, 0.5))
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        # TF-MOT cannot wrap TF-op layers (the option-A shortcut), so prune conv/dense only,
        # as its guide does for partial pruning.
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, schedule)
        return layer.__class__.from_config(layer.get_config())

    tfmot_model = _compiled(keras.models.clone_model(base, clone_function=wrap))
    arms = {
        "plain fit": (plain, []),
        "tfprune masked": (masked, []),
        "TF-MOT prune_low_magnitude": (tfmot_model, [tfmot.sparsity.keras.UpdatePruningStep()]),
    }
    for model, cbs in arms.values():  # warm-up: tracing and first steps
        model.fit(data.take(3), epochs=1, verbose=0, callbacks=list(cbs))
    medians: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(rounds):
        for name, (model, cbs) in arms.items():
            timer = _StepTimer()
            model.fit(data, epochs=1, verbose=0, callbacks=[*cbs, timer])
            medians[name].append(float(np.median(timer.times[1:])))
    ref = float(np.median(medians["plain fit"]))
    print(
        f"\nTraining step, ResNet-20 (CIFAR, 0.27M params), batch {batch}, "
        f"{steps} steps x {rounds} interleaved rounds, median step time"
    )
    for name, values in medians.items():
        t = float(np.median(values))
        print(f"  {name:28s} {t * 1e3:8.2f} ms   {t / ref:5.3f}x plain")
    print("  goal: tfprune masked <= 1.05x plain fit")


flags.DEFINE_integer(
    "steps", 30, "Timed training steps per configuration and round.", lower_bound=1
)
flags.DEFINE_integer(
    "rounds", 3, "Interleaved rounds of the three training configurations.", lower_bound=1
)
flags.DEFINE_integer("batch", 128, "Training batch size of ResNet-20.", lower_bound=1)


def main(argv: list[str]) -> None:
    """Run both benchmarks."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    bench_resnet50()
    bench_training(args.steps, args.rounds, args.batch)


if __name__ == "__main__":
    app.run(main)
