"""LeNet-5 of the MNIST experiments of Lee et al. 2020 and TPP (``lenet5`` / ``lenet5_linear``).

Layers (indices follow the papers' ``[0-2:pr, 3-4:0]`` notation)::

    conv0  5×5, 6 filters, valid   → activation → pool0 (max 2×2)
    conv1  5×5, 16 filters, valid  → activation → pool1 (max 2×2) → flatten
    fc2    120 → activation,  fc3  84 → activation,  fc4  num_classes (logits)

On 32×32 inputs (MNIST resized, as in the papers) the flatten has 16·5·5 = 400 features and the
model has 61,706 parameters; on 28×28 inputs 16·4·4 = 256 features and 44,426 parameters.
Initialisation as in :mod:`tfprune.models.mlp` (``"torch"`` default or ``"keras"``).
"""

from __future__ import annotations

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.models.mlp import layer_initializers

__all__ = ["lenet5", "lenet5_linear", "lenet_scheme"]


def lenet5(
    input_shape: tuple[int, int, int] = (32, 32, 1),
    num_classes: int = 10,
    activation: str | None = "relu",
    init: str = "torch",
    seed: int | None = None,
) -> keras.Model:
    """LeNet-5 (conv0, conv1, fc2, fc3, fc4) with the given hidden ``activation``.

    Args:
      input_shape: ``(H, W, C)``; ``(32, 32, 1)`` as in the papers or ``(28, 28, 1)``.
      num_classes: output logits.
      activation: hidden activation; ``None`` gives the linear variant.
      init: ``"torch"`` or ``"keras"`` initialisation.
      seed: initialiser seed (``None`` = random).
    """
    if len(input_shape) != 3 or min(input_shape[:2]) < 12:
        raise InvalidArgumentError(
            f"LeNet-5 needs images of at least 12x12 (H, W, C), got input_shape={input_shape}; "
            "use 28x28 MNIST or 32x32 CIFAR (--dataset=mnist/cifar10), or a model for small "
            "images such as small_cnn or mlp7_linear for the 8x8 digits"
        )
    if int(num_classes) < 1:
        raise InvalidArgumentError(f"num_classes={num_classes} must be >= 1")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    channels = int(input_shape[2])
    x = keras.layers.Conv2D(
        6,
        5,
        activation=activation,
        name="conv0",
        **layer_initializers(25 * channels, init, seed, 0),
    )(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool0")(x)
    x = keras.layers.Conv2D(
        16, 5, activation=activation, name="conv1", **layer_initializers(25 * 6, init, seed, 1)
    )(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    fan_in = int(x.shape[-1])
    for i, units in ((2, 120), (3, 84)):
        x = keras.layers.Dense(
            units, activation=activation, name=f"fc{i}", **layer_initializers(fan_in, init, seed, i)
        )(x)
        fan_in = units
    x = keras.layers.Dense(
        int(num_classes), name="fc4", **layer_initializers(fan_in, init, seed, 4)
    )(x)
    name = "lenet5" if activation is not None else "lenet5_linear"
    return keras.Model(inputs, x, name=name)


def lenet5_linear(
    input_shape: tuple[int, int, int] = (32, 32, 1),
    num_classes: int = 10,
    init: str = "torch",
    seed: int | None = None,
) -> keras.Model:
    """LeNet-5-Linear: :func:`lenet5` with identity activations."""
    return lenet5(input_shape, num_classes, None, init, seed)


def lenet_scheme(pr: float) -> dict[str, float]:
    """Layer-ratio scheme ``[0-2:pr, 3-4:0]``: both convs and ``fc2`` (not fc3, not the output)."""
    if not 0.0 <= float(pr) < 1.0:
        raise InvalidArgumentError(f"pr={pr} must be in [0, 1)")
    if float(pr) == 0.0:
        return {}
    return {"(?:conv[0-1]|fc2)": float(pr)}
