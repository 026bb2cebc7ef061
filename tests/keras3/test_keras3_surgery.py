"""apply_plan / the channel cut on Keras 3: the same cut as on the tf_keras twin."""

from __future__ import annotations

import numpy as np
from keras3_twins import X, twins

import tfprune
from tfprune import compat
from tfprune.graph.groups import analyze
from tfprune.graph.keras3 import is_keras3
from tfprune.plan import plan_from_pruned

K3 = compat.keras3()


def _planted(analysis):
    """Units 1 and n-2 of every prunable group are pruned."""
    pruned = {}
    for g in analysis.groups:
        if g.prunable and g.n_units >= 4:
            mask = np.zeros(g.n_units, bool)
            mask[[1, g.n_units - 2]] = True
            pruned[g.id] = mask & ~g.blocked
    return pruned


def test_keras3_twins_compute_the_same_before_pruning():
    tk, k3 = twins()
    np.testing.assert_allclose(k3(X), tk(X), rtol=1e-5, atol=1e-5)


def test_apply_plan_cuts_the_keras3_model_like_its_tf_keras_twin():
    tk, k3 = twins()
    analysis = analyze(tk)
    pruned = _planted(analysis)
    assert len(pruned) >= 3  # conv_a+conv_b+residual, conv_c, conv_d, fc
    plan = plan_from_pruned(analysis, pruned)
    small_tk = tfprune.apply_plan(tk, plan)
    small_k3 = tfprune.apply_plan(k3, plan.to_dict())
    assert is_keras3(small_k3) and not is_keras3(small_tk)
    np.testing.assert_allclose(small_k3(X), small_tk(X), rtol=1e-5, atol=1e-5)
    assert tfprune.count_flops(small_k3).total == tfprune.count_flops(small_tk).total
    assert tfprune.count_params(small_k3).total == tfprune.count_params(small_tk).total
    assert tfprune.count_flops(small_k3).total < tfprune.count_flops(k3).total
    # WHICH filters stay. The residual group holds conv_a/conv_b/dw (units 0-7) and conv_c
    # (units 8-13, the concat's second half): planted units 1 and 12 are cut.
    kept = [0, 2, 3, 4, 5, 6, 7]
    for name in ("conv_a", "conv_b"):
        np.testing.assert_array_equal(
            small_k3.get_layer(name).kernel.numpy(),
            k3.get_layer(name)
            .kernel.numpy()[..., kept]
            .take(kept if name == "conv_b" else [0, 1, 2], axis=2),
        )
    np.testing.assert_array_equal(
        small_k3.get_layer("bn_b").moving_variance.numpy(),
        k3.get_layer("bn_b").moving_variance.numpy()[kept],
    )
    np.testing.assert_array_equal(
        small_k3.get_layer("dw").kernel.numpy(), k3.get_layer("dw").kernel.numpy()[:, :, kept]
    )
    np.testing.assert_array_equal(
        small_k3.get_layer("conv_c").bias.numpy(),
        k3.get_layer("conv_c").bias.numpy()[[0, 1, 2, 3, 5]],
    )
    assert small_k3.get_layer("conv_d").kernel.shape[-2] == 7 + 5
    assert small_k3.get_layer("conv_d").filters == 8 and small_k3.get_layer("fc").units == 10


def test_keras3_reshape_op_with_explicit_channels_is_rewritten():
    x = K3.Input((4, 4, 3), name="image")
    h = K3.layers.Conv2D(6, 1, name="conv")(x)
    h = K3.ops.reshape(h, (-1, 16, 6))  # spells out the channel count
    h = K3.layers.Dense(2, name="head")(h)
    model = K3.Model(x, h, name="reshaped")
    analysis = analyze(model)
    (group,) = [g for g in analysis.groups if g.prunable]
    pruned = {group.id: np.array([True, False, False, True, False, False])}
    small = tfprune.apply_plan(model, plan_from_pruned(analysis, pruned))
    assert small.get_layer("conv").filters == 4
    masked = model.get_layer("head").kernel.numpy().copy()
    masked[[0, 3]] = 0.0  # what the cut computes: those inputs contribute nothing
    dense = K3.Model(x, model.get_layer("head").output)
    expected = np.asarray(dense(X[:, :4, :4])) - np.einsum(
        "bpc,cu->bpu",
        np.asarray(K3.Model(x, model.get_layer("conv").output)(X[:, :4, :4])).reshape(-1, 16, 6),
        model.get_layer("head").kernel.numpy() - masked,
    )
    np.testing.assert_allclose(small(X[:, :4, :4]), expected, rtol=1e-5, atol=1e-5)
