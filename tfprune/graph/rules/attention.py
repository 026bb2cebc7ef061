"""Rules of attention layers.

``MultiHeadAttention`` (whole heads, key and value dimensions, coupled across its projections),
``EinsumDense`` in its dense form and dot-product ``Attention``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tfprune.compat import (
    KerasTensor,
    keras,
)
from tfprune.errors import UnsupportedModelError
from tfprune.graph.rules.base import (
    ChannelContext,
    LayerRule,
    Role,
    Shape,
    describe_layer,
    last_axis_size,
    numel,
    variable_size,
)

__all__ = [
    "DotAttentionRule",
    "EinsumDenseRule",
    "MultiHeadAttentionRule",
    "dense_like_equation",
    "einsum_macs",
]

L = keras.layers

_MHA_PROJECTIONS = ("query", "key", "value", "attention_output")
#: The projections a MultiHeadAttention may have besides: Keras 3's ``use_gate=True`` gate
#: (``sigmoid(query-input @ gate/kernel)``, per head and value dimension, times the attention
#: output before the output projection).
_MHA_OPTIONAL_PROJECTIONS = ("gate",)


_MHA_ARGUMENTS = ("query", "value", "key", "attention_mask", "return_attention_scores")


def _variable_path(v: Any) -> str:
    """A weight's full name, ``mha/query/kernel`` (Keras 3 keeps it in ``path``, not ``name``)."""
    return (getattr(v, "path", None) or v.name).split(":")[0]


def _mha_kernels(layer: Any) -> dict[str, Any]:
    """The projection kernels of a MultiHeadAttention layer, by projection name."""
    out = {}
    for v in layer.weights:
        parts = _variable_path(v).split("/")
        if len(parts) >= 2 and parts[-1] == "kernel":
            out[parts[-2]] = v
    return out


def _mha_arguments(call: Any, names: tuple[str, ...] = _MHA_ARGUMENTS) -> dict[str, Any]:
    """A MultiHeadAttention call's arguments by name (query, value, key, attention_mask...)."""
    args = dict(zip(names, call.args))
    args.update(call.kwargs)
    return args


def _mha_output_size(config: dict, layer: Any) -> int | None:
    """The last axis of a MultiHeadAttention's output, or None for a multi-axis output shape."""
    shape = config.get("output_shape")
    if shape is None or isinstance(shape, int):
        kernel = _mha_kernels(layer).get("attention_output")
        return (
            int(shape) if shape is not None else (kernel.shape[-1] if kernel is not None else None)
        )
    shape = list(shape)
    return int(shape[0]) if len(shape) == 1 else None


