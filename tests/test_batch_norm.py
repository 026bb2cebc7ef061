"""recalibrate_batch_norm: BN moving statistics from data, nested models included."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune.batch_norm import check_accuracy_gap
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


def _conv_bn(momentum: float = 0.99):
    x = keras.Input((4, 4, 1))
    y = keras.layers.Conv2D(3, 3, name="conv")(x)
    y = keras.layers.BatchNormalization(momentum=momentum, name="bn")(y)
    return keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(y)))


def test_accuracy_gap_is_flagged_only_when_large_with_batch_norm():
    lines: list[str] = []
    check = check_accuracy_gap(
        _conv_bn(), {"accuracy": [0.3, 0.64]}, 0.10, what="small_cnn", log=lines.append
    )
    assert check.flagged and check.batch_norms == 1 and check.momenta == (0.99,)
    assert check.metrics() == {
        "train_acc": pytest.approx(0.64),
        "acc_gap": pytest.approx(0.54),
        "batch_norm_gap": True,
    }
    # One warning that names the model, the figures, the cause and the three fixes.
    (line,) = lines
    for words in ("small_cnn", "10.0%", "64.0%", "momentum 0.99", "more steps"):
        assert words in line
    assert "tfprune.recalibrate_batch_norm" in line and "0.9 is PyTorch's 0.1" in line
    # A small gap, an untrained model or a model without BatchNormalization: nothing to say.
    quiet: list[str] = []
    assert not check_accuracy_gap(_conv_bn(), {"accuracy": [0.64]}, 0.5, log=quiet.append).flagged
    untrained = check_accuracy_gap(_conv_bn(), {}, 0.1, log=quiet.append)
    assert untrained.metrics() == {"train_acc": None, "acc_gap": None, "batch_norm_gap": False}
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    no_bn = check_accuracy_gap(dense, {"accuracy": [0.99]}, 0.1, log=quiet.append)
    assert no_bn.gap == pytest.approx(0.89) and not no_bn.flagged and no_bn.message() == ""
    assert quiet == []
