"""Keras 3 RNNs, Bidirectional, attention: masked ≡ stripped ≡ the tf_keras twin pruned alike.

Each model is built once per flavour by the same builder (``keras3_twins``), with the same
weights, and pruned at 50 % by a planted importance (a fixed permutation per group), so the
kept units are known in advance and both flavours must keep the same ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import all_layers, max_rel_error, randomize
from keras3_twins import (
    K3,
    attention,
    bidirectional,
    encoder,
    planted,
    planted_scores,
    recurrent,
    sequence_model,
    top_units,
    twin_pair,
)

import tfprune
from tfprune import compat
from tfprune.graph.keras3 import is_keras3
from tfprune.layers.masks import is_mask_layer

#: Builders and the (layer, role) whose kept units each test checks against the planted scores.
CASES = {
    "simple_rnn": (recurrent("SimpleRNN"), [("rnn", "out", 8)]),
    "gru_reset_after": (recurrent("GRU", reset_after=True), [("rnn", "out", 8)]),
    "gru_reset_before": (recurrent("GRU", reset_after=False), [("rnn", "out", 8)]),
    "lstm": (recurrent("LSTM"), [("rnn", "out", 8)]),
    "bidirectional_concat": (bidirectional("concat"), [("rnn", "out", 8), ("rnn", "in", 8)]),
    "bidirectional_sum": (bidirectional("sum"), [("rnn", "out", 8)]),
    "attention": (attention(), [("mha", "head", 4), ("mha", "key", 3), ("mha", "value", 3)]),
    "attention_value_dim": (attention(value_dim=5), [("mha", "head", 4), ("mha", "value", 5)]),
    "attention_mask": (attention(value_dim=5, with_mask=True), [("mha", "head", 4)]),
    "encoder": (encoder, [("mha", "head", 4), ("ff_in", "out", 32)]),
}


def _inputs(model, seed=1):
    """Random inputs for every model input (a random boolean attention mask with the diagonal)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (3, *(int(d) for d in t.shape[1:]))
        if "bool" in str(t.dtype):
            out.append((rng.random(shape) > 0.4) | np.eye(shape[-1], dtype=bool))
        else:
            out.append(rng.normal(size=shape).astype("float32"))
    return out


def _run(model, xs):
    return [np.asarray(model(xs if len(xs) > 1 else xs[0], training=False))]


def _kept(plan):
    return {path: {r: v["kept"] for r, v in roles.items()} for path, roles in plan.layers.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_masked_equals_stripped_keeps_the_planted_units_and_equals_the_tf_keras_twin(name):
    build, checked = CASES[name]
    tk, k3 = twin_pair(build)
    xs = _inputs(k3)
    assert max_rel_error(_run(k3, xs), _run(tk, xs)) < 1e-5  # the twins start equal
    masked = tfprune.prune_filters(k3, 0.5, planted)
    small, plan = tfprune.strip_filters(masked, return_plan=True)
    assert is_keras3(small) and small.count_params() < k3.count_params()
    assert not [la for la in all_layers(small) if type(la).__module__.startswith("tfprune")]
    assert max_rel_error(_run(k3, xs), _run(masked, xs)) > 1e-3  # masking changed something
    assert max_rel_error(_run(masked, xs), _run(small, xs)) < 1e-5
    # WHICH units: the planted best half of every checked group is kept.
    groups = tfprune.channel_groups(k3)
    for path, role, n in checked:
        kept = plan.layers[path][role]["kept"]
        assert 0 < len(kept) < n, (path, role, kept)
        group = next(g for g in groups if any(m.path == path and m.role == role for m in g.layers))
        assert kept == top_units(planted_scores(group.name, n), len(kept)), (path, role)
    # The tf_keras twin, pruned by the same scores, keeps the same units and computes the same.
    small_tk, plan_tk = tfprune.strip_filters(
        tfprune.prune_filters(tk, 0.5, planted), return_plan=True
    )
    assert _kept(plan) == _kept(plan_tk)
    assert max_rel_error(_run(small_tk, xs), _run(small, xs)) < 1e-5
    assert tfprune.count_flops(small).total == tfprune.count_flops(small_tk).total


@pytest.mark.parametrize("kind", ["SimpleRNN", "GRU", "LSTM"])
def test_stripped_recurrent_weights_are_the_kept_units_gate_columns(kind):
    _, k3 = twin_pair(recurrent(kind))
    small, plan = tfprune.strip_filters(
        tfprune.prune_filters(k3, {"rnn": 0.5}, planted), return_plan=True
    )
    kept = plan.layers["rnn"]["out"]["kept"]
    assert kept == top_units(planted_scores("rnn", 8), 4)
    gates = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}[kind]
    cols = (np.arange(gates)[:, None] * 8 + np.asarray(kept)[None, :]).reshape(-1)
    old, new = k3.get_layer("rnn").cell, small.get_layer("rnn").cell
    np.testing.assert_array_equal(np.asarray(new.kernel), np.asarray(old.kernel)[:, cols])
    rk = np.asarray(old.recurrent_kernel)[kept][:, cols]
    np.testing.assert_array_equal(np.asarray(new.recurrent_kernel), rk)
    np.testing.assert_array_equal(np.asarray(new.bias), np.asarray(old.bias)[..., cols])


