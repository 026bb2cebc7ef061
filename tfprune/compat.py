"""The one place that imports Keras for tfprune.

tfprune's masks and TF-MOT interop work on Keras 2 (``tf_keras``). Every module imports
``keras`` from here, never ``tf.keras`` (which may resolve to Keras 3). tfprune sets no
environment variable and does not import TF-MOT until a TF-MOT feature is used
(:func:`tfmot`), so ``tf.keras`` stays what TensorFlow chose.

Keras 3 (``import keras``; TensorFlow 2.16+'s ``tf.keras`` unless that variable is set) is the
second *flavour* tfprune reads: :func:`flavour_of` tells a model's flavour from its classes,
without importing anything, and :func:`keras3` imports Keras 3 on first use and checks its
version. The ``keras3_*`` helpers are the only places that read Keras 3 internals.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import sys

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfprune.errors import UnsupportedModelError

# Every helper below reads tf_keras 2 internals; fail at import, with the fix, on anything else.
if not keras.__version__.startswith("2."):
    raise ImportError(
        f"tfprune needs tf_keras 2.x (Keras 2), found tf_keras {keras.__version__}; install the "
        "versions pinned in setup.cfg: pip install 'tf-keras==2.21.0' 'tensorflow==2.21.0'"
    )

__all__ = [
    "tf",
    "keras",
    "KerasTensor",
    "functional_class",
    "is_functional",
    "is_tf_op_layer",
    "saved_input_spec",
    "own_weights",
    "expects_training_arg",
    "tfmot",
    "tfmot_loaded",
    "tfmot_prune_wrapper_class",
    "tfmot_quantize_wrapper_class",
    "tfmot_pruning_schedule_class",
    "nodes_by_depth",
    "producing_layer",
    "nested_inputs",
    "nested_outputs",
    "inbound_nodes",
    "outbound_nodes",
    "rename_layer",
    "AutoTrackable",
    "conv_base_class",
    "remove_callable_losses",
    "build_compiled_loss_and_metrics",
    "AttentionWithHeadHook",
    "TF_KERAS",
    "KERAS3",
    "KERAS3_VERSIONS",
    "KERAS3_SUPPORTED",
    "flavour_of",
    "keras3",
    "keras_of",
    "check_keras3_version",
    "require_tf_keras",
    "keras3_functional_graph",
    "Keras3Call",
    "keras3_graph_calls",
    "keras3_producer",
    "keras3_sublayers",
    "keras3_own_variables",
    "keras3_symbolic_graph",
    "keras3_op_class",
    "keras3_stock_class",
    "keras3_nested_inputs",
    "keras3_nested_outputs",
    "keras3_is_layer",
    "keras3_copy_op",
    "keras3_attention_with_head_hook",
    "kernel_not_one_variable",
    "keras3_saveable",
    "Keras3Penalties",
    "keras3_attach_penalty",
    "keras3_detach_penalty",
]

from tf_keras.src.engine.functional import Functional as functional_class  # noqa: E402
from tf_keras.src.engine.keras_tensor import KerasTensor  # noqa: E402
from tf_keras.src.layers.core.tf_op_layer import (  # noqa: E402
    SlicingOpLambda as _SlicingOpLambda,
)
from tf_keras.src.layers.core.tf_op_layer import TFOpLambda as _TFOpLambda  # noqa: E402

#: Base class of objects whose ``tf.Variable`` attributes checkpoints track (TF's internal
#: ``AutoTrackable``, the base of ``tf.Module`` without its name scope).
AutoTrackable = tf.__internal__.tracking.AutoTrackable

#: tf_keras' private base class ``Conv`` of every convolution layer (Conv1D/2D/3D, transposed,
#: separable, depthwise).
conv_base_class = keras.layers.Conv1D.__mro__[1]


# ---------------------------------------------------------------------------------------------
# TF-MOT, imported on first use

_TFMOT = "tensorflow_model_optimization"


def tfmot_loaded() -> object | None:
    """The TF-MOT module if something has imported it already, else None (imports nothing).

    A layer or schedule can only be a TF-MOT object once TF-MOT is imported, so checks for
    them need not import it.
    """
    return sys.modules.get(_TFMOT)


def tfmot() -> object:
    """TF-MOT (``tensorflow_model_optimization``), imported on first use.

    Importing TF-MOT sets ``TF_USE_LEGACY_KERAS=1``, which would turn ``tf.keras`` into
    tf_keras from then on. This helper settles ``tf.keras`` first and puts the variable back
    as it was, so using a TF-MOT feature changes neither.
    """
    module = tfmot_loaded()
    if module is not None:
        return module
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    getattr(tf.keras, "__version__", None)  # TF resolves tf.keras once, on first access
    try:
        return importlib.import_module(_TFMOT)
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before


def tfmot_prune_wrapper_class() -> type | None:
    """TF-MOT's ``prune_low_magnitude`` wrapper class (private), None if TF-MOT is not imported."""
    if tfmot_loaded() is None:
        return None
    return importlib.import_module(
        f"{_TFMOT}.python.core.sparsity.keras.pruning_wrapper"
    ).PruneLowMagnitude


