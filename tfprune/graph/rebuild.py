"""Re-create a graph model call by call, swapping layers and rewriting tensors on the way.

Masking (insert :class:`~tfprune.layers.ChannelMask` before consumers) and surgery (replace
layers by narrower copies, drop the masks) both go through :func:`rebuild_model`. Nested models
are rebuilt as nested models of the same kind (Sequential stays Sequential), shared layers stay
shared, and the new model never shares a variable with the old one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.compat import (
    KerasTensor,
    inbound_nodes,
    is_functional,
    keras,
    nested_inputs,
    nested_outputs,
    producing_layer,
    tf,
)
from tfprune.errors import UnsupportedModelError
from tfprune.graph.keras3 import is_keras3
from tfprune.graph.keras3_rebuild import rebuild_keras3
from tfprune.graph.replay import LayerCache
from tfprune.graph.trace import iter_graph_nodes

__all__ = [
    "rebuild_model",
    "copy_layer",
    "layer_config",
    "LayerFactory",
    "InputHook",
    "CallOverride",
]

#: (old layer, path) -> (new layer or None to drop the call, weights: by short name, a list
#: in ``layer.weights`` order, or None to keep the fresh initial values)
LayerFactory = Callable[[Any, str], tuple[Any, dict | list | None]]
#: (consumer layer path, old input tensor, new input tensor, graph state) -> new input tensor
InputHook = Callable[[str, Any, Any, dict], Any]
#: (old layer, path, new args, new kwargs) -> the call's new outputs, or None for a plain call
CallOverride = Callable[[Any, str, tuple, dict], Any]


def layer_config(layer: Any) -> dict:
    """``layer.get_config()``, or for a layer without one, a config that provably rebuilds it.

    A custom layer whose class defines no ``get_config`` (Model Garden's ``AddPositionEmbs``)
    is rebuilt from its name and dtype alone only when that copy, given the layer's weights,
    computes the same outputs as the layer on a random input; otherwise the error says how
    to fix the class.
    """
    try:
        return layer.get_config()
    except NotImplementedError:
        pass
    base = {"name": layer.name, "trainable": layer.trainable, "dtype": layer.dtype_policy.name}
    problem = _default_copy_problem(layer, base)
    if problem is not None:
        raise UnsupportedModelError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no get_config(), so tfprune "
            f"cannot build the pruned copy of the model (the original is never modified): "
            f"{problem}. Give the class a get_config() that returns its constructor arguments."
        )
    return base


def _default_copy_problem(layer: Any, config: dict) -> str | None:
    """Why a copy of ``layer`` made from ``config`` alone is not the same layer (None if it is)."""
    nodes = inbound_nodes(layer)
    inputs = list(nodes[0].keras_inputs) if nodes else []
    if len(inputs) != 1 or any(d is None for d in inputs[0].shape[1:]):
        return "it is not called on one input of known shape, so a copy cannot be checked"
    x = inputs[0]
    rng = np.random.default_rng(0)
    value = rng.standard_normal((2, *x.shape[1:])).astype(x.dtype.as_numpy_dtype)
    try:
        copy = type(layer)(**config)
        copy(value)
        copy.set_weights(layer.get_weights())
        a = tf.nest.flatten(layer(value))
        b = tf.nest.flatten(copy(value))
    except Exception as e:  # noqa: BLE001 - any failure means the copy is not the layer
        return f"a copy with default arguments fails ({type(e).__name__}: {e})"
    for u, v in zip(a, b, strict=True):
        u, v = np.asarray(u), np.asarray(v)
        if u.shape != v.shape or not np.allclose(u, v, rtol=1e-6, atol=1e-6):
            return "a copy with default arguments computes something else"
    return None


def copy_layer(layer: Any, config: dict | None = None) -> Any:
    """A fresh layer of the same class from (possibly edited) config."""
    if config is None:
        config = layer_config(layer)
    activation = getattr(layer, "activation", None)
    if callable(activation) and isinstance(config.get("activation"), dict):
        # A lambda or unregistered function serializes to a form that does not load back
        # (Model Garden's transformer blocks use lambdas); the function itself is exact.
        config = dict(config, activation=activation)
    try:
        return layer.__class__.from_config(config)
    except Exception:  # noqa: BLE001 - some custom layers only round-trip with custom objects
        if is_keras3(layer):
            raise
        return keras.layers.deserialize(
            {"class_name": layer.__class__.__name__, "config": config},
            custom_objects={layer.__class__.__name__: layer.__class__},
        )


def _new_input(old: Any, like: Any = None) -> Any:
    """A fresh Input like ``old`` (name, dtype), shaped like ``like`` when given."""
    layer = producing_layer(old)
    shape = tuple(old.shape) if like is None else (old.shape[0], *tuple(like.shape)[1:])
    return keras.Input(
        batch_shape=shape,
        dtype=old.dtype,
        name=layer.name,
        sparse=getattr(layer, "sparse", False),
        ragged=getattr(layer, "ragged", False),
    )


def rebuild_model(
    model: Any,
    layer_factory: LayerFactory,
    input_hook: InputHook | None = None,
    call_override: CallOverride | None = None,
) -> Any:
    """Rebuild ``model`` with layers from ``layer_factory``; returns the new model.

    ``layer_factory`` is called once per distinct layer. Returning ``None`` as the layer drops
    the call (its first input passes through). The returned weights (by the names the layer's
    rule gives them, e.g. ``kernel``) are set once the new layer is built. ``input_hook`` may
    replace any tensor before it enters a layer (used to insert masks). ``call_override`` may
    compute a call's outputs itself (used to put traced graphs in place of custom layers); the
    model is then rebuilt as a functional model. A Keras 3 model is rebuilt as a Keras 3 model
    (:func:`tfprune.graph.keras3_rebuild.rebuild_keras3`).
    """
    if is_keras3(model):
        return rebuild_keras3(model, layer_factory, input_hook, call_override)
    cache = LayerCache(layer_factory)
    models: dict[int, Any] = {}

    def build_graph(graph: Any, prefix: str, like: list | None = None) -> Any:
        like = like if like is not None and len(like) == len(graph.inputs) else None
        new_inputs = [_new_input(t, like[i] if like else None) for i, t in enumerate(graph.inputs)]
        tensors = {id(o): n for o, n in zip(graph.inputs, new_inputs, strict=True)}
        state: dict = {"names": {layer.name for layer in graph.layers}, "masked": {}}
        sequence: list[Any] = []
        for node in iter_graph_nodes(graph):
            layer = node.layer
            path = prefix + layer.name

            def substitute(x: Any, _path: str = path) -> Any:
                if isinstance(x, KerasTensor):
                    new = tensors[id(x)]
                    if input_hook is not None:
                        new = input_hook(_path, x, new, state)
                    return new
                return x

            args = tf.nest.map_structure(substitute, node.call_args)
            kwargs = tf.nest.map_structure(substitute, node.call_kwargs)
            replaced = None
            if call_override is not None and not is_functional(layer):
                replaced = call_override(layer, path, args, kwargs)
            if replaced is not None:
                new_layer = None
                state["replaced"] = True
            elif is_functional(layer):
                if id(layer) not in models:
                    # Inner inputs take the (possibly narrower) shapes of what is passed in.
                    passed = [t for t in tf.nest.flatten(args[:1]) if tf.is_tensor(t)]
                    models[id(layer)] = build_graph(layer, path + "/", passed)
                new_layer = models[id(layer)]
            else:
                new_layer = cache.get(layer, path)
            if replaced is not None:
                outputs = replaced
            elif new_layer is None:
                outputs = args[0]
            else:
                sequence.extend(state.pop("inserted", []))
                outputs = new_layer(*args, **kwargs)
                sequence.append(new_layer)
            for old, new in zip(
                tf.nest.flatten(node.outputs), tf.nest.flatten(outputs), strict=True
            ):
                tensors[id(old)] = new
        outputs = tf.nest.map_structure(lambda t: tensors[id(t)], nested_outputs(graph))
        chain = _is_chain(sequence) and not state.get("replaced")
        if isinstance(graph, keras.Sequential) and chain:
            (inp,) = graph.inputs
            return keras.Sequential([_new_input(inp, new_inputs[0])] + sequence, name=graph.name)
        inputs = tf.nest.pack_sequence_as(nested_inputs(graph), new_inputs)
        return keras.Model(inputs=inputs, outputs=outputs, name=graph.name)

    new_model = build_graph(model, "")
    # Assign variable by variable: wrappers (TF-MOT's) redefine set_weights for the inner layer.
    cache.set_weights(keras.backend.batch_set_value)
    return new_model


def _is_chain(sequence: list[Any]) -> bool:
    return len({id(x) for x in sequence}) == len(sequence)
