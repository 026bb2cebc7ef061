"""Shared helpers of the tfprune core tests: model builders, BN randomisation, equivalence."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable

import numpy as np

import tfprune
from tfprune.batch_norm import recalibrate_batch_norm
from tfprune.choices import IMPORTANCE_NAMES
from tfprune.compat import keras, keras_of, tf
from tfprune.layers import is_mask_layer

L = keras.layers

#: Every importance criterion that scores filters from the weights alone (Taylor needs data).
DATA_FREE_CRITERIA = [name for name in IMPORTANCE_NAMES if name != "taylor"]


def all_layers(model: keras.Model) -> list:
    """Every layer of ``model``, nested models entered (the nested model itself included).

    ``model`` may be a tf_keras or a Keras 3 model.
    """
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras_of(layer).Model):
            out.extend(all_layers(layer))
    return out


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every weight random, non-trivial values (BN statistics included).

    ``model`` may be a tf_keras or a Keras 3 model.
    """
    rng = np.random.default_rng(seed)
    k = keras_of(model)
    for layer in all_layers(model):
        if isinstance(layer, (k.Model, k.layers.Normalization)):
            continue  # Normalization holds statistics (variance must stay positive)
        if isinstance(layer, k.layers.BatchNormalization):
            values = []
            for v in layer.weights:
                name = v.name.split("/")[-1].split(":")[0]
                shape = tuple(v.shape)
                if name == "gamma":
                    values.append(rng.uniform(0.5, 1.5, shape))
                elif name == "beta":
                    values.append(rng.normal(0.0, 0.5, shape))
                elif name == "moving_mean":
                    values.append(rng.normal(0.0, 0.5, shape))
                else:
                    values.append(rng.uniform(0.5, 2.0, shape))
            layer.set_weights(values)
        elif layer.weights:
            layer.set_weights(
                [rng.normal(0.0, 0.3, tuple(w.shape)).astype(np.float32) for w in layer.weights]
            )
    return model


def inputs_for(model: keras.Model, batch: int = 3, seed: int = 1) -> list[np.ndarray]:
    """Random float inputs for every model input."""
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (batch,) + tuple(int(d) for d in t.shape[1:])
        out.append(rng.normal(size=shape).astype(np.float32))
    return out


def outputs_of(model: keras.Model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs in inference mode as a flat list of arrays."""
    y = model(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(t) for t in tf.nest.flatten(y)]


def max_rel_error(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Max |a - b| / max(|a|, tiny) over every pair of outputs."""
    errs = []
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape, (x.shape, y.shape)
        scale = max(float(np.abs(x).max()), 1e-6)
        errs.append(float(np.abs(x - y).max()) / scale)
    return max(errs)


def has_mask(model: keras.Model) -> bool:
    """Whether any tfprune mask layer is in ``model`` (nested models entered)."""
    return any(is_mask_layer(layer) for layer in all_layers(model))


def masked_fraction(model: keras.Model) -> float:
    """Fraction of zero mask entries over every tfprune mask layer."""
    zeros = total = 0
    for layer in all_layers(model):
        if is_mask_layer(layer):
            m = layer.mask.numpy()
            zeros += int((m == 0).sum())
            total += m.size
    return zeros / total if total else 0.0


def check_equivalent(
    model: keras.Model,
    sparsity=0.5,
    importance="l1",
    *,
    seed: int = 0,
    expect_smaller: bool = True,
    tol: float = 1e-5,
    **kwargs,
) -> tuple[keras.Model, keras.Model]:
    """prune_filters + strip_filters; asserts fewer params and equal outputs. Returns both."""
    masked = tfprune.prune_filters(model, sparsity, importance, seed=seed, **kwargs)
    small = tfprune.strip_filters(masked)
    xs = inputs_for(model, seed=seed + 1)
    out_masked = outputs_of(masked, xs)
    out_small = outputs_of(small, xs)
    assert [o.shape for o in out_small] == [o.shape for o in outputs_of(model, xs)]
    err = max_rel_error(out_masked, out_small)
    assert err < tol, f"stripped model differs from the masked model: rel err {err}"
    assert not has_mask(small)
    if expect_smaller:
        assert small.count_params() < model.count_params(), (
            small.count_params(),
            model.count_params(),
        )
    return masked, small


# ---------------------------------------------------------------------------------------------
# Hand-built architectures (small inputs, few filters)


def conv_chain() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", name="conv1")(i)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(4, name="out")(x)
    return keras.Model(i, o, name="conv_chain")


def residual() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, padding="same", name="stem")(i)
    x = L.BatchNormalization(name="stem_bn")(x)
    s = L.ReLU()(x)
    y = L.Conv2D(12, 3, padding="same", name="b_conv1")(s)
    y = L.BatchNormalization(name="b_bn1")(y)
    y = L.ReLU()(y)
    y = L.Conv2D(12, 3, padding="same", name="b_conv2")(y)
    y = L.BatchNormalization(name="b_bn2")(y)
    a = L.Add(name="add")([s, y])
    a = L.ReLU()(a)
    z = L.Conv2D(12, 1, name="proj")(a)
    a2 = L.Add(name="add2")([a, z])
    x = L.GlobalAveragePooling2D()(a2)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="residual")


