"""The Keras 3 model rebuild: replay a graph with layers replaced, inserted or removed."""

from __future__ import annotations

import numpy as np
import pytest

from tfprune import compat
from tfprune.graph.keras3 import is_keras3
from tfprune.graph.rebuild import copy_layer, rebuild_model

K3 = compat.keras3()
L = K3.layers


def _block():
    x = K3.Input((4, 4, 6), name="block_in")
    h = L.Conv2D(6, 1, name="inner_conv")(x)
    return K3.Model(x, h + x, name="block")


def _model():
    x = K3.Input((4, 4, 3), name="image")
    a = L.Conv2D(6, 3, padding="same", name="conv_a")(x)
    a = L.BatchNormalization(name="bn_a")(a)
    b = L.Conv2D(6, 1, name="conv_b")(x)
    h = K3.ops.relu(a + b)  # raw ops
    h = _block()(h)  # nested functional model
    h = K3.ops.concatenate([h, L.DepthwiseConv2D(3, padding="same", name="dw")(h)], axis=-1)
    h = K3.ops.reshape(h, (-1, 16, 12))
    h = L.GlobalAveragePooling1D(name="gap")(h)
    return K3.Model(x, {"logits": L.Dense(2, name="head")(h)}, name="k3_rebuild")


def _copy(layer, path):
    return copy_layer(layer), layer.get_weights()


X = np.random.default_rng(0).standard_normal((3, 4, 4, 3)).astype("float32")


def test_identity_rebuild_replays_raw_ops_and_nested_models_with_fresh_variables():
    model = _model()
    new = rebuild_model(model, _copy)
    assert is_keras3(new) and new.name == "k3_rebuild"
    assert isinstance(new.get_layer("block"), K3.Model)
    np.testing.assert_allclose(new(X)["logits"], model(X)["logits"], rtol=1e-6, atol=1e-6)
    old_vars = {id(v) for v in model.weights}
    assert not any(id(v) in old_vars for v in new.weights)


def test_layers_can_be_replaced_inserted_and_removed():
    model = _model()

    def factory(layer, path):
        if layer.name == "bn_a":
            return None, None  # removed: its input passes through
        if path == "block/inner_conv":
            return L.Conv2D(6, 1, use_bias=False, name="inner_conv"), {
                "kernel": np.zeros((1, 1, 6, 6), "float32")
            }
        return _copy(layer, path)

    seen = []

    def hook(path, old, new, state):
        if path == "head":
            seen.append(path)
            return L.Lambda(lambda t: t * 0.0, name="zero")(new)
        return new

    new = rebuild_model(model, factory, hook)
    names = {la.name for la in new.layers}
    assert "bn_a" not in names and "zero" in names and seen == ["head"]
    assert not new.get_layer("block").get_layer("inner_conv").use_bias
    np.testing.assert_allclose(new(X)["logits"], np.tile(new.get_layer("head").bias, (3, 1)))


def test_sequential_stays_sequential_and_inserted_layers_join_it():
    model = K3.Sequential(
        [K3.Input((5,)), L.Dense(4, name="d1"), L.Dense(3, name="d2")], name="seq"
    )

    def hook(path, old, new, state):
        if path == "d2":
            layer = L.Identity(name="inserted")
            state.setdefault("inserted", []).append(layer)
            return layer(new)
        return new

    new = rebuild_model(model, _copy, hook)
    assert isinstance(new, K3.Sequential)
    assert [la.name for la in new.layers] == ["d1", "inserted", "d2"]
    x = np.ones((2, 5), "float32")
    np.testing.assert_allclose(new(x), model(x), rtol=1e-6)


@pytest.mark.parametrize("bad", ["missing", "shape"])
def test_wrong_weights_are_refused(bad):
    model = K3.Sequential([K3.Input((5,)), L.Dense(4, name="d1")])

    def factory(layer, path):
        value = {} if bad == "missing" else {"kernel": np.zeros((2, 2)), "bias": np.zeros(4)}
        return copy_layer(layer), value

    with pytest.raises((KeyError, ValueError)):
        rebuild_model(model, factory)
