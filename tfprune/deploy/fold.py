"""Inference graph optimisation: fold BatchNormalization and Rescaling, drop training-only layers.

A grouped convolution with one group per input channel (``Conv2D(groups=channels)``, as in
ConvNeXt) is a depthwise convolution; it becomes a ``DepthwiseConv2D`` (``Conv1D``:
``DepthwiseConv1D``), which every runtime has a fast kernel for (tf_keras runs grouped
convolutions through an XLA-compiled function, which tf2onnx cannot convert).

In inference a ``BatchNormalization`` computes ``gamma * (x - mean) / sqrt(var + eps) + beta``,
a per-channel affine map. When ``x`` is the output of a convolution or dense layer with a linear
activation, that map can be merged into the layer's kernel and bias, and the BN layer removed.
The same holds for a ``Rescaling`` that follows such a layer. ``Dropout`` and noise layers
compute the identity in inference and are removed.

:func:`optimize_for_inference` returns a new functional model of stock Keras layers; the model
passed in is never modified. A BN that cannot be folded exactly is left in place and reported
with the reason (its input is not the output of a conv/dense with a linear activation, that
output also feeds other layers, the BN normalises a non-channel axis, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfprune.compat import (
    KERAS3,
    flavour_of,
    inbound_nodes,
    is_functional,
    keras,
    keras3,
    keras3_functional_graph,
    keras3_graph_calls,
    keras3_sublayers,
    tf,
)
from tfprune.deploy.inputs import call_outputs, example_inputs
from tfprune.errors import FoldError, UnsupportedModelError
from tfprune.graph.keras3 import check_keras3_graph
from tfprune.graph.rebuild import copy_layer, rebuild_model
from tfprune.graph.rules import weight_short_name
from tfprune.graph.trace import check_graph_model, iter_graph_nodes
from tfprune.layers import is_mask_layer

__all__ = ["FoldReport", "optimize_for_inference", "check_no_masks"]


def _class_tables(layers: Any) -> dict[str, Any]:
    """The layer classes folding knows, from one flavour's ``layers`` module."""
    depthwise = "kernel" if layers is not keras.layers else "depthwise_kernel"
    return {
        # Layers a per-output-channel affine map folds into: class -> (weight scaled, kernel
        # layout). "last": output channels on the last kernel axis; "transpose": on the
        # second-to-last; "depthwise": (..., in, multiplier) flattened to in * multiplier.
        "targets": {
            layers.Dense: ("kernel", "last"),
            layers.Conv1D: ("kernel", "last"),
            layers.Conv2D: ("kernel", "last"),
            layers.Conv3D: ("kernel", "last"),
            layers.Conv1DTranspose: ("kernel", "transpose"),
            layers.Conv2DTranspose: ("kernel", "transpose"),
            layers.Conv3DTranspose: ("kernel", "transpose"),
            # Keras 3 names a depthwise kernel ``kernel``, tf_keras ``depthwise_kernel``.
            layers.DepthwiseConv1D: (depthwise, "depthwise"),
            layers.DepthwiseConv2D: (depthwise, "depthwise"),
            layers.SeparableConv1D: ("pointwise_kernel", "last"),
            layers.SeparableConv2D: ("pointwise_kernel", "last"),
        },
        # Grouped convolutions that become depthwise ones when each group is one input channel.
        "depthwise_of": {
            layers.Conv1D: layers.DepthwiseConv1D,
            layers.Conv2D: layers.DepthwiseConv2D,
        },
        # Layers that compute the identity in inference.
        "training_only": (
            layers.Dropout,
            layers.SpatialDropout1D,
            layers.SpatialDropout2D,
            layers.SpatialDropout3D,
            layers.AlphaDropout,
            layers.GaussianDropout,
            layers.GaussianNoise,
            layers.ActivityRegularization,
        ),
        "bn": layers.BatchNormalization,
        "rescaling": layers.Rescaling,
        "dropout": layers.Dropout,
    }


_TABLES: dict[str, dict[str, Any]] = {}


def _tables(layer: Any) -> dict[str, Any]:
    """The class tables of ``layer``'s flavour (Keras 3 imported only for a Keras 3 layer)."""
    flavour = KERAS3 if flavour_of(layer) == KERAS3 else "tf_keras"
    if flavour not in _TABLES:
        _TABLES[flavour] = _class_tables(keras3().layers if flavour == KERAS3 else keras.layers)
    return _TABLES[flavour]


