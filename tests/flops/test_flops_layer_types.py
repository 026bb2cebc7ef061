"""FLOPs of recurrent, attention, embedding, wrapper and locally connected layers, by hand.

Every count below is written out from the layer's definition (MACs per example, batch excluded),
and a model with a layer nobody can count reports a lower bound instead of a flattering total.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tfprune
from tfprune.compat import keras, tf
from tfprune.errors import UnsupportedModelError
from tfprune.flops import CountRatio, count_flops, count_params, speedup

L = keras.layers


def _one(shape, layer, dtype="float32"):
    x = keras.Input(shape, dtype=dtype)
    return keras.Model(x, layer(x))


@pytest.mark.parametrize(
    ("make", "gates"),
    [(L.SimpleRNN, 1), (L.GRU, 3), (L.LSTM, 4)],
    ids=["simple_rnn", "gru", "lstm"],
)
def test_recurrent_layers_count_every_gate_at_every_step(make, gates):
    steps, features, units = 7, 5, 6
    model = _one((steps, features), make(units, name="rnn"))
    flops = count_flops(model)
    # Per step and gate: input kernel (features x units) plus recurrent kernel (units x units).
    assert flops.per_layer["rnn"] == steps * gates * (features * units + units * units)
    assert not flops.is_lower_bound


def test_recurrent_layer_elementwise_adds_bias_and_activation_per_gate():
    model = _one((4, 3), L.LSTM(2, name="rnn"))
    plain = count_flops(model, unit="flops").per_layer["rnn"]
    with_ops = count_flops(model, unit="flops", include_elementwise=True).per_layer["rnn"]
    assert with_ops - plain == 2 * 4 * 2 * 4  # (bias add + activation) * gates * units * steps


def test_recurrent_layer_with_unknown_length_asks_for_input_shapes():
    model = _one((None, 3), L.GRU(2, name="rnn"))
    with pytest.raises(UnsupportedModelError, match="sequence length"):
        count_flops(model)
    assert count_flops(model, input_shapes=[(10, 3)]).per_layer["rnn"] == 10 * 3 * 2 * (3 + 2)


def test_bidirectional_counts_both_directions():
    model = _one((9, 4), L.Bidirectional(L.LSTM(3), name="bi"))
    assert count_flops(model).per_layer["bi"] == 2 * 9 * 4 * 3 * (4 + 3)


def test_time_distributed_conv_counts_every_step():
    model = _one((5, 6, 6, 2), L.TimeDistributed(L.Conv2D(4, 3), name="td"))
    assert count_flops(model).per_layer["td"] == 5 * (4 * 4) * (3 * 3 * 2 * 4)


def test_multi_head_attention_counts_projections_scores_and_weighted_sum():
    tq, tv, d_q, d_v, heads, key_dim, value_dim = 6, 9, 8, 10, 2, 4, 3
    q, v = keras.Input((tq, d_q)), keras.Input((tv, d_v))
    mha = L.MultiHeadAttention(heads, key_dim, value_dim=value_dim, name="mha")
    model = keras.Model([q, v], mha(q, v))
    expected = (
        tq * d_q * heads * key_dim  # query projection
        + tv * d_v * heads * key_dim  # key projection (key defaults to value)
        + tv * d_v * heads * value_dim  # value projection
        + tq * heads * value_dim * d_q  # output projection back to the query's width
        + heads * tq * tv * key_dim  # Q K^T
        + heads * tq * tv * value_dim  # attention-weighted sum of values
    )
    flops = count_flops(model)
    assert flops.per_layer["mha"] == expected
    assert not flops.is_lower_bound


@pytest.mark.parametrize("make", [L.Attention, L.AdditiveAttention])
def test_dot_product_attention_counts_scores_and_weighted_sum(make):
    q, v = keras.Input((6, 4)), keras.Input((9, 4))
    model = keras.Model([q, v], make(name="att")([q, v]))
    flops = count_flops(model)
    assert flops.per_layer["att"] == 6 * 9 * (4 + 4) and not flops.is_lower_bound


def test_preprocessing_layers_are_free_and_known():
    x = keras.Input((4, 4, 3))
    h = L.Normalization(mean=0.5, variance=2.0)(L.Rescaling(1 / 255)(x))
    flops = count_flops(keras.Model(x, L.Conv2D(2, 1)(h)))
    assert flops.total == 16 * 3 * 2 and flops.uncounted == ()


@pytest.mark.parametrize(
    ("equation", "output_shape"),
    [("abc,cd->abd", (None, 6)), ("...b,bc->...c", 6), ("abc,cde->abde", (None, 2, 3))],
)
def test_einsum_dense_counts_one_mac_per_index_combination(equation, output_shape):
    model = _one((5, 8), L.EinsumDense(equation, output_shape=output_shape, name="ed"))
    out = int(np.prod(model.outputs[0].shape[1:]))
    assert count_flops(model).per_layer["ed"] == out * 8  # every output element sums over c


def test_embedding_costs_no_macs_but_its_table_is_counted_in_params():
    model = _one((12,), L.Embedding(50, 8, name="emb"), dtype="int32")
    flops = count_flops(model)
    assert flops.per_layer["emb"] == 0 and not flops.is_lower_bound
    assert count_params(model).per_layer["emb"] == 50 * 8


def test_locally_connected_counts_one_mac_per_weight_per_position():
    m2 = _one((6, 6, 2), L.LocallyConnected2D(3, 3, name="lc"))
    assert count_flops(m2).per_layer["lc"] == (4 * 4) * (3 * 3 * 2) * 3
    m1 = _one((10, 4), L.LocallyConnected1D(5, 3, strides=2, name="lc"))
    assert count_flops(m1).per_layer["lc"] == 4 * 3 * 4 * 5


def test_matmul_of_activations_is_counted():
    a = keras.Input((4, 6))
    b = keras.Input((6, 5))
    model = keras.Model([a, b], tf.matmul(a, b))
    flops = count_flops(model)
    assert flops.total == 4 * 5 * 6 and not flops.is_lower_bound


def test_layer_norm_and_normalisation_layers_are_known_and_free():
    x = keras.Input((5, 8))
    y = L.LayerNormalization()(L.Dense(8)(x))
    flops = count_flops(keras.Model(x, y))
    assert flops.total == 5 * 8 * 8 and flops.uncounted == ()


def test_tfmot_pruning_wrapper_costs_what_it_wraps():
    model = _one((7,), tfmot.sparsity.keras.prune_low_magnitude(L.Dense(3, name="d")))
    flops = count_flops(model)
    assert flops.per_layer["prune_low_magnitude_d"] == 7 * 3 and not flops.is_lower_bound


class _Block(L.Layer):
    """A custom layer made of a Dense: count_flops looks inside it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = L.Dense(4)

    def call(self, x):
        return self.inner(x)


