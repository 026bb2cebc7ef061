"""Re-create a Keras 3 functional or Sequential model call by call, swapping layers on the way.

The Keras 3 counterpart of :func:`tfprune.graph.rebuild.rebuild_model` (which hands Keras 3
models here), with the same arguments: a layer factory replaces (new config, sliced weights)
or drops layers, an input hook may insert a layer in front of a consumer (a mask after a
producer), a call override may compute a call's outputs itself. Raw ops of the graph
(``x + y``, ``keras.ops.reshape``, ``keras.ops.concatenate``...) are replayed as fresh copies;
nested functional and Sequential models are rebuilt as nested models of the same kind. A custom
layer the analysis looked inside (:func:`tfprune.graph.keras3.traced_graph`) is replaced by the
sublayers and ops of its traced graph, named after their path in it (``block_conv``). The
result is a Keras 3 model that shares no variable with the original.
"""

from __future__ import annotations

from typing import Any

from tfprune.compat import (
    keras3,
    keras3_copy_op,
    keras3_functional_graph,
    keras3_graph_calls,
    keras3_is_layer,
    keras3_nested_inputs,
    keras3_nested_outputs,
    keras3_producer,
    tf,
)
from tfprune.graph.keras3 import traced_graph
from tfprune.graph.replay import LayerCache

__all__ = ["rebuild_keras3"]


def _new_input(old: Any, like: Any = None) -> Any:
    """A fresh Keras 3 Input like ``old`` (name, dtype), shaped like ``like`` when given."""
    k3 = keras3()
    shape = tuple(old.shape) if like is None else (old.shape[0], *tuple(like.shape)[1:])
    producer = keras3_producer(old)
    return k3.Input(
        batch_shape=shape,
        dtype=old.dtype,
        name=producer.name if producer is not None else None,
        sparse=bool(getattr(old, "sparse", False)),
    )


def rebuild_keras3(
    model: Any,
    layer_factory: Any,
    input_hook: Any = None,
    call_override: Any = None,
) -> Any:
    """Rebuild Keras 3 ``model`` with layers from ``layer_factory``; returns the new model.

    The arguments are those of :func:`tfprune.graph.rebuild.rebuild_model`; the tensors the
    input hook sees as "old" are the original model's Keras 3 tensors, and the paths are those
    of :func:`tfprune.graph.keras3.trace_keras3` (``outer/inner`` inside nested models).
    """
    k3 = keras3()
    cache = LayerCache(layer_factory)
    models: dict[int, Any] = {}
    renamed: set[int] = set()

    def build(model_like: Any, prefix: str, like: list | None = None) -> Any:
        graph = keras3_functional_graph(model_like)
        like = like if like is not None and len(like) == len(graph.inputs) else None
        new_inputs = [_new_input(t, like[i] if like else None) for i, t in enumerate(graph.inputs)]
        tensors = {id(o): n for o, n in zip(graph.inputs, new_inputs, strict=True)}
        names = {op.name for op in graph.operations}
        state: dict = {"names": names, "masked": {}}
        sequence: list[Any] = []

        def replay(g: Any, at: str, inlined: bool) -> None:
            for call in keras3_graph_calls(g):
                op = call.operation
                path = at + op.name

                def substitute(x: Any, _path: str = path) -> Any:
                    if isinstance(x, k3.KerasTensor):
                        new = tensors[id(x)]
                        return new if input_hook is None else input_hook(_path, x, new, state)
                    return x

                inner = keras3_functional_graph(op) if isinstance(op, k3.Model) else None
                traced = None
                if inner is None and keras3_is_layer(op):
                    traced = traced_graph(op, call.inputs, call.outputs)
                if traced is not None:
                    # A custom layer the analysis looked inside: its sublayers and ops take
                    # its place (stock layers only), so the channels cut inside it fit.
                    graph_inputs = traced[1]
                    tensors.update(
                        (id(i), tensors[id(o)])
                        for i, o in zip(graph_inputs, call.inputs, strict=True)
                    )
                    replay(traced[0], path + "/", True)
                    for old, new in zip(call.outputs, traced[0].outputs, strict=True):
                        tensors[id(old)] = tensors[id(new)]
                    state["replaced"] = True
                    continue
                args = tf.nest.map_structure(substitute, list(call.args))
                kwargs = tf.nest.map_structure(substitute, call.kwargs)
                replaced = None
                if call_override is not None and inner is None:
                    replaced = call_override(op, path, tuple(args), kwargs)
                if replaced is not None:
                    outputs = replaced
                    state["replaced"] = True
                elif inner is not None:
                    if id(op) not in models:
                        # Inner inputs take the (possibly narrower) shapes of what is passed in.
                        passed = [t for t in tf.nest.flatten(args[:1]) if hasattr(t, "shape")]
                        models[id(op)] = build(op, path + "/", passed)
                    sequence.append(models[id(op)])
                    outputs = models[id(op)](*args, **kwargs)
                elif not keras3_is_layer(op):
                    copied = keras3_copy_op(op)
                    if inlined and copied is not op:  # a custom layer called twice: two copies
                        _rename(copied, path[len(prefix) :], state["names"])
                    outputs = copied(*args, **kwargs)
                    state["replaced"] = True  # a raw op has no place in a Sequential model
                else:
                    new_layer = cache.get(op, path)
                    if new_layer is None:
                        outputs = args[0]
                    else:
                        if inlined and id(new_layer) not in renamed:
                            _rename(new_layer, path[len(prefix) :], state["names"])
                            renamed.add(id(new_layer))
                        sequence.extend(state.pop("inserted", []))
                        outputs = new_layer(*args, **kwargs)
                        sequence.append(new_layer)
                for old, new in zip(call.outputs, tf.nest.flatten(outputs), strict=True):
                    tensors[id(old)] = new

        replay(graph, prefix, False)
        outputs = tf.nest.map_structure(lambda t: tensors[id(t)], keras3_nested_outputs(graph))
        chain = len({id(x) for x in sequence}) == len(sequence) and not state.get("replaced")
        if isinstance(model_like, k3.Sequential) and chain:
            (inp,) = graph.inputs
            return k3.Sequential([_new_input(inp, new_inputs[0]), *sequence], name=model_like.name)
        inputs = tf.nest.pack_sequence_as(keras3_nested_inputs(graph), new_inputs)
        return k3.Model(inputs=inputs, outputs=outputs, name=model_like.name)

    new_model = build(model, "")
    cache.set_weights(_assign)
    return new_model


def _rename(layer: Any, path: str, names: set[str]) -> None:
    """Name a layer taken out of a custom layer after its path there, unique in ``names``."""
    stem = path.replace("/", "_")
    name, i = stem, 1
    while name in names:
        i += 1
        name = f"{stem}_{i}"
    names.add(name)
    layer.name = name


def _assign(pairs: list[tuple[Any, Any]]) -> None:
    for variable, value in pairs:
        variable.assign(value)
