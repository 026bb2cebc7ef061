"""Look inside custom layers and subclassed models: trace their ``call`` into a layer graph.

A custom layer whose ``call`` is made of Keras layers and TF ops is called on symbolic inputs
(``layer.call(keras.Input(...))``), so tf_keras records one node per sublayer call and one
``TFOpLambda`` per TF op. The recorded graph becomes a small functional model (a *fragment*)
that stands in for the layer, so channel rules see its convs, norms, adds and gates.

A fragment is only used when it provably computes what the layer computes:

* the layer creates no weights of its own (a weight read inside ``call`` would be frozen
  into the graph as a constant), and no traced op captures a tensor that is not an input;
* ``call`` takes the same Python branches for ``training=True``, ``False`` and unset;
* on a random input the fragment's outputs equal the layer's (relative error <= 1e-5).

Otherwise the layer stays one opaque call: it blocks the channels it touches, with the reason
(which :func:`tfprune.explain` prints). A weightless layer whose training branch differs but
passes channels straight through in every branch (stochastic depth, drop-path) is kept as
one call that couples its input and output channels. The original model is never changed
(tracing only adds call records to its layers, as calling a layer does).
"""

from __future__ import annotations

import dataclasses
import re
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.compat import (
    KerasTensor,
    expects_training_arg,
    is_functional,
    is_tf_op_layer,
    keras,
    own_weights,
    saved_input_spec,
    tf,
)
from tfprune.errors import UnsupportedModelError
from tfprune.graph.rebuild import rebuild_model
from tfprune.graph.rules import LayerRule, rule_for, weight_short_name
from tfprune.graph.trace import iter_graph_nodes

__all__ = ["Opaque", "Inlined", "inline_model", "wants_tracing"]

#: Relative error allowed between a layer and its traced fragment.
TOLERANCE = 1e-5

_STOCK_MODULES = ("tf_keras.", "keras.", "tensorflow_model_optimization.", "tfprune.")


@dataclasses.dataclass
class Opaque:
    """A layer kept as one call: why it was not looked inside, or that it passes channels."""

    layer_class: str
    reason: str
    transparent: bool = False  # channels pass straight through in every training branch

    def message(self, path: str) -> str:
        """The reason as ``explain`` prints it."""
        return f"custom layer {path!r} ({self.layer_class}) is not looked inside: {self.reason}"


@dataclasses.dataclass
class Inlined:
    """A model with its custom layers replaced by traced fragments where possible."""

    model: Any  # a functional model (the input itself when nothing needed tracing)
    opaque: dict[int, Opaque]  # id(layer) -> note, for layers kept as one call


def wants_tracing(layer: Any) -> bool:
    """Whether ``layer`` should be looked inside: a custom layer no rule claims, or a model."""
    if is_functional(layer):
        return False
    if isinstance(layer, keras.Model):
        return True
    if type(rule_for(layer)) is not LayerRule:
        return False
    return not type(layer).__module__.startswith(_STOCK_MODULES)


def _graph_layers(model: Any) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if is_functional(layer):
            out.extend(_graph_layers(layer))
    return out


def inline_model(model: Any, is_transparent: Callable[[Any], bool]) -> Inlined:
    """Replace the custom layers of ``model`` by traced fragments (see the module docstring).

    ``model`` may be functional, Sequential or a called subclassed model.
    ``is_transparent(fragment)`` says whether a fragment passes channels straight through.
    """
    key = tuple(id(layer) for layer in model.layers)
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == key:
        new, opaque = cached[1], cached[2]
        return Inlined(model if new is None else new, opaque)
    result = _inline(model, is_transparent)
    # Never hold the model itself in its own cache entry (it could not be freed).
    new = None if result.model is model else result.model
    _CACHE[model] = (key, new, result.opaque)
    return result


