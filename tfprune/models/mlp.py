"""MLP-7 models of the MNIST runs of Lee et al. 2020 and TPP (``mlp_7_linear``/``mlp_7_relu``).

Seven ``Dense`` layers named ``fc0 .. fc6``: ``input_dim → width`` , five ``width → width``,
``width → num_classes``, all with biases; ``fc6`` outputs logits (no softmax).

Initialisation (``init``):

* ``"torch"`` (default, as PyTorch's ``nn.Linear`` / ``nn.Conv2d``): weights and biases
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, i.e. Kaiming-uniform with ``a = sqrt(5)``.
* ``"keras"``: Keras defaults (Glorot-uniform weights, zero biases).

With an int ``seed`` every layer gets its own derived seed, so a build is reproducible.

This module also holds the layer-index notation helpers shared by the zoo's layer-ratio schemes.
A *layer-ratio scheme* is the per-layer ratio format the pruning core accepts: a dict
``{regex: ratio}`` where each regex is matched with ``re.fullmatch`` against layer names. Layers
that no pattern matches are not pruned, so the schemes list only non-zero entries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError

__all__ = [
    "MLP7_DEPTH",
    "index_pattern",
    "layer_initializers",
    "matching_layers",
    "mlp",
    "mlp7_linear",
    "mlp7_relu",
    "mlp_scheme",
    "parse_index_ratios",
]

MLP7_DEPTH = 7
_INITS = ("torch", "keras")


def index_pattern(prefix: str, indices: Iterable[int]) -> str:
    """Regex that ``re.fullmatch`` es exactly ``f"{prefix}{i}"`` for the given indices.

    Contiguous single-digit runs use a character class (``fc[0-5]``); anything else is an
    alternation (``conv(?:1|2|...|15)``).
    """
    idx = sorted({int(i) for i in indices})
    if not idx:
        raise InvalidArgumentError("index_pattern needs at least one index")
    if idx[0] < 0:
        raise InvalidArgumentError(f"layer indices must be >= 0, got {idx[0]}")
    p = re.escape(prefix)
    if len(idx) == 1:
        return f"{p}{idx[0]}"
    if idx[-1] <= 9 and idx == list(range(idx[0], idx[-1] + 1)):
        return f"{p}[{idx[0]}-{idx[-1]}]"
    return f"{p}(?:{'|'.join(str(i) for i in idx)})"


_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*:\s*([0-9.eE+-]+)\s*$")


def parse_index_ratios(spec: str, prefix: str) -> dict[str, float]:
    """Parse the papers' index notation ``"[0-5:0.8, 6:0]"`` into a ``{regex: ratio}`` scheme.

    Index ``i`` refers to the layer named ``f"{prefix}{i}"``; zero ratios are dropped. Each ratio
    must be in ``[0, 1)``; an index may appear only once.
    """
    body = spec.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    by_ratio: dict[float, list[int]] = {}
    seen: set[int] = set()
    for item in filter(None, (s.strip() for s in body.split(","))):
        m = _ITEM.match(item)
        if m is None:
            raise InvalidArgumentError(
                f"cannot parse {item!r} in ratio spec {spec!r}; expected 'a-b:ratio' or 'i:ratio'"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        ratio = float(m.group(3))
        if hi < lo:
            raise InvalidArgumentError(f"empty index range {lo}-{hi} in ratio spec {spec!r}")
        if not 0.0 <= ratio < 1.0:
            raise InvalidArgumentError(f"ratio {ratio} in {spec!r} must be in [0, 1)")
        indices = set(range(lo, hi + 1))
        if indices & seen:
            raise InvalidArgumentError(f"indices {sorted(indices & seen)} repeated in {spec!r}")
        seen |= indices
        if ratio > 0:
            by_ratio.setdefault(ratio, []).extend(indices)
    return {index_pattern(prefix, idx): ratio for ratio, idx in by_ratio.items()}


def matching_layers(model: keras.Model, scheme: Mapping[str, float]) -> dict[str, list[str]]:
    """For each pattern of ``scheme``, the names of ``model``'s layers it fully matches."""
    names = [layer.name for layer in model.layers]
    return {pat: [n for n in names if re.fullmatch(pat, n)] for pat in scheme}


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
    """MLP-7-Linear (identity activations): the ``mlp_7_linear`` of Lee et al. 2020.

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
