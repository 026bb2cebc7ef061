"""Rules for layer types users have: recurrent units, wrappers, locally connected, tf.split.

Each prunable family is checked the same way: the stripped model computes what the masked one
computes (relative error <= 1e-5), is smaller, and counts fewer FLOPs. Families tfprune cannot
prune yet block with a reason that names the layer.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tfprune
from tfprune.compat import keras, tf
from tfprune.errors import IncompatiblePlanError

L = keras.layers


def _inputs(model, seed=1):
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        shape = (3, *t.shape[1:])
        if t.dtype.is_integer:
            xs.append(rng.integers(0, 20, shape).astype(t.dtype.as_numpy_dtype))
        else:
            xs.append(rng.standard_normal(shape).astype("float32"))
    return xs


def _rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def _check(model, sparsity=0.5):
    """Prune + strip; asserts masked == stripped, fewer params and FLOPs. Returns both."""
    masked = tfprune.prune_filters(model, sparsity)
    small = tfprune.strip_filters(masked)
    xs = _inputs(model)
    err = _rel_err(masked(xs), small(xs))
    assert err <= 1e-5, err
    assert small.count_params() < model.count_params()
    assert tfprune.count_flops(small).total < tfprune.count_flops(model).total
    return masked, small


def _check_export(masked, small, tmp_path):
    """The stripped one-input model exports, and its reload computes what the masked one does."""
    xs = _inputs(small)
    path = tfprune.export_saved_model(small, tmp_path / "export")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    (got,) = serve(**{small.input_names[0]: tf.constant(xs[0])}).values()
    assert _rel_err(masked(xs), got.numpy()) <= 1e-5


def _text_classifier():
    keras.utils.set_random_seed(0)
    x = keras.Input((12,), dtype="int32")
    h = L.Embedding(20, 16, name="emb")(x)
    h = L.LSTM(10, return_sequences=True, name="lstm")(h)
    h = L.GRU(8, return_sequences=True, name="gru")(h)
    h = L.SimpleRNN(6, name="rnn")(h)
    return keras.Model(x, L.Dense(3, name="head")(h))


def test_lstm_gru_simple_rnn_text_classifier_prunes_units_exactly():
    model = _text_classifier()
    report = tfprune.explain(model)
    assert report.prunable_fraction > 0.9
    _, small = _check(model)
    assert [small.get_layer(n).units for n in ("lstm", "gru", "rnn")] == [5, 4, 3]
    assert small.get_layer("emb").output_dim == 8
    assert all(type(layer).__module__.startswith("tf_keras.") for layer in small.layers)


def test_masked_lstm_trains_with_pruned_units_kept_out():
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), dtype="int32")
    h = L.LSTM(8, name="lstm")(L.Embedding(20, 4)(x))
    model = keras.Model(x, L.Dense(2)(h))
    masked = tfprune.prune_filters(model, 0.5)
    assert type(masked.get_layer("lstm")).__name__ == "MaskedLSTM"
    masked.compile("sgd", "mse", run_eagerly=True)
    xs = _inputs(model, seed=3)
    before = masked.get_layer("lstm").cell.mask.numpy().copy()
    masked.fit(xs[0], np.ones((3, 2), "float32"), epochs=1, verbose=0)
    assert np.array_equal(masked.get_layer("lstm").cell.mask.numpy(), before)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("lstm").units == 4
    # The masked layer serialises like any Keras layer and comes back with its masked cell.
    copy = keras.layers.deserialize(
        keras.layers.serialize(masked.get_layer("lstm")), custom_objects=tfprune.custom_objects()
    )
    assert type(copy).__name__ == "MaskedLSTM" and type(copy.cell).__name__ == "MaskedLSTMCell"
    assert _rel_err(masked(xs), small(xs)) <= 1e-5


def _gate_columns(units, n_units):
    """Columns of ``units`` in a kernel whose last axis stacks the 4 LSTM gates."""
    return (np.arange(4)[:, None] * n_units + np.asarray(units)[None, :]).reshape(-1)


def _conv_lstm_model(conv_lstm, conv, frames, filters=8):
    keras.utils.set_random_seed(0)
    x = keras.Input((5, *frames, 3))
    h = L.TimeDistributed(conv(4, 1), name="stem")(x)
    h = conv_lstm(filters, 3, padding="same", return_sequences=True, name="cl")(h)
    h = conv_lstm(6, 3, name="cl2")(h)
    pool = L.GlobalAveragePooling2D() if len(frames) == 2 else L.GlobalAveragePooling1D()
    return keras.Model(x, L.Dense(2, name="head")(pool(h)))


@pytest.mark.parametrize(
    "conv_lstm, conv, frames",
    [(L.ConvLSTM2D, L.Conv2D, (6, 6)), (L.ConvLSTM1D, L.Conv1D, (7,))],
)
def test_conv_lstm_prunes_the_filters_its_importance_keeps_exactly(
    conv_lstm, conv, frames, tmp_path
):
    model = _conv_lstm_model(conv_lstm, conv, frames)
    layer = model.get_layer("cl")
    report = tfprune.explain(model)
    assert report.total_filters == 4 + 8 + 6 + 2 and report.prunable_fraction == 18 / 20
    # Odd filters get tiny gate columns (every gate, input and recurrent kernels): L1 keeps
    # the even ones.
    tiny = _gate_columns([1, 3, 5, 7], 8)
    kernel, recurrent, bias = layer.get_weights()
    kernel[..., tiny] *= 1e-3
    recurrent[..., tiny] *= 1e-3
    layer.set_weights([kernel, recurrent, bias])
    masked, small = _check(model)
    cl = small.get_layer("cl")
    assert type(cl) is conv_lstm and cl.filters == 4 and small.get_layer("cl2").filters == 3
    kept = _gate_columns([0, 2, 4, 6], 8)
    kept_stem = np.flatnonzero(masked.get_layer("stem_chmask").mask.numpy())
    want = kernel[..., kept][..., kept_stem, :]
    np.testing.assert_array_equal(cl.get_weights()[0], want)
    np.testing.assert_array_equal(cl.get_weights()[1], recurrent[..., [0, 2, 4, 6], :][..., kept])
    steps, positions, taps = 5, int(np.prod(frames)), 3 ** len(frames)
    flops = tfprune.count_flops(small).per_layer
    assert flops["cl"] == steps * positions * taps * (2 + 4) * 4 * 4
    _check_export(masked, small, tmp_path)


def test_masked_conv_lstm_trains_serialises_and_keeps_pruned_state_out():
    model = _conv_lstm_model(L.ConvLSTM2D, L.Conv2D, (4, 4))
    masked = tfprune.prune_filters(model, {"cl": 0.5})
    layer = masked.get_layer("cl")
    assert type(layer).__name__ == "MaskedConvLSTM2D"
    before = layer.cell.mask.numpy().copy()
    assert before.sum() == 4
    masked.compile("sgd", "mse")
    xs = _inputs(model, seed=3)
    masked.fit(xs[0], np.ones((3, 2), "float32"), epochs=1, verbose=0)
    assert np.array_equal(layer.cell.mask.numpy(), before)
    copy = keras.layers.deserialize(
        keras.layers.serialize(layer), custom_objects=tfprune.custom_objects()
    )
    assert type(copy).__name__ == "MaskedConvLSTM2D"
    assert type(copy.cell).__name__ == "MaskedConvLSTMCell"
    small = tfprune.strip_filters(masked)
    assert small.get_layer("cl").filters == 4
    assert _rel_err(masked(xs), small(xs)) <= 1e-5


def test_recurrent_layer_called_with_initial_state_blocks_with_a_reason():
    x = keras.Input((4, 3))
    s = keras.Input((5,))
    y = L.GRU(5, name="gru")(x, initial_state=s)
    model = keras.Model([x, s], L.Dense(2)(y))
    reasons = [r for row in tfprune.explain(model).rows for r in row["reasons"]]
    assert any("'gru'" in r and "states" in r for r in reasons), reasons


def test_time_distributed_conv_and_dense_prune_through_the_wrapper():
    keras.utils.set_random_seed(0)
    x = keras.Input((4, 6, 6, 3))
    h = L.TimeDistributed(L.Conv2D(8, 3), name="td_conv")(x)
    h = L.TimeDistributed(L.Flatten(), name="td_flat")(h)
    h = L.TimeDistributed(L.Dense(7, activation="relu"), name="td_dense")(h)
    h = L.LSTM(5, name="lstm")(h)
    model = keras.Model(x, L.Dense(2)(h))
    _, small = _check(model)
    assert small.get_layer("td_conv").layer.filters == 4
    assert small.get_layer("td_dense").layer.units == 3


def test_tfmot_prune_low_magnitude_wrapper_prunes_filters_through_it():
    keras.utils.set_random_seed(0)
    plm = tfmot.sparsity.keras.prune_low_magnitude
    x = keras.Input((10,))
    h = plm(L.Dense(12, activation="relu", name="d1"))(x)
    h = plm(L.Dense(6, name="d2"))(h)
    model = keras.Model(x, L.Dense(2)(h))
    _, small = _check(model)
    wrapped = small.get_layer("prune_low_magnitude_d1")
    assert type(wrapped).__name__ == "PruneLowMagnitude" and wrapped.layer.units == 6
    # Its sparsity mask is sliced with the kernel it masks.
    masks = [v for v in wrapped.weights if v.name.endswith("/mask:0")]
    assert masks and tuple(masks[0].shape) == (10, 6)


def test_quantize_wrapper_blocks_and_says_to_prune_before_quantizing():
    x = keras.Input((6,))
    h = L.Dense(8, name="d1")(x)
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    model = keras.Model(x, L.Dense(2, name="d2")(annotate(L.Dense(4, name="q"))(h)))
    q_model = tfmot.quantization.keras.quantize_apply(model)
    reasons = [r for row in tfprune.explain(q_model).rows for r in row["reasons"]]
    assert any("quantiz" in r and "prune the float model first" in r for r in reasons)


def test_locally_connected_1d_and_2d_prune_filters_and_input_channels():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, name="conv")(x)
    h = L.LocallyConnected2D(5, 3, activation="relu", name="lc2")(h)
    h = L.Reshape((16, 5))(h)
    h = L.LocallyConnected1D(4, 3, name="lc1")(h)
    model = keras.Model(x, L.Dense(2)(L.Flatten()(h)))
    _, small = _check(model)
    assert small.get_layer("lc2").filters == 2 and small.get_layer("lc1").filters == 2


def test_split_on_channels_prunes_each_part_alike_and_concat_undoes_it():
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 3, padding="same", name="conv")(x)
    a, b = tf.split(h, 2, axis=-1)
    a = L.Conv2D(5, 1, name="after_a")(a)
    h = tf.concat([L.ReLU()(b), a], axis=-1)
    model = keras.Model(x, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    _, small = _check(model)
    assert small.get_layer("conv").filters % 2 == 0 and small.get_layer("conv").filters < 8


def test_split_into_fixed_sizes_on_channels_blocks():
    x = keras.Input((6,))
    h = L.Dense(6, name="d")(x)
    a, b = tf.split(h, [2, 4], axis=-1)
    model = keras.Model(x, [L.Dense(1)(a), L.Dense(1)(b)])
    row = next(r for r in tfprune.explain(model).rows if "d" in r["producers"])
    assert not row["prunable"] and any("fixed sizes" in r for r in row["reasons"])


def test_tile_along_space_keeps_channels_and_tile_of_channels_blocks():
    keras.utils.set_random_seed(0)
    x = keras.Input((3, 3, 2))
    h = L.Conv2D(8, 1, name="conv")(x)
    h = tf.tile(h, [1, 2, 2, 1])  # a 6x6 map of the same 8 channels
    model = keras.Model(x, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    _, small = _check(model)
    assert small.get_layer("conv").filters == 4
    assert tfprune.count_flops(model).is_lower_bound is False

    y = keras.Input((4,))
    d = L.Dense(6, name="d")(y)
    tiled = keras.Model(y, L.Dense(1)(tf.tile(d, [1, 2])))
    row = next(r for r in tfprune.explain(tiled).rows if "d" in r["producers"])
    assert not row["prunable"] and any(
        "repeats the channel axis 2 times" in r for r in row["reasons"]
    )


def test_reshape_with_a_written_out_channel_count_is_rewritten_when_stripped():
    keras.utils.set_random_seed(0)
    x = keras.Input((4, 4, 2))
    h = L.Conv2D(8, 1, name="conv")(x)
    for shape in ([-1, 16, 8], [tf.shape(h)[0], 16, 8]):  # all constant, or a constant count
        model = keras.Model(x, L.Dense(2)(tf.reshape(h, shape)))
        _, small = _check(model)
        assert small.get_layer("conv").filters == 4
    # Nearest upsampling as reshape + tile + reshape (Model Garden's SpineNet), constants or
    # channels read at run time, prunes.
    for channels in (lambda g: 8, lambda g: tf.shape(g)[-1]):
        y = keras.Input((4, 4, 2))
        g = L.Conv2D(8, 1, name="conv")(y)
        u = tf.reshape(g, [-1, 4, 1, 4, 1, channels(g)])
        u = tf.reshape(tf.tile(u, [1, 1, 2, 1, 2, 1]), [-1, 8, 8, channels(g)])
        model = keras.Model(y, L.Dense(2)(L.GlobalAveragePooling2D()(u)))
        _, small = _check(model)
        assert small.get_layer("conv").filters == 4


def test_reshape_that_moves_channels_to_another_axis_blocks():
    x = keras.Input((4, 4, 2))
    h = L.Conv2D(8, 1, name="conv")(x)
    model = keras.Model(x, L.Dense(2)(L.Flatten()(tf.reshape(h, [-1, 8, 16]))))
    row = next(r for r in tfprune.explain(model).rows if "conv" in r["producers"])
    assert not row["prunable"]
    assert any("reshape" in r and "(16)" in r for r in row["reasons"]), row["reasons"]


def test_blocked_reshape_is_replayed_as_recorded_when_another_group_is_stripped(tmp_path):
    # MobileNetV4-HybridMedium's attention: a reshape that splits 256 filters into 4 x 64
    # blocks them; stripping the prunable stem must not write 256 into that reshape.
    keras.utils.set_random_seed(0)
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(8, 1, name="stem")(x)
    q = tf.reshape(L.Conv2D(256, 1, name="q")(h), [-1, 16, 4, 64])
    k = tf.reshape(L.Conv2D(64, 1, name="k")(h), [-1, 16, 64])
    a = tf.einsum("blhk,bpk->blhp", q, k)
    model = keras.Model(x, L.Dense(3)(L.Flatten()(a)))
    masked, small = _check(model)
    assert small.get_layer("stem").filters == 4
    assert small.get_layer("q").filters == 256 and small.get_layer("k").filters == 64
    _check_export(masked, small, tmp_path)


def _vit_like():
    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    h = L.Conv2D(16, 4, strides=4, name="patches")(x)
    h = L.Reshape((16, 16))(h)
    for i in range(2):
        a = L.LayerNormalization(name=f"ln{i}a")(h)
        h = L.Add()([h, L.MultiHeadAttention(2, 8, name=f"mha{i}")(a, a)])
        m = L.LayerNormalization(name=f"ln{i}b")(h)
        m = L.Dense(32, activation="gelu", name=f"mlp{i}_up")(m)
        h = L.Add()([h, L.Dense(16, name=f"mlp{i}_down")(m)])
    return keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling1D()(h)))


def test_vit_like_model_prunes_its_mlp_units_and_counts_attention():
    model = _vit_like()
    flops = tfprune.count_flops(model)
    assert not flops.is_lower_bound and flops.per_layer["mha0"] > 0
    _, small = _check(model)
    assert small.get_layer("mlp0_up").units == 16


def _einsum_ffn(output_shape=(None, 32)):
    """A transformer feed-forward block written with EinsumDense, as Model Garden writes it."""
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 16))
    h = L.EinsumDense(
        "abc,cd->abd",
        output_shape=output_shape,
        bias_axes="d",
        activation=lambda t: tf.nn.gelu(t, approximate=True),  # as Model Garden's blocks
        name="ffn_in",
    )(x)
    o = L.EinsumDense("abc,cd->abd", output_shape=(None, 16), bias_axes="d", name="ffn_out")(h)
    h = L.LayerNormalization()(L.Add()([x, o]))
    return keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling1D()(h)))


@pytest.mark.parametrize("output_shape", [(None, 32), [None, 32]])
def test_einsum_dense_feed_forward_prunes_its_units(output_shape):
    model = _einsum_ffn(output_shape)
    report = tfprune.explain(model)
    (row,) = [r for r in report.rows if r["prunable"]]
    assert row["units"] == 32 and "ffn_in" in row["name"]
    _, small = _check(model)
    assert small.get_layer("ffn_in").kernel.shape == (16, 16)
    assert list(small.get_layer("ffn_in").get_config()["output_shape"])[-1] == 16
    assert small.get_layer("ffn_out").kernel.shape == (16, 16)


def test_einsum_dense_with_another_equation_blocks_and_counts_its_outputs():
    x = keras.Input((4, 6))
    h = L.EinsumDense("abc,cde->abde", output_shape=(None, 2, 5), name="heads")(x)
    model = keras.Model(x, L.Dense(3)(L.Flatten()(h)))
    report = tfprune.explain(model)
    reasons = [r for row in report.rows for r in row["reasons"]]
    assert any("'abc,cde->abde'" in r and "heads" in r for r in reasons)
    assert report.unseen_filters == {"heads": 5} and report.total_filters == 5 + 3


def test_attention_heads_are_filters_and_projections_are_not_counted_twice():
    model = _vit_like()
    report = tfprune.explain(model)
    # Each MultiHeadAttention's filters are its 2 heads and its 16 output units; the
    # query/key/value/output projections (EinsumDense layers inside it) are not counted again.
    assert report.unseen_filters == {}
    assert report.total_filters == 16 + 2 * (2 + 16 + 32 + 16) + 3
    heads = [r for r in report.rows if r["producers"] in (["mha0"], ["mha1"])]
    assert [(r["units"], r["prunable"]) for r in heads] == [(2, True), (2, True)]
    # Key and value dimensions are groups of their own, named as such (not filters).
    assert "key dimensions inside mha0" in str(report)
    assert "value dimensions inside mha1" in str(report)


def test_attention_heads_and_hidden_width_prune_exactly():
    model = _vit_like()
    masked, small = _check(model)
    assert type(masked.get_layer("mha0")).__name__ == "MaskedMultiHeadAttention"
    for name in ("mha0", "mha1"):
        config = small.get_layer(name).get_config()
        assert config["num_heads"] == 1 and config["output_shape"] == 8
        assert config["key_dim"] == config["value_dim"] == 4
        assert small.get_layer(name).get_weights()[0].shape == (8, 1, 4)
    assert small.get_layer("patches").filters == 8
    assert all(type(layer).__module__.startswith("tf_keras.") for layer in small.layers)
    flops = tfprune.count_flops(small)
    assert (
        not flops.is_lower_bound
        and flops.per_layer["mha0"] < tfprune.count_flops(model).per_layer["mha0"]
    )


def test_masked_attention_trains_serialises_and_strips_to_fewer_heads():
    keras.utils.set_random_seed(0)
    model = _vit_like()
    schedule = {"mha0": 0.5, "mha1": 0.5}
    masked = tfprune.prune_filters(model, {"default": 0.0, **schedule})
    layer = masked.get_layer("mha0")
    assert layer.mask.numpy().tolist().count(0.0) == 1
    masked.compile("adam", "mse")
    xs = _inputs(model, seed=3)
    masked.fit(xs[0], np.ones((3, 3), "float32"), epochs=1, verbose=0)
    copy = keras.layers.deserialize(
        keras.layers.serialize(layer), custom_objects=tfprune.custom_objects()
    )
    assert type(copy).__name__ == "MaskedMultiHeadAttention" and copy.mask.shape == (2,)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("mha0").get_config()["num_heads"] == 1
    assert _rel_err(masked(xs), small(xs)) <= 1e-5


def test_cross_attention_with_a_mask_prunes_heads_and_each_input_separately():
    keras.utils.set_random_seed(0)
    q_in, kv_in = keras.Input((5, 6)), keras.Input((7, 10))
    mask = keras.Input((5, 7), dtype="bool")
    q = L.Dense(12, name="q_proj")(q_in)
    v = L.Dense(14, name="v_proj")(kv_in)
    k = L.Dense(9, name="k_proj")(kv_in)
    a = L.MultiHeadAttention(4, 6, value_dim=5, name="cross")(q, v, k, attention_mask=mask)
    model = keras.Model([q_in, kv_in, mask], L.Dense(2)(L.GlobalAveragePooling1D()(a)))
    rng = np.random.default_rng(2)
    xs = [
        rng.standard_normal((3, 5, 6)).astype("float32"),
        rng.standard_normal((3, 7, 10)).astype("float32"),
        rng.random((3, 5, 7)) > 0.3,
    ]
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert _rel_err(masked(xs), small(xs)) <= 1e-5
    assert [small.get_layer(n).units for n in ("q_proj", "v_proj", "k_proj")] == [6, 7, 4]
    cross = small.get_layer("cross")
    assert cross.get_config()["num_heads"] == 2 and cross.get_config()["output_shape"] == 6


def test_attention_that_returns_its_scores_blocks_with_a_reason():
    x = keras.Input((4, 8))
    h = L.Dense(8, name="before")(x)
    out, scores = L.MultiHeadAttention(2, 4, name="mha")(h, h, return_attention_scores=True)
    model = keras.Model(x, [L.Dense(2)(out), L.Flatten()(scores)])
    reasons = [r for row in tfprune.explain(model).rows for r in row["reasons"]]
    assert any("'mha'" in r and "scores" in r for r in reasons), reasons


def test_flops_of_a_sequence_model_at_a_given_length():
    x = keras.Input((None, 16))
    h = L.EinsumDense("abc,cd->abd", output_shape=(None, 32), bias_axes="d", name="up")(x)
    h = L.EinsumDense("abc,cd->abd", output_shape=(None, 16), name="down")(h)
    model = keras.Model(x, L.MultiHeadAttention(2, 8, name="mha")(h, h))
    flops = tfprune.count_flops(model, input_shapes=[(10, 16)])
    assert flops.per_layer["up"] == 10 * 16 * 32 and flops.per_layer["down"] == 10 * 32 * 16
    assert flops.per_layer["mha"] > 0


# "concat" splits the units over two halves; every other mode ("sum", "ave", "mul") is one
# identity path in BidirectionalRule.connect, so "sum" stands for them.
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_rnn_prunes_the_same_units_in_both_directions(merge_mode):
    keras.utils.set_random_seed(0)
    x = keras.Input((7,), dtype="int32")
    h = L.Embedding(20, 8, name="emb")(x)
    h = L.Bidirectional(L.LSTM(6, return_sequences=True), merge_mode=merge_mode, name="bi")(h)
    h = L.Bidirectional(L.GRU(4), name="bi2")(h)
    model = keras.Model(x, L.Dense(3)(h))
    assert tfprune.explain(model).prunable_fraction > 0.8
    masked, small = _check(model)
    forward, backward = masked.get_layer("bi").forward_layer, masked.get_layer("bi").backward_layer
    np.testing.assert_array_equal(forward.cell.mask.numpy(), backward.cell.mask.numpy())
    bi = small.get_layer("bi")
    assert type(bi) is L.Bidirectional and type(bi.forward_layer) is L.LSTM
    assert bi.forward_layer.units == bi.backward_layer.units == 3
    assert small.get_layer("bi2").forward_layer.units == 2


def test_masked_bidirectional_trains_and_serialises():
    keras.utils.set_random_seed(0)
    x = keras.Input((5, 4))
    h = L.Bidirectional(L.SimpleRNN(6), name="bi")(L.Dense(6, name="before")(x))
    model = keras.Model(x, L.Dense(2)(h))
    masked = tfprune.prune_filters(model, 0.5)
    layer = masked.get_layer("bi")
    assert type(layer).__name__ == "MaskedBidirectional"
    masked.compile("sgd", "mse")
    xs = _inputs(model, seed=3)
    masked.fit(xs[0], np.ones((3, 2), "float32"), epochs=1, verbose=0)
    copy = keras.layers.deserialize(
        keras.layers.serialize(layer), custom_objects=tfprune.custom_objects()
    )
    assert type(copy).__name__ == "MaskedBidirectional"
    assert type(copy.forward_layer).__name__ == "MaskedSimpleRNN"
    small = tfprune.strip_filters(masked)
    assert small.get_layer("bi").forward_layer.units == 3
    assert _rel_err(masked(xs), small(xs)) <= 1e-5


def test_bidirectional_that_returns_states_blocks_with_a_reason_that_names_it():
    x = keras.Input((5, 4))
    h = L.Dense(6, name="before")(x)
    out, *_ = L.Bidirectional(L.LSTM(3, return_state=True), name="bi")(h)
    model = keras.Model(x, L.Dense(2)(out))
    reasons = [r for row in tfprune.explain(model).rows for r in row["reasons"]]
    assert any("'bi'" in r and "Bidirectional" in r and "states" in r for r in reasons)


def test_apply_plan_rejects_a_plan_that_contradicts_an_add_coupling():
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    a = L.Dense(8, name="a")(x)
    b = L.Dense(8, name="b")(x)
    model = keras.Model(x, L.Dense(2, name="head")(L.Add(name="add")([a, b])))
    _, plan = tfprune.strip_filters(tfprune.prune_filters(model, 0.5), return_plan=True)
    assert tfprune.apply_plan(model, plan).get_layer("a").units == 4  # the honest plan fits
    bad = plan.to_dict()
    kept_a = bad["layers"]["a"]["out"]["kept"]
    other = [i for i in range(8) if i not in kept_a]
    bad["layers"]["b"]["out"]["kept"] = other[: len(kept_a)]
    with pytest.raises(IncompatiblePlanError, match=r"'a'.*'b'|'b'.*'a'"):
        tfprune.apply_plan(model, bad)
    del bad["layers"]["b"]
    with pytest.raises(IncompatiblePlanError, match="coupling"):
        tfprune.apply_plan(model, bad)


class _NoConfig(L.Layer):
    """A custom layer with its own weight and no get_config().

    Keras writes the config of constructor arguments it can serialize itself; a function
    argument it cannot, so ``get_config()`` raises.
    """

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def build(self, input_shape):
        self.offset = self.add_weight(name="offset", shape=(), initializer="zeros")

    def call(self, x):
        return self.fn(x) + self.offset


def test_a_layer_without_get_config_is_named_when_the_copy_cannot_be_built():
    x = keras.Input((6,))
    h = L.Dense(8, name="hidden")(L.Dense(8, name="prunable")(x))
    model = keras.Model(x, L.Dense(2)(_NoConfig(tf.nn.relu, name="scaler")(h)))
    with pytest.raises(tfprune.errors.UnsupportedModelError, match="'scaler'.*get_config"):
        tfprune.prune_filters(model, 0.5)


def test_per_channel_constants_are_cut_with_the_channels():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(8, 3, padding="same", name="conv")(x)
    h = h + rng.normal(size=(1, 4, 4, 8)).astype("float32")  # a position embedding
    h = tf.nn.relu(h * tf.constant(rng.normal(size=(8,)).astype("float32")))  # a scale
    h = h - rng.normal(size=(1, 4, 4, 1)).astype("float32")  # one value for all channels
    model = keras.Model(x, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    _, small = _check(model)
    assert small.get_layer("conv").filters == 4