#: model -> (its layer ids, traced model or None for itself, opaque notes): a model is
#: traced once, however often it is analysed.
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inline(model: Any, is_transparent: Callable[[Any], bool]) -> Inlined:
    opaque: dict[int, Opaque] = {}
    if not is_functional(model):
        model = _trace_top(model, is_transparent, opaque)
    if not any(wants_tracing(layer) for layer in _graph_layers(model)):
        return Inlined(model, opaque)
    # First trace every custom layer on its recorded call; rebuild only if one is replaced
    # (a model whose custom layers all stay whole, e.g. a masked one, is analysed as it is).
    fragments: dict[int, Any] = {}
    for node in _graph_nodes(model):
        layer = node.layer
        if not wants_tracing(layer) or id(layer) in opaque or id(layer) in fragments:
            continue
        frag, note = _fragment(layer, node.call_args, node.call_kwargs, is_transparent)
        if note is not None:
            opaque[id(layer)] = note
            continue
        inner = inline_model(frag, is_transparent)
        opaque.update(inner.opaque)
        fragments[id(layer)] = inner.model
    if not fragments:
        return Inlined(model, opaque)

    def override(layer: Any, path: str, args: tuple, kwargs: dict) -> Any:
        frag = fragments.get(id(layer))
        if frag is None:
            return None
        flat = [t for t in tf.nest.flatten((args, kwargs)) if isinstance(t, KerasTensor)]
        if [tuple(t.shape) for t in flat] != [tuple(t.shape) for t in frag.inputs]:
            return None  # a shared layer called on other shapes: stays one (blocking) call
        return frag(flat)

    def same_layer(layer: Any, path: str) -> tuple[Any, None]:
        return layer, None

    new = rebuild_model(model, same_layer, call_override=override)
    return Inlined(new, opaque)


def _graph_nodes(model: Any) -> list:
    """Every layer call of ``model`` and of the graph models nested in it."""
    out = []
    for node in iter_graph_nodes(model):
        out.append(node)
        if is_functional(node.layer):
            out.extend(_graph_nodes(node.layer))
    return out


def _flat_inputs(args: tuple, kwargs: dict) -> tuple[list, tuple, dict]:
    """Fresh Inputs for every tensor in ``args``/``kwargs``, and the args rewritten to them."""
    flat = [t for t in tf.nest.flatten((args, kwargs)) if isinstance(t, KerasTensor)]
    inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype) for t in flat]
    index = {id(t): i for i, t in enumerate(flat)}

    def sub(x: Any) -> Any:
        return inputs[index[id(x)]] if isinstance(x, KerasTensor) else x

    return inputs, tf.nest.map_structure(sub, args), tf.nest.map_structure(sub, kwargs)


def _trace(layer: Any, args: tuple, kwargs: dict, name: str) -> tuple[Any, Any]:
    """(functional model of flat inputs -> flat outputs, the call's output structure)."""
    inputs, a, k = _flat_inputs(args, kwargs)
    outputs = layer.call(*a, **k)
    flat_out = tf.nest.flatten(outputs)
    if not flat_out or not all(isinstance(t, KerasTensor) for t in flat_out):
        raise _NotTraceable("its call() returns something that is not a tensor of its inputs")
    return keras.Model(inputs, flat_out, name=name), outputs


class _NotTraceable(Exception):
    pass


def _signature(fragment: Any) -> list[tuple]:
    sig = []
    for node in iter_graph_nodes(fragment):
        layer = node.layer
        if is_tf_op_layer(layer):
            sig.append(("op", str(getattr(layer, "symbol", ""))))
        else:
            # Class, not name: a weightless layer made inside call() gets a new name each time.
            sig.append((type(layer).__name__, len(layer.weights)))
    return sig


def _captured(fragment: Any) -> str | None:
    """The first traced op that computes with a tensor that is not an input (a weight read)."""
    for node in iter_graph_nodes(fragment):
        if not is_tf_op_layer(node.layer):
            continue
        for arg in tf.nest.flatten((node.call_args, node.call_kwargs)):
            if isinstance(arg, KerasTensor) or not (
                isinstance(arg, tf.Variable) or tf.is_tensor(arg)
            ):
                continue
            if isinstance(arg, tf.Variable) or arg.shape.num_elements() != 1:
                return str(getattr(node.layer, "symbol", node.layer.name))
    return None