def concat_model() -> keras.Model:
    i = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 3, padding="same", name="ca")(i)
    b = L.Conv2D(10, 3, padding="same", name="cb")(i)
    b = L.BatchNormalization(name="bnb")(b)
    c = L.Concatenate(name="cat")([a, b])
    x = L.Conv2D(8, 3, padding="same", name="after")(c)
    x = L.GlobalMaxPooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="concat")


def depthwise_model() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="pw0")(i)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 1, name="pw1")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="depthwise")


def separable_model() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c0")(i)
    x = L.SeparableConv2D(12, 3, depth_multiplier=2, padding="same", name="sep1")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.SeparableConv2D(8, 3, padding="same", name="sep2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="separable")


def grouped_model(groups: int = 2) -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", name="c0")(i)
    x = L.BatchNormalization()(x)
    x = L.Conv2D(16, 3, padding="same", groups=groups, name="gconv")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 1, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name=f"grouped{groups}")


def conv1d_model() -> keras.Model:
    i = keras.Input((16, 4))
    x = L.Conv1D(12, 3, padding="same", name="c1")(i)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling1D()(x)
    x = L.Conv1D(8, 3, name="c2")(x)
    x = L.GlobalAveragePooling1D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="conv1d")


def conv3d_model() -> keras.Model:
    i = keras.Input((6, 6, 6, 2))
    x = L.Conv3D(8, 3, padding="same", name="c1")(i)
    x = L.BatchNormalization()(x)
    x = L.AveragePooling3D()(x)
    x = L.Conv3D(6, 1, name="c2")(x)
    x = L.GlobalMaxPooling3D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="conv3d")


def transpose_model() -> keras.Model:
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    x = L.Conv2DTranspose(10, 3, strides=2, padding="same", name="up")(x)
    x = L.BatchNormalization()(x)
    x = L.Conv2D(6, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="transpose")


def flatten_dense_model() -> keras.Model:
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, name="c1")(i)  # (4, 4, 8)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D()(x)  # (2, 2, 8)
    f = L.Flatten(name="flat")(x)  # 32 features
    d = L.Dense(16, activation="relu", name="fc1")(f)
    d = L.Dropout(0.5)(d)
    o = L.Dense(3, name="out")(d)
    return keras.Model(i, o, name="flatten_dense")


def padding_model() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    x = L.ZeroPadding2D(1)(x)
    x = L.Cropping2D(2)(x)
    x = L.UpSampling2D()(x)
    x = L.AveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    x = L.SpatialDropout2D(0.2)(x)
    x = L.LeakyReLU()(x)
    x = L.Conv2D(6, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="padding")


def shared_layer_model() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    shared = L.Conv2D(8, 3, padding="same", name="shared")
    a = shared(x)
    b = shared(L.ReLU()(x))
    s = L.Add()([a, b])
    s = L.Conv2D(6, 1, name="c2")(s)
    s = L.GlobalAveragePooling2D()(s)
    o = L.Dense(3, name="out")(s)
    return keras.Model(i, o, name="shared")


def nested_functional_model() -> keras.Model:
    ii = keras.Input((8, 8, 10))
    y = L.BatchNormalization(name="inner_bn")(ii)
    y = L.Conv2D(12, 3, padding="same", name="inner_conv")(y)
    y = L.ReLU()(y)
    inner = keras.Model(ii, y, name="inner")
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(10, 3, padding="same", name="outer_conv")(i)
    x = inner(x)
    x = L.Conv2D(6, 3, padding="same", name="outer_conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="nested_functional")


def nested_sequential_model() -> keras.Model:
    seq = keras.Sequential(
        [
            keras.Input((8, 8, 10)),
            L.Conv2D(12, 3, padding="same", name="seq_conv"),
            L.BatchNormalization(name="seq_bn"),
            L.ReLU(),
        ],
        name="seq",
    )
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(10, 3, padding="same", name="outer_conv")(i)
    x = seq(x)
    x = L.Conv2D(6, 3, padding="same", name="outer_conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="nested_sequential")


def nested_internal_model() -> keras.Model:
    """A nested model whose prunable group stays inside it (boundary channels untouched)."""
    ii = keras.Input((8, 8, 4))
    y = L.Conv2D(12, 3, padding="same", name="inner_a")(ii)
    y = L.BatchNormalization(name="inner_bn")(y)
    y = L.ReLU()(y)
    y = L.Conv2D(4, 3, padding="same", name="inner_b")(y)
    inner = keras.Model(ii, y, name="inner")
    i = keras.Input((8, 8, 4))
    x = inner(i)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="nested_internal")


def multi_io_model() -> keras.Model:
    i1 = keras.Input((8, 8, 3), name="img")
    i2 = keras.Input((5,), name="vec")
    x = L.Conv2D(8, 3, padding="same", name="c1")(i1)
    x = L.BatchNormalization()(x)
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    g = L.GlobalAveragePooling2D()(x)
    v = L.Dense(10, activation="relu", name="v1")(i2)
    h = L.Concatenate()([g, v])
    h = L.Dense(12, activation="relu", name="h")(h)
    o1 = L.Dense(3, name="out_a")(h)
    o2 = L.Dense(2, name="out_b")(h)
    o3 = L.Conv2D(4, 1, name="out_map")(x)
    return keras.Model([i1, i2], [o1, o2, o3], name="multi_io")


def se_model() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", name="c1")(i)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    s = L.GlobalAveragePooling2D()(x)
    s = L.Reshape((1, 1, 16))(s)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(16, 1, name="se_expand")(s)
    s = L.Activation("sigmoid")(s)
    x = L.Multiply()([x, s])
    x = L.Conv2D(8, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="se")


def tfop_model() -> keras.Model:
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    x = x * 2.0
    x = x + 1
    x = tf.nn.relu6(x)
    x = x[:, ::2, ::2, :]
    x = L.Conv2D(6, 3, padding="same", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="tfop")


def sequential_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(8, 3, padding="same", name="c1"),
            L.BatchNormalization(),
            L.ReLU(),
            L.Conv2D(8, 3, name="c2"),
            L.Flatten(),
            L.Dense(10, activation="relu", name="fc"),
            L.Dense(3, name="out"),
        ],
        name="sequential",
    )