def tfmot_quantize_wrapper_class() -> type | None:
    """TF-MOT's quantization wrapper class (private), None if TF-MOT is not imported."""
    if tfmot_loaded() is None:
        return None
    return importlib.import_module(
        f"{_TFMOT}.python.core.quantization.keras.quantize_wrapper"
    ).QuantizeWrapper


def tfmot_pruning_schedule_class() -> type | None:
    """TF-MOT's ``PruningSchedule`` base class, None if TF-MOT is not imported."""
    module = tfmot_loaded()
    return None if module is None else module.sparsity.keras.PruningSchedule


# ---------------------------------------------------------------------------------------------


def is_functional(model: object) -> bool:
    """True for a graph-network model (functional or built Sequential)."""
    return isinstance(model, functional_class) and getattr(model, "_is_graph_network", False)


def is_tf_op_layer(layer: object) -> bool:
    """Whether ``layer`` is tf_keras' own layer for a raw TF op in a functional model.

    tf_keras records ``tf.*`` calls and operators on symbolic tensors (``x + y``, ``x[..., :4]``)
    as its private ``TFOpLambda``/``SlicingOpLambda`` layers. Exactly those classes: a user class
    of the same name, or a subclass, computes something else.
    """
    return type(layer) in (_TFOpLambda, _SlicingOpLambda)


def saved_input_spec(model: object) -> object:
    """The input signature (nest of ``tf.TensorSpec``) a subclassed model was first called with.

    None if the model has never been called (or built with ``model.build``). Wraps the private
    ``Model._saved_model_inputs_spec`` of tf_keras.
    """
    return getattr(model, "_saved_model_inputs_spec", None)


def own_weights(layer: object) -> list:
    """The variables a layer created itself, leaving out those of its sublayers.

    Wraps the private ``Layer._trainable_weights``/``_non_trainable_weights`` lists of tf_keras.
    """
    return list(getattr(layer, "_trainable_weights", [])) + list(
        getattr(layer, "_non_trainable_weights", [])
    )


def expects_training_arg(layer: object) -> bool:
    """Whether ``layer.call`` takes a ``training`` argument (tf_keras' private call spec)."""
    return bool(getattr(layer, "_expects_training_arg", False))


def nodes_by_depth(model: object) -> list:
    """A functional model's own nodes in topological order, inputs first.

    Wraps tf_keras' private ``Functional._nodes_by_depth`` (depth 0 = the output nodes).
    """
    table = model._nodes_by_depth  # noqa: SLF001
    return [node for depth in sorted(table, reverse=True) for node in table[depth]]


def producing_layer(tensor: object) -> object | None:
    """The layer that produced a symbolic Keras tensor (None for other tensors).

    Wraps the private ``KerasTensor._keras_history``.
    """
    history = getattr(tensor, "_keras_history", None)
    return history.layer if history is not None else None


