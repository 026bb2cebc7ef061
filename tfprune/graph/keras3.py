"""Read a Keras 3 functional or Sequential model as the graph channel-group discovery walks.

Keras 3 records a functional model as *operations*: layers, and raw ops such as the
``keras.src.ops.numpy.Add`` that ``x + y`` on symbolic tensors creates (not layers). A
Sequential model holds an inner functional graph. This module turns both into the same
:class:`~tfprune.graph.trace.Trace` a tf_keras model gives: one :class:`LayerCall` per call of a
layer or op (its ``layer`` is the Keras 3 layer or op), nested models entered with their inner
tensors aliased to the outer ones.

Custom layers that ``look_inside`` picks (those no channel rule claims) are traced as tf_keras
ones are (:mod:`tfprune.graph.inline`): their ``call`` is run on fresh symbolic inputs, which
records their sublayers and ops as a small graph that stands in for the layer. The graph is
only used when the layer creates no weights of its own and, on a random input, the graph
computes what the layer computes (relative error <= 1e-5), and no op of the graph takes a weight
as an argument (``ops.matmul(x, self.dense.kernel)``: no rebuilt model could slice or own it);
otherwise the layer stays one call and ``notes`` says why. Pruning rebuilds a looked-inside layer
as the very graph the analysis walked (:func:`traced_graph`), sublayers and ops in its place.

The tensors of the trace are :class:`Keras3Tensor` views of Keras 3's symbolic tensors: the
same tensor always gets the same view, whose ``shape`` is a ``tf.TensorShape`` as the channel
rules read it.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.compat import (
    KERAS3,
    flavour_of,
    keras3,
    keras3_functional_graph,
    keras3_graph_calls,
    keras3_own_variables,
    keras3_producer,
    keras3_sublayers,
    keras3_symbolic_graph,
    tf,
)
from tfprune.errors import UnsupportedModelError
from tfprune.graph.trace import LayerCall, Trace

__all__ = [
    "Keras3Tensor",
    "all_layers",
    "check_keras3_graph",
    "graph_layers",
    "graph_operations",
    "is_keras3",
    "trace_keras3",
    "traced_graph",
]


@dataclasses.dataclass(frozen=True)
class _History:
    layer: Any  # the layer or op that produced the tensor (what compat.producing_layer reads)


class Keras3Tensor:
    """A symbolic Keras 3 tensor seen as channel rules see tensors (``shape.rank``...).

    ``keras_tensor`` is the Keras 3 tensor itself.
    """

    def __init__(self, keras_tensor: Any) -> None:
        self.keras_tensor = keras_tensor
        self.shape = tf.TensorShape(keras_tensor.shape)
        self.dtype = tf.as_dtype(keras_tensor.dtype)
        self.name = keras_tensor.name
        self._keras_history = _History(keras3_producer(keras_tensor))

    def __repr__(self) -> str:
        return f"Keras3Tensor({self.name!r}, shape={self.shape})"


def is_keras3(model: Any) -> bool:
    """Whether ``model`` was built with Keras 3."""
    return flavour_of(model) == KERAS3


def check_keras3_graph(model: Any, what: str = "model") -> Any:
    """The graph of a built Keras 3 functional or Sequential model; a clear error otherwise."""
    graph = keras3_functional_graph(model)
    if graph is not None:
        return graph
    name = getattr(model, "name", type(model).__name__)
    k3 = keras3()
    if isinstance(model, k3.Sequential):
        raise UnsupportedModelError(
            f"{what} {name!r} is a Keras 3 Sequential model that is not built yet: start it "
            "with keras.Input(shape=...) or call model.build(input_shape) first."
        )
    raise UnsupportedModelError(
        f"{what} {name!r} is a Keras 3 subclassed model ({type(model).__name__}); of Keras 3 "
        "models tfprune reads functional and Sequential ones only. Write its layers out with "
        "the functional API, or build it with tf_keras (import tf_keras as keras), where "
        "subclassed models are traced."
    )


#: Relative error allowed between a custom layer and its traced graph.
TOLERANCE = 1e-5


def _sample(t: Any, rng: np.random.Generator) -> np.ndarray:
    """A random batch of two examples shaped like symbolic tensor ``t`` (unknown dims: 4)."""
    shape = [2] + [4 if d is None else int(d) for d in t.shape[1:]]
    if "int" in str(t.dtype):
        return rng.integers(0, 2, size=shape).astype(str(t.dtype))
    if "bool" in str(t.dtype):
        return np.ones(shape, dtype=bool)
    return rng.standard_normal(shape).astype(str(t.dtype))


def _variables_read(graph: Any) -> str:
    """Path of a weight that an op of ``graph`` takes as an argument ("" if none)."""
    k3 = keras3()
    for call in keras3_graph_calls(graph):
        for a in tf.nest.flatten((list(call.args), call.kwargs)):
            if isinstance(a, k3.Variable):
                return a.path
    return ""


def _trace_layer(layer: Any, args: tuple, kwargs: dict) -> tuple[Any, list, str]:
    """``(graph, its symbolic inputs in argument order, "")`` of one custom layer call.

    ``(None, [], reason)`` when the layer cannot stand in as a graph.
    """
    if keras3_own_variables(layer):
        return None, [], "it creates weights of its own (a rule must say how they slice)"
    k3 = keras3()
    outer = [a for a in tf.nest.flatten((args, kwargs)) if isinstance(a, k3.KerasTensor)]
    fresh = {id(t): k3.Input(batch_shape=t.shape, dtype=t.dtype, sparse=t.sparse) for t in outer}
    new_args, new_kwargs = tf.nest.map_structure(
        lambda a: fresh.get(id(a), a) if isinstance(a, k3.KerasTensor) else a, (args, kwargs)
    )
    inputs = [fresh[id(t)] for t in outer]
    try:
        outputs = layer.call(*new_args, **new_kwargs)
        graph = keras3_symbolic_graph(inputs, outputs)
        read = _variables_read(graph)
        if read:
            # A rebuilt model could not slice or own such a weight: keep the layer whole.
            return None, [], f"its call reads the weight {read!r} itself (a rule must slice it)"
        rng = np.random.default_rng(0)
        samples = {id(t): _sample(t, rng) for t in outer}
        real_args, real_kwargs = tf.nest.map_structure(
            lambda a: samples[id(a)] if isinstance(a, k3.KerasTensor) else a, (args, kwargs)
        )
        want = tf.nest.flatten(layer(*real_args, **real_kwargs, training=False))
        got = tf.nest.flatten(graph([samples[id(t)] for t in outer]))
    except Exception as e:  # noqa: BLE001 - any failure keeps the layer as one opaque call
        return None, [], f"tracing its call failed ({type(e).__name__}: {str(e)[:120]})"
    for w, g in zip(want, got, strict=True):
        w, g = np.asarray(w, dtype="float64"), np.asarray(g, dtype="float64")
        if w.shape != g.shape or np.abs(w - g).max(initial=0.0) > TOLERANCE * max(
            1.0, np.abs(w).max(initial=0.0)
        ):
            return None, [], "its traced graph does not compute what the layer computes"
    return graph, inputs, ""


# layer -> {input signature: (graph, its inputs, reason)}: a layer is traced once per signature,
# and the rebuild replays the very graph (the same tensors) the analysis walked.
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(inputs: list) -> str:
    return repr([(tuple(t.shape), str(t.dtype)) for t in inputs])


def _traced(layer: Any, args: tuple, kwargs: dict, inputs: list) -> tuple[Any, list, str]:
    per_layer = _TRACED.setdefault(layer, {})
    key = _signature(inputs)
    if key not in per_layer:
        per_layer[key] = _trace_layer(layer, args, kwargs)
    return per_layer[key]


def traced_graph(layer: Any, inputs: list, outputs: list) -> tuple[Any, list] | None:
    """``(graph, its inputs)`` standing in for a call of custom ``layer`` in the analysis.

    None unless :func:`trace_keras3` looked inside this call (``inputs`` and ``outputs`` are
    the call's symbolic tensors); the rebuild then replays the graph's calls instead.
    """
    graph, graph_inputs, _ = _TRACED.get(layer, {}).get(_signature(inputs), (None, [], ""))
    if graph is None or len(graph_inputs) != len(inputs) or len(graph.outputs) != len(outputs):
        return None
    return graph, graph_inputs


def trace_keras3(
    model: Any,
    what: str = "model",
    look_inside: Callable[[Any], bool] | None = None,
    notes: dict[int, tuple[str, str]] | None = None,
) -> Trace:
    """Flatten a built Keras 3 functional or Sequential ``model`` into a :class:`Trace`.

    Layers for which ``look_inside(layer)`` is true are traced into their sublayers and ops
    where that is exact; ``notes`` (when given) gets ``id(layer) -> (class name, reason)`` of
    those kept as one call.
    """
    graph = check_keras3_graph(model, what)
    views: dict[int, Keras3Tensor] = {}

    def view(t: Any) -> Keras3Tensor:
        found = views.get(id(t))
        if found is None:
            found = views[id(t)] = Keras3Tensor(t)
        return found

    def views_of(structure: Any) -> Any:
        k3 = keras3()
        return tf.nest.map_structure(
            lambda x: view(x) if isinstance(x, k3.KerasTensor) else x, structure
        )

    calls: list[LayerCall] = []
    aliases: list[tuple[Any, Any]] = []
    layer_paths: dict[int, str] = {}
    entered: set[int] = set()

    def visit(g: Any, prefix: str) -> None:
        for node in keras3_graph_calls(g):
            op, inputs = node.operation, node.inputs
            path = prefix + op.name
            layer_paths.setdefault(id(op), path)
            outputs = [view(t) for t in node.outputs]
            inner = keras3_functional_graph(op) if hasattr(op, "layers") else None
            inner_inputs = None if inner is None else list(inner.inputs)
            if inner is None and look_inside is not None and look_inside(op):
                inner, inner_inputs, reason = _traced(op, node.args, node.kwargs, inputs)
                if inner is None and notes is not None:
                    notes[id(op)] = (type(op).__name__, reason)
            if inner is not None and len(inputs) == len(inner_inputs):
                if len(outputs) == len(inner.outputs):
                    aliases.extend((view(i), view(o)) for i, o in zip(inner_inputs, inputs))
                    aliases.extend((o, view(i)) for o, i in zip(outputs, inner.outputs))
                    if id(inner) not in entered:
                        entered.add(id(inner))
                        visit(inner, path + "/")
                    continue
            calls.append(
                LayerCall(
                    layer=op,
                    path=path,
                    inputs=[view(t) for t in inputs],
                    outputs=outputs,
                    args=tuple(views_of(list(node.args))),
                    kwargs=views_of(node.kwargs),
                )
            )

    visit(graph, "")
    return Trace(
        calls=calls,
        aliases=aliases,
        inputs=[view(t) for t in graph.inputs],
        outputs=[view(t) for t in graph.outputs],
        layer_paths=layer_paths,
    )


def graph_operations(model: Any) -> list:
    """The layers and raw ops of a Keras 3 model's graph in model order, input layers included.

    The list a tf_keras functional model's ``layers`` holds, where raw ops are ``TFOpLambda``
    layers (a Sequential model's leaves out its input layer, as in tf_keras).
    """
    k3 = keras3()
    if isinstance(model, k3.Sequential):
        return list(model.layers)
    graph = keras3_functional_graph(model)
    return list(model.layers) if graph is None else list(graph.operations)


def graph_layers(model: Any) -> list:
    """The layers (raw ops left out) of :func:`graph_operations`."""
    k3 = keras3()
    return [op for op in graph_operations(model) if isinstance(op, k3.Layer)]


def all_layers(model: Any) -> list:
    """Every layer inside a Keras 3 model, at any depth, models themselves left out."""
    k3 = keras3()
    return [la for la in keras3_sublayers(model) if not isinstance(la, k3.Model)]