class MultiHeadAttentionRule(LayerRule):
    """MultiHeadAttention: whole heads, and the channels it reads and writes, prune exactly.

    Roles: ``"head"`` (head ``h`` is slice ``h`` of the query/key/value projections and of the
    output projection's input), ``"key"`` and ``"value"`` (dimension ``d`` of every head's
    query and key, or of its value and the output projection's input; removing key dimensions
    rescales the query, as scores are divided by ``sqrt(key_dim)``),
    ``"in"``/``"in_value"``/``"in_key"`` (the channels of the query, value and key inputs: rows
    of the three projections) and ``"out"`` (the output projection's units). While pruning
    trains, the layer's masked twin zeroes pruned heads' attention outputs and pruned key and
    value dimensions, which is exactly what the layer without them computes. Weights are named
    by projection (``query/kernel``, ``attention_output/bias``...). Keras 3's gate
    (``use_gate=True``) reads the query input and has a slice per head and value dimension, as
    the value projection has.
    """

    layer_types = (L.MultiHeadAttention,)
    stock_methods = ("call", "_compute_attention", "_build_from_signature", "_masked_softmax")
    #: The names of ``call``'s positional arguments, in order.
    argument_names: tuple[str, ...] = _MHA_ARGUMENTS

    def is_tensor(self, t: Any) -> bool:
        """Whether a call argument is a tensor of the model graph."""
        return isinstance(t, KerasTensor)

    def applies(self, layer: Any) -> bool:
        stock = getattr(layer, "_tfprune_stock", None)
        return type(layer) is L.MultiHeadAttention or stock is L.MultiHeadAttention

    def connect(self, ctx: ChannelContext, call: Any) -> None:
        layer = call.layer
        args = _mha_arguments(call, self.argument_names)
        q, v, k = args.get("query"), args.get("value"), args.get("key")
        k = v if k is None else k
        problem = None
        scores = call.outputs[1:] if args.get("return_attention_scores") else []
        if not all(self.is_tensor(t) for t in (q, v, k)):
            problem = "is called with inputs that are not tensors of the model"
        elif len(call.outputs) != 1 + len(scores):
            problem = "returns several outputs"
        elif any(ctx.is_used(s) for s in scores):
            # The scores have one slice per head: removing heads would change what reads them.
            problem = "returns its attention scores, and they are used"
        elif _mha_output_size(layer.get_config(), layer) is None:
            problem = "has a multi-axis output_shape"
        if problem is not None:
            ctx.block_call(call, f"MultiHeadAttention {call.path!r} {problem}")
            return
        mask = args.get("attention_mask")
        if self.is_tensor(mask):
            ctx.block(ctx.tensor_dim(mask), "an attention mask (its last axis is key positions)")
        for t, role in ((q, "in"), (v, "in_value"), (k, "in_key")):
            ctx.identity(ctx.tensor_dim(t), ctx.layer_dim(layer, role, last_axis_size(t)))
        y = call.outputs[0]
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", last_axis_size(y)))
        config = layer.get_config()
        ctx.layer_dim(layer, "head", int(config["num_heads"]))
        ctx.layer_dim(layer, "key", int(config["key_dim"]))
        ctx.layer_dim(layer, "value", int(config["value_dim"] or config["key_dim"]))

    def weight_names(self, layer: Any) -> list[str]:
        names = []
        for v in layer.weights:
            parts = _variable_path(v).split("/")
            sub = len(parts) >= 2 and parts[-2] in _MHA_PROJECTIONS + _MHA_OPTIONAL_PROJECTIONS
            names.append("/".join(parts[-2:]) if sub else parts[-1])
        return names

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        return {
            "query/kernel": {"in": 0, "head": 1, "key": 2},
            "query/bias": {"head": 0, "key": 1},
            "key/kernel": {"in_key": 0, "head": 1, "key": 2},
            "key/bias": {"head": 0, "key": 1},
            "value/kernel": {"in_value": 0, "head": 1, "value": 2},
            "value/bias": {"head": 0, "value": 1},
            "attention_output/kernel": {"head": 0, "value": 1, "out": -1},
            "attention_output/bias": {"out": 0},
            "gate/kernel": {"in": 0, "head": 1, "value": 2},
            "gate/bias": {"head": 0, "value": 1},
            "mask": {"head": 0},
            "key_mask": {"key": 0},
            "value_mask": {"value": 0},
        }

    def kernel_names(self, layer: Any) -> tuple[str, ...]:
        kernels = _mha_kernels(layer)
        optional = tuple(p for p in _MHA_OPTIONAL_PROJECTIONS if p in kernels)
        return tuple(f"{p}/kernel" for p in _MHA_PROJECTIONS + optional)

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        config = dict(config)
        if "head" in kept:
            config["num_heads"] = len(kept["head"])
        if "key" in kept:
            config["key_dim"] = len(kept["key"])
        if "value" in kept:
            config["value_dim"] = len(kept["value"])
        for role, key in (
            ("in", "query_shape"),
            ("in_value", "value_shape"),
            ("in_key", "key_shape"),
        ):
            if role in kept and config.get(key) is not None:
                config[key] = [*list(config[key])[:-1], len(kept[role])]
        if "out" in kept or "in" in kept:
            # Without output_shape the output is as wide as the query: say it explicitly.
            size = len(kept["out"]) if "out" in kept else _mha_output_size(config, layer)
            config["output_shape"] = size
        return config

    def slice_weights(self, layer, weights, kept):
        out = super().slice_weights(layer, weights, kept)
        if "key" in kept:
            # Scores are scaled by 1/sqrt(key_dim): with fewer key dimensions, scale the query
            # so every score stays what it was.
            scale = math.sqrt(len(kept["key"]) / int(layer.get_config()["key_dim"]))
            for name in ("query/kernel", "query/bias"):
                if name in out:
                    out[name] = (out[name] * scale).astype(out[name].dtype)
        return out

    def input_mask(self, layer: Any) -> str | None:
        return "tensor"

    def mask_inputs(self, call: Any) -> list[Any]:
        args = _mha_arguments(call, self.argument_names)
        out: list[Any] = []
        for name in ("query", "value", "key"):
            t = args.get(name)
            if self.is_tensor(t) and all(t is not o for o in out):
                out.append(t)
        return out

    def self_mask_roles(self, layer: Any) -> tuple[Role, ...]:
        return ("head", "key", "value")

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        what = describe_layer(layer)
        kernels = _mha_kernels(layer)
        if not {"query", "key", "value", "attention_output"} <= set(kernels):
            return None
        q = ins[0]
        v = ins[1] if len(ins) > 1 else q
        k = (
            ins[2]
            if len(ins) > 2 and ins[2] is not None and ins[2][-1] == kernels["key"].shape[0]
            else v
        )
        q_pos = numel(q, what) // int(q[-1])
        v_pos = numel(v, what) // int(v[-1])
        k_pos = numel(k, what) // int(k[-1])
        axes = layer.get_config().get("attention_axes")
        if axes is None:
            v_attn = v_pos
        else:
            axes = [axes] if isinstance(axes, int) else list(axes)
            v_attn = int(math.prod(v[a % len(v)] for a in axes))
        heads = int(layer.get_config()["num_heads"])
        key_dim = int(layer.get_config()["key_dim"])
        value_dim = int(layer.get_config().get("value_dim") or key_dim)
        projections = (
            q_pos * variable_size(kernels["query"])
            + k_pos * variable_size(kernels["key"])
            + v_pos * variable_size(kernels["value"])
            + q_pos * variable_size(kernels["attention_output"])
            + (q_pos * variable_size(kernels["gate"]) if "gate" in kernels else 0)
        )
        attention = q_pos * v_attn * heads * (key_dim + value_dim)  # QK^T and AV
        return projections + attention

    def filters(self, layer: Any) -> int:
        # Its heads (each a set of query/key/value/output columns) and its output units.
        config = layer.get_config()
        return int(config["num_heads"]) + int(_mha_output_size(config, layer) or 0)


