"""Keras 3 custom layers are looked inside when that is exact, and block with a reason if not."""

from __future__ import annotations

import numpy as np
from keras3_twins import prunes_and_strips

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


X = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype("float32")


def test_a_looked_inside_layer_is_replaced_by_its_sublayers_when_pruned():
    block = ConvBlock(6, name="block")
    model = _model(block)
    # Plant the importance: channels 1, 3, 5 of the stream (stem + block) are tiny.
    weak = [1, 3, 5]
    for layer in (model.get_layer("stem"), block.conv, block.squeeze):
        kernel = layer.kernel.numpy()
        kernel[..., weak] *= 1e-3
        layer.kernel.assign(kernel)
    small = prunes_and_strips(model, X)
    assert "block" not in [la.name for la in small.layers]
    assert {type(la).__module__.split(".")[0] for la in small.layers} == {"keras"}
    kept = [0, 2, 4]
    np.testing.assert_array_equal(
        small.get_layer("block_conv").kernel.numpy(),
        block.conv.kernel.numpy()[:, :, kept][..., kept],
    )
    np.testing.assert_array_equal(
        small.get_layer("stem").kernel.numpy(), model.get_layer("stem").kernel.numpy()[..., kept]
    )


def _stem_blocks(blocks, sequential=False):
    if sequential:
        return K3.Sequential(
            [K3.Input((8, 8, 3)), L.Conv2D(6, 3, padding="same", name="stem"), *blocks]
            + [L.GlobalAveragePooling2D(name="gap"), L.Dense(2, name="head")]
        )
    x = K3.Input((8, 8, 3), name="image")
    h = L.Conv2D(6, 3, padding="same", name="stem")(x)
    for block in blocks:
        h = block(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return K3.Model(x, L.Dense(2, name="head")(h))


class TwoBlocks(L.Layer):
    """A custom layer of custom layers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = ConvBlock(6, name="a")
        self.b = ConvBlock(6, name="b")

    def call(self, x):
        return self.b(self.a(x))


def test_looked_inside_layers_twice_shared_nested_or_in_a_sequential_strip():
    two = prunes_and_strips(_stem_blocks([ConvBlock(6, name="one"), ConvBlock(6, name="two")]), X)
    assert two.get_layer("one_conv").filters == two.get_layer("two_conv").filters == 3
    shared = ConvBlock(6, name="shared")
    once = prunes_and_strips(_stem_blocks([shared, shared]), X)
    assert [la.name for la in once.layers].count("shared_conv") == 1  # still one shared conv
    nested = prunes_and_strips(_stem_blocks([TwoBlocks(name="outer")]), X)
    assert nested.get_layer("outer_b_squeeze").filters == 3
    seq = prunes_and_strips(_stem_blocks([ConvBlock(6, name="blk")], sequential=True), X)
    assert seq.get_layer("blk_conv").filters == 3


class ReadsKernel(L.Layer):
    """Computes with its sublayer's kernel itself (no call of the sublayer)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(6, name="inner")

    def build(self, shape):
        self.dense.build(shape)

    def call(self, x):
        return K3.ops.relu(K3.ops.matmul(x, self.dense.kernel))


def test_a_layer_that_reads_a_sublayers_weight_stays_whole_and_blocks_with_the_reason():
    x = K3.Input((8, 8, 3), name="image")
    h = L.Conv2D(6, 3, padding="same", name="stem")(x)
    h = ReadsKernel(name="reads")(h)
    h = L.Conv2D(6, 1, name="after")(h)
    model = K3.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D(name="gap")(h)))
    report = tfprune.explain(model)
    reason = "its call reads the weight 'reads/inner/kernel' itself (a rule must slice it)"
    assert report.opaque == [{"layer": "reads", "class": "ReadsKernel", "reason": reason}]
    groups = _groups(model)
    assert not groups[("stem",)].prunable and groups[("after",)].prunable
    small = prunes_and_strips(model, X)
    assert small.get_layer("stem").filters == 6 and small.get_layer("after").filters == 3


def test_the_plan_of_a_looked_inside_layer_applies_to_the_original_model():
    model = _model(ConvBlock(6, name="block"))
    small, plan = tfprune.shrink(model, 0.5, return_plan=True)
    assert "block_conv" in plan.layers  # named as in the pruned model
    again = tfprune.apply_plan(model, plan)
    assert again.get_layer("block_conv").filters == 3
    np.testing.assert_allclose(np.asarray(again(X)), np.asarray(small(X)), rtol=0, atol=1e-6)
