"""Parameter and FLOPs counting for built tf_keras models, per layer and in total.

Conventions (pinned by ``tests/test_flops.py`` against the numbers the pruning papers report):

* **FLOPs unit.** :func:`count_flops` reports **multiply-accumulates (MACs)** per single example
  (the batch dimension is excluded) by default (``unit="macs"``). ``unit="flops"`` reports
  ``2 * MACs`` (one multiply plus one add per MAC). The literature mixes both: the ImageNet numbers
  of the papers (ResNet-50 4.09 G, ResNet-34 3.66 G) are MACs, while the CIFAR numbers (ResNet-56
  0.25 G, VGG-19 0.80 G) are ``2 * MACs`` (ResNet-56 has 125,485,696 MACs = 0.251 G FLOPs).
  Speedups (``dense / pruned``) do not depend on the unit.
* **What is counted.** By default the weight ops of every layer type whose channel rule
  (:mod:`tfprune.graph.rules`) knows its cost: Conv1D/2D/3D (with ``groups``),
  Conv1D/2D/3DTranspose, DepthwiseConv1D/2D (with ``depth_multiplier``), SeparableConv1D/2D,
  Dense on inputs of any rank, LocallyConnected1D/2D (one MAC per weight per output position),
  SimpleRNN/GRU/LSTM (``steps * gates * units * (features + units)``: input and recurrent
  kernels of every gate at every step), Bidirectional (both directions), TimeDistributed (the
  wrapped layer once per step), MultiHeadAttention (query/key/value/output projections plus
  ``QK^T`` and the attention-weighted sum of values, ``heads * Tq * Tv * (key_dim +
  value_dim)``), ``tf.matmul`` ops, and TF-MOT's pruning/quantization wrappers (what they
  wrap). Embedding lookups cost 0 MACs (their table is counted in params). Biases,
  normalisation, activations, pooling and merges cost nothing, which is the papers' convention
  ("the code counts only Conv/Linear weights"). ``include_elementwise=True`` adds cheap ops,
  see :func:`count_flops`.
* **Params.** :func:`count_params` counts every weight variable of the model once (trainable and
  non-trainable, so BatchNormalization's moving mean/variance are included), attributed to the
  first layer that holds it. ``trainable_only=True`` counts trainable weights only. The papers'
  ResNet-56 "sparsity" (parameter reduction) is computed from **trainable** parameters: conv and
  FC weights, FC bias and BN gamma/beta, but *not* BN moving statistics. Only that convention
  reproduces 31.14/49.82/70.58/90.45/95.18 % for PR 0.3/0.5/0.7/0.9/0.95 (counting the moving
  statistics gives 31.06/49.70/...). :func:`param_reduction` uses trainable parameters.
* **Nested models and shared layers.** A model used as a layer is expanded: its layers are reported
  under ``outer/inner`` paths. A layer (or nested model) called several times costs its FLOPs once
  per call, with the shapes of that call; its params are counted once.
* **Uncounted layers never flatter.** A layer no rule can cost (a custom layer or subclassed
  model, a ``Lambda``, a TF op such as ``einsum``) counts 0 FLOPs but is listed in
  :attr:`ModelCount.uncounted`, and :attr:`ModelCount.is_lower_bound` is then True; printed
  tables say "LOWER BOUND", and :func:`speedup` returns a :class:`CountRatio` that carries the
  uncounted layers (``strict=True`` raises instead). Params are always counted exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tfprune.compat import conv_base_class, is_functional, keras, keras3_stock_class, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.graph import rules
from tfprune.graph.groups import passes_channels_through
from tfprune.graph.inline import inline_model, wants_tracing
from tfprune.graph.keras3 import (
    check_keras3_graph,
    graph_layers,
    graph_operations,
    is_keras3,
    trace_keras3,
)
from tfprune.graph.trace import check_graph_model, iter_graph_nodes

__all__ = [
    "CountRatio",
    "ModelCount",
    "count_params",
    "count_flops",
    "summarize",
    "speedup",
    "param_reduction",
]

_UNITS = ("macs", "flops")

_L = keras.layers
_CONV_BASE = conv_base_class
# Layers whose multiply-accumulates come with a bias add and a fused activation.
_WEIGHT_OPS = (
    _CONV_BASE,
    _L.Dense,
    _L.SimpleRNN,
    _L.GRU,
    _L.LSTM,
    _L.LocallyConnected1D,
    _L.LocallyConnected2D,
)
_MERGE = (_L.Add, _L.Subtract, _L.Multiply, _L.Maximum, _L.Minimum, _L.Average)
_ACTIVATIONS = (_L.Activation, _L.ReLU, _L.LeakyReLU, _L.PReLU, _L.ELU, _L.Softmax)
_POOLING = (
    _L.MaxPooling1D,
    _L.MaxPooling2D,
    _L.MaxPooling3D,
    _L.AveragePooling1D,
    _L.AveragePooling2D,
    _L.AveragePooling3D,
)
_GLOBAL_POOLING = (
    _L.GlobalAveragePooling1D,
    _L.GlobalAveragePooling2D,
    _L.GlobalAveragePooling3D,
    _L.GlobalMaxPooling1D,
    _L.GlobalMaxPooling2D,
    _L.GlobalMaxPooling3D,
)
# Layers that are free under every convention (shape-only or identity at inference).
_FREE = (
    _L.InputLayer,
    _L.Flatten,
    _L.Reshape,
    _L.Permute,
    _L.Dropout,
    _L.SpatialDropout1D,
    _L.SpatialDropout2D,
    _L.SpatialDropout3D,
    _L.GaussianNoise,
    _L.GaussianDropout,
    _L.ZeroPadding1D,
    _L.ZeroPadding2D,
    _L.ZeroPadding3D,
    _L.Cropping1D,
    _L.Cropping2D,
    _L.Cropping3D,
    _L.Concatenate,
    _L.RepeatVector,
    _L.UpSampling1D,
    _L.UpSampling2D,
    _L.UpSampling3D,
) + tuple(
    # Preprocessing: elementwise, lookups, or identity at inference (augmentation).
    getattr(_L, name)
    for name in (
        "Normalization",
        "Rescaling",
        "Resizing",
        "CenterCrop",
        "Masking",
        "Identity",
        "CategoryEncoding",
        "Hashing",
        "Discretization",
        "IntegerLookup",
        "StringLookup",
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomContrast",
        "RandomCrop",
        "RandomBrightness",
        "RandomHeight",
        "RandomWidth",
    )
    if hasattr(_L, name)
)


@dataclasses.dataclass(frozen=True)
class ModelCount:
    """Per-layer and total counts of one quantity (params or FLOPs) of a model.

    Attributes:
        metric: ``"params"`` or ``"flops"``.
        unit: ``"params"``/``"trainable_params"`` for params, ``"macs"``/``"flops"`` for FLOPs.
        per_layer: ordered ``layer path -> count`` (model layer order; nested layers appear as
            ``outer/inner``). Every layer of the model has an entry, zero included.
        layer_types: ``layer path -> class name``.
        calls: ``layer path -> number of calls counted`` (FLOPs only; shared layers > 1).
        uncounted: paths of layers whose computation no FLOPs rule covers (FLOPs only): custom
            layers, subclassed models, ``Lambda`` layers, TF ops such as ``einsum``. They count
            0, so ``total`` is then a lower bound (:attr:`is_lower_bound`).
        notes: human-readable remarks, e.g. layers whose shapes had to be taken from the graph.
    """

    metric: str
    unit: str
    per_layer: OrderedDict[str, int]
    layer_types: Mapping[str, str]
    calls: Mapping[str, int] = dataclasses.field(default_factory=dict)
    uncounted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """The sum over all layers (a lower bound when :attr:`is_lower_bound`)."""
        return int(sum(self.per_layer.values()))

    @property
    def is_lower_bound(self) -> bool:
        """True when some layer's FLOPs could not be counted (see :attr:`uncounted`)."""
        return bool(self.uncounted)

    # A count is usable as the number it totals, like Keras' ``model.count_params()``:
    # ``int(c)``, ``f"{c:,}"``, ``c > n``, ``c == n``, ``a / b``, ``sum(...)``. ``str(c)`` (and an
    # empty format spec) gives the per-layer table.

    def __int__(self) -> int:
        return self.total

    def __index__(self) -> int:
        return self.total

    def __float__(self) -> float:
        return float(self.total)

    def __format__(self, spec: str) -> str:
        return format(self.total, spec) if spec else str(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ModelCount):
            return dataclasses.astuple(self) == dataclasses.astuple(other)
        number = _number(other)
        return NotImplemented if number is None else self.total == number

    def __hash__(self) -> int:
        return hash(self.total)

    def __lt__(self, other: object) -> bool:
        number = _number(other)
        return NotImplemented if number is None else self.total < number

    def __le__(self, other: object) -> bool:
        number = _number(other)
        return NotImplemented if number is None else self.total <= number

    def __gt__(self, other: object) -> bool:
        number = _number(other)
        return NotImplemented if number is None else self.total > number

    def __ge__(self, other: object) -> bool:
        number = _number(other)
        return NotImplemented if number is None else self.total >= number

    def __add__(self, other: object) -> Any:
        number = _number(other)
        return NotImplemented if number is None else self.total + number

    def __radd__(self, other: object) -> Any:
        return self.__add__(other)

    def __sub__(self, other: object) -> Any:
        number = _number(other)
        return NotImplemented if number is None else self.total - number

    def __rsub__(self, other: object) -> Any:
        number = _number(other)
        return NotImplemented if number is None else number - self.total

    def __mul__(self, other: object) -> Any:
        number = _number(other)
        return NotImplemented if number is None else self.total * number

    def __rmul__(self, other: object) -> Any:
        return self.__mul__(other)

    def __truediv__(self, other: object) -> Any:
        number = _number(other)
        return NotImplemented if number is None else self.total / number

    def __rtruediv__(self, other: object) -> Any:
        number = _number(other)
        return NotImplemented if number is None else number / self.total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with every field plus ``total``."""
        return {
            "metric": self.metric,
            "unit": self.unit,
            "total": self.total,
            "per_layer": {k: int(v) for k, v in self.per_layer.items()},
            "layer_types": dict(self.layer_types),
            "calls": {k: int(v) for k, v in self.calls.items()},
            "uncounted": list(self.uncounted),
            "is_lower_bound": self.is_lower_bound,
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        total = self.total
        width = max([len("layer"), *(len(k) for k in self.per_layer)])
        twidth = max([len("type"), *(len(v) for v in self.layer_types.values())])
        header = f"{'layer':<{width}}  {'type':<{twidth}}  {self.unit:>15}  {'share':>7}"
        lines = [header, "-" * len(header)]
        for path, value in self.per_layer.items():
            share = 100.0 * value / total if total else 0.0
            kind = self.layer_types.get(path, "")
            lines.append(f"{path:<{width}}  {kind:<{twidth}}  {value:>15,d}  {share:>6.2f}%")
        lines.append("-" * len(header))
        lines.append(f"{'total':<{width}}  {'':<{twidth}}  {total:>15,d}  {100.0:>6.2f}%")
        if self.uncounted:
            lines.append(
                "total is a LOWER BOUND: no FLOPs rule for (counted as 0): "
                + ", ".join(self.uncounted)
            )
        return "\n".join(lines)


def _number(value: object) -> int | float | None:
    """``value`` as a Python number (a count's total for a :class:`ModelCount`), else None."""
    if isinstance(value, ModelCount):
        return value.total
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return value.item() if isinstance(value, (np.integer, np.floating)) else value


# --------------------------------------------------------------------------------------------
# Params


def _is_model(layer: Any) -> bool:
    return isinstance(layer, keras.Model) or (
        is_keras3(layer) and hasattr(layer, "layers") and hasattr(layer, "fit")
    )


def count_params(model: keras.Model, *, trainable_only: bool = False) -> ModelCount:
    """Counts the parameters of ``model`` per layer and in total.

    Every weight variable is counted once, even when a layer is shared or a variable is held by
    several layers; it is attributed to the first layer (in model order) that holds it. Nested
    models are expanded into ``outer/inner`` paths. Works for any model whose weights exist
    (functional, Sequential or subclassed); raises :class:`UnsupportedModelError` for an unbuilt
    model.

    Args:
        model: a built tf_keras model.
        trainable_only: count only trainable weights (the convention of the papers' ResNet-56
            "sparsity": BN gamma/beta included, BN moving mean/variance excluded).

    Returns:
        A :class:`ModelCount` with ``metric="params"``.
    """
    keras3 = is_keras3(model)
    if keras3:
        check_keras3_graph(model)
    else:
        check_graph_model(model, "model", subclassed=True)
    per_layer: OrderedDict[str, int] = OrderedDict()
    types: dict[str, str] = {}
    seen: set[int] = set()

    def weights_of(obj: Any) -> list[Any]:
        return list(obj.trainable_weights if trainable_only else obj.weights)

    def add(path: str, obj: Any, variables: Iterable[Any]) -> None:
        n = 0
        for v in variables:
            if id(v) in seen:
                continue
            seen.add(id(v))
            n += int(math.prod(v.shape))
        per_layer[path] = per_layer.get(path, 0) + n
        types.setdefault(path, type(obj).__name__)

    def visit(m: keras.Model, prefix: str) -> None:
        for layer in graph_layers(m) if keras3 else m.layers:
            path = prefix + layer.name
            if _is_model(layer):
                visit(layer, path + "/")
                own = weights_of(layer)
                if any(id(v) not in seen for v in own):
                    add(path, layer, own)
            else:
                add(path, layer, weights_of(layer))

    visit(model, "")
    rest = [v for v in weights_of(model) if id(v) not in seen]
    if rest:
        add(model.name, model, rest)
    unit = "trainable_params" if trainable_only else "params"
    return ModelCount("params", unit, per_layer, types)


# --------------------------------------------------------------------------------------------
# FLOPs


def _dims(shape: Any) -> tuple | None:
    """``shape`` as a tuple of ints/None, or None for an unknown rank."""
    shape = tf.TensorShape(shape)
    if shape.rank is None:
        return None
    return tuple(shape.as_list())


_numel = rules.numel

# Wrappers that only add behaviour around the wrapped layer's computation (TF-MOT's pruning and
# quantization wrappers): they cost what the wrapped layer costs.
_TRANSPARENT_WRAPPERS = ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2")


def _is_transparent_wrapper(layer: Any) -> bool:
    return (
        isinstance(layer, _L.Wrapper)
        and hasattr(layer, "layer")
        and any(c.__name__ in _TRANSPARENT_WRAPPERS for c in type(layer).__mro__)
    )


def _recurrent_ops(layer: Any, ins: list[tuple | None]) -> int:
    """Gate ops of a recurrent layer: bias add and activation per gate, unit and step."""
    if not isinstance(layer, (_L.SimpleRNN, _L.GRU, _L.LSTM)):
        return 0
    gates = rules.RecurrentRule.gates(layer)
    x = ins[0]
    steps = x[0] if getattr(layer, "time_major", False) else x[1]
    return 2 * gates * int(layer.units) * int(steps)


def _layer_cost(
    layer: Any, ins: list[tuple | None], outs: list[tuple | None], what: str, elementwise: bool
) -> tuple[int, int, bool]:
    """Returns ``(macs, other_ops, known)`` of one call of a non-model layer."""
    out = outs[0] if outs else None
    ops = 0
    if _is_transparent_wrapper(layer):
        if getattr(layer.layer, "built", False):
            return _layer_cost(layer.layer, ins, outs, what, elementwise)
        return 0, 0, False
    if type(layer) is _L.TimeDistributed:
        steps = ins[0][1] if ins and ins[0] is not None and len(ins[0]) > 1 else None
        if steps is None:
            raise UnsupportedModelError(f"cannot count FLOPs of {what}: unknown time steps")
        fold = [None if t is None else (t[0], *t[2:]) for t in ins]
        fold_out = [None if t is None else (t[0], *t[2:]) for t in outs]
        m, o, known = _layer_cost(layer.layer, fold, fold_out, what, elementwise)
        return m * steps, o * steps, known
    if type(layer) is _L.Bidirectional:
        parts = [
            _layer_cost(inner, ins[:1], outs[:1], what, elementwise)
            for inner in (layer.forward_layer, layer.backward_layer)
        ]
        return sum(p[0] for p in parts), sum(p[1] for p in parts), all(p[2] for p in parts)
    macs = rules.rule_for(layer).macs(layer, ins, outs)
    if macs is not None and isinstance(layer, _WEIGHT_OPS):
        # Conv / Dense / RNN epilogue: bias add and fused activation.
        if elementwise:
            if isinstance(layer, (_L.SimpleRNN, _L.GRU, _L.LSTM)):
                ops += _recurrent_ops(layer, ins)
            else:
                if getattr(layer, "use_bias", False):
                    ops += _numel(out, what)
                activation = getattr(layer, "activation", None)
                if activation is not None and activation is not keras.activations.linear:
                    ops += _numel(out, what)
        return int(macs), ops, True
    if isinstance(layer, _L.BatchNormalization):
        # Folded at inference into one multiply-add per element (not counted by default).
        return (_numel(out, what) if elementwise else 0), 0, True
    if isinstance(layer, _MERGE):
        if elementwise:
            ops = (len(ins) - 1) * _numel(out, what)
            if isinstance(layer, _L.Average):
                ops += _numel(out, what)
        return 0, ops, True
    if isinstance(layer, _ACTIVATIONS):
        return 0, (_numel(out, what) if elementwise else 0), True
    if isinstance(layer, _POOLING):
        if elementwise:
            window = int(math.prod(layer.pool_size))
            ops = _numel(out, what) * window
        return 0, ops, True
    if isinstance(layer, _GLOBAL_POOLING):
        return 0, (_numel(ins[0], what) if elementwise else 0), True
    if isinstance(layer, _FREE) or macs is not None or _free_keras3(layer):
        return int(macs or 0), 0, True
    return 0, 0, False


def _free_keras3(layer: Any) -> bool:
    """Whether ``layer`` is a Keras 3 layer (its own ``call``) whose tf_keras namesake is free."""
    stock = keras3_stock_class(layer) if is_keras3(layer) else None
    twin = getattr(_L, stock.__name__, None) if stock is not None else None
    if not (isinstance(twin, type) and issubclass(twin, _FREE)):
        return False
    mro = type(layer).__mro__
    return not any("call" in vars(cls) for cls in mro[: mro.index(stock)])


@dataclasses.dataclass
class _FlopsState:
    elementwise: bool
    macs: OrderedDict[str, int]
    ops: dict[str, int]
    types: dict[str, str]
    calls: dict[str, int]
    unknown: dict[str, bool]
    notes: list[str]


def _register_paths(model: keras.Model, prefix: str, state: _FlopsState) -> None:
    """Creates zero entries for every layer in model order, so the table follows model order."""
    for layer in model.layers:
        path = prefix + layer.name
        if _is_model(layer) and is_functional(layer):
            _register_paths(layer, path + "/", state)
        else:
            state.macs.setdefault(path, 0)
            state.ops.setdefault(path, 0)
            state.types.setdefault(path, type(layer).__name__)
            state.calls.setdefault(path, 0)


def _walk(
    model: keras.Model, input_shapes: list[tuple | None], prefix: str, state: _FlopsState
) -> list[tuple | None]:
    """Counts one call of a functional ``model`` on ``input_shapes``; returns its output shapes."""
    shapes: dict[int, tuple | None] = {}
    for tensor, shape in zip(model.inputs, input_shapes):
        shapes[id(tensor)] = shape
    for node in iter_graph_nodes(model):
        layer = node.layer
        outputs = tf.nest.flatten(node.outputs)
        inputs = list(node.keras_inputs)
        recorded_in = [_dims(t.shape) for t in inputs]
        actual_in = [shapes.get(id(t), rec) for t, rec in zip(inputs, recorded_in)]
        recorded_out = [_dims(t.shape) for t in outputs]
        path = prefix + layer.name
        if _is_model(layer) and is_functional(layer):
            actual_out = _walk(layer, actual_in, path + "/", state)
        else:
            if actual_in == recorded_in:
                actual_out = recorded_out
            else:
                actual_out = _infer_output_shapes(
                    layer, actual_in, recorded_in, recorded_out, path, state
                )
            what = f"layer '{path}' ({type(layer).__name__})"
            macs, ops, known = _layer_cost(layer, actual_in, actual_out, what, state.elementwise)
            state.macs[path] = state.macs.get(path, 0) + macs
            state.ops[path] = state.ops.get(path, 0) + ops
            state.types.setdefault(path, type(layer).__name__)
            state.calls[path] = state.calls.get(path, 0) + 1
            if not known:
                state.unknown[path] = True
        for tensor, shape in zip(outputs, actual_out):
            shapes[id(tensor)] = shape
    return [shapes.get(id(t), _dims(t.shape)) for t in model.outputs]


def _infer_output_shapes(
    layer: Any,
    ins: list[tuple | None],
    recorded_ins: list[tuple | None],
    recorded: list[tuple | None],
    path: str,
    state: _FlopsState,
) -> list[tuple | None]:
    """Output shapes of ``layer`` on new input shapes, or the graph's shapes if that fails."""
    recorded_in = recorded_ins[0] if recorded_ins else None
    actual_in = ins[0] if ins else None
    try:
        arg = tf.TensorShape(ins[0]) if len(ins) == 1 else [tf.TensorShape(s) for s in ins]
        result = layer.compute_output_shape(arg)
        flat = tf.nest.flatten(result, expand_composites=False)
        if isinstance(result, tf.TensorShape):
            flat = [result]
        out = [_dims(s) for s in flat]
        if len(out) == len(recorded):
            # Some layers answer from shapes fixed when they were built (EinsumDense).
            return [_fill_unknown(o, recorded_in, actual_in) for o in out]
    except Exception:  # noqa: BLE001 - any failure falls back to the recorded graph shapes.
        pass
    state.notes.append(f"{path}: output shape taken from the model graph")
    return [_fill_unknown(r, recorded_in, actual_in) for r in recorded]


def _fill_unknown(out: tuple | None, recorded_in: tuple | None, actual_in: tuple | None):
    """``out`` with each unknown non-batch dim taken from the input where that dim was unknown.

    A layer whose output shape cannot be recomputed (a custom layer, a layer called with extra
    arguments such as attention) keeps its input's unknown axes - a sequence length, say - at
    the same positions; the sizes given for the input fill them in.
    """
    if out is None or recorded_in is None or actual_in is None:
        return out
    dims = list(out)
    for axis in range(1, len(dims)):
        if (
            dims[axis] is None
            and axis < len(recorded_in)
            and axis < len(actual_in)
            and recorded_in[axis] is None
        ):
            dims[axis] = actual_in[axis]
    return tuple(dims)


def count_flops(
    model: keras.Model,
    *,
    unit: str = "macs",
    include_elementwise: bool = False,
    input_shapes: Sequence[Sequence[int | None]] | None = None,
) -> ModelCount:
    """Counts the FLOPs of one forward pass on a single example, per layer and in total.

    The shapes come from the model graph per call node, so a shared layer called on different
    shapes costs the right amount per call; nested models are expanded into ``outer/inner``
    paths. Custom layers and subclassed models are looked inside as :func:`tfprune.explain`
    does (their convs, dense layers, attention... are counted under ``block/inner`` paths);
    a layer that cannot be looked inside is listed in ``uncounted`` and ``total`` is then a
    lower bound. See the module docstring for the conventions.

    Args:
        model: a built functional or Sequential tf_keras model, or a subclassed model that has
            been called on a batch.
        unit: ``"macs"`` (default, multiply-accumulates; the papers' ImageNet convention) or
            ``"flops"`` (``2 * MACs`` plus the elementwise ops; the papers' CIFAR convention).
        include_elementwise: also count cheap ops: BatchNormalization one MAC per element
            (scale and shift folded), bias add and fused activation one op per output element,
            activation layers one op per element, merges ``(k - 1)`` ops per output element
            (Average one more), pooling one op per window element per output element, global
            pooling one op per input element. Elementwise ops other than BN count 1 in both
            units. Default False: only conv/dense weight MACs (the papers' convention).
        input_shapes: optional per-input shapes *without* the batch dimension that replace the
            model's input shapes (e.g. to count a fully convolutional model built on
            ``(None, None, 3)``); output shapes are re-inferred with ``compute_output_shape``.

    Returns:
        A :class:`ModelCount` with ``metric="flops"`` and the chosen unit.
    """
    if unit not in _UNITS:
        raise InvalidArgumentError(f"unit must be one of {_UNITS}, got {unit!r}")
    state = _FlopsState(bool(include_elementwise), OrderedDict(), {}, {}, {}, {}, [])
    if is_keras3(model):
        _walk_keras3(model, include_elementwise, input_shapes, state)
    else:
        check_graph_model(model, "model", subclassed=True)
        model = inline_model(model, passes_channels_through).model
        _register_paths(model, "", state)
        starts = [_dims(t.shape) for t in model.inputs]
        if input_shapes is not None:
            if len(input_shapes) != len(starts):
                raise InvalidArgumentError(
                    f"input_shapes has {len(input_shapes)} entries but the model has "
                    f"{len(starts)} inputs"
                )
            starts = [(None, *tuple(s)) for s in input_shapes]
        _walk(model, starts, "", state)
    factor = 2 if unit == "flops" else 1
    per_layer = OrderedDict(
        (path, factor * macs + state.ops.get(path, 0)) for path, macs in state.macs.items()
    )
    return ModelCount(
        "flops",
        unit,
        per_layer,
        dict(state.types),
        dict(state.calls),
        tuple(p for p in state.unknown),
        tuple(state.notes),
    )


def _walk_keras3(
    model: Any,
    include_elementwise: bool,
    input_shapes: Sequence[Sequence[int | None]] | None,
    state: _FlopsState,
) -> None:
    """Counts one call of a Keras 3 functional or Sequential ``model`` on its graph's shapes."""
    if include_elementwise or input_shapes is not None:
        raise UnsupportedModelError(
            f"count_flops counts Keras 3 model {model.name!r} with the defaults only "
            "(include_elementwise=False, input_shapes=None); build the model on the input shape "
            "to count, or count a tf_keras build of it for elementwise ops."
        )
    trace = trace_keras3(model, look_inside=wants_tracing)

    def register(m: Any, prefix: str) -> None:
        for op in graph_operations(m):
            path = prefix + op.name
            if _is_model(op):
                register(op, path + "/")
            else:
                state.macs.setdefault(path, 0)
                state.ops.setdefault(path, 0)
                state.types.setdefault(path, type(op).__name__)
                state.calls.setdefault(path, 0)

    register(model, "")
    for call in trace.calls:
        ins = [_dims(t.shape) for t in call.inputs]
        outs = [_dims(t.shape) for t in call.outputs]
        what = f"layer '{call.path}' ({type(call.layer).__name__})"
        macs, _, known = _layer_cost(call.layer, ins, outs, what, False)
        state.macs[call.path] = state.macs.get(call.path, 0) + macs
        state.types.setdefault(call.path, type(call.layer).__name__)
        state.calls[call.path] = state.calls.get(call.path, 0) + 1
        if not known:
            state.unknown[call.path] = True


def summarize(model: keras.Model) -> dict[str, int]:
    """Headline numbers of a model: ``params``, ``trainable_params``, ``macs`` and ``flops``.

    ``flops`` is ``2 * macs`` (weight ops only); use it for CIFAR-style numbers.
    ``uncounted_layers`` is the number of layers whose FLOPs could not be counted (0 when
    ``macs`` is exact; otherwise it is a lower bound).
    """
    flops = count_flops(model)
    return {
        "params": count_params(model).total,
        "trainable_params": count_params(model, trainable_only=True).total,
        "macs": flops.total,
        "flops": 2 * flops.total,
        "uncounted_layers": len(flops.uncounted),
    }


class CountRatio(float):
    """A ratio of two counts (a speed-up or a reduction) that says whether the counts were exact.

    It is a plain ``float`` (formats, compares and serialises as one). ``uncounted`` lists the
    layers whose FLOPs could not be counted on either side; when it is not empty
    (``is_exact`` is False) the ratio treats them as free, which overstates a speed-up whenever
    those layers are not pruned.
    """

    uncounted: tuple[str, ...]

    def __new__(cls, value: float, uncounted: Iterable[str] = ()) -> CountRatio:
        obj = super().__new__(cls, value)
        obj.uncounted = tuple(dict.fromkeys(uncounted))
        return obj

    @property
    def is_exact(self) -> bool:
        """Whether both counts covered every layer."""
        return not self.uncounted

    def __repr__(self) -> str:
        if self.is_exact:
            return super().__repr__()
        shown = ", ".join(self.uncounted[:3]) + (", ..." if len(self.uncounted) > 3 else "")
        return f"{float(self):.6g} (from lower-bound counts; uncounted: {shown})"


def _total(value: keras.Model | ModelCount | int, counter: Any) -> tuple[int, tuple[str, ...]]:
    if isinstance(value, keras.Model) or is_keras3(value):
        value = counter(value)
    if isinstance(value, ModelCount):
        return value.total, tuple(value.uncounted)
    return int(value), ()


def _checked(value: float, uncounted: tuple[str, ...], what: str, strict: bool) -> CountRatio:
    if strict and uncounted:
        raise UnsupportedModelError(
            f"cannot compute an exact {what}: the FLOPs of {', '.join(uncounted)} are not "
            "counted (custom layers, subclassed models or ops without a FLOPs rule). Register a "
            "rule for them (tfprune.register_rule) or pass strict=False to accept a ratio from "
            "lower-bound counts."
        )
    return CountRatio(value, uncounted)


def speedup(
    dense: keras.Model | ModelCount | int,
    pruned: keras.Model | ModelCount | int,
    *,
    strict: bool = False,
) -> CountRatio:
    """``dense FLOPs / pruned FLOPs`` (the papers' speedup); accepts models, counts or numbers.

    Returns a :class:`CountRatio`: a float whose ``uncounted``/``is_exact`` say whether some
    layer's FLOPs were missing from the counts. ``strict=True`` raises
    :class:`UnsupportedModelError` instead of returning a ratio of lower-bound counts.
    """
    d, d_missing = _total(dense, count_flops)
    p, p_missing = _total(pruned, count_flops)
    if p <= 0:
        raise InvalidArgumentError(f"pruned FLOPs must be positive, got {p}")
    return _checked(d / p, d_missing + p_missing, "speedup", strict)


def param_reduction(
    dense: keras.Model | ModelCount | int, pruned: keras.Model | ModelCount | int
) -> float:
    """Fraction of parameters removed, ``1 - pruned / dense`` (the papers' "sparsity").

    Models are counted with ``trainable_only=True``, the convention that reproduces the papers'
    ResNet-56 numbers (BN gamma/beta and FC bias in, BN moving statistics out). Parameters are
    counted exactly for every layer type.
    """

    def trainable(m: keras.Model) -> ModelCount:
        return count_params(m, trainable_only=True)

    d, _ = _total(dense, trainable)
    p, _ = _total(pruned, trainable)
    if d <= 0:
        raise InvalidArgumentError(f"dense parameter count must be positive, got {d}")
    return 1.0 - p / d