def nested_inputs(model: object) -> object:
    """A functional model's inputs in the structure it was built with (a dict, list, ...)."""
    return model._nested_inputs  # noqa: SLF001


def nested_outputs(model: object) -> object:
    """A functional model's outputs in the structure it was built with."""
    return model._nested_outputs  # noqa: SLF001


def inbound_nodes(layer: object) -> list:
    """The nodes at which ``layer`` was called (one per call in a model graph)."""
    return list(layer._inbound_nodes)  # noqa: SLF001


def outbound_nodes(layer: object) -> list:
    """The nodes of the layers that consume ``layer``'s outputs."""
    return list(layer._outbound_nodes)  # noqa: SLF001


def rename_layer(layer: object, name: str) -> None:
    """Give a layer another name before a model is built from it (tf_keras' private ``_name``).

    Used for layers Keras names automatically (``tf.math.add_3``...), to make them readable.
    """
    layer._name = name  # noqa: SLF001


def remove_callable_losses(model: object, fn: object) -> bool:
    """Drop the loss that was added with ``model.add_loss(fn)``; returns whether it was there.

    Keras has no public way to remove a loss; this edits the private ``_callable_losses`` list,
    where Keras keeps each callable wrapped in a ``functools.partial``.
    """
    losses = getattr(model, "_callable_losses", None)
    if losses is None:
        return False
    keep = [c for c in losses if not (c is fn or (getattr(c, "args", None) or (None,))[0] is fn)]
    removed = len(keep) != len(losses)
    losses[:] = keep
    return removed


def build_compiled_loss_and_metrics(model: object, y_pred: object, y_true: object) -> None:
    """Create the loss and metric trackers of a compiled tf_keras model now.

    tf_keras creates them inside the first train or test step; building them beforehand (with
    a symbolic prediction and labels shaped as the data's) lets that step be traced once. Reads
    tf_keras' undocumented ``compiled_loss`` and ``compiled_metrics`` containers.
    """
    model.compiled_loss.build(y_pred)
    model.compiled_metrics.build(y_pred, y_true)


class _HeadHooks:
    """The hooks around the attention of the projected heads, for either flavour's attention.

    Both Keras flavours compute attention in the overridable (but underscored)
    ``_compute_attention``, from the projected query, key and value, shape
    ``(batch, positions..., heads, dim)``; mixed in before ``MultiHeadAttention``, this passes
    them through ``transform_projections`` first, and the attention output (same layout,
    ``value_dim`` last) through ``transform_heads`` before the output projection.
    """

    def transform_projections(self, query: object, key: object, value: object) -> tuple:
        """Change the projected query, key and value before attention (default: none)."""
        return query, key, value

    def transform_heads(self, attention_output: object) -> object:
        """Change the per-head attention outputs before the output projection (default: none)."""
        return attention_output

    def _compute_attention(
        self, query: object, key: object, value: object, *args: object, **kwargs: object
    ) -> tuple:
        query, key, value = self.transform_projections(query, key, value)
        attention_output, scores = super()._compute_attention(query, key, value, *args, **kwargs)
        return self.transform_heads(attention_output), scores


class AttentionWithHeadHook(_HeadHooks, keras.layers.MultiHeadAttention):
    """``MultiHeadAttention`` with public hooks around the attention of the projected heads.

    tf_keras computes attention in the overridable (but underscored) ``_compute_attention``,
    from the projected query, key and value, shape ``(batch, positions..., heads, dim)``. This
    class passes them through ``transform_projections`` first, and the attention output (same
    layout, ``value_dim`` last) through ``transform_heads`` before the output projection.
    Subclasses override the hooks.
    """


# ---------------------------------------------------------------------------------------------
# Keras flavours

