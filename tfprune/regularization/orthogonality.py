"""Orthogonality regularizers: kernel orthogonality (KernOrth), orthogonal convolution (OrthConv).

The TPP paper compares its regularizer with these two, applied either while retraining a
pruned model ("L1 + KernOrth") or on the dense model before pruning ("KernOrth + L1"), with a
constant weight (0.1 in its table). Unlike GReg/TPP they choose nothing and set no masks: they
work on any model (dense, masked or stripped) and add ``weight * Σ_layers term(layer)`` to its
loss while ``fit`` runs.

Terms, with ``W`` a layer's kernel as an ``(out, fan_in)`` matrix in PyTorch layout
(``(out, in, k...)`` flattened) and ``G`` the smaller of its two Gram matrices (``W Wᵀ`` when
``out <= fan_in``, else ``Wᵀ W``, so that the identity is reachable):

* KernOrth (Xie et al. 2017, the TPP code's ``orth_regularization``): ``mean((G - I)**2)``
  over the Gram entries, for every conv/dense kernel.
* OrthConv (Wang et al. 2020, ``deconv_orth_dist`` in their and the TPP code): for a 2-D
  convolution with a kernel larger than 1x1, ``‖conv(K, K, stride=s, padding=1) - Δ‖_F`` -
  the kernel convolved with itself, read as ``out`` images of ``in`` channels, must be the
  identity at the centre and zero elsewhere (the Frobenius norm, not its square, as in that
  code). ``s`` is the layer's own stride (Wang et al.; the penalty is then exactly 0 for an
  orthogonal convolution); the TPP code passes 2 for every layer (``stride=2`` reproduces
  that). Dense layers, 1x1 and 1-D/3-D convolutions get the KernOrth term, as in the TPP
  code.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.compat import keras, keras_of, kernel_not_one_variable, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.regularization.penalty import check_number
from tfprune.regularization.state import attach_loss, detach_loss, keep_loss

__all__ = [
    "ConvOrthogonality",
    "KernelOrthogonality",
    "OrthogonalityRegularizer",
    "conv_orthogonality_penalty",
    "kernel_orthogonality_penalty",
    "kernel_matrix",
]


@functools.cache
def _classes(k: Any) -> types.SimpleNamespace:
    """The conv/dense layer classes of Keras module ``k`` (tf_keras or Keras 3)."""
    layers = k.layers
    return types.SimpleNamespace(
        dense=layers.Dense,
        depthwise=tuple(
            getattr(layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D") if hasattr(layers, n)
        ),
        separable=(layers.SeparableConv1D, layers.SeparableConv2D),
        transpose=(layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose),
        conv=(layers.Conv1D, layers.Conv2D, layers.Conv3D),
    )


def kernel_matrix(kernel: Any, kind: str) -> Any:
    """A Keras kernel as the ``(out, fan_in)`` float32 matrix of PyTorch layout.

    ``kind``: ``"dense"`` (in, out), ``"conv"`` (k..., in, out), ``"conv_transpose"``
    (k..., out, in) or ``"depthwise"`` (k..., in, multiplier: one row per output channel).
    """
    w = tf.cast(kernel, tf.float32)
    rank = len(kernel.shape)
    if kind == "dense":
        return tf.transpose(w)
    if kind == "conv":
        perm = [rank - 1, rank - 2, *range(rank - 2)]
    elif kind == "conv_transpose":
        perm = [rank - 2, rank - 1, *range(rank - 2)]
    elif kind == "depthwise":
        perm = [rank - 2, rank - 1, *range(rank - 2)]
        moved = tf.transpose(w, perm)
        return tf.reshape(moved, (int(kernel.shape[-2]) * int(kernel.shape[-1]), -1))
    else:  # pragma: no cover - internal misuse
        raise ValueError(kind)
    moved = tf.transpose(w, perm)
    return tf.reshape(moved, (int(moved.shape[0]), -1))


def kernel_orthogonality_penalty(matrix: Any) -> Any:
    """KernOrth of one ``(out, fan_in)`` matrix: ``mean((G - I)**2)``, ``G`` the smaller Gram."""
    rows, cols = int(matrix.shape[0]), int(matrix.shape[1])
    if rows <= cols:
        gram = tf.matmul(matrix, matrix, transpose_b=True)
    else:
        gram = tf.matmul(matrix, matrix, transpose_a=True)
    eye = tf.eye(min(rows, cols), dtype=gram.dtype)
    return tf.reduce_mean(tf.square(gram - eye))


def conv_orthogonality_penalty(kernel: Any, stride: int = 2, padding: int = 1) -> Any:
    """OrthConv of one 2-D kernel ``(kh, kw, in, out)``: ``‖conv(K, K) - Δ‖_F``.

    ``K`` is read as ``out`` images of ``in`` channels (``(out, kh, kw, in)``) and convolved
    with itself (``stride``, zero ``padding`` on each side); ``Δ`` is the identity over
    (image, filter) at the centre position and 0 elsewhere.
    """
    k = tf.cast(kernel, tf.float32)
    images = tf.transpose(k, (3, 0, 1, 2))
    out = tf.nn.conv2d(
        images,
        k,
        strides=stride,
        padding=[[0, 0], [padding, padding], [padding, padding], [0, 0]],
    )  # (out, h, w, out)
    n, h, w = int(out.shape[0]), int(out.shape[1]), int(out.shape[2])
    target = np.zeros((n, h, w, n), np.float32)
    target[:, h // 2, w // 2, :] = np.eye(n, dtype=np.float32)
    return tf.sqrt(tf.reduce_sum(tf.square(out - target)) + 1e-12)


def _kernels(layer: Any, what: str) -> list[tuple[Any, str]]:
    """(kernel variable, layout kind) of a conv/dense layer (none for other layers).

    Layers of either flavour. A Keras 3 layer whose kernel is quantized or LoRA-adapted (no
    longer one variable) is refused, naming ``what`` (the regularizer) and the layer.
    """
    c = _classes(keras_of(layer))
    if not isinstance(layer, (c.dense, *c.separable, *c.depthwise, *c.transpose, *c.conv)):
        return []
    state = kernel_not_one_variable(layer)
    if state:
        raise UnsupportedModelError(
            f"{what} cannot regularize layer {layer.name!r}: its kernel is {state}, not one "
            f"variable; regularize before quantizing or enabling LoRA, or pass "
            f"skip=[{layer.name!r}]."
        )
    if isinstance(layer, c.dense):
        return [(layer.kernel, "dense")]
    if isinstance(layer, c.separable):
        return [(layer.depthwise_kernel, "depthwise"), (layer.pointwise_kernel, "conv")]
    if isinstance(layer, c.depthwise):
        # tf_keras names the depthwise kernel "depthwise_kernel", Keras 3 "kernel"
        kernel = getattr(layer, "depthwise_kernel", None)
        return [(layer.kernel if kernel is None else kernel, "depthwise")]
    if isinstance(layer, c.transpose):
        return [(layer.kernel, "conv_transpose")]
    if getattr(layer, "kernel", None) is not None:
        return [(layer.kernel, "conv")]
    return []


class OrthogonalityRegularizer(keras.callbacks.Callback):
    """Base of the orthogonality regularizers: adds ``weight * Σ term`` to the loss in ``fit``.

    Subclasses define :meth:`term` (one kernel's penalty). The penalty covers every conv/dense
    kernel of the model (nested models included), or those of the layers whose name or
    ``outer/inner`` path fully matches one of ``layers``, minus ``skip``. It is a model loss
    while training runs (so part of the reported ``loss``) and is removed when training ends.
    The value of ``Σ term`` is logged at every epoch end as ``{log_prefix}/penalty``.

    Args:
      weight: the penalty weight (> 0). Default 0.1 (the TPP paper's comparison).
      layers: regular expressions of the layers to regularize (default: all conv/dense).
      skip: names of layers never regularized.
      log_prefix: prefix of the log key.
    """

    def __init__(
        self,
        weight: float = 0.1,
        *,
        layers: Any = None,
        skip: Any = (),
        log_prefix: str = "orth",
    ) -> None:
        super().__init__()
        self.weight = check_number("weight", weight, low=0.0, low_open=True, hint=" (e.g. 0.1)")
        if isinstance(layers, str):
            layers = [layers]
        self.layers = None if layers is None else [str(p) for p in layers]
        for pattern in self.layers or ():
            try:
                re.compile(pattern)
            except re.error as e:
                raise InvalidArgumentError(
                    f"layers pattern {pattern!r} is not a valid regular expression: {e}."
                ) from None
        self.skip = [skip] if isinstance(skip, str) else [str(s) for s in skip or ()]
        if not isinstance(log_prefix, str) or not log_prefix:
            raise InvalidArgumentError(
                f"log_prefix must be a non-empty string, got {log_prefix!r}."
            )
        self.log_prefix = log_prefix
        self.kernels: list[tuple[str, Any, str]] = []
        self._strides: dict[int, int] = {}
        self._wired_model: Any = None
        self._loss_fn: Callable[[], Any] | None = None

    def term(self, kernel: Any, kind: str) -> Any:  # pragma: no cover - abstract
        """The penalty of one kernel."""
        raise NotImplementedError

    def _selected(self, path: str) -> bool:
        short = path.split("/")[-1]
        if short in self.skip or path in self.skip:
            return False
        if self.layers is None:
            return True
        return any(re.fullmatch(p, path) or re.fullmatch(p, short) for p in self.layers)

    def set_model(self, model: Any) -> None:
        """Find the kernels and add the penalty to the model's losses (either flavour)."""
        super().set_model(model)
        if model is self._wired_model:
            if self._loss_fn is not None:
                keep_loss(model, self._loss_fn)
            return
        self._remove_loss()
        kernels, seen = [], set()
        for path, layer in _layer_paths(model):
            if not self._selected(path):
                continue
            for variable, kind in _kernels(layer, type(self).__name__):
                if id(variable) not in seen:
                    seen.add(id(variable))
                    kernels.append((path, variable, kind))
                    strides = getattr(layer, "strides", (1,)) or (1,)
                    self._strides[id(variable)] = int(strides[0])
        if not kernels:
            which = "conv/dense layer" if self.layers is None else f"layer matching {self.layers}"
            raise UnsupportedModelError(
                f"{type(self).__name__}: model {model.name!r} has no {which} to regularize."
            )
        self.kernels = kernels
        self._loss_fn = self._loss
        attach_loss(model, self._loss_fn)
        self._wired_model = model

    def penalty(self) -> Any:
        """``Σ term`` over the regularized kernels (without the weight)."""
        total = tf.constant(0.0, tf.float32)
        for _, variable, kind in self.kernels:
            total += self.term(variable, kind)
        return total

    def _loss(self) -> Any:
        return self.weight * self.penalty()

    def _remove_loss(self) -> None:
        if self._wired_model is not None and self._loss_fn is not None:
            detach_loss(self._wired_model, self._loss_fn)
        self._wired_model = None
        self._loss_fn = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and self.kernels:
            logs[f"{self.log_prefix}/penalty"] = float(self.penalty().numpy())

    def on_train_end(self, logs: dict | None = None) -> None:
        self._remove_loss()

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            "weight": self.weight,
            "layers": self.layers,
            "skip": list(self.skip),
            "log_prefix": self.log_prefix,
        }

    @classmethod
    def from_config(cls, config: dict) -> OrthogonalityRegularizer:
        """Inverse of ``get_config``."""
        return cls(**config)


def _layer_paths(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    model_class = keras_of(model).Model
    for layer in model.layers:
        path = prefix + layer.name
        if isinstance(layer, model_class):
            out.extend(_layer_paths(layer, path + "/"))
        else:
            out.append((path, layer))
    return out


@keras.utils.register_keras_serializable(package="tfprune")
class KernelOrthogonality(OrthogonalityRegularizer):
    """KernOrth: ``weight * Σ mean((G - I)**2)`` over the conv/dense kernels during ``fit``.

    ``G`` is the smaller Gram matrix of the kernel as an ``(out, fan_in)`` matrix (its rows
    are pushed to be orthonormal when ``out <= fan_in``, its columns otherwise). Usage, for the
    TPP paper's "L1 + KernOrth" (regularized retraining of the pruned model)::

        small = tfprune.shrink(base, 0.5)
        small.compile(keras.optimizers.SGD(1e-2, momentum=0.9), loss, metrics)
        small.fit(data, epochs=n, callbacks=[tfprune.KernelOrthogonality(0.1)])

    Args: see :class:`OrthogonalityRegularizer` (log key ``kernorth/penalty``).
    """

    def __init__(
        self,
        weight: float = 0.1,
        *,
        layers: Any = None,
        skip: Any = (),
        log_prefix: str = "kernorth",
    ) -> None:
        super().__init__(weight, layers=layers, skip=skip, log_prefix=log_prefix)

    def term(self, kernel: Any, kind: str) -> Any:
        return kernel_orthogonality_penalty(kernel_matrix(kernel, kind))


@keras.utils.register_keras_serializable(package="tfprune")
class ConvOrthogonality(OrthogonalityRegularizer):
    """OrthConv: ``weight * Σ ‖conv(K, K, stride, padding) - Δ‖_F`` during ``fit``.

    Every 2-D convolution with a kernel larger than 1x1 (depthwise ones too, one image per
    output channel) gets the orthogonal-convolution term; dense layers, 1x1 and 1-D/3-D
    convolutions get the KernOrth term instead, as in the TPP authors' code.

    Args:
      weight: the penalty weight (> 0). Default 0.1.
      stride: stride of the self-convolution (>= 1), or None (default): each layer's own
        stride, so that an orthogonal convolution has penalty 0 (Wang et al.). The TPP
        authors' comparison used 2 for every layer.
      padding: zero padding on each side of the self-convolution (>= 0). Default 1.
      layers: regular expressions of the layers to regularize (default: all conv/dense).
      skip: names of layers never regularized.
      log_prefix: prefix of the log key (default ``orthconv``: ``orthconv/penalty``).
    """

    def __init__(
        self,
        weight: float = 0.1,
        *,
        stride: int | None = None,
        padding: int = 1,
        layers: Any = None,
        skip: Any = (),
        log_prefix: str = "orthconv",
    ) -> None:
        super().__init__(weight, layers=layers, skip=skip, log_prefix=log_prefix)
        self.stride = (
            None
            if stride is None
            else check_number("stride", stride, low=1, integer=True, hint=" (or None)")
        )
        self.padding = check_number("padding", padding, low=0, integer=True, hint=" (default 1)")

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "stride": self.stride, "padding": self.padding}

    def term(self, kernel: Any, kind: str) -> Any:
        shape = [int(d) for d in kernel.shape]
        if len(shape) == 4 and kind in ("conv", "depthwise") and shape[0] * shape[1] > 1:
            stride = self.stride or self._strides.get(id(kernel), 1)
            if kind == "depthwise":  # (kh, kw, C, m) -> C*m filters of one input channel
                kernel = tf.reshape(kernel, (shape[0], shape[1], 1, shape[2] * shape[3]))
            return conv_orthogonality_penalty(kernel, stride, self.padding)
        return kernel_orthogonality_penalty(kernel_matrix(kernel, kind))
