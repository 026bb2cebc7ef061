"""OrthP: re-initialises every conv / dense kernel as a scaled orthogonal matrix.

The graph walk here finds the activation behind each kernel to choose the network's gain. The
same code serves tf_keras and Keras 3 models: the layer classes are those of the model's flavour,
and a Keras 3 graph is read through the ``keras3_*`` helpers of :mod:`tfprune.compat`.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfprune.compat import (
    KERAS3,
    flavour_of,
    keras,
    keras3_functional_graph,
    keras3_graph_calls,
    keras3_is_layer,
    keras3_op_class,
    keras3_producer,
    keras_of,
    kernel_not_one_variable,
    outbound_nodes,
    tf,
)
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

# Keras 3 ops that ``keras.ops.relu(x)``... on symbolic tensors record, and their activation.
_KERAS3_ACTIVATION_OPS = {
    "Relu": "relu",
    "Relu6": "relu6",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "Tanh": "tanh",
    "Softsign": "softsign",
    "Elu": "elu",
    "Selu": "selu",
    "Gelu": "gelu",
    "Silu": "silu",
    "Softplus": "softplus",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
}


@functools.cache
def _classes(k: Any) -> types.SimpleNamespace:
    """The classes OrthP reads, of Keras module ``k`` (tf_keras or Keras 3)."""
    layers = k.layers
    keras3_ops = k is not keras
    op = keras3_op_class if keras3_ops else (lambda name: None)
    return types.SimpleNamespace(
        # What passes a kernel's output on channel-wise unchanged in kind, so the activation
        # behind it decides the gain (Conv -> BatchNorm -> ReLU); in Keras 3 also ``x + y``.
        transparent=tuple(
            c
            for c in (
                layers.BatchNormalization,
                layers.LayerNormalization,
                layers.Dropout,
                layers.GaussianNoise,
                layers.GaussianDropout,
                layers.Add,
                layers.Flatten,
                layers.Reshape,
                op("Add"),
                op("Reshape"),
            )
            if c is not None
        ),
        activations=(
            layers.Activation,
            layers.ReLU,
            layers.LeakyReLU,
            layers.ELU,
            layers.Softmax,
        ),
        # Keras 3 activation ops -> activation name (LeakyRelu: its slope decides).
        activation_ops={
            cls: name
            for cls, name in (
                (op(cls_name), name) for cls_name, name in _KERAS3_ACTIVATION_OPS.items()
            )
            if cls is not None
        },
        leaky_relu_op=op("LeakyRelu") or layers.LeakyReLU,
        dense=layers.Dense,
        conv=tuple(
            getattr(layers, name)
            for name in (
                "Conv1D",
                "Conv2D",
                "Conv3D",
                "DepthwiseConv1D",
                "DepthwiseConv2D",
                "SeparableConv1D",
                "SeparableConv2D",
            )
            if hasattr(layers, name)
        ),
        depthwise=tuple(
            getattr(layers, name)
            for name in ("DepthwiseConv1D", "DepthwiseConv2D")
            if hasattr(layers, name)
        ),
        conv_transpose=(
            layers.Conv1DTranspose,
            layers.Conv2DTranspose,
            layers.Conv3DTranspose,
        ),
    )


def _classes_of(obj: Any) -> types.SimpleNamespace:
    return _classes(keras_of(obj))


def activation_gain(activation: Any) -> float:
    """The OrthP gain for an activation function, name or activation layer.

    Gain table (``torch.nn.init.calculate_gain`` conventions where they exist): ``None`` /
    linear / sigmoid / hard_sigmoid / softmax: 1; tanh / softsign: 5/3; selu: 3/4;
    leaky ReLU with slope ``a``: ``sqrt(2 / (1 + a**2))`` (``a = 0.2`` for the function); ReLU and
    ReLU-like activations (relu6, elu, gelu, swish/silu, mish, softplus): ``sqrt(2)`` — for the
    smooth ones this is the usual ReLU approximation, not an exact value. Layers ``ReLU``,
    ``LeakyReLU``, ``ELU``, ``Softmax`` and ``Activation`` (of tf_keras or Keras 3) are resolved
    to their function, and so are the Keras 3 ops that ``keras.ops.relu(x)``... record.

    Raises:
        InvalidArgumentError: For an activation not in the table (pass an explicit ``gain`` to
            :func:`orthp` instead).
    """
    if activation is None:
        return 1.0
    layers = keras_of(activation).layers
    classes = _classes_of(activation)
    if isinstance(activation, (layers.ReLU, layers.LeakyReLU, classes.leaky_relu_op)):
        # tf_keras' LeakyReLU calls its slope ``alpha``, Keras 3 ``negative_slope``; tf_keras
        # keeps it as a float32, so a Keras 3 Python float is rounded the same way.
        slope = getattr(activation, "negative_slope", None)
        slope = float(np.float32(activation.alpha if slope is None else slope))
        return math.sqrt(2.0 / (1.0 + slope**2))
    if isinstance(activation, layers.ELU):
        return _RELU_GAIN
    if isinstance(activation, layers.Softmax):
        return 1.0
    if isinstance(activation, layers.Activation):
        return activation_gain(activation.activation)
    for cls, op_name in classes.activation_ops.items():
        if isinstance(activation, cls):
            return _GAIN_TABLE[op_name]
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", None)
    if name in _GAIN_TABLE:
        return _GAIN_TABLE[name]
    raise InvalidArgumentError(
        f"No OrthP gain is known for activation {activation!r}; pass gain=<float> or "
        "gain={layer_name: float} to orthp."
    )


def _is_activation(op: Any) -> bool:
    """Whether a layer (or Keras 3 op) applies an activation that :func:`activation_gain` reads."""
    classes = _classes_of(op)
    return isinstance(op, (*classes.activations, *classes.activation_ops, classes.leaky_relu_op))


_STOCK_MODULES = ("tf_keras.", "keras.", "tfprune.")


def _custom_call(layer: Any) -> bool:
    """Whether a class of ``layer`` from outside Keras and tfprune defines its own ``call``."""
    for cls in type(layer).__mro__:
        if cls.__module__.startswith(_STOCK_MODULES):
            return False
        if "call" in vars(cls):
            return True
    return False


Consumers = Callable[[Any], list]


def _tf_keras_consumers(layer: Any) -> list:
    """The layers that take a tf_keras layer's outputs, one per call."""
    return [node.outbound_layer for node in outbound_nodes(layer)]