@dataclasses.dataclass
class FoldReport:
    """What :func:`optimize_for_inference` did.

    Attributes:
        folded: ``"bn_path -> conv_path"`` for every BatchNormalization or Rescaling folded.
        converted: paths of the grouped convolutions rewritten as depthwise convolutions.
        dropped: paths of the training-only layers removed (Dropout, noise).
        left: ``(layer path, reason)`` for every BatchNormalization, Rescaling or training-only
            layer that was kept, with the reason it could not be removed exactly.
        max_relative_error: max |optimised - original| / max |original| over the outputs on
            the check inputs (None when the check was off or nothing changed).
    """

    folded: list[str] = dataclasses.field(default_factory=list)
    converted: list[str] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)
    left: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    max_relative_error: float | None = None

    @property
    def changed(self) -> bool:
        """Whether any layer was folded, converted or dropped."""
        return bool(self.folded or self.converted or self.dropped)

    def __str__(self) -> str:
        lines = [
            f"folded {len(self.folded)} layer(s) into the layer before them, dropped "
            f"{len(self.dropped)} training-only layer(s), left {len(self.left)} in place"
        ]
        if self.converted:
            lines.append(
                f"rewrote {len(self.converted)} grouped convolution(s) with one group per "
                "channel as depthwise convolutions"
            )
        if self.max_relative_error is not None:
            lines.append(f"max relative output error {self.max_relative_error:.2e}")
        lines += [f"  kept {path}: {reason}" for path, reason in self.left]
        return "\n".join(lines)


def _is(layer: Any, cls: type) -> bool:
    """``layer`` is exactly the stock class (a subclass may compute something else)."""
    return type(layer) is cls


def _target_kind(layer: Any) -> tuple[str, str] | None:
    return _tables(layer)["targets"].get(type(layer))


def _depthwise_equivalent(layer: Any) -> bool:
    """A stock grouped Conv1D/2D whose groups are single input channels (a depthwise conv)."""
    if type(layer) not in _tables(layer)["depthwise_of"]:
        return False
    groups = int(layer.get_config().get("groups", 1))
    return groups > 1 and int(layer.kernel.shape[-2]) == 1 and layer.filters % groups == 0


def _channel_axis(layer: Any, rank: int) -> int:
    fmt = getattr(layer, "data_format", "channels_last")
    return 1 if fmt == "channels_first" else rank - 1


def _bn_axis(layer: Any, rank: int) -> int | None:
    axis = layer.axis
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if len(axes) != 1:
        return None
    return axes[0] % rank


