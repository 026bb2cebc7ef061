"""Masks during training: fit, distribution, gradual schedules, save/reload, TF-MOT, configs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from core_helpers import (
    all_layers,
    inputs_for,
    masked_fraction,
    max_rel_error,
    outputs_of,
    randomize,
)

import tfprune
from tfprune.compat import keras, tf
from tfprune.layers import is_mask_layer

L = keras.layers


def _model():
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    y = L.Conv2D(8, 3, padding="same", name="c2")(x)
    x = L.Add()([x, y])
    x = L.Conv2D(8, 3, padding="same", name="c3")(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="small")


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 3)).astype(np.float32), rng.integers(0, 3, size=n)


def _compile(model, lr=0.1):
    model.compile(
        optimizer=keras.optimizers.SGD(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _masks(model):
    return {
        layer.name: layer.mask.numpy().copy() for layer in all_layers(model) if is_mask_layer(layer)
    }


def _zeroed_channels_of_c1_stay_zero(masked, x):
    """Masked channels contribute nothing where they are consumed.

    A ChannelMask's output is exactly zero on them; a kernel-masked consumer (MaskedConv2D,
    MaskedDense) gives the same output whatever values those input channels hold.
    """
    seen = False
    for layer in all_layers(masked):
        if not is_mask_layer(layer) or isinstance(layer, tfprune.layers.MaskedLayerNormalization):
            continue
        off = layer.mask.numpy() == 0
        if isinstance(layer, tfprune.ChannelMask):
            act = keras.Model(masked.inputs, layer.output)(x, training=False).numpy()
            assert np.all(act[..., off] == 0)
        else:
            act = keras.Model(masked.inputs, layer.input)(x, training=False).numpy()
            noisy = act.copy()
            noisy[..., off] = np.random.default_rng(0).normal(size=noisy[..., off].shape)
            np.testing.assert_allclose(
                layer(act).numpy(), layer(noisy).numpy(), rtol=1e-5, atol=1e-5
            )
        seen = seen or bool(off.any())
    assert seen


def test_fit_keeps_masked_channels_zero_and_strips_to_same_outputs():
    model = randomize(_model())
    masked = _compile(tfprune.prune_filters(model, 0.5))
    before = _masks(masked)
    x, y = _data()
    masked.fit(x, y, batch_size=8, epochs=2, verbose=0)
    after = _masks(masked)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    _zeroed_channels_of_c1_stay_zero(masked, x[:4])
    small = tfprune.strip_filters(masked)
    assert max_rel_error(outputs_of(masked, [x]), outputs_of(small, [x])) < 1e-5


def test_fit_in_eager_mode_too():
    model = randomize(_model())
    masked = tfprune.prune_filters(model, 0.5)
    masked.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    x, _ = _data(8)
    masked.fit(x, np.zeros((8, 3), np.float32), epochs=1, verbose=0)
    _zeroed_channels_of_c1_stay_zero(masked, x[:2])


def test_fit_under_mirrored_strategy(mirrored_strategy):
    model = randomize(_model())
    with mirrored_strategy.scope():
        masked = _compile(tfprune.prune_filters(model, 0.5))
    x, y = _data()
    masked.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert masked_fraction(masked) > 0.4
    _zeroed_channels_of_c1_stay_zero(masked, x[:4])
    small = tfprune.strip_filters(masked)
    assert small.count_params() < model.count_params()
    assert max_rel_error(outputs_of(masked, [x]), outputs_of(small, [x])) < 1e-5


def test_gradual_schedule_under_mirrored_strategy(mirrored_strategy):
    model = randomize(_model())
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=6, frequency=2)
    with mirrored_strategy.scope():
        masked = _compile(tfprune.prune_filters(model, schedule))
    x, y = _data()
    masked.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    assert tfprune.FilterPruner.for_model(masked).sparsity() > 0.3


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.sparsity = []
        self.masks = []

    def on_train_batch_end(self, batch, logs=None):
        self.sparsity.append(tfprune.FilterPruner.for_model(self.model).sparsity())
        self.masks.append(_masks(self.model))


def test_gradual_polynomial_decay_grows_monotonically_and_strips():
    model = randomize(_model())
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.75, begin_step=0, end_step=12, frequency=2
    )
    masked = _compile(tfprune.prune_filters(model, schedule))
    assert masked_fraction(masked) == 0.0  # nothing pruned before training
    rec = _Recorder()
    x, y = _data()
    hist = masked.fit(
        x, y, batch_size=4, epochs=2, verbose=0, callbacks=[tfprune.UpdateFilterMasks(), rec]
    )
    s = rec.sparsity
    assert all(b >= a for a, b in zip(s, s[1:])), s
    assert s[0] < s[-1]
    assert len(set(s)) >= 3  # grows over several steps, not at once
    # Once removed, a channel stays removed.
    for m0, m1 in zip(rec.masks, rec.masks[1:]):
        for k in m0:
            assert np.all(m1[k][m0[k] == 0] == 0)
    assert "filter_sparsity" in hist.history
    assert hist.history["filter_sparsity"][-1] == pytest.approx(s[-1])
    small = tfprune.strip_filters(masked)
    assert small.get_layer("c1").filters == 2  # 8 - ceil(0.75 * 8)
    assert max_rel_error(outputs_of(masked, [x]), outputs_of(small, [x])) < 1e-5


def test_gradual_per_layer_schedule_mapping():
    model = randomize(_model())
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=2, frequency=1)
    masked = _compile(tfprune.prune_filters(model, {"c3": schedule}))
    x, y = _data(16)
    masked.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    small = tfprune.strip_filters(masked)
    assert small.get_layer("c3").filters == 4
    assert small.get_layer("c1").filters == 8


def test_gradual_fit_without_the_callback_is_refused_and_then_works_with_it():
    model = randomize(_model())
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    masked = _compile(tfprune.prune_filters(model, schedule))
    x, y = _data(16)
    with pytest.raises(tfprune.errors.InvalidArgumentError, match="UpdateFilterMasks"):
        masked.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert masked_fraction(masked) == 0.0
    masked.evaluate(x, y, verbose=0)  # evaluating and predicting need no callback
    masked.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    assert masked_fraction(masked) > 0.0
    with pytest.raises(tfprune.errors.InvalidArgumentError, match="UpdateFilterMasks"):
        masked.fit(x, y, batch_size=4, epochs=1, verbose=0)  # every fit is checked
    # One-shot pruning has no schedule to drive: fit needs no callback.
    one_shot = _compile(tfprune.prune_filters(randomize(_model()), 0.5))
    one_shot.fit(x, y, batch_size=4, epochs=1, verbose=0)


def _save_reload(masked, tmp_path, fmt):
    if fmt == "tf":
        path = str(tmp_path / "saved")
        masked.save(path)
    else:
        path = str(tmp_path / f"model.{fmt}")
        masked.save(path)
    return keras.models.load_model(path, custom_objects=tfprune.custom_objects())


@pytest.mark.parametrize("fmt", ["tf", "h5", "keras"])
def test_save_reload_masked_model_and_strip(tmp_path, fmt):
    model = randomize(_model())
    masked = _compile(tfprune.prune_filters(model, 0.5))
    x, y = _data(8)
    masked.fit(x, y, epochs=1, verbose=0)
    reloaded = _save_reload(masked, tmp_path, fmt)
    assert max_rel_error(outputs_of(masked, [x]), outputs_of(reloaded, [x])) < 1e-6
    assert _masks(reloaded).keys() == _masks(masked).keys()
    small = tfprune.strip_filters(reloaded)
    ref = tfprune.strip_filters(masked)
    assert small.count_params() == ref.count_params()
    assert max_rel_error(outputs_of(ref, [x]), outputs_of(small, [x])) < 1e-5


@pytest.mark.parametrize("fmt", ["tf", "h5", "keras"])
def test_reloaded_gradual_model_continues_pruning(tmp_path, fmt):
    model = randomize(_model())
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        0.0, 0.75, begin_step=0, end_step=16, frequency=2
    )
    masked = _compile(tfprune.prune_filters(model, schedule))
    x, y = _data(16)
    masked.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    mid = tfprune.FilterPruner.for_model(masked).sparsity()
    assert 0 < mid < 0.7
    reloaded = _save_reload(masked, tmp_path, fmt)
    pruner = tfprune.FilterPruner.for_model(reloaded)
    assert pruner.policy.is_gradual
    assert pruner.sparsity() == pytest.approx(mid)
    before = _masks(reloaded)
    reloaded.fit(x, y, batch_size=4, epochs=4, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    after = tfprune.FilterPruner.for_model(reloaded).sparsity()
    assert after > mid
    for k, m in before.items():  # monotone across the reload
        assert np.all(_masks(reloaded)[k][m == 0] == 0)
    small = tfprune.strip_filters(reloaded)
    assert small.get_layer("c1").filters == 2


def test_mask_layers_get_config_round_trip():
    masked = tfprune.prune_filters(randomize(_model()), 0.5, "random", seed=2, round_to=2)
    mask_layers = [layer for layer in all_layers(masked) if is_mask_layer(layer)]
    assert len(mask_layers) > 1
    # One mask layer carries the policy; the others hold none.
    carriers = [layer for layer in mask_layers if "policy" in layer.get_config()]
    assert len(carriers) == 1 and carriers[0].policy is tfprune.pruning_policy(masked)
    for layer in mask_layers:
        cfg = layer.get_config()
        clone = type(layer).from_config(cfg)
        assert clone.get_config() == cfg
        ser = keras.layers.serialize(layer)
        again = keras.layers.deserialize(ser, custom_objects=tfprune.custom_objects())
        assert again.get_config() == cfg
    cfg = carriers[0].get_config()
    assert cfg["policy"]["importance"] == "random"
    assert cfg["policy"]["seed"] == 2 and cfg["policy"]["round_to"] == 2


def test_update_filter_masks_get_config_round_trip():
    cb = tfprune.UpdateFilterMasks(log_sparsity=False)
    cfg = cb.get_config()
    assert cfg == {"log_sparsity": False}
    assert tfprune.UpdateFilterMasks.from_config(cfg).get_config() == cfg


def test_pruning_policy_config_round_trip():
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 10)
    masked = tfprune.prune_filters(randomize(_model()), {"c1": schedule, "c3": 0.25}, skip=["c2"])
    policy = tfprune.pruning_policy(masked)
    assert policy is tfprune.FilterPruner.for_model(masked).policy
    assert policy.sparsity["c1"] is schedule  # the live schedule, not its config
    again = tfprune.PruningPolicy.from_config(policy.get_config())
    assert again == policy
    assert again.is_gradual
    assert isinstance(again.sparsity["c1"], tfmot.sparsity.keras.PolynomialDecay)


def test_tfmot_prune_low_magnitude_composes():
    model = randomize(_model())
    masked = tfprune.prune_filters(model, 0.5)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(
        masked,
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1),
    )
    _compile(wrapped)
    x, y = _data(8)
    wrapped.fit(
        x,
        y,
        epochs=1,
        batch_size=8,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    # TF-MOT sparsified the kernels, and the channel masks survived.
    k = stripped.get_layer("c2").kernel.numpy()
    assert 0.4 < float((k == 0).mean()) < 0.6
    assert masked_fraction(stripped) > 0.4
    small = tfprune.strip_filters(stripped)
    assert small.count_params() < model.count_params()
    assert max_rel_error(outputs_of(stripped, [x]), outputs_of(small, [x])) < 1e-5


def test_multi_output_training():
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, name="c1")(i)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, name="c2")(x)
    g = L.GlobalAveragePooling2D()(x)
    o1 = L.Dense(2, name="a")(g)
    o2 = L.Dense(1, name="b")(g)
    model = randomize(keras.Model(i, [o1, o2]))
    masked = tfprune.prune_filters(model, 0.5)
    masked.compile(optimizer="sgd", loss=["mse", "mse"])
    x_, _ = _data(8)
    masked.fit(x_, [np.zeros((8, 2)), np.zeros((8, 1))], epochs=1, verbose=0)
    small = tfprune.strip_filters(masked)
    xs = inputs_for(model)
    assert max_rel_error(outputs_of(masked, xs), outputs_of(small, xs)) < 1e-5
    assert tf.nest.flatten(small.output_shape) == tf.nest.flatten(model.output_shape)
