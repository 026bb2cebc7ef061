"""Prune a Keras Application, retrain it, cut the pruned filters out and export it for serving.

    python examples/prune_and_serve.py --output=serving/mobilenet

Trains on random images so that it runs anywhere; put your own ``tf.data`` dataset in
``training_data``. The export is a TF Serving folder ``<output>/<version>/`` with warm-up
requests (install the deploy extra: ``pip install "tfprune[deploy]"``). For a quick try:
``--image_size=32 --steps=2``.
"""

import argparse

import numpy as np

import tfprune
from tfprune.compat import keras, tf  # tf_keras (Keras 2)


def training_data(image_size: int, steps: int, batch_size: int = 8) -> tf.data.Dataset:
    """Random images and labels (replace with your own dataset)."""
    rng = np.random.default_rng(0)
    n = steps * batch_size
    x = rng.random((n, image_size, image_size, 3), np.float32)
    y = rng.integers(0, 10, n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def main() -> None:
    """Prune 50 % of MobileNetV2's filters, retrain, strip, export and compare the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="serving/mobilenet", help="TF Serving base folder")
    parser.add_argument("--image_size", type=int, default=224, help="input height and width")
    parser.add_argument("--steps", type=int, default=20, help="training batches per epoch")
    parser.add_argument("--epochs", type=int, default=1, help="retraining epochs")
    args = parser.parse_args()

    shape = (args.image_size, args.image_size, 3)
    model = keras.applications.MobileNetV2(weights=None, input_shape=shape, classes=10)
    print(tfprune.explain(model))  # the channel groups and what blocks the rest

    masked = tfprune.prune_filters(model, 0.5, importance="l1")  # a copy with masks
    masked.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    masked.fit(training_data(args.image_size, args.steps), epochs=args.epochs, verbose=2)

    small = tfprune.strip_filters(masked)  # stock layers, pruned channels removed
    tfprune.recalibrate_batch_norm(small, training_data(args.image_size, args.steps))
    result = tfprune.export_for_serving(small, args.output)  # folded, reloaded and checked
    print(result.summary())
    print(f"params: {tfprune.count_params(model):,} -> {tfprune.count_params(small):,}")
    print(f"speed-up in MACs: {tfprune.speedup(model, small):.2f}x")


if __name__ == "__main__":
    main()
