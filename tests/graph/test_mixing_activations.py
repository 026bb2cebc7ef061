"""A layer whose own activation normalises over the channels (a softmax) keeps its channels.

The channel mask acts after a layer's activation, so removing a channel of a softmax output
would change every kept one: masked and stripped would differ. Such groups must block.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune import compat
from tfprune.compat import keras, tf
from tfprune.errors import UnsupportedModelError


def _mlp(lib, middle):
    """Input -> Dense(16, name="h") -> middle(h) -> Dense(4); ``middle`` may add layers."""
    x = lib.Input((8,))
    h = middle(lib, x)
    return lib.Model(x, lib.layers.Dense(4, name="out")(h))


def _dense_softmax(lib, x):
    return lib.layers.Dense(16, activation="softmax", name="h")(x)


def _activation_softmax(lib, x):
    return lib.layers.Activation("softmax")(lib.layers.Dense(16, name="h")(x))


def _activation_log_softmax(lib, x):
    return lib.layers.Activation(tf.nn.log_softmax)(lib.layers.Dense(16, name="h")(x))


def _dense_relu(lib, x):
    return lib.layers.Dense(16, activation="relu", name="h")(x)


@pytest.mark.parametrize("middle", [_dense_softmax, _activation_softmax, _activation_log_softmax])
def test_a_softmax_over_the_channels_blocks_its_group_and_says_why(middle):
    model = _mlp(keras, middle)
    report = str(tfprune.explain(model))
    assert "mixes the channels" in report and "softmax" in report
    with pytest.raises(UnsupportedModelError, match="no prunable channel group"):
        tfprune.prune_filters(model, 0.5)


def test_an_elementwise_activation_still_prunes_and_strips_exactly():
    model = _mlp(keras, _dense_relu)
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("h").units == 8
    x = np.random.RandomState(0).randn(5, 8).astype("float32")
    np.testing.assert_allclose(masked(x), small(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("middle", [_dense_softmax, _activation_softmax])
def test_a_keras3_softmax_over_the_channels_blocks_its_group(middle):
    model = _mlp(compat.keras3(), middle)
    report = str(tfprune.explain(model))
    assert "mixes the channels" in report and "softmax" in report
    assert tfprune.explain(model).to_dict()["prunable_fraction"] == 0
