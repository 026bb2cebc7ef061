"""Tests for tfprune.callbacks.jsv.JacobianSingularValues."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfprune.callbacks.jsv import JacobianSingularValues
from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.trainability import mean_jsv

LOG_KEYS = (
    "jsv_mean",
    "jsv_std",
    "jsv_min",
    "jsv_max",
    "jsv_condition_number",
    "jsv_mean_sq_dev_from_one",
)


def make_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(4),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 20)).astype(np.float32)
    y = rng.integers(0, 4, size=96)
    return x, y


def test_callback_logs_jsv_into_history_during_fit(data):
    x, y = data
    model = make_model()
    callback = JacobianSingularValues(x[:40], batch_size=16)

    history = model.fit(x, y, batch_size=32, epochs=3, callbacks=[callback], verbose=0)

    for key in LOG_KEYS:
        assert len(history.history[key]) == 3
        assert all(math.isfinite(v) for v in history.history[key])
    assert [record["epoch"] for record in callback.history] == [-1, 0, 1, 2]
    assert callback.initial_stats is not None
    assert callback.initial_stats.to_dict() == {
        k: v for k, v in callback.history[0].items() if k != "epoch"
    }
    # The last logged value is the JSV of the final weights.
    final = mean_jsv(model, x[:40])
    assert history.history["jsv_mean"][-1] == pytest.approx(final.mean, rel=1e-6)
    assert callback.history[-1]["num_samples"] == 40
    # Training changes the weights, so the logged values change.
    assert history.history["jsv_mean"][0] != callback.history[0]["mean"]


def test_callback_every_n_epochs_prefix_and_no_begin(data):
    x, y = data
    model = make_model()
    callback = JacobianSingularValues(
        x, every_n_epochs=2, num_samples=30, log_prefix="iso", log_on_train_begin=False
    )

    history = model.fit(x, y, batch_size=32, epochs=4, callbacks=[callback], verbose=0)

    assert len(history.history["iso_mean"]) == 2
    assert "jsv_mean" not in history.history
    assert [record["epoch"] for record in callback.history] == [1, 3]
    assert callback.initial_stats is None
    assert all(record["num_samples"] == 30 for record in callback.history)


def test_callback_reads_a_dataset_once_as_a_fixed_sample(data):
    x, _ = data
    model = make_model()
    shuffled = tf.data.Dataset.from_tensor_slices(x).shuffle(96, seed=None).batch(10)
    callback = JacobianSingularValues(shuffled, num_samples=25)
    callback.set_model(model)

    first = callback.compute()
    second = callback.compute()

    assert first == second
    assert first.num_samples == 25


def test_callback_runs_under_mirrored_strategy(data, mirrored_strategy):
    x, y = data
    with mirrored_strategy.scope():
        model = make_model()
    callback = JacobianSingularValues(x[:32], batch_size=16)

    history = model.fit(x, y, batch_size=32, epochs=2, callbacks=[callback], verbose=0)

    assert len(history.history["jsv_mean"]) == 2
    assert all(math.isfinite(v) for v in history.history["jsv_mean"])
    expected = mean_jsv(model, x[:32], batch_size=16).mean  # same batching as the callback
    assert history.history["jsv_mean"][-1] == pytest.approx(expected, rel=1e-5)


def test_get_config_round_trips_the_scalar_arguments(data):
    x, _ = data
    callback = JacobianSingularValues(
        x,
        every_n_epochs=3,
        batch_size=7,
        num_samples=50,
        log_prefix="j",
        log_on_train_begin=False,
        logits_layer="dense",
        strip_softmax=False,
    )
    config = callback.get_config()

    clone = JacobianSingularValues.from_config(config, inputs=x)
    clone_from_dict = JacobianSingularValues.from_config({**config, "inputs": x})

    assert clone.get_config() == config == clone_from_dict.get_config()
    assert config["every_n_epochs"] == 3 and config["num_samples"] == 50
    assert keras.saving.get_registered_object("tfprune>JacobianSingularValues") is (
        JacobianSingularValues
    )
    with pytest.raises(InvalidArgumentError, match="needs the input sample"):
        JacobianSingularValues.from_config(config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"num_samples": -1}, "num_samples"),
        ({"num_samples": 1000}, "only provide 96"),
        ({"log_prefix": ""}, "log_prefix"),
    ],
)
def test_callback_rejects_bad_arguments(data, kwargs, match):
    x, _ = data
    with pytest.raises(InvalidArgumentError, match=match):
        JacobianSingularValues(x, **kwargs)


def test_callback_rejects_inputs_that_do_not_fit_the_model(data):
    x, y = data
    model = make_model()
    callback = JacobianSingularValues(np.zeros((8, 21), np.float32))
    with pytest.raises(InvalidArgumentError, match=r"per-sample shape \(21,\)"):
        model.fit(x, y, epochs=1, callbacks=[callback], verbose=0)
    with pytest.raises(InvalidArgumentError, match="numpy array"):
        JacobianSingularValues("not data")
