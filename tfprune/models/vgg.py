"""CIFAR-style VGG-16/19 with batch norm (the CIFAR ``vgg`` of Liu et al. 2019, GReg, Wang et al.).

Each conv block is ``conv{i}`` (3×3, same padding, no bias) → ``bn{i}`` → ``relu{i}``, with
``pool0 .. pool3`` (2×2 max) after stages 1-4, then ``gap`` (global average pooling; equal to the
original 2×2 average pool on 32×32 inputs) and one Dense ``fc`` (logits). Conv indices follow the
papers' VGG notation, so ``[1-15:pr]`` means ``conv1 .. conv15`` (see :func:`vgg_scheme`).

Initialisation (convention of torchvision and Liu et al. 2019): conv kernels
``N(0, 2 / (3·3·out_channels))`` (He-normal, fan-out), BN ``gamma = 1, beta = 0``, Dense
``N(0, 0.01)`` with zero bias.
"""

from __future__ import annotations

from collections.abc import Sequence

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.models.mlp import index_pattern

__all__ = [
    "VGG_CONFIGS",
    "vgg16_bn",
    "vgg16_li_pruned_a_scheme",
    "vgg19_bn",
    "vgg_bn",
    "vgg_scheme",
]

#: Channel plans; ``"M"`` is a 2×2 max pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512,
    ),
}  # fmt: skip


def vgg_bn(
    config: Sequence[int | str],
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    width: float = 1.0,
    seed: int | None = None,
    name: str = "vgg_bn",
) -> keras.Model:
    """Build a CIFAR-style VGG from a channel plan (ints = conv widths, ``"M"`` = max pool).

    Args:
      config: the plan, e.g. ``VGG_CONFIGS[19]``.
      num_classes: output logits.
      input_shape: ``(H, W, C)``.
      width: multiplier applied to every conv width (rounded, at least 1), for small CPU runs.
      seed: initialiser seed (``None`` = random).
      name: model name.
    """
    if width <= 0:
        raise InvalidArgumentError(f"width={width} must be > 0")
    if int(num_classes) < 1:
        raise InvalidArgumentError(f"num_classes={num_classes} must be >= 1")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    conv_i = pool_i = 0
    for item in config:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, name=f"pool{pool_i}")(x)
            pool_i += 1
            continue
        filters = max(1, round(int(item) * width))
        kseed = None if seed is None else int(seed) * 1000 + conv_i
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=keras.initializers.VarianceScaling(
                2.0, mode="fan_out", distribution="untruncated_normal", seed=kseed
            ),
            name=f"conv{conv_i}",
        )(x)
        x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"bn{conv_i}")(x)
        x = keras.layers.ReLU(name=f"relu{conv_i}")(x)
        conv_i += 1
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    fc_seed = None if seed is None else int(seed) * 1000 + 999
    x = keras.layers.Dense(
        int(num_classes),
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01, seed=fc_seed),
        bias_initializer="zeros",
        name="fc",
    )(x)
    return keras.Model(inputs, x, name=name)


def vgg16_bn(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    width: float = 1.0,
    seed: int | None = None,
) -> keras.Model:
    """VGG-16-BN for CIFAR: 13 convs ``conv0 .. conv12``, 4 max pools, GAP, ``fc``.

    At full width on CIFAR-10: 14,710,464 conv weights, 14,732,490 parameters in total
    (14,724,042 trainable).
    """
    return vgg_bn(VGG_CONFIGS[16], num_classes, input_shape, width, seed, "vgg16_bn")


def vgg19_bn(
    num_classes: int = 100,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    width: float = 1.0,
    seed: int | None = None,
) -> keras.Model:
    """VGG-19-BN for CIFAR: 16 convs ``conv0 .. conv15``, 4 max pools, GAP, ``fc``.

    At full width on CIFAR-100: 20,018,880 conv weights, 20,092,196 parameters in total.
    """
    return vgg_bn(VGG_CONFIGS[19], num_classes, input_shape, width, seed, "vgg19_bn")


def vgg_scheme(pr: float, depth: int = 19, first: int = 1) -> dict[str, float]:
    """Layer-ratio scheme ``[first-last:pr]`` over conv indices (``last`` = final conv).

    ``vgg_scheme(0.7)`` is the GReg / Wang et al. VGG-19 scheme ``[1-15:0.7]``: all convs but
    ``conv0``; the classifier is never pruned. ``depth=16`` covers ``conv1 .. conv12``.
    """
    if depth not in VGG_CONFIGS:
        raise InvalidArgumentError(f"depth={depth} must be one of {sorted(VGG_CONFIGS)}")
    if not 0.0 <= float(pr) < 1.0:
        raise InvalidArgumentError(f"pr={pr} must be in [0, 1)")
    num_convs = sum(1 for c in VGG_CONFIGS[depth] if c != "M")
    if not 0 <= first < num_convs:
        raise InvalidArgumentError(f"first={first} must be in [0, {num_convs - 1}]")
    if float(pr) == 0.0:
        return {}
    return {index_pattern("conv", range(first, num_convs)): float(pr)}


def vgg16_li_pruned_a_scheme() -> dict[str, float]:
    """Li et al.'s VGG-16/CIFAR-10 *pruned-A*: ``conv0`` and ``conv7 .. conv12`` at 50%."""
    return {index_pattern("conv", [0, 7, 8, 9, 10, 11, 12]): 0.5}
