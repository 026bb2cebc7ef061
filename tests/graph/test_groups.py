"""Channel-group discovery and explain() on hand-built models."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import (
    ARCHITECTURES,
    NESTED_CROSSING,
    group_of,
    member,
)

import tfprune
from tfprune.compat import keras, tf

L = keras.layers


def _units(m):
    return np.unique(m.unit_of_channel).size


def test_conv_bn_relu_conv_chain_is_one_group_with_filters_as_units():
    groups = tfprune.channel_groups(ARCHITECTURES["conv_chain"]())
    g = group_of(groups, "conv1", "out")
    assert g.n_units == 16
    assert g.prunable and g.prunable_units.size == 16
    assert {(m.path, m.role) for m in g.layers} == {
        ("conv1", "out"),
        ("bn1", "ch"),
        ("conv2", "in"),
    }
    assert [m.path for m in g.producers] == ["conv1"]
    assert g.name == "conv1"
    # Each unit is exactly one filter, the same index in the BN and the consumer.
    for path, role in (("conv1", "out"), ("bn1", "ch"), ("conv2", "in")):
        np.testing.assert_array_equal(member(g, path, role).unit_of_channel, np.arange(16))


def test_residual_add_puts_all_producers_in_one_group():
    groups = tfprune.channel_groups(ARCHITECTURES["residual"]())
    g = group_of(groups, "stem", "out")
    producers = sorted(m.path for m in g.producers)
    assert producers == ["b_conv2", "proj", "stem"]
    assert g.n_units == 12
    assert group_of(groups, "b_conv2") is g and group_of(groups, "proj") is g
    # The block's inner conv is a separate group.
    inner = group_of(groups, "b_conv1")
    assert inner is not g and inner.n_units == 12
    # Everything in the stream is coupled by index.
    for m in g.layers:
        np.testing.assert_array_equal(m.unit_of_channel, np.arange(12))
    assert len(g.segments) == 1


def test_concatenate_places_inputs_at_offsets():
    groups = tfprune.channel_groups(ARCHITECTURES["concat"]())
    g = group_of(groups, "ca")
    assert group_of(groups, "cb") is g
    after_in = member(g, "after", "in")
    ca, cb = member(g, "ca", "out"), member(g, "cb", "out")
    assert after_in.size == 16
    np.testing.assert_array_equal(after_in.unit_of_channel[:6], ca.unit_of_channel)
    np.testing.assert_array_equal(after_in.unit_of_channel[6:], cb.unit_of_channel)
    np.testing.assert_array_equal(member(g, "bnb", "ch").unit_of_channel, cb.unit_of_channel)
    assert g.n_units == 16
    # Two segments: the units produced by ca and those produced by cb.
    assert sorted(len(s) for s in g.segments) == [6, 10]


def test_depthwise_multiplier_two_couples_each_input_with_two_outputs():
    groups = tfprune.channel_groups(ARCHITECTURES["depthwise"]())
    g = group_of(groups, "pw0")
    assert g.n_units == 8
    dw_in = member(g, "dw", "in")
    np.testing.assert_array_equal(dw_in.unit_of_channel, np.arange(8))
    bn = member(g, "dw_bn", "ch")
    assert bn.size == 16
    np.testing.assert_array_equal(bn.unit_of_channel, np.repeat(np.arange(8), 2))
    pw1 = member(g, "pw1", "in")
    np.testing.assert_array_equal(pw1.unit_of_channel, np.repeat(np.arange(8), 2))


def test_separable_conv_consumes_and_produces():
    groups = tfprune.channel_groups(ARCHITECTURES["separable"]())
    g0 = group_of(groups, "c0")
    assert member(g0, "sep1", "in").size == 8 and g0.n_units == 8
    g1 = group_of(groups, "sep1")
    assert g1 is not g0 and g1.n_units == 12
    assert member(g1, "sep2", "in").size == 12


@pytest.mark.parametrize("groups_", [2, 4])
def test_grouped_conv_ties_positions_across_blocks(groups_):
    groups = tfprune.channel_groups(ARCHITECTURES[f"grouped{groups_}"]())
    g_in = group_of(groups, "c0")
    per_block = 16 // groups_
    # Position i of every block is one unit: 16 channels -> 16 / groups units.
    assert g_in.n_units == per_block
    gin = member(g_in, "gconv", "in")
    np.testing.assert_array_equal(gin.unit_of_channel, np.tile(np.arange(per_block), groups_))
    g_out = group_of(groups, "gconv")
    assert g_out.n_units == per_block
    assert _units(member(g_out, "c2", "in")) == per_block


@pytest.mark.parametrize(
    ("name", "producer", "consumer", "n"),
    [("conv1d", "c1", "c2", 12), ("conv3d", "c1", "c2", 8), ("transpose", "up", "c2", 10)],
)
def test_conv1d_conv3d_and_transpose_groups(name, producer, consumer, n):
    groups = tfprune.channel_groups(ARCHITECTURES[name]())
    g = group_of(groups, producer)
    assert g.n_units == n and g.prunable
    assert member(g, consumer, "in").size == n


def test_transpose_conv_consumes_its_input_channels():
    groups = tfprune.channel_groups(ARCHITECTURES["transpose"]())
    g = group_of(groups, "c1")
    assert member(g, "up", "in").size == 8 and g.n_units == 8


def test_flatten_dense_couples_channel_with_strided_rows():
    groups = tfprune.channel_groups(ARCHITECTURES["flatten_dense"]())
    g = group_of(groups, "c1")
    assert g.n_units == 8
    fc = member(g, "fc1", "in")
    assert fc.size == 32  # 2 * 2 * 8
    np.testing.assert_array_equal(fc.unit_of_channel, np.tile(np.arange(8), 4))
    # fc1's units are its own group, consumed by the output layer.
    g_fc = group_of(groups, "fc1")
    assert g_fc.n_units == 16 and g_fc.prunable


def test_pooling_dropout_padding_cropping_upsampling_pass_channels_through():
    groups = tfprune.channel_groups(ARCHITECTURES["padding"]())
    g = group_of(groups, "c1")
    assert g.prunable and g.n_units == 8
    assert member(g, "c2", "in").size == 8
    assert g.reasons == []


def test_shared_layer_called_twice():
    groups = tfprune.channel_groups(ARCHITECTURES["shared"]())
    g_in = group_of(groups, "c1")
    # Both calls of the shared conv read c1's channels: one "in" member.
    assert [m.path for m in g_in.layers if m.role == "in"] == ["shared"]
    g_out = group_of(groups, "shared")
    assert g_out.prunable and g_out.n_units == 8
    assert member(g_out, "c2", "in").size == 8


@pytest.mark.parametrize("name", sorted(NESTED_CROSSING))
def test_group_crosses_nested_model_boundary(name):
    groups = tfprune.channel_groups(NESTED_CROSSING[name]())
    g = group_of(groups, "outer_conv")
    inner_path = "inner/inner_conv" if name == "nested_functional" else "seq/seq_conv"
    paths = {m.path for m in g.layers}
    assert inner_path in paths, paths
    assert g.prunable and g.n_units == 10
    g2 = group_of(groups, inner_path)
    assert member(g2, "outer_conv2", "in").size == 12
    assert g2.prunable


def test_multi_input_multi_output_model():
    groups = tfprune.channel_groups(ARCHITECTURES["multi_io"]())
    # Model outputs are never prunable.
    for out in ("out_a", "out_b", "out_map"):
        g = group_of(groups, out)
        assert not g.prunable
        assert "model output" in g.reasons
    # Input channels are never prunable.
    g_in = group_of(groups, "c1", "in")
    assert not g_in.prunable and "model input" in g_in.reasons
    # c2 feeds GAP -> concat and the conv output layer: one group, still prunable.
    g = group_of(groups, "c2")
    assert member(g, "out_map", "in").size == 8
    assert member(g, "h", "in").size == 18
    assert g.prunable
    g_v = group_of(groups, "v1")
    assert g_v is g  # through the concat feeding h
    assert group_of(groups, "h").prunable


def test_squeeze_and_excitation_couples_gate_and_features():
    groups = tfprune.channel_groups(ARCHITECTURES["se"]())
    g = group_of(groups, "c1")
    assert group_of(groups, "se_expand") is g
    assert member(g, "se_reduce", "in").size == 16
    assert member(g, "c2", "in").size == 16
    assert g.prunable and g.n_units == 16
    assert group_of(groups, "se_reduce").prunable


def test_tf_op_layers_pass_channels_through():
    groups = tfprune.channel_groups(ARCHITECTURES["tfop"]())
    g = group_of(groups, "c1")
    assert g.prunable, g.reasons
    assert member(g, "c2", "in").size == 8
    assert g.reasons == []


def _blocked_between(make_middle, channels_out=8):
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="producer")(i)
    x = make_middle(x)
    x = L.Conv2D(channels_out, 1, name="consumer")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(2, name="out")(x)
    return keras.Model(i, o)


class _Unknown(keras.layers.Layer):
    """A custom layer tfprune cannot look inside: it computes with its own weight."""

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(int(input_shape[-1]),) * 2)

    def call(self, x):
        return keras.backend.dot(x, self.w)


BLOCKERS = {
    "lambda": (lambda x: L.Lambda(lambda t: t * 2.0, name="my_lambda")(x), "my_lambda"),
    "custom": (lambda x: _Unknown(name="my_custom")(x), "my_custom"),
    "reshape": (lambda x: L.Reshape((6, 12, 4), name="my_reshape")(x), "my_reshape"),
    "softmax": (lambda x: L.Softmax(axis=-1, name="my_softmax")(x), "my_softmax"),
}


@pytest.mark.parametrize("kind", sorted(BLOCKERS))
def test_unknown_or_channel_mixing_layer_blocks_and_explain_names_it(kind):
    make, name = BLOCKERS[kind]
    model = _blocked_between(make)
    groups = tfprune.channel_groups(model)
    g = group_of(groups, "producer")
    assert not g.prunable
    assert g.prunable_units.size == 0
    assert any(name in r for r in g.reasons), g.reasons
    report = tfprune.explain(model)
    assert any(name in r for r in report.blocking_layers), report.blocking_layers
    assert name in str(report)
    row = next(r for r in report.rows if "producer" in r["producers"])
    assert row["prunable"] is False and row["prunable_units"] == 0


def test_softmax_over_spatial_axis_does_not_block():
    model = _blocked_between(lambda x: L.Softmax(axis=1)(x))
    g = group_of(tfprune.channel_groups(model), "producer")
    assert g.prunable


def test_reshape_that_keeps_channels_does_not_block():
    model = _blocked_between(lambda x: L.Reshape((36, 1, 8))(x))
    assert group_of(tfprune.channel_groups(model), "producer").prunable


def test_unknown_tf_op_blocks():
    model = _blocked_between(lambda x: tf.math.cumsum(x, axis=-1))
    g = group_of(tfprune.channel_groups(model), "producer")
    assert not g.prunable
    assert any("cumsum" in r for r in g.reasons), g.reasons


def test_blocked_group_is_left_alone_by_prune_filters():
    model = _blocked_between(BLOCKERS["lambda"][0])
    # consumer -> out is still prunable; producer is blocked by the Lambda.
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("producer").filters == 8
    assert small.get_layer("consumer").filters == 4


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_model_output_layer_is_never_pruned(name):
    model = ARCHITECTURES[name]()
    groups = tfprune.channel_groups(model)
    for t in model.outputs:
        layer = t._keras_history.layer
        g = group_of(groups, layer.name, "out")
        assert not g.prunable
        assert "model output" in g.reasons
    small = tfprune.strip_filters(tfprune.prune_filters(model, 0.9))
    assert [tuple(o.shape) for o in small.outputs] == [tuple(o.shape) for o in model.outputs]


def test_explain_report_fields_and_dict():
    model = ARCHITECTURES["residual"]()
    report = tfprune.explain(model)
    d = report.to_dict()
    assert set(d) >= {"groups", "prunable_fraction"}
    # Counted in filters of producing layers: the residual stream is written by three convs
    # (stem, b_conv2, proj: 3 x 12 filters, prunable), b_conv1 has 12 (prunable), the output
    # Dense 3 (never pruned).
    assert report.prunable_fraction == pytest.approx(48 / 51)
    assert 0 < report.prunable_fraction < 1
    assert "prunable" in str(report) and "BLOCKED" in str(report)
    assert report.blocking_layers == []
    # The input image's channels: named by who uses them, not as if the stem produced them.
    input_line = next(line for line in str(report).splitlines() if "no producing layer" in line)
    assert "BLOCKED: no producing layer; used by" in input_line and "stem" in input_line


def test_group_repr_and_name_are_readable():
    g = group_of(tfprune.channel_groups(ARCHITECTURES["residual"]()), "stem")
    assert "stem" in g.name
    assert "prunable" in repr(g)