class _Target:
    """A conv/dense layer whose kernel and bias accumulate the affine maps folded into it."""

    def __init__(self, layer: Any, path: str, shape: Any) -> None:
        self.layer = layer
        self.path = path
        self.rank = len(shape)
        self.channel_axis = _channel_axis(layer, self.rank)
        self.weight_name, self.layout = _tables(layer)["targets"][type(layer)]
        weights = {weight_short_name(v): v.numpy().astype(np.float64) for v in layer.weights}
        self.dtypes = {
            weight_short_name(v): tf.as_dtype(v.dtype).as_numpy_dtype for v in layer.weights
        }
        self.depthwise = _depthwise_equivalent(layer)
        if self.depthwise:
            # (..., 1, groups * multiplier), output g * multiplier + m in group g, is the
            # depthwise kernel (..., groups, multiplier) with the same output order.
            tables = _tables(layer)
            name = tables["targets"][tables["depthwise_of"][type(layer)]][0]
            kernel = weights.pop("kernel")
            dtype = self.dtypes.pop("kernel")
            groups = int(layer.get_config()["groups"])
            weights[name] = kernel.reshape(*kernel.shape[:-2], groups, -1)
            self.dtypes[name] = dtype
            self.weight_name, self.layout = name, "depthwise"
        self.weights = weights
        self.n_out = int(shape[self.channel_axis])
        self.bias = weights.get("bias", np.zeros(self.n_out))
        self.folded = False

    def apply(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """Fold ``y = scale * out + shift`` (per output channel) into the layer."""
        scale = np.broadcast_to(np.asarray(scale, np.float64), (self.n_out,))
        shift = np.broadcast_to(np.asarray(shift, np.float64), (self.n_out,))
        kernel = self.weights[self.weight_name]
        if self.layout == "last":
            kernel = kernel * scale
        elif self.layout == "transpose":
            kernel = kernel * scale[:, None]
        else:  # depthwise: (..., in, multiplier), output channel c * multiplier + m
            kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
        self.weights[self.weight_name] = kernel
        self.bias = self.bias * scale + shift
        self.folded = True

    def new_layer(self) -> tuple[Any, dict[str, np.ndarray]]:
        config = dict(self.layer.get_config())
        weights = dict(self.weights)
        if self.folded:
            config["use_bias"] = True
            weights["bias"] = self.bias
        dtype = self.dtypes[self.weight_name]
        out = {k: np.asarray(v, dtype=self.dtypes.get(k, dtype)) for k, v in weights.items()}
        if not self.depthwise:
            return copy_layer(self.layer, config), out
        keep = ("name", "trainable", "dtype", "kernel_size", "strides", "padding", "data_format")
        keep += ("dilation_rate", "activation", "use_bias", "bias_initializer")
        new_config = {k: config[k] for k in keep if k in config}
        new_config["depth_multiplier"] = self.layer.filters // int(config["groups"])
        layer = _tables(self.layer)["depthwise_of"][type(self.layer)].from_config(new_config)
        return layer, out


def _walk_models(model: Any, prefix: str = "") -> list[tuple[Any, str]]:
    found = [(model, prefix)]
    for layer in model.layers:
        if is_functional(layer):
            found += _walk_models(layer, prefix + layer.name + "/")
    return found


def check_no_masks(model: Any, what: str = "model") -> None:
    """Raise a clear error if ``model`` still holds tfprune masks or TF-MOT pruning wrappers."""
    if flavour_of(model) == KERAS3:
        named = [(layer, layer.name) for layer in keras3_sublayers(model)]
    else:
        named = [
            (layer, prefix + layer.name)
            for graph, prefix in _walk_models(model)
            for layer in graph.layers
        ]
    for layer, name in named:
        if is_mask_layer(layer):
            raise UnsupportedModelError(
                f"{what} {model.name!r} still holds tfprune masks (layer {name!r}, "
                f"{type(layer).__name__}); masked filters are zero but still computed. Call "
                "tfprune.strip_filters(model) first to remove them physically."
            )
        if type(layer).__module__.startswith("tensorflow_model_optimization"):
            raise UnsupportedModelError(
                f"{what} {model.name!r} holds the TF-MOT wrapper {name!r} "
                f"({type(layer).__name__}); call "
                "tfmot.sparsity.keras.strip_pruning(model) first."
            )


@dataclasses.dataclass
class _Call:
    """One call of a layer (or a Keras 3 raw op) in a graph, as the fold planner reads it."""

    layer: Any
    path: str
    inputs: list  # the symbolic tensors among the arguments, flat
    args: tuple
    kwargs: dict
    outputs: list  # flat
    once: bool  # the layer is called once only


def _graphs(model: Any) -> list[tuple[list[_Call], list]]:
    """Per graph (the model's, each nested model's): its calls in order and its outputs."""
    if flavour_of(model) != KERAS3:
        return [
            (
                [
                    _Call(
                        node.layer,
                        prefix + node.layer.name,
                        list(node.keras_inputs),
                        tuple(node.call_args),
                        dict(node.call_kwargs),
                        tf.nest.flatten(node.outputs),
                        len(inbound_nodes(node.layer)) == 1,
                    )
                    for node in iter_graph_nodes(graph)
                ],
                list(graph.outputs),
            )
            for graph, prefix in _walk_models(model)
        ]
    found: list[tuple[list[_Call], list]] = []
    seen: set[int] = set()

    def walk(graph: Any, prefix: str) -> None:
        calls = []
        for call in keras3_graph_calls(graph):
            op = call.operation
            inner = keras3_functional_graph(op) if isinstance(op, keras3().Model) else None
            if inner is not None and id(inner) not in seen:
                seen.add(id(inner))
                walk(inner, prefix + op.name + "/")
            calls.append(
                _Call(
                    op,
                    prefix + op.name,
                    list(call.inputs),
                    tuple(call.args),
                    dict(call.kwargs),
                    list(call.outputs),
                    True,
                )
            )
        found.append((calls, list(graph.outputs)))

    walk(keras3_functional_graph(model), "")
    counts: dict[int, int] = {}
    for calls, _ in found:
        for call in calls:
            counts[id(call.layer)] = counts.get(id(call.layer), 0) + 1
    for calls, _ in found:
        for call in calls:
            call.once = counts[id(call.layer)] == 1
    return found


def _plan(model: Any, report: FoldReport, options: Mapping[str, bool]) -> dict[int, Any]:
    """Decide per layer id: a :class:`_Target`, ``None`` (drop) or absent (copy)."""
    decisions: dict[int, Any] = {}
    top_outputs = {id(t) for t in model.outputs}
    tables = _tables(model)
    bn_class, rescaling_class = tables["bn"], tables["rescaling"]

    for nodes, graph_outputs in _graphs(model):
        consumers: dict[int, int] = {}
        for node in nodes:
            for t in node.inputs:
                consumers[id(t)] = consumers.get(id(t), 0) + 1
        for t in graph_outputs:
            consumers[id(t)] = consumers.get(id(t), 0) + 1
        source: dict[int, _Target] = {}  # tensor id -> target whose (folded) output it is

        def sole_input(node: _Call) -> Any:
            x = node.args[0] if node.args else None
            if len(node.inputs) != 1 or x is not node.inputs[0]:
                return None
            return x

        for node in nodes:
            layer = node.layer
            path = node.path
            outs = node.outputs
            once = node.once
            if _target_kind(layer) is not None:
                target = None
                if options["depthwise_groups"] and _depthwise_equivalent(layer):
                    target = _Target(layer, path, outs[0].shape)
                    decisions[id(layer)] = target
                    report.converted.append(path)
                if once and layer.get_config().get("activation") == "linear" and len(outs) == 1:
                    source[id(outs[0])] = target or _Target(layer, path, outs[0].shape)
                continue
            is_bn = _is(layer, bn_class)
            is_rescale = _is(layer, rescaling_class)
            is_train = type(layer) in tables["training_only"]
            if not (is_bn or is_rescale or is_train) and not isinstance(
                layer, (bn_class, rescaling_class, tables["dropout"])
            ):
                continue
            if not (is_bn or is_rescale or is_train):
                report.left.append((path, f"{type(layer).__name__} is not the stock layer"))
                continue
            if (is_bn and not options["fold_batch_norm"]) or (
                is_rescale and not options["fold_rescaling"]
            ):
                continue
            if is_train and not options["drop_training_only"]:
                continue
            x = sole_input(node)
            training = node.kwargs.get("training")
            reason = None
            if not once:
                reason = "the layer is called more than once (shared)"
            elif x is None:
                reason = "the layer is not called on a single tensor"
            elif training is not None and not (isinstance(training, bool) and training is False):
                reason = f"the layer is called with training={training!r}"
            elif id(outs[0]) in top_outputs:
                reason = "its output is a model output (removing it would rename the output)"
            if is_train:
                if reason is not None:
                    report.left.append((path, reason))
                    continue
                decisions[id(layer)] = None
                report.dropped.append(path)
                if id(x) in source and consumers.get(id(x), 0) == 1:
                    source[id(outs[0])] = source[id(x)]
                continue
            target = source.get(id(x)) if x is not None else None
            if reason is None and target is None:
                reason = (
                    "its input is not the output of a Conv/Dense/DepthwiseConv/SeparableConv "
                    "layer with a linear activation, called once"
                )
            elif reason is None and consumers.get(id(x), 0) != 1:
                reason = f"the output of {target.path!r} also feeds other layers"
            if reason is None and is_bn:
                axis = _bn_axis(layer, len(x.shape))
                if axis is None or axis != target.channel_axis:
                    reason = (
                        f"it normalises axis {layer.axis} but the channels of {target.path!r} "
                        f"are on axis {target.channel_axis}"
                    )
                elif getattr(layer, "virtual_batch_size", None) or (
                    getattr(layer, "adjustment", None) is not None
                ):
                    reason = "virtual_batch_size/adjustment change what it computes"
            if reason is None and is_rescale:
                sizes = {np.asarray(layer.scale).size, np.asarray(layer.offset).size}
                per_channel = target.channel_axis == len(x.shape) - 1 and sizes <= {1, target.n_out}
                if (
                    not (sizes == {1} or per_channel)
                    or max(np.ndim(layer.scale), np.ndim(layer.offset)) > 1
                ):
                    reason = "its scale/offset is not a scalar or per-channel on the channel axis"
            if reason is not None:
                report.left.append((path, reason))
                continue
            if is_bn:
                mean = layer.moving_mean.numpy().astype(np.float64)
                var = layer.moving_variance.numpy().astype(np.float64)
                gamma = layer.gamma.numpy().astype(np.float64) if layer.scale else 1.0
                beta = layer.beta.numpy().astype(np.float64) if layer.center else 0.0
                scale = gamma / np.sqrt(var + layer.epsilon)
                target.apply(scale, beta - mean * scale)
            else:
                target.apply(
                    np.asarray(layer.scale, np.float64), np.asarray(layer.offset, np.float64)
                )
            decisions[id(target.layer)] = target
            decisions[id(layer)] = None
            report.folded.append(f"{path} -> {target.path}")
            source[id(outs[0])] = target
    return decisions


def optimize_for_inference(
    model: keras.Model,
    *,
    fold_batch_norm: bool = True,
    fold_rescaling: bool = True,
    drop_training_only: bool = True,
    depthwise_groups: bool = True,
    check: bool = True,
    check_inputs: Any = None,
    rtol: float = 1e-4,
    seed: int = 0,
    return_report: bool = False,
) -> keras.Model | tuple[keras.Model, FoldReport]:
    """A copy of ``model`` for serving: BatchNorm/Rescaling folded, Dropout and noise dropped.

    Every ``BatchNormalization`` (and ``Rescaling``) whose input is the output of a
    ``Conv1D/2D/3D``, ``Conv*Transpose``, ``DepthwiseConv1D/2D``, ``SeparableConv1D/2D``
    (pointwise part) or ``Dense`` layer with a linear activation, used by nothing else, is
    merged into that layer's kernel and bias. Training-only layers (``Dropout`` and its
    variants, ``GaussianNoise``, ``GaussianDropout``, ``ActivityRegularization``) are removed.
    Everything else is copied unchanged, nested models included. The result is a new model of
    stock Keras layers; ``model`` itself is not modified.

    Args:
        model: a functional or Sequential model, tf_keras or Keras 3 (stripped, not masked).
            What goes in as Keras 3 comes out as Keras 3.
        fold_batch_norm: fold BatchNormalization layers.
        fold_rescaling: fold Rescaling layers that follow a conv/dense layer.
        drop_training_only: remove Dropout and noise layers.
        depthwise_groups: rewrite ``Conv1D/Conv2D`` with one group per input channel as
            ``DepthwiseConv1D/2D`` (the same computation).
        check: compare the new model's outputs with the original's on ``check_inputs`` (random
            inputs by default) and raise :class:`FoldError` if the relative error exceeds
            ``rtol``.
        check_inputs: inputs for the check (one array, a list, or a dict by input name).
        rtol: tolerance of the check: max |new - original| / max |original|.
        seed: seed of the random check inputs.
        return_report: also return a :class:`FoldReport` (what was folded, dropped, kept and
            why, and the measured relative error).

    Returns:
        The optimised model, or ``(model, report)`` with ``return_report=True``. A model with
        nothing to fold is returned as it is (no copy).

    Raises:
        UnsupportedModelError: the model is subclassed, unbuilt or still holds tfprune masks.
        FoldError: the check failed.
    """
    if flavour_of(model) == KERAS3:
        check_keras3_graph(model)
    else:
        check_graph_model(model)
    check_no_masks(model)
    report = FoldReport()
    options = {
        "fold_batch_norm": fold_batch_norm,
        "fold_rescaling": fold_rescaling,
        "drop_training_only": drop_training_only,
        "depthwise_groups": depthwise_groups,
    }
    decisions = _plan(model, report, options)
    if not report.changed:
        return (model, report) if return_report else model

    def factory(layer: Any, path: str) -> tuple[Any, Any]:
        if id(layer) in decisions:
            decision = decisions[id(layer)]
            if decision is None:
                return None, None
            return decision.new_layer()
        return copy_layer(layer), layer.get_weights()

    new_model = rebuild_model(model, factory)
    if check:
        inputs = example_inputs(model, 2, seed) if check_inputs is None else check_inputs
        want = call_outputs(model, inputs)
        got = call_outputs(new_model, inputs)
        report.max_relative_error = max_relative_error(want, got)
        if not report.max_relative_error <= rtol:
            raise FoldError(
                f"folding changed the outputs of {model.name!r}: max relative error "
                f"{report.max_relative_error:.3g} > rtol={rtol}. Export with folding off "
                "(fold=False / --nofold) and report this model."
            )
    return (new_model, report) if return_report else new_model


def max_relative_error(want: Mapping[str, Any], got: Mapping[str, Any]) -> float:
    """Largest, over outputs, of max |got - want| / max |want| (float64)."""
    worst = 0.0
    for name, a in want.items():
        a = np.asarray(a, np.float64)
        b = np.asarray(got[name], np.float64)
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-12)
        worst = max(worst, float(np.max(np.abs(a - b))) / scale if a.size else 0.0)
    return worst