class _OwnWeights(L.Layer):
    """A custom layer that multiplies by its own weight: it cannot be looked inside."""

    def build(self, shape):
        self.w = self.add_weight(name="w", shape=(int(shape[-1]), 4))

    def call(self, x):
        return tf.matmul(x, self.w)


def _custom_block_model():
    x = keras.Input((3,))
    return keras.Model(x, L.Dense(2, name="head")(_OwnWeights(name="blk")(x)))


def test_custom_layer_is_looked_inside_and_counted_exactly():
    x = keras.Input((3,))
    flops = count_flops(keras.Model(x, L.Dense(2, name="head")(_Block(name="blk")(x))))
    assert not flops.is_lower_bound and flops.uncounted == ()
    assert flops.total == 3 * 4 + 4 * 2
    assert sum(v for k, v in flops.per_layer.items() if k.startswith("blk/")) == 3 * 4


def test_uncounted_layer_makes_total_a_lower_bound_and_says_so():
    flops = count_flops(_custom_block_model())
    assert flops.uncounted == ("blk",)
    assert flops.is_lower_bound
    assert flops.total == 4 * 2  # only the head is counted
    assert "LOWER BOUND" in str(flops)
    assert flops.to_dict()["is_lower_bound"] is True


def test_speedup_from_lower_bound_counts_carries_the_uncounted_layers_or_raises():
    model = _custom_block_model()
    ratio = speedup(model, model)
    assert isinstance(ratio, CountRatio) and float(ratio) == 1.0
    assert not ratio.is_exact and ratio.uncounted == ("blk",)
    assert "lower-bound" in repr(ratio)
    with pytest.raises(UnsupportedModelError, match="blk"):
        speedup(model, model, strict=True)
    exact = speedup(10, 4, strict=True)
    assert exact == 2.5 and exact.is_exact and repr(exact) == "2.5"


def test_explain_counts_every_filter_of_the_model_in_its_denominator():
    # 4 unseen filters inside the custom block, 2 blocked output units: nothing prunable.
    x = keras.Input((3,))
    h = L.Dense(6, name="visible")(x)
    h = _Block(name="blk")(h)
    model = keras.Model(x, L.Dense(2, name="head")(h))
    report = tfprune.explain(model)
    seen = sum(r["channels"] for r in report.rows)
    assert report.total_filters == seen + sum(report.unseen_filters.values())
    assert report.total_filters >= 6 + 4 + 2
    free = sum(r["prunable_channels"] for r in report.rows)
    assert report.prunable_fraction == pytest.approx(free / report.total_filters)
    assert np.isfinite(report.prunable_fraction)
