"""A small residual CNN for tiny images (the embedded digits data: 8x8x1)."""

from __future__ import annotations

from tfprune.compat import keras

__all__ = ["small_cnn"]


def small_cnn(
    input_shape: tuple[int, ...] = (8, 8, 1),
    num_classes: int = 10,
    width: int = 32,
    seed: int | None = None,
) -> keras.Model:
    """Conv-BN-ReLU stem, one residual block, a widening conv, global pooling and a classifier.

    Small enough to train on scikit-learn's digits in seconds, but it has the structures that
    matter for filter pruning: a plain conv->BN->conv chain, a residual group and a classifier
    that is never pruned. Layer names: ``conv0``, ``block_conv1``, ``block_conv2``, ``conv3``,
    ``fc``.
    """
    seeds = iter(range(5))

    def init() -> keras.initializers.Initializer:
        # One initializer per layer: a shared seeded instance gives same-shaped kernels
        # (block_conv1, block_conv2) identical starting values.
        return keras.initializers.HeNormal(seed=None if seed is None else seed * 5 + next(seeds))

    def conv(x, filters, name):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, kernel_initializer=init(), name=name
        )(x)
        return keras.layers.BatchNormalization(
            momentum=0.9,  # PyTorch's momentum 0.1: statistics that follow a short training run
            epsilon=1e-5,  # PyTorch's default
            name=name.replace("conv", "bn"),
        )(x)

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.ReLU(name="relu0")(conv(inputs, width, "conv0"))
    y = keras.layers.ReLU(name="block_relu1")(conv(x, width, "block_conv1"))
    y = conv(y, width, "block_conv2")
    x = keras.layers.ReLU(name="block_out")(keras.layers.Add(name="block_add")([x, y]))
    x = keras.layers.ReLU(name="relu3")(conv(x, 2 * width, "conv3"))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=init(), name="fc")(x)
    return keras.Model(inputs, outputs, name="small_cnn")