#: The flavour of tf_keras (Keras 2) models, layers and tensors.
TF_KERAS = "tf_keras"
#: The flavour of Keras 3 (``import keras``) models, layers, ops and tensors.
KERAS3 = "keras3"
#: The Keras 3 versions tfprune reads (``setup.cfg`` pins the same range): at least the first,
#: below the second.
KERAS3_VERSIONS = ((3, 12), (4, 0))
#: What tfprune does with a Keras 3 model; every other entry point needs tf_keras.
KERAS3_SUPPORTED = (
    "explain",
    "channel_groups",
    "count_flops",
    "count_params",
    "summarize",
    "speedup",
    "param_reduction",
    "apply_plan",
    "prune_filters",
    "find_sparsity_for_target",
    "strip_filters",
    "shrink",
    "pruning_policy",
    "FilterPruner",
    "UpdateFilterMasks",
    "mean_jsv",
    "jacobian_singular_values",
    "JSVMeter",
    "JacobianSingularValues",
    "orthp",
    "GrowingRegularization",
    "TrainabilityPreserving",
    "NetworkSlimming",
    "GroupLasso",
    "KernelOrthogonality",
    "ConvOrthogonality",
    "recalibrate_batch_norm",
    "export_saved_model",
    "export_for_serving",
    "optimize_for_inference",
)


def flavour_of(obj: object) -> str | None:
    """``"tf_keras"`` or ``"keras3"``: which Keras built ``obj`` (a model, layer, op or tensor).

    Read from the classes of ``obj`` alone (nothing is imported); None for anything else.
    """
    for cls in type(obj).__mro__:
        module = cls.__module__
        if module == "tf_keras" or module.startswith("tf_keras."):
            return TF_KERAS
        if module == "keras" or module.startswith("keras.src."):
            return KERAS3
    return None


def check_keras3_version(version: str) -> None:
    """Raise a clear error unless Keras 3 ``version`` is in :data:`KERAS3_VERSIONS`."""
    low, high = KERAS3_VERSIONS
    found = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if not low <= found < high:
        floor = ".".join(map(str, low))
        raise UnsupportedModelError(
            f"tfprune reads Keras 3 models with keras >= {floor} and < {high[0]}, found keras "
            f"{version}; install a version in that range (pip install 'keras>={floor},"
            f"<{high[0]}') or build the model with tf_keras (import tf_keras as keras)."
        )


def keras3() -> object:
    """The Keras 3 module (``import keras``), imported on first use, its version checked.

    Raises :class:`~tfprune.errors.UnsupportedModelError` outside :data:`KERAS3_VERSIONS`.
    """
    module = sys.modules.get("keras") or importlib.import_module("keras")
    check_keras3_version(str(getattr(module, "__version__", "0")))
    return module


def keras_of(obj: object) -> object:
    """The Keras module that built ``obj``: Keras 3 for a Keras 3 object, else tf_keras.

    Keras 3 is imported only for a Keras 3 object, so tf_keras users never load it.
    """
    return keras3() if flavour_of(obj) == KERAS3 else keras


def require_tf_keras(model: object, what: str) -> None:
    """Raise a clear error when ``model`` is a Keras 3 model and ``what`` needs tf_keras."""
    if flavour_of(model) != KERAS3:
        return
    name = getattr(model, "name", type(model).__name__)
    version = getattr(sys.modules.get("keras"), "__version__", "3")
    raise UnsupportedModelError(
        f"{what} works on tf_keras (Keras 2) models only; {name!r} is a Keras 3 model (keras "
        f"{version}: built with `import keras`, or with `tf.keras` on TensorFlow 2.16+). On "
        f"Keras 3 models tfprune offers {', '.join(KERAS3_SUPPORTED)}. To use {what}, build the "
        "same architecture with `import tf_keras as keras`."
    )


def keras3_functional_graph(model: object) -> object | None:
    """The functional graph of a built Keras 3 functional or Sequential model (None otherwise).

    A Sequential model keeps its graph in the private ``Sequential._functional``, built once
    the model knows its input shape.
    """
    k3 = keras3()
    functional = k3.src.models.functional.Functional
    if isinstance(model, k3.Sequential):
        return getattr(model, "_functional", None)
    return model if isinstance(model, functional) else None