def _fragment(
    layer: Any, args: tuple, kwargs: dict, is_transparent: Callable[[Any], bool]
) -> tuple[Any, Opaque | None]:
    """The traced fragment of one custom-layer call, or why the layer stays opaque."""
    cls = type(layer).__name__

    def opaque(reason: str, transparent: bool = False) -> tuple[None, Opaque]:
        return None, Opaque(cls, reason, transparent)

    mine = own_weights(layer)
    if mine:
        names = sorted({weight_short_name(v) for v in mine})
        return opaque(
            f"{_overridden(layer)}its call() computes with its own weights "
            f"({', '.join(names[:4])}); only layers made of Keras layers and TF ops are traced "
            "(register a LayerRule for it)"
        )
    try:
        frag, structure = _trace(layer, args, kwargs, layer.name)
    except _NotTraceable as e:
        return opaque(str(e))
    except Exception as e:  # noqa: BLE001 - any failure of user code means: cannot trace
        if _SYMBOLIC_VALUE in str(e):
            return opaque(
                "its call() uses the value of a tensor in Python (an if, len() or bool() on a "
                "tensor); such data-dependent Python control flow cannot be traced"
            )
        return opaque(
            f"its call() fails on the symbolic inputs (keras.Input) tfprune traces it with "
            f"({_failure(e)})"
        )
    op = _captured(frag)
    if op is not None:
        return opaque(f"op {op} computes with a tensor that is not a layer input (a weight?)")
    if expects_training_arg(layer):
        # training=None and False take the inference branch in Keras; compare with True.
        branches = [frag]
        for mode in (True,):
            try:
                branches.append(_trace(layer, args, dict(kwargs, training=mode), layer.name)[0])
            except Exception:  # noqa: BLE001 - a branch that cannot be traced differs
                branches.append(None)
        sigs = [None if b is None else _signature(b) for b in branches]
        if any(s != sigs[0] for s in sigs):
            if all(b is not None and not own_weights(layer) for b in branches) and all(
                is_transparent(b) for b in branches
            ):
                return opaque("channels pass through it unchanged", transparent=True)
            return opaque("its call() takes different Python branches for training=True/False")
    error = _check(layer, frag, args, kwargs)
    if error is not None:
        return opaque(error)
    if isinstance(layer, keras.Model) and not isinstance(structure, (list, tuple, dict)):
        frag = keras.Model(frag.inputs, frag.outputs[0], name=layer.name)
    return frag, None


_KERAS_CONTEXT = "Exception encountered when calling layer "
_RAISED = re.compile(r"[A-Za-z_][\w.]*(Error|Exception): ")
#: What tf_keras raises when Python asks for the value of a symbolic tensor (bool, len).
_SYMBOLIC_VALUE = "Keras symbolic inputs/outputs do not implement"


def _failure(e: Exception) -> str:
    """``ValueError in layer "dense" (type Dense): <first line of the message>``.

    tf_keras prefixes an error raised inside a sublayer with the layer it happened in.
    """
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    where = ""
    if lines and lines[0].startswith(_KERAS_CONTEXT):
        where = " in layer " + lines.pop(0)[len(_KERAS_CONTEXT) :].rstrip(".")
    if lines and lines[0] == "in user code:":
        # AutoGraph's form: the user's stack, then "SomeError: message".
        raised = [line for line in lines if _RAISED.match(line)]
        lines = [raised[-1].partition(": ")[2]] if raised else lines
    first = lines[0] if lines else ""
    first = first if len(first) <= 200 else first[:200] + "..."
    return f"{type(e).__name__}{where}: {first}"


