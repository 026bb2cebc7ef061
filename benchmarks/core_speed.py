"""Speed of the structured-pruning core, tf_keras and Keras 3 side by side in one run.

1. Channel-group analysis, masking and strip at 50% of ResNet-20 (CIFAR) and of
   keras.applications.ResNet50 built in each flavour (goal: analysis + strip under 5 s on a
   2-core CPU).
2. Training-step time of a masked ResNet-20 (``tfprune.prune_filters``) against plain ``fit``
   of the same model, in each flavour, and against TF-MOT's ``prune_low_magnitude`` (tf_keras
   only; goal: masked <= 1.05x plain in both flavours). All configurations are timed in
   interleaved rounds and the median step time of each is reported, with the load average.

    python benchmarks/core_speed.py [--steps 30] [--rounds 3] [--batch 128] [--noresnet50]
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from absl import app, flags  # noqa: E402

import tfprune  # noqa: E402
from tfprune.compat import keras, keras3, tf  # noqa: E402
from tfprune.graph.groups import analyze  # noqa: E402
from tfprune.models.resnet_cifar import resnet20  # noqa: E402

K3 = keras3()
FLAVOURS = ("tf_keras", "Keras 3")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def resnet20_keras3() -> object:
    """ResNet-20 (option-A shortcuts) built with Keras 3, the layers and names of ``resnet20``."""
    layers = K3.layers

    def conv(filters: int, stride: int, name: str) -> object:
        return layers.Conv2D(
            filters,
            3,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=name,
        )

    def bn(name: str) -> object:
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)

    inputs = K3.Input((32, 32, 3), name="input")
    x = layers.ReLU(name="stem_relu")(bn("stem_bn")(conv(16, 1, "stem_conv")(inputs)))
    in_width = 16
    for s, width in enumerate((16, 32, 64), start=1):
        for b in range(3):
            p = f"stage{s}_block{b}_"
            stride = 2 if (s > 1 and b == 0) else 1
            y = layers.ReLU(name=p + "relu1")(bn(p + "bn1")(conv(width, stride, p + "conv1")(x)))
            y = bn(p + "bn2")(conv(width, 1, p + "conv2")(y))
            short = x
            if stride != 1:
                short = short[:, ::stride, ::stride, :]  # raw ops in Keras 3
                before = (width - in_width) // 2
                pad = [[0, 0], [0, 0], [0, 0], [before, width - in_width - before]]
                short = K3.ops.pad(short, pad)
            x = layers.ReLU(name=p + "relu2")(layers.Add(name=p + "add")([y, short]))
            in_width = width
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(10, kernel_initializer="he_normal", name="fc")(x)
    return K3.Model(inputs, outputs, name="resnet20")


def bench_analysis(title: str, builders: dict[str, object]) -> None:
    """Time analysis, masking and strip at 50% of the model each flavour's builder makes."""
    rows: dict[str, list[float]] = {}
    params: dict[str, str] = {}
    for flavour, build in builders.items():
        model = build()
        t0 = time.perf_counter()
        analyze(model)
        t_analysis = time.perf_counter() - t0
        t0 = time.perf_counter()
        masked = tfprune.prune_filters(model, 0.5)
        t_mask = time.perf_counter() - t0
        t0 = time.perf_counter()
        small = tfprune.strip_filters(masked)
        t_strip = time.perf_counter() - t0
        rows[flavour] = [t_analysis, t_mask, t_strip, t_analysis + t_strip]
        params[flavour] = f"{model.count_params():,} -> {small.count_params():,}"
    print(f"\n{title}, 50% filter sparsity ({_load()})")
    print(f"  {'':28s}" + "".join(f"{f:>12s}" for f in rows))
    labels = ("channel-group analysis", "prune_filters (masked copy)", "strip_filters (surgery)")
    for k, label in enumerate((*labels, "analysis + strip")):
        print(f"  {label:28s}" + "".join(f"{r[k]:10.2f} s" for r in rows.values()))
    print("  goal: analysis + strip < 5 s")
    for flavour, text in params.items():
        print(f"  params ({flavour}) {text}")


