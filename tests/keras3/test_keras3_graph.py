"""Keras 3 models give the groups and counts of their tf_keras twins; unknown things block.

Each architecture is built once per flavour by the same builder (``build(keras_module)``), so
the two models differ only in the Keras that built them. Most keras.applications twins are also
pruned here (tf_keras flavour), for tests/surgery/test_keras_applications.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import PRUNED_BY_THE_TWIN_TEST, application_prunes_at_half

import tfprune
from tfprune import compat
from tfprune.compat import keras
from tfprune.flops import summarize

K3 = compat.keras3()
FLAVOURS = {"tf_keras": keras, "keras3": K3}


def residual_cnn(k):
    """Conv/BN/ReLU stem, a residual add, a depthwise branch concatenated, pooled dense head."""
    L = k.layers
    x = k.Input((12, 12, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="stem")(x)
    h = L.BatchNormalization(name="stem_bn")(h)
    h = L.ReLU(name="stem_relu")(h)
    r = L.Conv2D(8, 3, padding="same", name="res_conv")(h)
    r = L.BatchNormalization(name="res_bn")(r)
    h = L.Add(name="res_add")([h, r])
    d = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(h)
    p = L.Conv2D(6, 1, name="pw")(h)
    h = L.Concatenate(name="cat")([d, p])
    h = L.MaxPooling2D(name="pool")(h)
    h = L.Conv2D(10, 3, name="last_conv")(h)
    h = L.Flatten(name="flat")(h)
    h = L.Dense(16, activation="relu", name="fc")(h)
    y = L.Dense(5, name="logits")(h)
    return k.Model(x, y, name="residual_cnn")


def sequential_cnn(k):
    L = k.layers
    return k.Sequential(
        [
            k.Input((10, 10, 2)),
            L.Conv2D(6, 3, name="c1"),
            L.BatchNormalization(name="bn1"),
            L.ReLU(name="r1"),
            L.AveragePooling2D(2, name="avg"),
            L.Conv2D(5, 3, padding="same", name="c2"),
            L.GlobalAveragePooling2D(name="gap"),
            L.Dense(3, name="out"),
        ],
        name="seq",
    )


def nested(k):
    """A functional block used as a layer inside another model."""
    L = k.layers
    bi = k.Input((8, 8, 4), name="block_in")
    b = L.Conv2D(4, 3, padding="same", name="inner_conv")(bi)
    block = k.Model(bi, L.Add(name="inner_add")([bi, b]), name="block")
    x = k.Input((8, 8, 3), name="image")
    h = L.Conv2D(4, 1, name="outer_conv")(x)
    h = block(h)
    h = L.GlobalMaxPooling2D(name="gmp")(h)
    return k.Model(x, L.Dense(2, name="head")(h), name="outer")


def separable_norm(k):
    """Rescaled input, separable convs, a layer norm over the channels, a zero-padded pool."""
    L = k.layers
    x = k.Input((9, 9, 3), name="image")
    h = L.Rescaling(1 / 255.0, name="rescale")(x)
    h = L.SeparableConv2D(8, 3, depth_multiplier=2, name="sep1")(h)
    h = L.LayerNormalization(name="ln")(h)
    h = L.Activation("relu", name="act")(h)
    h = L.ZeroPadding2D(name="pad")(h)
    h = L.SeparableConv2D(6, 3, name="sep2")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.Dropout(0.1, name="drop")(h)
    return k.Model(x, L.Dense(3, name="head")(h), name="separable_norm")


@pytest.mark.parametrize("builder", [residual_cnn, sequential_cnn, nested, separable_norm])
def test_groups_and_counts_equal_the_tf_keras_twin(builder):
    twin, m3 = builder(keras), builder(K3)
    assert compat.flavour_of(m3) == compat.KERAS3
    report, report3 = tfprune.explain(twin), tfprune.explain(m3)
    assert report3.to_dict() == report.to_dict()
    assert report3.prunable_fraction > 0.5
    assert not report3.opaque
    for count in (tfprune.count_flops, tfprune.count_params):
        want, got = count(twin), count(m3)
        assert dict(got.per_layer) == dict(want.per_layer)
        assert got.total == want.total > 0 and not got.uncounted
    assert summarize(m3) == summarize(twin)
    assert tfprune.speedup(twin, m3) == 1.0


def _group_made_by(groups, producer):
    return next(g for g in groups if producer in {m.path for m in g.producers})


def test_residual_groups_couple_the_add_concat_and_flatten():
    groups = tfprune.channel_groups(residual_cnn(K3))
    # stem and res_conv meet at the add; dw passes them on and is concatenated with pw.
    shared = _group_made_by(groups, "stem")
    assert {m.path for m in shared.producers} == {"stem", "res_conv", "pw"}
    paths = {(m.path, m.role) for m in shared.layers}
    assert {("stem_bn", "ch"), ("res_bn", "ch"), ("dw", "in"), ("pw", "in")} <= paths
    assert shared.n_units == 8 + 6 and shared.prunable
    # The concat puts dw's 16 channels (2 per unit of the add) first, then pw's 6 filters.
    last_in = next(m for m in shared.layers if m.path == "last_conv" and m.role == "in")
    assert last_in.size == 22
    assert np.unique(last_in.unit_of_channel[:16]).size == 8
    assert np.unique(last_in.unit_of_channel[16:]).size == 6
    # Flatten: each of last_conv's 10 filters feeds 4 * 4 of fc's inputs.
    last = _group_made_by(groups, "last_conv")
    fc_in = next(m for m in last.layers if m.path == "fc" and m.role == "in")
    assert fc_in.size == 4 * 4 * 10 and last.n_units == 10 and last.prunable


def _op_twin(use_ops: bool):
    """The same block with layers, or with Keras 3 ops (``x + y``, ops.concatenate...)."""
    L = K3.layers
    x = K3.Input((6, 6, 3), name="image")
    a = L.Conv2D(4, 3, padding="same", name="a")(x)
    b = L.Conv2D(4, 1, name="b")(x)
    c = L.Conv2D(5, 1, name="c")(x)
    if use_ops:
        s = K3.ops.relu(a + b * 2.0)
        h = K3.ops.concatenate([s, c], axis=-1)
        h = K3.ops.reshape(L.Conv2D(3, 1, name="d")(h), (-1, 6 * 6 * 3))
    else:
        s = L.ReLU(name="relu")(L.Add(name="add")([a, b]))
        h = L.Concatenate(name="cat")([s, c])
        h = L.Flatten(name="flat")(L.Conv2D(3, 1, name="d")(h))
    return K3.Model(x, L.Dense(2, name="head")(h))


def _shape(report):
    return [(r["units"], r["prunable_units"], sorted(r["producers"])) for r in report.rows]


def test_raw_keras3_ops_couple_like_their_layers():
    with_ops = tfprune.explain(_op_twin(True))
    assert _shape(with_ops) == _shape(tfprune.explain(_op_twin(False)))
    prunable = [sorted(r["producers"]) for r in with_ops.rows if r["prunable"]]
    assert prunable == [["a", "b", "c"], ["d"]]
    assert not with_ops.opaque


def _blocks_its_channels(make):
    x = K3.Input((6, 6, 3), name="image")
    h = K3.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    h = make(h)
    model = K3.Model(x, K3.layers.Dense(2, name="head")(K3.layers.Flatten()(h)))
    group = _group_made_by(tfprune.channel_groups(model), "conv")
    return not group.prunable, group.reasons


class CustomCallConv(K3.layers.Conv2D):
    def call(self, inputs):
        return super().call(inputs) * 2.0


class PlainSubclassConv(K3.layers.Conv2D):
    """A subclass that only adds a method: the Conv2D rule still vouches for it."""

    def describe(self):
        return "mine"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (
            lambda h: CustomCallConv(4, 1, name="custom")(h),
            "not looked inside: it creates weights of its own",
        ),
        (lambda h: K3.layers.BatchNormalization(axis=1, name="bn1")(h), "not over the last axis"),
        (lambda h: K3.layers.Activation("softmax", name="sm")(h), "mixes the channels"),
        (lambda h: h * np.arange(4, dtype="float32"), "not one number"),
        (lambda h: K3.layers.LayerNormalization(rms_scaling=True)(h), "not understood"),
        (lambda h: K3.layers.Lambda(lambda t: t * 2.0, name="lam")(h), "not understood"),
    ],
)
def test_what_no_rule_vouches_for_blocks(make, why):
    blocked, reasons = _blocks_its_channels(make)
    assert blocked and any(why in r for r in reasons), reasons


def test_a_subclass_keeping_the_stock_call_is_vouched_for():
    blocked, reasons = _blocks_its_channels(lambda h: PlainSubclassConv(4, 1, name="mine")(h))
    assert not blocked, reasons


def test_keras_applications_mobilenet_v2_prints_its_groups():
    model = K3.applications.MobileNetV2(weights=None)
    report = tfprune.explain(model)
    text = str(report)
    assert "prunable: Conv1" in text and "block_16_project" in text
    assert "subclassed" not in text and not report.opaque
    twin = keras.applications.MobileNetV2(weights=None)
    assert report.to_dict() == tfprune.explain(twin).to_dict()
    assert tfprune.count_flops(model).total == tfprune.count_flops(twin).total == 300_774_272


def test_both_flavours_analysed_one_after_the_other_in_one_process():
    for _ in range(2):
        for name, k in FLAVOURS.items():
            report = tfprune.explain(residual_cnn(k))
            assert report.prunable_fraction > 0.5, name


def _unnamed(report):
    keys = ("units", "prunable_units", "channels", "prunable_channels", "prunable", "reasons")
    return [tuple(str(r[k]) for k in keys) for r in report.rows]


# One application per family: InceptionResNetV2 holds every layer kind of InceptionV3 (and its
# scaled residual), EfficientNetB0 every kind of EfficientNetV2B0. Each is built at the smallest
# input its builder accepts comfortably, the sizes of tests/surgery/test_keras_applications.py
# (InceptionResNetV2 at InceptionV3's 75); the groups, FLOPs and params of both flavours agree
# there as they do at 96.
TWIN_SIZES = {
    "VGG16": 32,
    "ResNet50": 32,
    "ResNet50V2": 32,
    "MobileNet": 32,
    "DenseNet121": 32,
    "InceptionResNetV2": 75,
    "Xception": 71,
    "MobileNetV3Small": 32,
    "EfficientNetB0": 32,
    "ConvNeXtTiny": 32,
    "NASNetMobile": 32,
}

# Families whose Keras 3 model is pruned too (plain, residual, pre-activation residual,
# separable, depthwise, squeeze-and-excitation with rescaling, LayerScale with
# LayerNormalization): the same checks, and the two stripped models count the same MACs (every
# group keeps as many channels in both flavours). NASNetMobile's Keras 3 model is pruned by
# benchmarks/coverage.py --flavour keras3 only (its twin check alone takes ~30 s).
KERAS3_PRUNED_TOO = tuple(name for name in PRUNED_BY_THE_TWIN_TEST if name != "NASNetMobile")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TWIN_SIZES))
def test_keras_applications_equal_their_tf_keras_twin(name):
    size = TWIN_SIZES[name]
    options = {"weights": None, "input_shape": (size, size, 3), "classifier_activation": None}
    if name in PRUNED_BY_THE_TWIN_TEST:
        options["classes"] = 10  # as tests/surgery/test_keras_applications.py builds it
    # Auto-named layers (EfficientNet's "normalization") are named the same in both flavours
    # only when neither has built one before in this process.
    K3.utils.clear_session()
    keras.backend.clear_session()
    model = getattr(K3.applications, name)(**options)
    twin = getattr(keras.applications, name)(**options)
    report, want = tfprune.explain(model), tfprune.explain(twin)
    assert report.prunable_fraction == want.prunable_fraction > 0.85
    # Some applications name their layers differently in the two flavours (conv1/conv and
    # conv1_conv in DenseNet): the groups are compared without the names.
    assert _unnamed(report) == _unnamed(want)
    flops, want_flops = tfprune.count_flops(model), tfprune.count_flops(twin)
    assert flops.total == want_flops.total and not flops.uncounted
    assert tfprune.count_params(model).total == tfprune.count_params(twin).total
    if name in PRUNED_BY_THE_TWIN_TEST:
        small, _, _ = application_prunes_at_half(twin, size)
        if name in KERAS3_PRUNED_TOO:
            small_k3, _, _ = application_prunes_at_half(model, size)
            assert tfprune.count_flops(small_k3).total == tfprune.count_flops(small).total