def _overridden(layer: Any) -> str:
    """'it overrides call() of Conv2D; ' for a subclass of a stock layer, else ''."""
    for i, cls in enumerate(type(layer).__mro__):
        if cls.__module__.startswith(_STOCK_MODULES):
            if cls in (keras.layers.Layer, keras.Model) or cls.__name__ in ("Layer", "Model"):
                return ""
            mine = type(layer).__mro__[:i]
            names = sorted({m for c in mine for m in vars(c) if m in _COMPUTE_METHODS})
            if not names:
                return ""
            return f"it overrides {', '.join(n + '()' for n in names)} of {cls.__name__}; "
    return ""


_COMPUTE_METHODS = ("call", "build", "convolution_op")


def _example(t: Any, rng: np.random.Generator) -> np.ndarray:
    shape = [2 if i == 0 and d is None else (8 if d is None else d) for i, d in enumerate(t.shape)]
    dtype = tf.as_dtype(t.dtype)
    if dtype.is_floating:
        return rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
    return np.zeros(shape, dtype.as_numpy_dtype)


def _check(layer: Any, frag: Any, args: tuple, kwargs: dict) -> str | None:
    """None if the fragment computes what ``layer`` does on a random input, else why not."""
    rng = np.random.default_rng(0)
    flat = [t for t in tf.nest.flatten((args, kwargs)) if isinstance(t, KerasTensor)]
    values = [_example(t, rng) for t in flat]
    index = {id(t): i for i, t in enumerate(flat)}

    def sub(x: Any) -> Any:
        return tf.constant(values[index[id(x)]]) if isinstance(x, KerasTensor) else x

    a, k = tf.nest.map_structure(sub, args), tf.nest.map_structure(sub, kwargs)
    if expects_training_arg(layer):
        k = dict(k, training=False)
    try:
        want = [np.asarray(t) for t in tf.nest.flatten(layer(*a, **k))]
        got = [np.asarray(t) for t in tf.nest.flatten(frag(values, training=False))]
    except Exception as e:  # noqa: BLE001 - cannot compare: do not trust the trace
        return f"its traced graph could not be run on a test input ({type(e).__name__})"
    if len(want) != len(got):
        return "its traced graph returns a different number of outputs"
    for w, g in zip(want, got, strict=True):
        if w.shape != g.shape:
            return "its traced graph returns different shapes"
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        err = float(np.max(np.abs(w.astype(np.float64) - g))) if w.size else 0.0
        if err > TOLERANCE * max(scale, 1e-12):
            rel = err / max(scale, 1e-12)
            return (
                f"its traced graph differs from its call() (relative error {rel:.1e}; a "
                "stateful or random op, or Python state?)"
            )
    return None


def _trace_top(model: Any, is_transparent: Callable[[Any], bool], opaque: dict) -> Any:
    """A functional model traced from a subclassed model's ``call`` (raises if impossible)."""
    spec = saved_input_spec(model)
    if spec is None:
        raise UnsupportedModelError(
            f"model {model.name!r} is a subclassed model ({type(model).__name__}) that has not "
            "been called yet: call it once on a batch (model(x)) or model.build(input_shape) "
            "so tfprune knows its input shapes."
        )

    def placeholder(s: Any) -> Any:
        shape = (None, *tuple(s.shape)[1:]) if s.shape.rank else tuple(s.shape)
        return keras.Input(batch_shape=shape, dtype=s.dtype)

    inputs = tf.nest.map_structure(placeholder, spec)
    frag, note = _fragment(model, (inputs,), {}, is_transparent)
    if note is not None and not note.transparent:
        raise UnsupportedModelError(
            f"subclassed model {model.name!r} ({type(model).__name__}) cannot be traced: "
            f"{note.reason}. Rebuild it with the functional API."
        )
    if frag is None:
        raise UnsupportedModelError(
            f"subclassed model {model.name!r} ({type(model).__name__}) has no traceable layers."
        )
    return frag
