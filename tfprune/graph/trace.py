"""Walk a tf_keras graph model into a flat list of layer calls.

Nested models (a model used as a layer) are entered rather than treated as one opaque call: the
inner model's input tensors are *aliased* to the tensors the outer graph passes in, and its output
tensors to the tensors the call returns. Shared layers simply appear in several calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from tfprune.compat import (
    KerasTensor,
    is_functional,
    keras,
    nodes_by_depth,
    require_tf_keras,
    saved_input_spec,
    tf,
)
from tfprune.errors import UnsupportedModelError

__all__ = ["LayerCall", "Trace", "trace_model", "check_graph_model", "iter_graph_nodes"]


@dataclasses.dataclass
class LayerCall:
    """One call of a layer inside a (possibly nested) graph model."""

    layer: Any
    path: str
    inputs: list  # flat list of KerasTensors passed to the layer (args and kwargs)
    outputs: list  # flat list of KerasTensors the call returned
    args: tuple
    kwargs: dict


@dataclasses.dataclass
class Trace:
    """A flattened view of a model: calls in topological order plus tensor aliases."""

    calls: list[LayerCall]
    aliases: list[tuple[Any, Any]]  # (inner tensor, outer tensor) pairs from nested models
    inputs: list  # the top-level model's input KerasTensors
    outputs: list  # the top-level model's output KerasTensors
    layer_paths: dict[int, str]  # id(layer) -> first path seen ("outer/inner")


def check_graph_model(model: Any, what: str = "model", *, subclassed: bool = False) -> None:
    """Raise a clear error unless ``model`` is a built functional or Sequential tf_keras model.

    With ``subclassed=True`` a subclassed model that has been called once is accepted too (its
    ``call`` is traced into a layer graph).
    """
    if not isinstance(model, keras.Model):
        require_tf_keras(model, "this tfprune function")
        kind = type(model).__module__ + "." + type(model).__name__
        hint = ""
        if isinstance(model, keras.layers.Layer):
            hint = (
                f" {type(model).__name__} is a layer, not a model: wrap it in one, e.g. "
                "keras.Sequential([keras.Input(shape), layer])."
            )
        raise UnsupportedModelError(f"{what} must be a tf_keras Model, got {kind}.{hint}")
    if not is_functional(model):
        if isinstance(model, keras.Sequential):
            raise UnsupportedModelError(
                f"{what} {model.name!r} is a Sequential model that is not built yet: give its "
                "first layer an input shape (e.g. keras.Input(shape=...)) or call "
                "model.build(input_shape) first."
            )
        if subclassed and saved_input_spec(model) is not None:
            return
        if subclassed:
            raise UnsupportedModelError(
                f"{what} {model.name!r} is a subclassed model ({type(model).__name__}) that has "
                "not been called yet: call it once on a batch (model(x)) or model.build(shape) "
                "so tfprune can trace its call(), or wrap it: "
                "keras.Model(inputs, model(inputs))."
            )
        raise UnsupportedModelError(
            f"{what} {model.name!r} is a subclassed model ({type(model).__name__}); this step "
            "needs the layer graph. Run it on the model returned by tfprune.prune_filters or "
            "tfprune.strip_filters (they trace subclassed models into functional ones), or "
            "wrap it: keras.Model(inputs, model(inputs))."
        )


def iter_graph_nodes(model: Any) -> Iterator[Any]:
    """Yield the model's own non-input nodes in topological order (inputs first)."""
    for node in nodes_by_depth(model):
        if not node.is_input:
            yield node


def _flat_tensors(structure: Any) -> list:
    return [t for t in tf.nest.flatten(structure) if isinstance(t, KerasTensor)]


def trace_model(model: Any) -> Trace:
    """Flatten ``model`` (entering nested models) into a :class:`Trace`."""
    check_graph_model(model)
    calls: list[LayerCall] = []
    aliases: list[tuple[Any, Any]] = []
    layer_paths: dict[int, str] = {}
    entered: set[int] = set()

    def visit(graph: Any, prefix: str) -> None:
        for node in iter_graph_nodes(graph):
            layer = node.layer
            path = prefix + layer.name
            layer_paths.setdefault(id(layer), path)
            if is_functional(layer):
                outer_in = _flat_tensors(node.call_args[:1]) if node.call_args else []
                inner_in = list(layer.inputs)
                outer_out = _flat_tensors(node.outputs)
                inner_out = list(layer.outputs)
                if len(outer_in) != len(inner_in) or len(outer_out) != len(inner_out):
                    # Unusual call signature: treat as an opaque layer (it will block).
                    calls.append(_make_call(node, path))
                    continue
                aliases.extend(zip(inner_in, outer_in, strict=True))
                aliases.extend(zip(outer_out, inner_out, strict=True))
                if id(layer) not in entered:
                    entered.add(id(layer))
                    visit(layer, path + "/")
                continue
            # Anything else (subclassed models included) is one call; tfprune.graph.inline
            # has already looked inside what can be traced.
            calls.append(_make_call(node, path))

    visit(model, "")
    return Trace(
        calls=calls,
        aliases=aliases,
        inputs=list(model.inputs),
        outputs=list(model.outputs),
        layer_paths=layer_paths,
    )


def _make_call(node: Any, path: str) -> LayerCall:
    return LayerCall(
        layer=node.layer,
        path=path,
        inputs=list(node.keras_inputs),
        outputs=_flat_tensors(node.outputs),
        args=tuple(node.call_args),
        kwargs=dict(node.call_kwargs),
    )