@dataclasses.dataclass(frozen=True)
class Keras3Call:
    """One call recorded in a Keras 3 functional graph (a node that is not an input)."""

    operation: object  # the layer, or a raw op such as keras.src.ops.numpy.Add for ``x + y``
    args: tuple  # positional arguments as recorded (symbolic tensors and constants)
    kwargs: dict
    inputs: list  # the symbolic tensors among the arguments, flat
    outputs: list  # the symbolic tensors the call returned, flat


def keras3_graph_calls(graph: object) -> list[Keras3Call]:
    """The calls of a Keras 3 functional graph in topological order (input nodes left out).

    Reads the private ``Function._nodes_by_depth`` (depth 0 = the output nodes) and, of each
    ``Node``, ``is_input``, ``operation``, ``arguments`` (a ``SymbolicArguments``) and
    ``outputs``.
    """
    table = graph._nodes_by_depth  # noqa: SLF001
    return [
        Keras3Call(
            operation=node.operation,
            args=tuple(node.arguments.args),
            kwargs=dict(node.arguments.kwargs),
            inputs=list(node.arguments.keras_tensors),
            outputs=list(tf.nest.flatten(node.outputs)),
        )
        for depth in sorted(table, reverse=True)
        for node in table[depth]
        if not node.is_input
    ]


def keras3_producer(tensor: object) -> object | None:
    """The layer or op that produced a symbolic Keras 3 tensor (private ``_keras_history``)."""
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history is not None else None


def keras3_sublayers(layer: object) -> list:
    """Every layer inside a Keras 3 layer or model, at any depth (not ``layer`` itself).

    Reads the private ``Layer._flatten_layers``.
    """
    return list(layer._flatten_layers(include_self=False, recursive=True))  # noqa: SLF001


def keras3_op_class(name: str) -> type | None:
    """The Keras 3 op class ``name`` (``"Add"``, ``"Relu"``...) that symbolic calls record.

    ``x + y`` or ``keras.ops.relu(x)`` on symbolic tensors put an instance of a private class of
    ``keras.src.ops.numpy``, ``keras.src.ops.nn`` or ``keras.src.ops.core`` into the model
    graph. None if Keras 3 has no such class.
    """
    ops = keras3().src.ops
    return (
        getattr(ops.numpy, name, None)
        or getattr(ops.nn, name, None)
        or getattr(ops.core, name, None)
    )


def keras3_stock_class(obj: object) -> type | None:
    """The first Keras 3 class in ``obj``'s class hierarchy (its own class if it is one).

    For a user's subclass of ``keras.layers.Conv2D`` this is ``Conv2D``.
    """
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("keras.src."):
            return cls
    return None


def keras3_own_variables(layer: object) -> list:
    """The variables a Keras 3 layer created itself, leaving out its sublayers' (private lists)."""
    return list(getattr(layer, "_trainable_variables", [])) + list(
        getattr(layer, "_non_trainable_variables", [])
    )


def keras3_symbolic_graph(inputs: list, outputs: object) -> object:
    """The graph from symbolic Keras 3 ``inputs`` to ``outputs`` (a private ``Function``).

    It holds the calls recorded between them, as a functional model's graph does, and can be
    called on real tensors (a list in the order of ``inputs``).
    """
    return keras3().src.ops.function.Function(inputs, outputs)


# ---------------------------------------------------------------------------------------------
# Keras 3 rebuild


def keras3_nested_inputs(graph: object) -> object:
    """A Keras 3 functional graph's inputs in the structure it was built with.

    Reads the private ``Function._inputs_struct``.
    """
    return graph._inputs_struct  # noqa: SLF001


def keras3_nested_outputs(graph: object) -> object:
    """A Keras 3 functional graph's outputs in the structure it was built with.

    Reads the private ``Function._outputs_struct``.
    """
    return graph._outputs_struct  # noqa: SLF001


def keras3_is_layer(op: object) -> bool:
    """Whether a Keras 3 graph operation is a layer (else a raw op such as ``x + y``)."""
    return isinstance(op, keras3().layers.Layer)