def einsum_macs(equation: str, shapes: list[Shape], what: str) -> int | None:
    """Multiply-accumulates of a two-operand einsum on one example (batch dims left out).

    Every combination of the indices of both operands is one multiply-add, so the cost is the
    product of the sizes of all distinct indices; dims of unknown size are batch dims. None for
    equations this does not parse (one operand, no ``->``).
    """
    if "->" not in equation or len(shapes) != 2 or any(s is None for s in shapes):
        return None
    lhs, _ = equation.replace(" ", "").split("->")
    specs = lhs.split(",")
    if len(specs) != 2:
        return None
    sizes: dict[str, int | None] = {}
    for spec, shape in zip(specs, shapes, strict=True):
        if "..." in spec:
            pre, post = spec.split("...")
            n_ell = len(shape) - len(pre) - len(post)
            if n_ell < 0:
                return None
            letters = list(pre) + [f"_{n_ell - 1 - i}" for i in range(n_ell)] + list(post)
        else:
            letters = list(spec)
        if len(letters) != len(shape):
            return None
        for letter, dim in zip(letters, shape, strict=True):
            if dim is not None:
                sizes[letter] = max(int(dim), sizes.get(letter) or 1)
            else:
                sizes.setdefault(letter, None)
    unknown = [k for k, v in sizes.items() if v is None]
    if len(unknown) > 1:
        raise UnsupportedModelError(
            f"cannot count FLOPs of {what}: dims {unknown} of its einsum are unknown. Build the "
            "model with fixed shapes or pass input_shapes= to count_flops."
        )
    return int(math.prod(v for v in sizes.values() if v is not None))


