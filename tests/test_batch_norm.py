"""recalibrate_batch_norm: BN moving statistics from data, nested models included."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError


def _model():
    inner = keras.Sequential(
        [keras.layers.Dense(4, input_shape=(3,)), keras.layers.BatchNormalization(momentum=0.9)],
        name="inner",
    )
    x = keras.Input((3,))
    y = keras.layers.BatchNormalization(name="outer_bn", momentum=0.8)(x)
    return keras.Model(x, inner(y)), inner


def test_moving_statistics_are_the_average_over_the_batches_read():
    model, inner = _model()
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(64, 3)).astype(np.float32) for _ in range(3)]
    weights_before = [w.copy() for w in model.get_weights()]
    assert (
        tfprune.recalibrate_batch_norm(
            model, tf.data.Dataset.from_tensor_slices(np.stack(batches)), steps=2
        )
        == 2
    )
    outer = model.get_layer("outer_bn")
    # The running mean over the two batches read (the third is past ``steps``).
    want_mean = np.mean([b.mean(axis=0) for b in batches[:2]], axis=0)
    np.testing.assert_allclose(outer.moving_mean.numpy(), want_mean, rtol=1e-5)
    assert outer.momentum == 0.8 and inner.layers[1].momentum == 0.9
    # The nested model's BN saw the outer BN's (training-mode) outputs.
    assert not np.allclose(inner.layers[1].moving_variance.numpy(), 1.0)
    # Only BN statistics changed.
    for before, after, w in zip(weights_before, model.get_weights(), model.weights, strict=True):
        if "moving" not in w.name:
            np.testing.assert_array_equal(before, after)


def test_one_batch_and_bad_inputs():
    model, _ = _model()
    x = np.full((8, 3), 5.0, np.float32)
    tfprune.recalibrate_batch_norm(model, x)
    np.testing.assert_allclose(model.get_layer("outer_bn").moving_mean.numpy(), 5.0)
    with pytest.raises(InvalidArgumentError, match="steps must be >= 1"):
        tfprune.recalibrate_batch_norm(model, x, steps=0)
    with pytest.raises(InvalidArgumentError, match="holds no batch"):
        tfprune.recalibrate_batch_norm(model, [])
    with pytest.raises(InvalidArgumentError, match="a batch of inputs"):
        tfprune.recalibrate_batch_norm(model, 3.0)
    assert tfprune.recalibrate_batch_norm(keras.Sequential([keras.layers.Dense(2)]), x) == 0
