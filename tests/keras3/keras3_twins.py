"""A small CNN built the same way in both Keras flavours, with the same weights."""

from __future__ import annotations

import numpy as np

import tfprune
from tfprune import compat
from tfprune.graph.keras3 import is_keras3

K3 = compat.keras3()
TK = compat.keras


def _twin(k):
    """The same CNN in Keras flavour ``k``: residual add, concat, depthwise, BN, Dense."""
    L = k.layers
    if k is K3:

        def add(a, b):
            return a + b  # a raw op in Keras 3

        def cat(ts):
            return K3.ops.concatenate(ts, axis=-1)

    else:

        def add(a, b):
            return L.Add(name="add")([a, b])

        cat = L.Concatenate(name="cat")
    x = k.Input((8, 8, 3), name="image")
    a = L.Conv2D(8, 3, padding="same", name="conv_a")(x)
    a = L.BatchNormalization(name="bn_a")(a)
    a = L.ReLU(name="relu_a")(a)
    b = L.Conv2D(8, 3, padding="same", name="conv_b")(a)
    b = L.BatchNormalization(name="bn_b")(b)
    r = add(a, b)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(r)
    c = L.Conv2D(6, 1, name="conv_c")(r)
    h = L.Conv2D(10, 1, name="conv_d")(cat([d, c]))
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.Dense(12, activation="relu", name="fc")(h)
    return k.Model(x, L.Dense(3, name="head")(h), name="twin")


def twins(seed: int = 0):
    """A tf_keras model and its Keras 3 twin with the same (random, non-trivial) weights."""
    rng = np.random.default_rng(seed)
    tk, k3 = _twin(TK), _twin(K3)
    for layer in tk.layers:
        values = [rng.standard_normal(w.shape).astype("float32") * 0.5 for w in layer.weights]
        if isinstance(layer, TK.layers.BatchNormalization):
            values[3] = np.abs(values[3]) + 0.5  # a positive moving variance
        layer.set_weights(values)
        if values:
            k3.get_layer(layer.name).set_weights(values)
    return tk, k3


X = np.random.default_rng(1).standard_normal((4, 8, 8, 3)).astype("float32")


def prunes_and_strips(model, x):
    """Prune ``model`` at 50 %, strip it; check the result and return the stripped model.

    The stripped model is Keras 3, smaller, of no tfprune layer, and computes what the masked
    one does within 1e-5 relative.
    """
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert is_keras3(small)
    assert small.count_params() < model.count_params()
    assert not [la for la in small._flatten_layers() if type(la).__module__.startswith("tfprune")]
    want, got = np.asarray(masked(x)), np.asarray(small(x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
    return small