def keras3_copy_op(op: object) -> object:
    """A fresh copy of a raw Keras 3 op (``keras.src.ops.numpy.Reshape``...).

    Made from the config Keras records of every op's constructor arguments; falls back to
    ``op`` itself (ops hold no variables) when its config does not rebuild it.
    """
    try:
        return type(op).from_config(op.get_config())
    except Exception:  # noqa: BLE001 - an op whose arguments Keras could not record
        return op


def kernel_not_one_variable(layer: object) -> str | None:
    """Why ``layer``'s kernel is not one plain variable, or None when it is.

    ``"quantized (<mode>)"`` for a Keras 3 layer quantized in place (``quantization_mode``),
    ``"LoRA-adapted"`` for one with LoRA enabled (``lora_enabled``); tf_keras layers have
    neither.
    """
    mode = getattr(layer, "quantization_mode", None)
    if mode:
        return f"quantized ({mode})"
    return "LoRA-adapted" if getattr(layer, "lora_enabled", False) else None


@functools.cache
def keras3_attention_with_head_hook() -> type:
    """Keras 3's ``MultiHeadAttention`` with the hooks of :class:`AttentionWithHeadHook`.

    Keras 3 also computes attention in the overridable (but underscored) ``_compute_attention``,
    from the projected query, key and value, shape ``(batch, positions..., heads, dim)``; the
    class made here passes them through ``transform_projections`` first, and the attention
    output (same layout, ``value_dim`` last) through ``transform_heads`` before the output
    projection. Made on first use, so Keras 3 is imported only then.
    """

    class Keras3AttentionWithHeadHook(_HeadHooks, keras3().layers.MultiHeadAttention):
        """Keras 3 ``MultiHeadAttention`` with hooks around the attention of the heads."""

    return Keras3AttentionWithHeadHook


@functools.cache
def keras3_saveable(cls: type) -> type:
    """A subclass of ``cls`` that Keras 3 weights files save and load.

    ``cls`` keeps its ``tf.Variable`` s in a dict attribute ``variables`` (name to variable).
    Keras 3 saving (``model.save_weights`` to ``.weights.h5``, ``model.save`` to ``.keras``,
    Keras 3's ``BackupAndRestore``) walks the attributes of a model and saves every object of
    its private base class ``KerasSaveable`` by ``save_own_variables(store)``, and loads it by
    ``load_own_variables(store)``. The subclass made here is such an object: it writes each
    variable under its name and reads it back. A file without the entries (saved before the
    object existed) leaves the variables as they are; entries whose names or shapes differ
    raise :class:`~tfprune.errors.UnsupportedModelError`. Made on first use, so Keras 3 is
    imported only then.
    """
    saveable_base = importlib.import_module(
        keras3().__name__ + ".src.saving.keras_saveable"
    ).KerasSaveable

    class Keras3Saveable(cls, saveable_base):
        __doc__ = cls.__doc__
        # KerasSaveable pickles a whole model; keep the default copy/pickle of ``cls``.
        __reduce__ = object.__reduce__

        def _obj_type(self) -> str:
            # Keras accepts a fixed list of kinds; "Operation" only names the attributes not
            # to walk into (those of a bare Keras op). None of ours holds a Keras saveable.
            return "Operation"

        def save_own_variables(self, store: object) -> None:
            """Write each variable to the Keras 3 weights ``store`` under its name."""
            for name, variable in self.variables.items():
                store[name] = np.asarray(variable.numpy())

        def load_own_variables(self, store: object) -> None:
            """Assign each variable its value in the Keras 3 weights ``store``."""
            if len(store) == 0:
                return  # saved before this state existed
            saved = set(store.keys())
            if saved != set(self.variables):
                raise UnsupportedModelError(
                    f"the weights file holds tfprune state {sorted(saved)} but the model's "
                    f"{cls.__name__} has {sorted(self.variables)}; load it into a model "
                    "regularized with the same callback settings (same groups)."
                )
            values = {name: store[name] for name in self.variables}
            for name, variable in self.variables.items():
                if tuple(values[name].shape) != tuple(variable.shape):
                    raise UnsupportedModelError(
                        f"tfprune state {name!r} in the weights file has shape "
                        f"{tuple(values[name].shape)}, the model's has {tuple(variable.shape)}; "
                        "load it into a model regularized with the same callback settings."
                    )
            for name, variable in self.variables.items():
                variable.assign(values[name])

    Keras3Saveable.__name__ = Keras3Saveable.__qualname__ = f"Keras3{cls.__name__}"
    return Keras3Saveable


