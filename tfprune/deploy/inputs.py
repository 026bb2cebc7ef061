"""Model inputs and outputs for serving: names, signatures, valid example data, calls.

Example data is valid for the model: inputs that feed an ``Embedding`` (or ``CategoryEncoding``)
are ids within its vocabulary, integer or float, so checks never fail on an out-of-range lookup;
other floats are standard normal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfprune.compat import (
    KERAS3,
    flavour_of,
    is_functional,
    keras,
    keras3,
    keras3_functional_graph,
    keras3_graph_calls,
    keras3_producer,
    saved_input_spec,
    tf,
)
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.graph.trace import iter_graph_nodes

__all__ = [
    "call_outputs",
    "example_inputs",
    "input_names",
    "input_specs",
    "normalise_inputs",
    "output_names",
]


def _check_symbolic_inputs(model: keras.Model) -> None:
    """Raise a clear error for a model without symbolic inputs (subclassed or unbuilt)."""
    if getattr(model, "inputs", None) is not None:
        return
    what = f"model {model.name!r} ({type(model).__name__})"
    if flavour_of(model) == KERAS3:
        raise UnsupportedModelError(
            f"{what} is a Keras 3 model without symbolic inputs (subclassed or not built), so "
            "it has no named inputs to serve: build it as a functional or Sequential model "
            "with keras.Input(shape=...), or wrap it: keras.Model(inputs, model(inputs))."
        )
    spec = saved_input_spec(model)
    if spec is None:
        raise UnsupportedModelError(
            f"{what} has no input shape yet, so its serving signature is unknown: give it an "
            "input shape (keras.Input(shape=...) or model.build(input_shape)), then wrap it "
            "in a functional model: keras.Model(inputs, model(inputs))."
        )
    specs = tf.nest.flatten(spec)
    inputs = ", ".join(
        f"keras.Input(shape={tuple(s.shape[1:])}, dtype={s.dtype.name!r})" for s in specs
    )
    inputs = inputs if len(specs) == 1 else f"[{inputs}]"
    raise UnsupportedModelError(
        f"{what} is a subclassed model, so it has no named inputs to serve: wrap it in a "
        f"functional model first (inputs = {inputs}; model = keras.Model(inputs, "
        "model(inputs))), or export the functional model tfprune.strip_filters returns."
    )


def input_names(model: keras.Model) -> list[str]:
    """The model's input names (its input layers' names), in input order."""
    _check_symbolic_inputs(model)
    if flavour_of(model) == KERAS3:
        return [str(t.name) for t in tf.nest.flatten(model.inputs)]
    return [str(n) for n in model.input_names]


def input_specs(model: keras.Model) -> list[tf.TensorSpec]:
    """One ``TensorSpec`` per input, batch dimension free, named after the input."""
    _check_symbolic_inputs(model)
    return [
        tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=name)
        for t, name in zip(tf.nest.flatten(model.inputs), input_names(model))
    ]


def output_names(model: keras.Model) -> list[str]:
    """Serving output names: the output layers' names (``output_<i>`` when they collide)."""
    if flavour_of(model) == KERAS3:  # a Keras 3 Sequential model has no output_names
        names = [str(keras3_producer(t).name) for t in tf.nest.flatten(model.outputs)]
    else:
        names = [str(n) for n in model.output_names]
    if len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(names))]
    return names


def call_model(model: keras.Model, args: Sequence[Any]) -> dict[str, tf.Tensor]:
    """Calls the model in inference mode on positional inputs; returns ``{output name: tensor}``."""
    if len(args) == 1:
        result = model(args[0], training=False)
    elif flavour_of(model) == KERAS3:
        result = model(list(args), training=False)  # in the order of model.inputs
    else:
        result = model(dict(zip(input_names(model), args)), training=False)
    if isinstance(result, Mapping):
        return _flat_named(result)
    flat = tf.nest.flatten(result)
    names = output_names(model)
    if len(names) != len(flat):
        names = [f"output_{i}" for i in range(len(flat))]
    return dict(zip(names, flat))


def _flat_named(outputs: Mapping[Any, Any]) -> dict[str, tf.Tensor]:
    """A dict of (nested) outputs as one tensor per name: ``{"layers": [a, b]}`` -> ``layers_0``...

    Encoders return such dicts (Model Garden's ``encoder_outputs``: a list of every layer's
    output); a served signature and every comparison need one tensor per name.
    """
    flat: dict[str, tf.Tensor] = {}

    def visit(name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value, key=str):
                visit(f"{name}_{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{name}_{i}", item)
        else:
            if name in flat:
                raise UnsupportedModelError(
                    f"the model's outputs hold two entries both named {name!r} once nested "
                    "outputs are flattened; give its output dict distinct keys"
                )
            flat[name] = value

    for key in outputs:
        visit(str(key), outputs[key])
    return flat


