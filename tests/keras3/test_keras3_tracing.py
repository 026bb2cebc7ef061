"""Keras 3 custom layers are looked inside when that is exact, and block with a reason if not."""

from __future__ import annotations

import numpy as np

import tfprune
from tfprune import compat

K3 = compat.keras3()
L = K3.layers


class ConvBlock(L.Layer):
    """Conv, norm, activation and a residual add, written as a custom layer."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(filters, 3, padding="same", name="conv")
        self.bn = L.BatchNormalization(name="bn")
        self.squeeze = L.Conv2D(filters, 1, name="squeeze")

    def call(self, x):
        h = K3.ops.relu(self.bn(self.conv(x)))
        gate = K3.ops.sigmoid(self.squeeze(K3.ops.mean(h, axis=(1, 2), keepdims=True)))
        return x + h * gate


class Scaled(L.Layer):
    """Multiplies by a weight of its own: no rule says how to slice it."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def _model(block):
    x = K3.Input((8, 8, 3), name="image")
    h = L.Conv2D(6, 3, padding="same", name="stem")(x)
    h = block(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return K3.Model(x, L.Dense(2, name="head")(h))


def _groups(model):
    return {tuple(sorted(m.path for m in g.producers)): g for g in tfprune.channel_groups(model)}


def test_a_custom_layer_of_sublayers_and_ops_is_looked_inside():
    model = _model(ConvBlock(6, name="block"))
    groups = _groups(model)
    # The residual add couples the stem with the block's conv and its gate (x + h * gate).
    stream = groups[("block/conv", "block/squeeze", "stem")]
    assert stream.prunable and stream.n_units == 6
    assert ("block/bn", "ch") in {(m.path, m.role) for m in stream.layers}
    report = tfprune.explain(model)
    assert not report.opaque and report.prunable_fraction == 18 / 20  # all but the head
    flops = tfprune.count_flops(model)
    assert not flops.uncounted
    assert flops.per_layer["block/conv"] == 8 * 8 * 3 * 3 * 6 * 6
    assert flops.per_layer["block/squeeze"] == 6 * 6


def test_a_custom_layer_with_weights_of_its_own_blocks_with_the_reason():
    report = tfprune.explain(_model(Scaled(name="scaled")))
    assert report.opaque == [
        {
            "layer": "scaled",
            "class": "Scaled",
            "reason": "it creates weights of its own (a rule must say how they slice)",
        }
    ]
    groups = _groups(_model(Scaled(name="scaled")))
    assert not groups[("stem",)].prunable


def test_looking_inside_leaves_the_model_computing_the_same():
    model = _model(ConvBlock(6, name="block"))
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    before = np.asarray(model(x))
    tfprune.explain(model)
    tfprune.count_flops(model)
    np.testing.assert_allclose(np.asarray(model(x)), before, rtol=1e-6)
    assert [la.name for la in model.layers] == ["image", "stem", "block", "gap", "head"]