# ---------------------------------------------------------------------------------------------
# Keras 3 penalty losses


class Keras3Penalties:
    """The weight regularizer that carries tfprune's penalties into a Keras 3 model's loss.

    Keras 3 has no zero-argument model loss (``add_loss`` takes a tensor computed in
    ``call``), but every ``fit``/``evaluate`` step adds ``variable.regularizer(variable)`` of
    each trainable variable to the loss (``Layer.losses``, read by ``Trainer.compute_loss``
    inside the gradient tape). :func:`keras3_attach_penalty` sets this callable as the
    regularizer of one trainable variable of the model: it returns the value of the
    regularizer the variable had before (if any) plus each penalty ``fn()``, in Keras' float
    type (``keras.config.floatx()``, the type of the compiled loss it is added to; the
    penalties compute in float32, and a float64 model needs its loss in float64).
    """

    def __init__(self, original: object) -> None:
        self.original = original
        self.penalties: list = []

    def __call__(self, variable: object) -> object:
        dtype = keras3().config.floatx()
        total = tf.constant(0.0, dtype)
        if self.original is not None:
            total += tf.cast(self.original(variable), dtype)
        for fn in self.penalties:
            total += tf.cast(fn(), dtype)
        return total


def _keras3_penalty_carriers(model: object) -> list:
    """The variables of a Keras 3 model whose regularizer is a :class:`Keras3Penalties`."""
    return [
        v for v in model.weights if isinstance(getattr(v, "regularizer", None), Keras3Penalties)
    ]


def keras3_attach_penalty(model: object, fn: object) -> bool:
    """Add the zero-argument loss ``fn`` to a Keras 3 model's training and evaluation loss.

    ``fn`` is appended to the :class:`Keras3Penalties` regularizer of one of the variables in
    ``model.trainable_weights`` (the first; the regularizer it had is kept and still counted).
    The value is part of ``model.losses`` and of the reported ``loss``. Calling it again is
    safe: a penalty already on a trainable variable stays, one left on a variable that no
    longer trains (its layer frozen since) moves to a trainable one. Returns whether the
    losses changed, so that the caller makes ``fit`` retrace (``model.train_function = None``).
    Raises UnsupportedModelError for a model without trainable variables (no step would
    compute a loss).
    """
    trainable = list(model.trainable_weights)
    live = {id(v) for v in trainable}
    for variable in _keras3_penalty_carriers(model):
        if id(variable) in live and any(f is fn for f in variable.regularizer.penalties):
            return False
    keras3_detach_penalty(model, fn)  # from a variable that no longer trains, if any
    if not trainable:
        raise UnsupportedModelError(
            f"model {model.name!r} has no trainable variable, so fit computes no loss a "
            "penalty could join; make some of its layers trainable."
        )
    carriers = [v for v in _keras3_penalty_carriers(model) if id(v) in live]
    carrier = carriers[0] if carriers else trainable[0]
    if not carriers:
        carrier.regularizer = Keras3Penalties(carrier.regularizer)
    carrier.regularizer.penalties.append(fn)
    return True


def keras3_detach_penalty(model: object, fn: object) -> bool:
    """Remove a loss added by :func:`keras3_attach_penalty`; returns whether it was there.

    A variable left without penalties gets its own regularizer back.
    """
    removed = False
    for variable in _keras3_penalty_carriers(model):
        holder = variable.regularizer
        keep = [f for f in holder.penalties if f is not fn]
        removed = removed or len(keep) != len(holder.penalties)
        holder.penalties[:] = keep
        if not keep:
            variable.regularizer = holder.original
    return removed