def _keras3_consumers(model: Any) -> Consumers:
    """The layers and ops that take each layer's outputs in Keras 3 ``model``'s graphs.

    As tf_keras' ``outbound_nodes``: the graph a layer is called in, nested models' own graphs
    included (a nested model's output layer has no consumer inside its graph).
    """
    table: dict[int, list] = {}
    seen: set[int] = set()

    def visit(graph: Any) -> None:
        if graph is None or id(graph) in seen:
            return
        seen.add(id(graph))
        for call in keras3_graph_calls(graph):
            for tensor in call.inputs:
                table.setdefault(id(keras3_producer(tensor)), []).append(call.operation)
            if keras3_is_layer(call.operation):
                visit(keras3_functional_graph(call.operation))

    visit(keras3_functional_graph(model))
    return lambda layer: table.get(id(layer), [])


def _following_activation(layer: Any, consumers: Consumers) -> Any:
    """The activation applied after ``layer`` (own ``activation`` or a following layer).

    Looks through the layer's own ``activation``; if that is linear/absent, follows a single
    chain of consumers through normalisation/dropout/Add/reshape layers to an activation layer
    (or Keras 3 activation op). Returns None (linear) when there is none or the consumers
    disagree.

    Raises:
        InvalidArgumentError: The chain reaches a custom layer, whose ``call`` may apply any
            activation.
    """
    own = getattr(layer, "activation", None)
    if own is not None and getattr(own, "__name__", None) != "linear":
        return own
    current = layer
    for _ in range(8):
        following = {id(op): op for op in consumers(current)}
        if len(following) != 1:
            return None
        (nxt,) = following.values()
        if _is_activation(nxt):
            return nxt
        if _custom_call(nxt):
            raise InvalidArgumentError(
                f"its output goes to custom layer {nxt.name!r} ({type(nxt).__name__}), whose "
                "activation orthp cannot read; pass gain=<float> or "
                f"gain={{{layer.name!r}: <float>}} to orthp."
            )
        if not isinstance(nxt, _classes_of(nxt).transparent):
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


def _kernels_of(layer: Any) -> list[tuple[Any, str]]:
    """The (variable, layout kind) pairs OrthP re-initialises in ``layer``.

    Raises:
        UnsupportedModelError: A Keras 3 layer whose kernel is quantized or LoRA-adapted (its
            weight is no longer one kernel variable).
    """
    classes = _classes_of(layer)
    if not isinstance(layer, (classes.dense, *classes.conv, *classes.conv_transpose)):
        return []
    state = kernel_not_one_variable(layer)
    if state:
        raise UnsupportedModelError(
            f"orthp cannot re-initialise layer {layer.name!r}: its kernel is {state}; call "
            "orthp before quantizing or enabling LoRA."
        )
    if isinstance(layer, classes.dense):
        return [(layer.kernel, "dense")]
    found: list[tuple[Any, str]] = []
    if getattr(layer, "depthwise_kernel", None) is not None:
        found.append((layer.depthwise_kernel, "depthwise"))
    if getattr(layer, "pointwise_kernel", None) is not None:
        found.append((layer.pointwise_kernel, "conv"))
    if not found and getattr(layer, "kernel", None) is not None:
        kind = "conv_transpose" if isinstance(layer, classes.conv_transpose) else "conv"
        if isinstance(layer, classes.depthwise):  # Keras 3 calls the depthwise kernel "kernel"
            kind = "depthwise"
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

    It works on tf_keras and Keras 3 models alike: the twin of a model in the other flavour,
    with the same weights, gets the very same kernels.

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
    Flatten/Reshape layers or Keras 3 ``x + y`` / reshape ops, so ``Conv -> BN -> ReLU`` counts
    as ReLU; Keras 3 activation ops such as ``keras.ops.relu`` count too) must agree on one
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
            activation without a known gain or a kernel whose output goes to a custom layer
            (and no override for it), or (default ``gain``) a network whose activations have
            different gains.
        UnsupportedModelError: The model is unbuilt or has no conv/dense kernel, or a Keras 3
            kernel is quantized or LoRA-adapted.
    """
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

    consumers = _keras3_consumers(model) if flavour_of(model) == KERAS3 else _tf_keras_consumers
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
                scale = activation_gain(_following_activation(layer, consumers))
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
            variable.assign(new.astype(tf.as_dtype(variable.dtype).as_numpy_dtype))
    return model