def dense_like_equation(equation: str) -> bool:
    """Whether an EinsumDense equation is a dense layer on the last axis (``...c,cd->...d``).

    The input's last index is contracted with the first of a 2-D kernel, the kernel's second
    index is the output's last, and every other index passes through unchanged, in order.
    """
    eq = equation.replace(" ", "")
    if "->" not in eq or eq.count(",") != 1:
        return False
    lhs, out = eq.split("->")
    inp, kernel = lhs.split(",")
    if len(kernel) != 2 or not inp or not out or "." in kernel:
        return False
    c, d = kernel
    return (
        c != d
        and inp[-1] == c
        and out[-1] == d
        and inp[:-1] == out[:-1]
        and c not in out
        and d not in inp
    )


class EinsumDenseRule(LayerRule):
    """EinsumDense: a dense layer on the last axis when its equation is ``...c,cd->...d``.

    Such a layer (the feed-forward layers of Model Garden's transformer blocks, for example)
    consumes input channels and produces output units like ``Dense``. Other equations are
    counted from the equation, and their channels block.
    """

    stock_methods = ("call", "build")

    def applies(self, layer: Any) -> bool:
        return type(layer).__name__ == "EinsumDense" and type(layer).__module__.startswith(
            "tf_keras."
        )

    def _dense_like(self, layer: Any) -> bool:
        bias_axes = layer.get_config().get("bias_axes")
        return dense_like_equation(layer.equation) and (
            not bias_axes or bias_axes == layer.equation.replace(" ", "")[-1]
        )

    def connect(self, ctx: Any, call: Any) -> None:
        layer = call.layer
        if not self._dense_like(layer) or len(call.inputs) != 1:
            ctx.block_call(
                call,
                f"EinsumDense {call.path!r} computes {layer.equation!r}: only a dense layer on "
                "the last axis ('...c,cd->...d', bias on 'd') is pruned",
            )
            return
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(layer, "in", last_axis_size(x)))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(layer, "out", last_axis_size(y)))

    def weight_axes(self, layer: Any) -> dict[str, dict[Role, int]]:
        if not self._dense_like(layer):
            return {}
        return {"kernel": {"in": 0, "out": 1}, "bias": {"out": 0}}

    def new_config(self, layer: Any, config: dict, kept: dict[Role, np.ndarray]) -> dict:
        if "out" not in kept:
            return config
        shape = config["output_shape"]
        if isinstance(shape, int):
            return dict(config, output_shape=len(kept["out"]))
        return dict(config, output_shape=[*list(shape)[:-1], len(kept["out"])])

    def kernel_layouts(self, layer: Any) -> list[tuple[str, str]]:
        return [("kernel", "dense")] if self._dense_like(layer) else []

    def filters(self, layer: Any) -> int:
        # The output's last axis, dense-like or not: a figure over all filters counts them.
        shape = layer.get_config()["output_shape"]
        last = shape if isinstance(shape, int) else list(shape)[-1]
        return int(last) if last is not None else 0

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        kernel = tuple(layer.kernel.shape.as_list())
        return einsum_macs(layer.equation, [ins[0], kernel], describe_layer(layer))

    def input_mask(self, layer: Any) -> str | None:
        return "tensor" if self._dense_like(layer) else None


class DotAttentionRule(LayerRule):
    """Attention/AdditiveAttention (no weights but matrix products): counted; channels block."""

    layer_types = (L.Attention, L.AdditiveAttention)

    def applies(self, layer: Any) -> bool:
        return type(layer) in self.layer_types

    def macs(self, layer: Any, ins: list[Shape], outs: list[Shape]) -> int | None:
        if len(ins) < 2 or any(t is None or len(t) != 3 for t in ins[:2]):
            return None
        q, v = ins[0], ins[1]
        if None in (q[1], q[2], v[1], v[2]):
            raise UnsupportedModelError(
                f"cannot count FLOPs of {describe_layer(layer)}: its sequence lengths are unknown. "
                "Build the model with fixed lengths or pass input_shapes= to count_flops."
            )
        # Scores (one dot product or one scaled tanh sum per pair), then the weighted values.
        return int(q[1]) * int(v[1]) * (int(q[2]) + int(v[2]))
