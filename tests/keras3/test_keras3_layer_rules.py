"""Keras 3 convolutions, attention, embeddings, norms and RNNs: the groups and FLOPs of the twin.

Each architecture is built once per flavour by the same builder (``build(keras_module)``), so
the two models differ only in the Keras that built them.
"""

from __future__ import annotations

import pytest
from keras3_twins import bidirectional, encoder

import tfprune
from tfprune import compat
from tfprune.compat import keras

K3 = compat.keras3()


def conv_1d_3d(k):
    L = k.layers
    x = k.Input((9, 7, 5, 2), name="volume")
    h = L.Conv3D(4, 3, padding="same", name="c3d")(x)
    h = L.Reshape((9, 7 * 5 * 4), name="to_seq")(h)
    h = L.Conv1D(6, 3, name="c1d")(h)
    h = L.SeparableConv1D(5, 3, depth_multiplier=2, name="sep1d")(h)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    return k.Model(x, L.Dense(3, name="head")(h), name="conv_1d_3d")


def transposed(k):
    L = k.layers
    x = k.Input((6, 6, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="enc")(x)
    h = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="up2d")(h)
    h = L.Conv2D(4, 1, name="mix")(h)
    s = L.Reshape((12, 12 * 4), name="rows")(h)
    s = L.Conv1DTranspose(5, 3, strides=2, name="up1d")(s)
    z = k.Input((3, 4, 4, 2), name="volume")
    v = L.Conv3D(3, 1, name="pre3d")(z)
    v = L.Conv3DTranspose(2, 2, strides=2, name="up3d")(v)
    a = L.GlobalMaxPooling1D(name="gmp")(s)
    b = L.GlobalAveragePooling3D(name="gap3d")(v)
    y = L.Dense(2, name="head")(L.Concatenate(name="cat")([a, b]))
    return k.Model([x, z], y, name="transposed")


def text_rnn(k):
    L = k.layers
    x = k.Input((10,), dtype="int32", name="ids")
    h = L.Embedding(50, 8, name="emb")(x)
    h = L.LSTM(6, return_sequences=True, name="lstm")(h)
    h = L.GRU(5, return_sequences=True, name="gru")(h)
    h = L.SimpleRNN(4, name="rnn")(h)
    return k.Model(x, L.Dense(2, name="head")(h), name="text_rnn")


def group_norms(k):
    L = k.layers
    x = k.Input((8, 8, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="per_channel")(x)
    h = L.GroupNormalization(groups=-1, name="gn_instance")(h)
    h = L.Conv2D(8, 3, padding="same", name="grouped")(h)
    h = L.GroupNormalization(groups=2, name="gn_two")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return k.Model(x, L.Dense(2, name="head")(h), name="group_norms")


BUILDERS = [
    conv_1d_3d,
    transposed,
    encoder,
    text_rnn,
    group_norms,
    bidirectional("concat"),
    bidirectional("ave"),
]


@pytest.mark.parametrize("builder", BUILDERS)
def test_groups_and_flops_equal_the_tf_keras_twin(builder):
    twin, m3 = builder(keras), builder(K3)
    report, want = tfprune.explain(m3), tfprune.explain(twin)
    assert report.to_dict() == want.to_dict()
    assert not report.opaque and report.prunable_fraction > 0.4
    for count in (tfprune.count_flops, tfprune.count_params):
        got, expected = count(m3), count(twin)
        assert dict(got.per_layer) == dict(expected.per_layer)
        assert got.total == expected.total > 0 and not got.uncounted


def _groups_by_producer(model):
    return {tuple(sorted(m.path for m in g.producers)): g for g in tfprune.channel_groups(model)}


def test_attention_prunes_heads_and_feed_forward_units_and_blocks_split_einsum():
    groups = _groups_by_producer(encoder(K3))
    heads = next(g for key, g in groups.items() if "mha" in key and g.n_units == 4)
    assert heads.prunable
    assert {(m.path, m.role) for m in heads.layers} >= {("mha", "head")}
    assert groups[("ff_in",)].prunable and groups[("ff_in",)].n_units == 32
    # The residual stream: embed, the attention output and ff_out are added together.
    stream = groups[("embed", "ff_out", "mha")]
    assert stream.prunable and stream.n_units == 16
    # ed's 12 units are concatenated with the 6 that the split einsum writes (blocked).
    ed = groups[("ed",)]
    assert ed.prunable and ed.n_units == 18 and ed.prunable_units.size == 12
    assert any("'merge' mixes the channel axis" in r for r in ed.reasons)
    # The split einsum's own outputs are never pruned.
    assert "no group covers (never pruned): ed_split" in str(tfprune.explain(encoder(K3)))


def test_recurrent_units_and_embedding_columns_are_prunable():
    groups = _groups_by_producer(text_rnn(K3))
    for name, units in (("emb", 8), ("lstm", 6), ("gru", 5), ("rnn", 4)):
        assert groups[(name,)].prunable and groups[(name,)].n_units == units, name


def test_group_norm_prunes_one_channel_groups_and_blocks_shared_ones():
    groups = _groups_by_producer(group_norms(K3))
    assert groups[("per_channel",)].prunable
    assert ("gn_instance", "ch") in {(m.path, m.role) for m in groups[("per_channel",)].layers}
    shared = groups[("grouped",)]
    assert not shared.prunable and any("2 groups" in r for r in shared.reasons)


class SquaredAttention(K3.layers.MultiHeadAttention):
    def call(self, query, value, key=None, **kwargs):
        return super().call(query, value, key, **kwargs) ** 2


class DoubledLSTM(K3.layers.LSTM):
    def call(self, sequences, initial_state=None, mask=None, training=False):
        return super().call(sequences, initial_state, mask, training) * 2.0


@pytest.mark.parametrize(
    ("make", "blocked"),
    [
        (lambda h: SquaredAttention(num_heads=2, key_dim=3, name="custom")(h, h), True),
        (lambda h: DoubledLSTM(4, return_sequences=True, name="custom")(h), True),
        # The stock layers as the control: their rules vouch for them.
        (lambda h: K3.layers.MultiHeadAttention(2, 3, name="custom")(h, h), False),
        (lambda h: K3.layers.LSTM(4, return_sequences=True, name="custom")(h), False),
    ],
)
def test_subclasses_overriding_call_block(make, blocked):
    x = K3.Input((5, 6), name="seq")
    h = K3.layers.Dense(6, name="proj")(x)
    y = make(h)
    model = K3.Model(x, K3.layers.Dense(2, name="head")(K3.layers.Flatten()(y)))
    proj = _groups_by_producer(model)[("proj",)]
    assert proj.prunable is not blocked
    if blocked:
        # Looked inside (no weights of its own) or not: what it computes blocks, with a reason.
        assert any("'custom" in r for r in proj.reasons), proj.reasons