#: Nested models whose channel group crosses the nested-model boundary.
NESTED_CROSSING: dict[str, Callable[[], keras.Model]] = {
    "nested_functional": nested_functional_model,
    "nested_sequential": nested_sequential_model,
}

ARCHITECTURES: dict[str, Callable[[], keras.Model]] = {
    "conv_chain": conv_chain,
    "residual": residual,
    "concat": concat_model,
    "depthwise": depthwise_model,
    "separable": separable_model,
    "grouped2": lambda: grouped_model(2),
    "grouped4": lambda: grouped_model(4),
    "conv1d": conv1d_model,
    "conv3d": conv3d_model,
    "transpose": transpose_model,
    "flatten_dense": flatten_dense_model,
    "padding": padding_model,
    "shared": shared_layer_model,
    "nested_internal": nested_internal_model,
    "multi_io": multi_io_model,
    "se": se_model,
    "tfop": tfop_model,
    "sequential": sequential_model,
}


def group_of(groups, path: str, role: str = "out"):
    """The group holding ``role`` channels of the layer at ``path``."""
    for g in groups:
        for m in g.layers:
            if m.path == path and m.role == role:
                return g
    raise AssertionError(f"no group has {role!r} channels of {path!r}")


def member(group, path: str, role: str):
    """The member of ``group`` for ``role`` channels of layer ``path``."""
    for m in group.layers:
        if m.path == path and m.role == role:
            return m
    raise AssertionError(f"group {group.name} has no {role!r} member for {path!r}")


def tool_error_line(err: str, tool: str) -> str:
    """The one error line a tool wrote to stderr ``err``; asserts there is no traceback.

    A flag error adds the hint "(run with --help to see the flags)" below the line.
    """
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    if lines[-1] == "(run with --help to see the flags)":
        lines.pop()
    assert lines[-1].startswith(f"tfprune-{tool}: error: "), err[-3000:]
    return lines[-1]


def run_checkout_python(
    argv: list[str], cwd: pathlib.Path, timeout: int
) -> subprocess.CompletedProcess[str]:
    """``python <argv>`` in ``cwd`` with this checkout's tfprune (quiet TensorFlow logs)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def application_prunes_at_half(model, size: int) -> tuple[object, np.ndarray, np.ndarray]:
    """Prune a Keras application (``size`` x ``size`` RGB input) at 50% and strip it.

    Checks masked = stripped (relative 1e-5), the output shape, fewer params and under 0.6x
    the MACs; returns the stripped model, the inputs it was checked on and its outputs.
    """
    rng = np.random.default_rng(0)
    # Calibrate on 16 samples: with very few, some channels get near-zero variance and the
    # network amplifies float rounding (eager vs tf.function of one model then differ).
    recalibrate_batch_norm(model, rng.normal(size=(16, size, size, 3)).astype(np.float32))
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    a = masked(x, training=False).numpy()
    b = small(x, training=False).numpy()
    assert small.output_shape == model.output_shape
    assert np.abs(a - b).max() / max(np.abs(a).max(), 1e-6) < 1e-5
    assert tfprune.count_params(small).total < tfprune.count_params(model).total
    assert tfprune.count_flops(small).total < 0.6 * tfprune.count_flops(model).total
    return small, x, b


# Keras applications whose tf_keras model the Keras 3 twin test (tests/keras3/test_keras3_graph.py)
# prunes at 50% with application_prunes_at_half, right after comparing it with its Keras 3 twin:
# tests/surgery/test_keras_applications.py leaves them out, so each is built once for both checks.
PRUNED_BY_THE_TWIN_TEST = (
    "VGG16",
    "ResNet50",
    "ResNet50V2",
    "MobileNet",
    "Xception",
    "EfficientNetB0",
    "ConvNeXtTiny",
    "NASNetMobile",
)
