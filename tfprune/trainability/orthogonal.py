"""OrthP: re-initialises every conv / dense kernel as a scaled orthogonal matrix.

The graph walk here finds the activation behind each kernel to choose the network's gain.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import keras, outbound_nodes, require_tf_keras
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.nested import all_layers

__all__ = ["activation_gain", "orthp"]

_RELU_GAIN = math.sqrt(2.0)
_GAIN_TABLE: dict[str, float] = {
    "linear": 1.0,
    "sigmoid": 1.0,
    "softmax": 1.0,
    "log_softmax": 1.0,
    "hard_sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "softsign": 5.0 / 3.0,
    "relu": _RELU_GAIN,
    "relu6": _RELU_GAIN,
    "elu": _RELU_GAIN,
    "gelu": _RELU_GAIN,
    "swish": _RELU_GAIN,
    "silu": _RELU_GAIN,
    "mish": _RELU_GAIN,
    "softplus": _RELU_GAIN,
    "selu": 3.0 / 4.0,
    "leaky_relu": math.sqrt(2.0 / (1.0 + 0.2**2)),
}

# Layers that pass a kernel's output on channel-wise unchanged in kind, so the activation behind
# them decides the gain (Conv -> BatchNorm -> ReLU).
_TRANSPARENT_LAYERS: tuple[type, ...] = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.Add,
    keras.layers.Flatten,
    keras.layers.Reshape,
)


def activation_gain(activation: Any) -> float:
    """The OrthP gain for an activation function, name or activation layer.

    Gain table (``torch.nn.init.calculate_gain`` conventions where they exist): ``None`` /
    linear / sigmoid / hard_sigmoid / softmax: 1; tanh / softsign: 5/3; selu: 3/4;
    leaky ReLU with slope ``a``: ``sqrt(2 / (1 + a**2))`` (``a = 0.2`` for the function); ReLU and
    ReLU-like activations (relu6, elu, gelu, swish/silu, mish, softplus): ``sqrt(2)`` — for the
    smooth ones this is the usual ReLU approximation, not an exact value. Layers ``ReLU``,
    ``LeakyReLU``, ``ELU``, ``Softmax`` and ``Activation`` are resolved to their function.

    Raises:
        InvalidArgumentError: For an activation not in the table (pass an explicit ``gain`` to
            :func:`orthp` instead).
    """
    if activation is None:
        return 1.0
    if isinstance(activation, keras.layers.ReLU):
        slope = float(activation.negative_slope)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if isinstance(activation, keras.layers.LeakyReLU):
        return math.sqrt(2.0 / (1.0 + float(activation.alpha) ** 2))
    if isinstance(activation, keras.layers.ELU):
        return _RELU_GAIN
    if isinstance(activation, keras.layers.Softmax):
        return 1.0
    if isinstance(activation, keras.layers.Activation):
        return activation_gain(activation.activation)
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", None)
    if name in _GAIN_TABLE:
        return _GAIN_TABLE[name]
    raise InvalidArgumentError(
        f"No OrthP gain is known for activation {activation!r}; pass gain=<float> or "
        "gain={layer_name: float} to orthp."
    )


def _is_activation_layer(layer: Any) -> bool:
    return isinstance(
        layer,
        (
            keras.layers.Activation,
            keras.layers.ReLU,
            keras.layers.LeakyReLU,
            keras.layers.ELU,
            keras.layers.Softmax,
        ),
    )


def _following_activation(layer: Any) -> Any:
    """The activation applied after ``layer`` (own ``activation`` or a following layer).

    Looks through the layer's own ``activation``; if that is linear/absent, follows a single
    chain of consumers through normalisation/dropout/Add/reshape layers to an activation layer.
    Returns None (linear) when there is none or the consumers disagree.
    """
    own = getattr(layer, "activation", None)
    if own is not None and getattr(own, "__name__", None) != "linear":
        return own
    current = layer
    for _ in range(8):
        consumers = {id(n.outbound_layer): n.outbound_layer for n in outbound_nodes(current)}
        if len(consumers) != 1:
            return None
        (nxt,) = consumers.values()
        if _is_activation_layer(nxt):
            return nxt
        if not isinstance(nxt, _TRANSPARENT_LAYERS):
            return None
        current = nxt
    return None


def _orthogonalize(matrix: np.ndarray) -> np.ndarray:
    """Sign-corrected Q of the QR of ``matrix`` (made tall first), in the original orientation."""
    rows, cols = matrix.shape
    transposed = rows < cols
    a = matrix.T if transposed else matrix
    q, r = np.linalg.qr(a, mode="reduced")
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q = q * signs[np.newaxis, :]
    return q.T if transposed else q


def _to_matrix(kernel: np.ndarray, kind: str) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """(out, fan_in) weight matrix in PyTorch layout and the inverse map back to Keras layout."""
    shape = kernel.shape
    if kind == "dense":  # (in, out) -> (out, in)
        return kernel.T, lambda m: m.T.reshape(shape)
    nd = kernel.ndim
    if kind == "conv":  # (k..., in, out) -> (out, in, k...) -> (out, in*prod(k))
        perm = (nd - 1, nd - 2, *range(nd - 2))
    elif kind == "conv_transpose":  # (k..., out, in) -> (out, in, k...)
        perm = (nd - 2, nd - 1, *range(nd - 2))
    elif kind == "depthwise":  # (k..., in, mult) -> (in, mult, k...) -> (in*mult, prod(k))
        perm = (nd - 2, nd - 1, *range(nd - 2))
    else:  # pragma: no cover - internal misuse
        raise ValueError(kind)
    moved = np.transpose(kernel, perm)
    rows = moved.shape[0] * moved.shape[1] if kind == "depthwise" else moved.shape[0]
    inverse_perm = np.argsort(perm)

    def back(m: np.ndarray) -> np.ndarray:
        return np.transpose(m.reshape(moved.shape), inverse_perm)

    return moved.reshape(rows, -1), back


_CONV_LAYERS: tuple[type, ...] = tuple(
    getattr(keras.layers, name)
    for name in (
        "Conv1D",
        "Conv2D",
        "Conv3D",
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "SeparableConv1D",
        "SeparableConv2D",
    )
    if hasattr(keras.layers, name)
)


def _kernels_of(layer: Any) -> list[tuple[Any, str]]:
    """The (variable, layout kind) pairs OrthP re-initialises in ``layer``."""
    conv_transpose = (
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.Conv3DTranspose,
    )
    if isinstance(layer, keras.layers.Dense):
        return [(layer.kernel, "dense")]
    if not isinstance(layer, _CONV_LAYERS):
        return []
    found: list[tuple[Any, str]] = []
    if getattr(layer, "depthwise_kernel", None) is not None:
        found.append((layer.depthwise_kernel, "depthwise"))
    if getattr(layer, "pointwise_kernel", None) is not None:
        found.append((layer.pointwise_kernel, "conv"))
    if not found and getattr(layer, "kernel", None) is not None:
        kind = "conv_transpose" if isinstance(layer, conv_transpose) else "conv"
        found.append((layer.kernel, kind))
    return found


def _one_gain(
    plan: list[tuple[Any, float, list[tuple[Any, str]]]],
) -> list[tuple[Any, float, list[tuple[Any, str]]]]:
    """The authors' single gain: that of the network's (one) non-linear activation, else 1."""
    gains = {}
    for layer, scale, _ in plan:
        if scale != 1.0:
            gains.setdefault(round(scale, 12), []).append(layer.name)
    if len(gains) > 1:
        listing = "; ".join(f"{g:.4g}: {', '.join(names[:3])}" for g, names in gains.items())
        raise InvalidArgumentError(
            f"orthp uses one gain for every layer, but the activations of this model have "
            f"different gains ({listing}); pass gain=<float> (e.g. math.sqrt(2) for ReLU) or "
            "gain='per_layer'."
        )
    value = next(iter(gains), 1.0)
    return [(layer, float(value), kernels) for layer, _, kernels in plan]


def orthp(
    model: keras.Model,
    *,
    gain: float | str | Mapping[str, float] | None = None,
) -> keras.Model:
    """OrthP: re-initialises every conv/dense kernel, in place, to a scaled (semi-)orthogonal one.

    For each kernel, with ``W`` its weight matrix in ``(out, fan_in)`` layout (PyTorch order
    ``(out, in, k...)``, so results match the reference implementation exactly):
    ``A = W`` (or ``W.T`` if ``W`` is wide), reduced QR ``A = Q R``, ``Q <- Q * sign(diag(R))``
    (a zero diagonal entry counts as +1), transpose back if needed, reshape to the Keras kernel
    layout and multiply by the gain. Rows (if ``out <= fan_in``) or columns of ``W`` become
    orthonormal times the gain. It keeps the existing weights' row/column space orientation; it
    is the Q of QR, not the nearest orthogonal matrix. Biases, BatchNorm and all other variables
    are left untouched.

    Re-initialised layers (found recursively in nested models and wrappers):

    * ``Dense`` and ``Conv1D/2D/3D`` kernels (grouped convs as ``(out, in/groups * k...)``).
    * ``Conv1D/2D/3DTranspose`` kernels as ``(filters, in * k...)``.
    * ``DepthwiseConv1D/2D`` depthwise kernels as an ``(in * multiplier, k...)`` matrix, i.e. one
      row per output channel, as a PyTorch grouped ``Conv2d`` weight is treated.
    * ``SeparableConv1D/2D``: the depthwise kernel as above and the pointwise kernel as a 1x1 conv.

    Gain: as in the authors' code, one gain multiplies every kernel, the gain of the network's
    activation (:func:`activation_gain`: linear 1, ReLU ``sqrt(2)``, tanh 5/3, ...) - also for
    the layers that are not followed by it, such as the logits layer. By default it is read
    from the model: the activations that follow the kernels (a layer's own ``activation``, or
    an activation layer reached through BatchNormalization/LayerNormalization/Dropout/Add/
    Flatten/Reshape layers, so ``Conv -> BN -> ReLU`` counts as ReLU) must agree on one
    non-linear gain, or there are none (a linear network: gain 1). ``gain="per_layer"`` gives
    every layer the gain of its own following activation instead (1 for the logits layer).

    Args:
        model: A built Keras model (or layer); modified in place.
        gain: None (one gain, from the network's activation), a float used for every kernel,
            ``"per_layer"`` (each layer's own activation), or a dict ``{layer_name: gain}``
            overriding the per-layer gain of the named layers.

    Returns:
        ``model`` itself.

    Raises:
        InvalidArgumentError: A bad ``gain``, a dict naming no re-initialised layer, an
            activation without a known gain (and no override), or (default ``gain``) a network
            whose activations have different gains.
        UnsupportedModelError: The model is unbuilt or has no conv/dense kernel.
    """
    require_tf_keras(model, "tfprune.orthp")
    if gain is not None and gain != "per_layer" and not isinstance(gain, Mapping):
        if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not gain > 0:
            raise InvalidArgumentError(
                f"gain must be a positive number, 'per_layer', a dict of layer name to gain, "
                f"or None; got {gain!r}."
            )
    overrides: Mapping[str, float] = gain if isinstance(gain, Mapping) else {}
    for name, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise InvalidArgumentError(f"gain[{name!r}] must be a positive number; got {value!r}.")
    if not getattr(model, "built", True):
        raise UnsupportedModelError(
            "orthp needs a built model; call it on data or build it with an input shape first."
        )

    plan: list[tuple[Any, float, list[tuple[Any, str]]]] = []
    for layer in [model, *all_layers(model, open_wrappers=True)]:
        kernels = _kernels_of(layer)
        if not kernels:
            continue
        if isinstance(gain, numbers.Real):
            scale = float(gain)
        elif layer.name in overrides:
            scale = float(overrides[layer.name])
        else:
            try:
                scale = activation_gain(_following_activation(layer))
            except InvalidArgumentError as err:
                raise InvalidArgumentError(f"Layer {layer.name!r}: {err}") from err
        plan.append((layer, scale, kernels))

    if gain is None and plan:
        plan = _one_gain(plan)
    if not plan:
        raise UnsupportedModelError(
            f"orthp found no Dense/Conv kernel in {getattr(model, 'name', model)!r}; is the model "
            "built?"
        )
    names = [layer.name for layer, _, _ in plan]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InvalidArgumentError(
            f"gain names layers that orthp does not re-initialise: {unknown}; the re-initialised "
            f"layers are {names}."
        )
    for _, scale, kernels in plan:
        for variable, kind in kernels:
            kernel = variable.numpy().astype(np.float64)
            matrix, back = _to_matrix(kernel, kind)
            new = back(scale * _orthogonalize(matrix))
            variable.assign(new.astype(variable.dtype.as_numpy_dtype))
    return model