def call_outputs(model: keras.Model, inputs: Any) -> dict[str, np.ndarray]:
    """Eager inference-mode outputs of ``model`` on ``inputs`` as numpy arrays by output name."""
    values = normalise_inputs(model, inputs)
    outs = call_model(model, [tf.constant(values[n]) for n in input_names(model)])
    return {k: v.numpy() for k, v in outs.items()}


def _id_limits(model: keras.Model) -> dict[int, int]:
    """id(input tensor) -> smallest vocabulary of an Embedding/CategoryEncoding it feeds."""
    limits: dict[int, int] = {}
    if flavour_of(model) == KERAS3:
        return _keras3_id_limits(model)

    def visit(graph: Any, aliases: dict[int, int]) -> None:
        for node in iter_graph_nodes(graph):
            layer = node.layer
            ins = [aliases.get(id(t), id(t)) for t in node.keras_inputs]
            if is_functional(layer):
                inner = {id(a): b for a, b in zip(layer.inputs, ins)}
                visit(layer, inner)
                continue
            size = None
            if isinstance(layer, keras.layers.Embedding):
                size = int(layer.input_dim)
            elif isinstance(layer, keras.layers.CategoryEncoding):
                size = int(layer.num_tokens)
            if size is not None:
                for key in ins:
                    limits[key] = min(limits.get(key, size), size)

    visit(model, {})
    return limits


def _keras3_id_limits(model: Any) -> dict[int, int]:
    """:func:`_id_limits` of a Keras 3 functional or Sequential model (its top-level graph)."""
    k3 = keras3()
    graph = keras3_functional_graph(model)
    limits: dict[int, int] = {}
    for call in keras3_graph_calls(graph) if graph is not None else []:
        size = None
        if isinstance(call.operation, k3.layers.Embedding):
            size = int(call.operation.input_dim)
        elif isinstance(call.operation, k3.layers.CategoryEncoding):
            size = int(call.operation.num_tokens)
        if size is not None:
            for t in call.inputs:
                limits[id(t)] = min(limits.get(id(t), size), size)
    return limits


def example_inputs(model: keras.Model, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs the model accepts, by input name.

    Inputs that feed an ``Embedding`` or ``CategoryEncoding`` are ids in ``[0, vocabulary)``,
    whatever their dtype; other floats are standard normal, other integers ``{0, 1}``; booleans
    are random. Raises :class:`~tfprune.errors.InvalidArgumentError` for unknown dimensions.
    """
    rng = np.random.default_rng(seed)
    limits = _id_limits(model)
    inputs = {}
    for t, spec in zip(tf.nest.flatten(model.inputs), input_specs(model)):
        dims = spec.shape.as_list()[1:]
        if any(d is None for d in dims):
            raise InvalidArgumentError(
                f"input '{spec.name}' has unknown dimensions {spec.shape}; pass check_inputs= "
                "with example data of the shape you serve"
            )
        shape = (batch_size, *dims)
        dtype = spec.dtype
        if (dtype.is_integer or dtype.is_floating) and id(t) in limits:
            # Ids, also in a float input (an Embedding casts them): negatives would not look up.
            high = max(limits[id(t)], 1)
            value = rng.integers(0, high, size=shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_floating:
            value = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            value = rng.integers(0, 2, size=shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            value = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InvalidArgumentError(
                f"cannot make random data of dtype {dtype.name} for input '{spec.name}'; pass "
                "check_inputs="
            )
        inputs[spec.name] = value
    return inputs


def normalise_inputs(model: keras.Model, inputs: Any) -> dict[str, np.ndarray]:
    """One array, a list in input order, or a dict by input name -> ``{input name: array}``."""
    names = input_names(model)
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise InvalidArgumentError(
                f"check_inputs is missing inputs {missing}; the model's inputs are {names}"
            )
        values = [inputs[n] for n in names]
    elif isinstance(inputs, (list, tuple)):
        values = list(inputs)
    else:
        values = [inputs]
    if len(values) != len(names):
        raise InvalidArgumentError(
            f"check_inputs has {len(values)} arrays but the model has {len(names)} inputs {names}"
        )
    specs = input_specs(model)
    return {n: np.asarray(v, dtype=s.dtype.as_numpy_dtype) for n, v, s in zip(names, values, specs)}
