"""prune_filters / strip_filters / shrink on Keras 3 models: masked, trained, saved, stripped.

Which filters each criterion keeps on Keras 3 is checked in tests/selection/test_kept_sets.py
(parametrized over the flavour); here: the Keras 3 masked layers and the paths around them.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from keras3_twins import X, twins

import tfprune
from tfprune import compat
from tfprune.graph.keras3 import is_keras3
from tfprune.layers.masks import is_mask_layer

K3 = compat.keras3()
L = K3.layers


def _tfprune_layers(model):
    return [la for la in model._flatten_layers() if type(la).__module__.startswith("tfprune")]


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


def test_masked_equals_stripped_and_both_equal_the_tf_keras_twin():
    tk, k3 = twins()
    masked = tfprune.prune_filters(k3, 0.5)
    assert is_keras3(masked) and any(is_mask_layer(la) for la in masked.layers)
    small = tfprune.strip_filters(masked)
    assert is_keras3(small) and not _tfprune_layers(small)
    _close(small(X), masked(X))
    # The same L1 choice on the same weights: the tf_keras twin strips to the same model.
    small_tk = tfprune.strip_filters(tfprune.prune_filters(tk, 0.5))
    _close(small(X), small_tk(X))
    assert tfprune.count_flops(small).total == tfprune.count_flops(small_tk).total
    assert tfprune.count_params(small).total == tfprune.count_params(small_tk).total


def test_shrink_plan_regex_skip_and_round_to_on_keras3():
    _, k3 = twins()
    small, plan = tfprune.shrink(k3, {"conv_d": 0.5, "f.*": 0.25}, return_plan=True)
    assert is_keras3(small)
    assert small.get_layer("conv_d").filters == 5 and small.get_layer("fc").units == 9
    assert small.get_layer("conv_a").filters == 8  # not matched: not pruned
    # WHICH units: the L1-smallest filters of conv_d are gone.
    kernel = k3.get_layer("conv_d").kernel.numpy()
    l1 = np.abs(kernel).reshape(-1, 10).mean(axis=0)
    assert plan.layers["conv_d"]["out"]["kept"] == sorted(np.argsort(l1, kind="stable")[5:])
    skipped = tfprune.shrink(k3, 0.5, skip=["conv_d"])
    assert skipped.get_layer("conv_d").filters == 10 and skipped.get_layer("fc").units == 6
    rounded = tfprune.shrink(k3, {"fc": 0.5}, round_to=4)
    assert rounded.get_layer("fc").units == 8


def test_masked_keras3_model_trains_with_fit_and_stays_equal_to_its_strip():
    _, k3 = twins()
    masked = tfprune.prune_filters(k3, 0.5)
    masks = {la.name: la.mask.numpy().copy() for la in masked.layers if is_mask_layer(la)}
    before = masked.get_layer("conv_b").kernel.numpy().copy()
    masked.compile(optimizer=K3.optimizers.SGD(0.05), loss="mse")
    y = np.random.default_rng(2).standard_normal((4, 3)).astype("float32")
    history = masked.fit(X, y, epochs=2, batch_size=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert not np.allclose(masked.get_layer("conv_b").kernel.numpy(), before)  # it trained
    for la in masked.layers:
        if is_mask_layer(la):
            np.testing.assert_array_equal(la.mask.numpy(), masks[la.name])
    _close(tfprune.strip_filters(masked)(X), masked(X))


@pytest.mark.parametrize("with_custom_objects", [True, False])
def test_keras_file_round_trip_keeps_the_masks(tmp_path, with_custom_objects):
    _, k3 = twins()
    masked = tfprune.prune_filters(k3, 0.5)
    path = str(tmp_path / "masked.keras")
    masked.save(path)
    kwargs = {"custom_objects": tfprune.custom_objects("keras3")} if with_custom_objects else {}
    loaded = K3.saving.load_model(path, **kwargs)
    for la in masked.layers:
        if is_mask_layer(la):
            twin = loaded.get_layer(la.name)
            assert type(twin) is type(la)
            np.testing.assert_array_equal(twin.mask.numpy(), la.mask.numpy())
    _close(loaded(X), masked(X))
    assert (
        tfprune.pruning_policy(loaded).get_config() == tfprune.pruning_policy(masked).get_config()
    )
    _close(tfprune.strip_filters(loaded)(X), masked(X))


def test_layer_norm_statistics_follow_the_masks():
    x = K3.Input((5, 12), name="tokens")
    h = L.Dense(16, name="up")(x)
    h = L.LayerNormalization(name="ln")(h)
    h = L.Dense(4, name="down")(h)
    model = K3.Model(x, h, name="ln_model")
    rng = np.random.default_rng(0)
    model.get_layer("ln").set_weights([rng.uniform(0.5, 1.5, 16), rng.normal(size=16)])
    masked = tfprune.prune_filters(model, {"up": 0.5})
    assert type(masked.get_layer("ln")).__name__ == "MaskedLayerNormalization"
    small = tfprune.strip_filters(masked)
    assert small.get_layer("ln").gamma.shape == (8,) and not _tfprune_layers(small)
    data = rng.normal(size=(3, 5, 12)).astype("float32")
    _close(small(data), masked(data))


def test_sequential_and_nested_keras3_models_prune_and_strip():
    seq = K3.Sequential(
        [K3.Input((6,)), L.Dense(8, name="d1"), L.ReLU(), L.Dense(8, name="d2"), L.Dense(2)],
        name="seq",
    )
    small = tfprune.shrink(seq, 0.5)
    assert isinstance(small, K3.Sequential) and small.get_layer("d1").units == 4
    x = K3.Input((6,), name="x")
    out = L.Dense(3, name="head")(seq(x))
    outer = K3.Model(x, out, name="outer")
    masked = tfprune.prune_filters(outer, 0.5)
    stripped = tfprune.strip_filters(masked)
    data = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    _close(stripped(data), masked(data))
    assert stripped.get_layer("seq").get_layer("d2").units == 4


def test_unknown_flavour_of_custom_objects_is_refused():
    with pytest.raises(tfprune.errors.InvalidArgumentError, match="'tf_keras' or 'keras3'"):
        tfprune.custom_objects("keras2")


def test_gradual_keras3_model_refuses_fit_without_the_mask_callback():
    _, k3 = twins()
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=2, frequency=1)
    masked = tfprune.prune_filters(k3, schedule)
    masked.compile(optimizer=K3.optimizers.SGD(0.01), loss="mse")
    y = np.zeros((4, 3), "float32")
    with pytest.raises(tfprune.errors.InvalidArgumentError, match="UpdateFilterMasks"):
        masked.fit(X, y, batch_size=2, epochs=1, verbose=0)
    history = masked.fit(
        X, y, batch_size=2, epochs=2, verbose=0, callbacks=[tfprune.UpdateFilterMasks()]
    )
    assert history.history["filter_sparsity"][-1] > 0.4
    _close(tfprune.strip_filters(masked)(X), masked(X))
