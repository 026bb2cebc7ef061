"""TPP: L1 selection before training, Gram/BN terms driven to zero, hard zeroing, masks."""

from __future__ import annotations

import numpy as np
from reg_helpers import fixed_batches, masked_cnn

import tfprune
from tfprune.compat import tf
from tfprune.importance import L1
from tfprune.regularization import TrainabilityPreserving


def _bn_params(tpp):
    """Pruned units' |gamma| + |beta| of every BatchNorm in the regularized groups."""
    total = 0.0
    for g in tpp.groups:
        pruned = tpp.state[f"g{g.id}_pruned"].numpy() > 0.5
        for s in tpp.slices[g.id]:
            if s.kind == "norm":
                total += float(np.abs(s.variable.numpy()[pruned[s.units]]).sum())
    return total


def test_tpp_selects_by_l1_before_training():
    model = masked_cnn()
    groups = [g for g in tfprune.FilterPruner.for_model(model).analysis.groups if g.prunable]
    l1 = {g.name: L1()(g) for g in groups}
    tpp = TrainabilityPreserving(0.5)
    tpp.set_model(model)
    for name, units in tpp.pruned_units().items():
        k = int(np.ceil(0.5 * l1[name].size))
        assert set(units) == set(np.argsort(l1[name], kind="stable")[:k])


def test_tpp_loss_gram_term_only_touches_pruned_rows_and_columns():
    model = masked_cnn()
    tpp = TrainabilityPreserving(0.5, gram_weight=1.0)
    tpp.set_model(model)
    tpp.state["lambda"].assign(1.0)
    g = tpp.groups[0]
    s = next(s for s in tpp.slices[g.id] if s.kind == "filter")
    pruned = tpp.state[f"g{g.id}_pruned"].numpy()[s.units] > 0.5
    with tf.GradientTape() as tape:
        loss = tpp._loss()
    grad = np.moveaxis(tape.gradient(loss, s.variable).numpy(), s.axis, 0)
    # kept filters only feel the Gram entries with pruned filters, pruned ones feel L2 too
    w = s.rows().numpy()
    n = w.shape[0]
    sel = 1.0 - np.outer(~pruned, ~pruned)
    gram = w @ w.T * sel
    expected = (4.0 / n**2) * gram @ w + np.where(pruned[:, None], w, 0.0)
    np.testing.assert_allclose(grad.reshape(n, -1), expected, rtol=1e-4, atol=1e-6)


def test_tpp_drives_pruned_gram_entries_and_bn_params_to_zero_then_masks():
    model = masked_cnn(lr=0.002)
    tpp = TrainabilityPreserving(
        0.5,
        delta=2.5,
        ceiling=10.0,
        gram_weight=100.0,
        update_every=1,
        stabilize_steps=60,
        zero_out_interval=12,
        mag_ratio_limit=2.0,
    )
    tpp.set_model(model)
    gram0 = tpp.gram_values()
    bn0 = _bn_params(tpp)
    # growth: 4 steps; the first conv's group is hard-zeroed 12 steps into stabilization
    model.fit(fixed_batches(), epochs=1, steps_per_epoch=14, callbacks=[tpp], verbose=0)
    assert tpp.phase == "stabilize" and int(tpp.state["zeroed"].numpy()) == 0
    gram1 = tpp.gram_values()
    for name in gram0:
        assert gram1[name] < 0.1 * gram0[name], (name, gram0[name], gram1[name])
    assert _bn_params(tpp) < 0.2 * bn0
    h = model.fit(fixed_batches(), epochs=10, steps_per_epoch=10, callbacks=[tpp], verbose=0)
    assert tpp.phase == "done"
    assert len(h.history["loss"]) == 5  # stops itself after 4 + 60 steps (64 in all)
    # hard-zeroed during stabilization; training after that only moves them by ~momentum
    gram2 = tpp.gram_values()
    for name in gram0:
        assert gram2[name] < 1e-4 * gram0[name], (name, gram0[name], gram2[name])
    assert _bn_params(tpp) < 0.02 * bn0
    pruner = tfprune.FilterPruner.for_model(model)
    current = pruner.current_pruned()
    for g in tpp.groups:
        np.testing.assert_array_equal(np.flatnonzero(current[g.id]), tpp.pruned_units()[g.name])
    x = next(iter(fixed_batches()))[0]
    small = tfprune.strip_filters(model)
    np.testing.assert_allclose(small(x), model(x), atol=1e-4)