def test_masked_rnn_and_attention_train_save_and_strip(tmp_path):
    def build(k):
        L = k.layers
        x = k.Input((5, 6), name="seq")
        h = L.LSTM(8, return_sequences=True, name="rnn")(L.Dense(8, name="pre")(x))
        h = L.Bidirectional(L.GRU(4, return_sequences=True), name="bi")(h)
        a = L.MultiHeadAttention(2, 4, name="mha")(h, h)
        h = L.GlobalAveragePooling1D(name="gap")(L.Add(name="add")([h, a]))
        return k.Model(x, L.Dense(3, name="head")(h), name="rnn_attention")

    _, k3 = twin_pair(build)
    masked = tfprune.prune_filters(k3, 0.5, planted)
    masks = {
        la.name: [np.asarray(v).copy() for v in la.weights if "mask" in v.name]
        for la in masked.layers
        if is_mask_layer(la)
    }
    assert {"rnn", "bi", "mha"} <= set(masks)
    xs = _inputs(k3)
    y = np.random.default_rng(3).normal(size=(3, 3)).astype("float32")
    masked.compile(optimizer=K3.optimizers.SGD(0.05), loss="mse")
    masked.fit(xs[0], y, epochs=2, batch_size=3, verbose=0)
    for la in masked.layers:
        if la.name in masks:
            got = [np.asarray(v) for v in la.weights if "mask" in v.name]
            for a, b in zip(got, masks[la.name], strict=True):
                np.testing.assert_array_equal(a, b)
    path = str(tmp_path / "masked.keras")
    masked.save(path)
    loaded = K3.saving.load_model(path, custom_objects=tfprune.custom_objects("keras3"))
    assert type(loaded.get_layer("rnn")).__name__ == "MaskedLSTM"
    bi = loaded.get_layer("bi")
    assert type(bi).__name__ == "MaskedBidirectional"
    assert type(bi.backward_layer).__name__ == "MaskedGRU"
    np.testing.assert_array_equal(bi.mask.numpy(), masked.get_layer("bi").mask.numpy())
    assert max_rel_error(_run(loaded, xs), _run(masked, xs)) < 1e-6
    small = tfprune.strip_filters(loaded)
    assert small.get_layer("rnn").units == 4 and small.get_layer("mha").num_heads == 1
    assert type(small.get_layer("bi").forward_layer) is K3.layers.GRU
    assert small.get_layer("bi").forward_layer.units == 2
    assert max_rel_error(_run(masked, xs), _run(small, xs)) < 1e-5


@pytest.mark.parametrize("name", ["lstm", "encoder"])
def test_stripped_model_exports_and_reloads_with_the_same_outputs(name, tmp_path):
    _, k3 = twin_pair(CASES[name][0])
    masked = tfprune.prune_filters(k3, 0.5, planted)
    small = tfprune.strip_filters(masked)
    xs = _inputs(k3)
    served = compat.tf.saved_model.load(tfprune.export_saved_model(small, tmp_path / name))
    fn = served.signatures["serving_default"]
    (got,) = fn(**{k3.inputs[0].name: compat.tf.constant(xs[0])}).values()
    assert max_rel_error([got.numpy()], _run(masked, xs)) < 1e-5


def _gated(use_gate):
    def build(k):
        def make(L, h):
            a = L.MultiHeadAttention(4, 3, value_dim=5, use_gate=use_gate, name="mha")(h, h)
            return L.Add(name="add")([h, a])

        return sequence_model(k, make, "gated")

    return build


def test_gated_attention_prunes_heads_and_value_dimensions_of_its_gate():
    # Keras 3's use_gate=True (no tf_keras twin): sigmoid(query input @ gate) times each head.
    model = randomize(_gated(True)(K3))
    masked = tfprune.prune_filters(model, 0.5, planted)
    small, plan = tfprune.strip_filters(masked, return_plan=True)
    xs = _inputs(model)
    assert max_rel_error(_run(model, xs), _run(masked, xs)) > 1e-3
    assert max_rel_error(_run(masked, xs), _run(small, xs)) < 1e-5
    heads, values = plan.layers["mha"]["head"]["kept"], plan.layers["mha"]["value"]["kept"]
    assert heads == top_units(planted_scores("mha", 4), 2)
    gate = np.asarray(model.get_layer("mha")._gate_dense.kernel)  # noqa: SLF001
    new_gate = np.asarray(small.get_layer("mha")._gate_dense.kernel)  # noqa: SLF001
    kept_in = plan.layers["mha"]["in"]["kept"]
    np.testing.assert_array_equal(new_gate, gate[kept_in][:, heads][:, :, values])
    # The gate projection is counted: 5 query positions times its (8, 4, 5) kernel.
    flops = tfprune.count_flops(model).per_layer["mha"]
    assert flops - tfprune.count_flops(_gated(False)(K3)).per_layer["mha"] == 5 * 8 * 4 * 5