def _timer(callbacks: object) -> object:
    """A callback of that flavour's ``callbacks`` module recording each training step's time."""

    class StepTimer(callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self._t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._t)

    return StepTimer()


def _compiled(model: object, k: object) -> object:
    extra = {"jit_compile": False} if k is K3 else {}  # tf_keras' default; Keras 3's is "auto"
    model.compile(
        optimizer=k.optimizers.SGD(0.01, momentum=0.9),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
        **extra,
    )
    return model


def _plain(base: object, k: object) -> object:
    plain = k.models.clone_model(base)
    plain.set_weights(base.get_weights())
    return _compiled(plain, k)


def bench_training(steps: int, rounds: int, batch: int) -> None:
    """Interleaved step times of plain and tfprune-masked ResNet-20 per flavour, and TF-MOT."""
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, batch * steps)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()

    base = resnet20()
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        # TF-MOT cannot wrap TF-op layers (the option-A shortcut), so prune conv/dense only,
        # as its guide does for partial pruning.
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, schedule)
        return layer.__class__.from_config(layer.get_config())

    tfmot_model = _compiled(keras.models.clone_model(base, clone_function=wrap), keras)
    base3 = resnet20_keras3()
    arms = {
        ("tf_keras", "plain fit"): (_plain(base, keras), keras, []),
        ("tf_keras", "tfprune masked"): (
            _compiled(tfprune.prune_filters(base, 0.5), keras),
            keras,
            [],
        ),
        ("tf_keras", "TF-MOT prune_low_magnitude"): (
            tfmot_model,
            keras,
            [tfmot.sparsity.keras.UpdatePruningStep()],
        ),
        ("Keras 3", "plain fit"): (_plain(base3, K3), K3, []),
        ("Keras 3", "tfprune masked"): (_compiled(tfprune.prune_filters(base3, 0.5), K3), K3, []),
    }
    for model, _, cbs in arms.values():  # warm-up: tracing and first steps
        model.fit(data.take(3), epochs=1, verbose=0, shuffle=False, callbacks=list(cbs))
    medians: dict[tuple[str, str], list[float]] = {key: [] for key in arms}
    for _ in range(rounds):
        for key, (model, k, cbs) in arms.items():
            timer = _timer(k.callbacks)
            model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[*cbs, timer])
            medians[key].append(float(np.median(timer.times[1:])))
    print(
        f"\nTraining step, ResNet-20 (CIFAR-shaped random data, 0.27M params), batch {batch}, "
        f"{steps} steps x {rounds} interleaved rounds, median step time ({_load()}; "
        "Keras 3 compiled with jit_compile=False as tf_keras)"
    )
    for flavour in FLAVOURS:
        ref = float(np.median(medians[(flavour, "plain fit")]))
        for (f, name), values in medians.items():
            if f == flavour:
                t = float(np.median(values))
                print(f"  {flavour:9s} {name:28s} {t * 1e3:8.2f} ms   {t / ref:5.3f}x plain")
    print("  goal: tfprune masked <= 1.05x plain fit, in both flavours")


flags.DEFINE_integer(
    "steps", 30, "Timed training steps per configuration and round.", lower_bound=1
)
flags.DEFINE_integer(
    "rounds", 3, "Interleaved rounds of the three training configurations.", lower_bound=1
)
flags.DEFINE_integer("batch", 128, "Training batch size of ResNet-20.", lower_bound=1)
flags.DEFINE_boolean(
    "resnet50", True, "Also time analysis and strip of keras.applications.ResNet50 per flavour."
)


def main(argv: list[str]) -> None:
    """Run the analysis and training benchmarks."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    print(f"tf_keras {keras.__version__}, Keras {K3.__version__}, TensorFlow {tf.__version__}")
    bench_analysis("ResNet-20 (CIFAR)", {"tf_keras": resnet20, "Keras 3": resnet20_keras3})
    if args.resnet50:
        bench_analysis(
            "ResNet50 (keras.applications, 25.6M params)",
            {
                "tf_keras": lambda: keras.applications.ResNet50(weights=None),
                "Keras 3": lambda: K3.applications.ResNet50(weights=None),
            },
        )
    bench_training(args.steps, args.rounds, args.batch)


if __name__ == "__main__":
    app.run(main)
