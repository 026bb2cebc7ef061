"""MLP-7 models of the DI/TPP MNIST experiments (``mlp_7_linear`` / ``mlp_7_relu``).

Seven ``Dense`` layers named ``fc0 .. fc6``: ``input_dim → width`` , five ``width → width``,
``width → num_classes``, all with biases; ``fc6`` outputs logits (no softmax).

Initialisation (``init``):

* ``"torch"`` (default, as PyTorch's ``nn.Linear`` / ``nn.Conv2d``): weights and biases
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, i.e. Kaiming-uniform with ``a = sqrt(5)``.
* ``"keras"``: Keras defaults (Glorot-uniform weights, zero biases).

With an int ``seed`` every layer gets its own derived seed, so a build is reproducible.
"""

from __future__ import annotations

import math

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.models.registry import index_pattern

__all__ = [
    "MLP7_DEPTH",
    "layer_initializers",
    "mlp",
    "mlp7_linear",
    "mlp7_relu",
    "mlp_scheme",
]

MLP7_DEPTH = 7
_INITS = ("torch", "keras")


def layer_initializers(
    fan_in: int, init: str, seed: int | None, index: int
) -> dict[str, keras.initializers.Initializer | str]:
    """``kernel_initializer`` / ``bias_initializer`` kwargs for layer ``index`` (see module doc)."""
    if init not in _INITS:
        raise InvalidArgumentError(f"init={init!r} must be one of {_INITS}")
    kseed = None if seed is None else int(seed) * 1000 + 2 * index
    bseed = None if seed is None else int(seed) * 1000 + 2 * index + 1
    if init == "keras":
        return {
            "kernel_initializer": keras.initializers.GlorotUniform(seed=kseed),
            "bias_initializer": "zeros",
        }
    bound = 1.0 / math.sqrt(fan_in)
    return {
        "kernel_initializer": keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=kseed
        ),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound, seed=bseed),
    }


def mlp(
    input_dim: int = 784,
    width: int = 100,
    num_classes: int = 10,
    depth: int = MLP7_DEPTH,
    activation: str | None = None,
    init: str = "torch",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Plain MLP of ``depth`` Dense layers ``fc0 .. fc{depth-1}`` on flat inputs.

    Args:
      input_dim: length of the flat input vector (784 for 28×28, 1024 for 32×32, 64 for digits).
      width: units of each hidden layer.
      num_classes: units of the output layer (logits).
      depth: number of Dense layers (>= 2).
      activation: hidden activation (``None`` = identity, ``"relu"``, ...); the output layer has
        none.
      init: ``"torch"`` or ``"keras"`` (see module doc).
      seed: seed of the initialisers (``None`` = random).
      name: model name (default ``mlp{depth}_{activation or 'linear'}``).
    """
    for arg, value in (("input_dim", input_dim), ("width", width), ("num_classes", num_classes)):
        if int(value) < 1:
            raise InvalidArgumentError(f"{arg}={value} must be >= 1")
    if int(depth) < 2:
        raise InvalidArgumentError(f"depth={depth} must be >= 2")
    inputs = keras.Input(shape=(int(input_dim),), name="input")
    x = inputs
    fan_in = int(input_dim)
    for i in range(depth):
        last = i == depth - 1
        units = int(num_classes) if last else int(width)
        x = keras.layers.Dense(
            units,
            activation=None if last else activation,
            use_bias=True,
            name=f"fc{i}",
            **layer_initializers(fan_in, init, seed, i),
        )(x)
        fan_in = units
    model_name = name or f"mlp{depth}_{activation or 'linear'}"
    return keras.Model(inputs, x, name=model_name)


def mlp7_linear(
    input_dim: int = 784,
    width: int = 100,
    num_classes: int = 10,
    init: str = "torch",
    seed: int | None = None,
) -> keras.Model:
    """MLP-7-Linear (identity activations): the DI paper's ``mlp_7_linear``.

    With ``input_dim=1024`` (MNIST resized to 32×32) it has 153,400 weights + 610 biases.
    """
    return mlp(input_dim, width, num_classes, MLP7_DEPTH, None, init, seed, "mlp7_linear")


def mlp7_relu(
    input_dim: int = 784,
    width: int = 100,
    num_classes: int = 10,
    init: str = "torch",
    seed: int | None = None,
) -> keras.Model:
    """MLP-7-ReLU: as :func:`mlp7_linear` with ReLU after each hidden layer."""
    return mlp(input_dim, width, num_classes, MLP7_DEPTH, "relu", init, seed, "mlp7_relu")


def mlp_scheme(pr: float, depth: int = MLP7_DEPTH) -> dict[str, float]:
    """Layer-ratio scheme ``[0-(depth-2):pr, (depth-1):0]``: every hidden layer, not the output.

    For MLP-7 this is ``{"fc[0-5]": pr}``.
    """
    if not 0.0 <= float(pr) < 1.0:
        raise InvalidArgumentError(f"pr={pr} must be in [0, 1)")
    if float(pr) == 0.0:
        return {}
    return {index_pattern("fc", range(depth - 1)): float(pr)}
