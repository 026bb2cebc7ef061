"""Bad input gives clear tfprune.errors errors; prune_filters never modifies its input."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import ARCHITECTURES, inputs_for, randomize

import tfprune
from tfprune.compat import keras
from tfprune.errors import (
    IncompatiblePlanError,
    InvalidArgumentError,
    TfpruneError,
    UnsupportedModelError,
)
from tfprune.layers import is_mask_layer

L = keras.layers


@pytest.fixture
def model():
    return randomize(ARCHITECTURES["conv_chain"]())


@pytest.mark.parametrize(
    ("value", "text"),
    [(-0.1, "-0.1"), (1.0, "1.0"), (1.5, "1.5"), ("abc", "'abc'"), (float("nan"), "nan")],
)
def test_bad_sparsity(model, value, text):
    with pytest.raises(InvalidArgumentError, match="sparsity") as info:
        tfprune.prune_filters(model, value)
    assert text in str(info.value)
    assert "[0, 1)" in str(info.value)


def test_bad_sparsity_in_mapping_names_the_pattern(model):
    with pytest.raises(InvalidArgumentError, match=r"sparsity\['conv1'\]"):
        tfprune.prune_filters(model, {"conv1": 1.2})


def test_invalid_regex(model):
    with pytest.raises(InvalidArgumentError, match="not a valid regular expression"):
        tfprune.prune_filters(model, {"conv[": 0.5})


def test_unknown_importance_name(model):
    with pytest.raises(InvalidArgumentError, match="Unknown importance 'l3'") as info:
        tfprune.prune_filters(model, 0.5, "l3")
    assert "l1" in str(info.value) and "fpgm" in str(info.value)


def test_unknown_skip_layer_suggests_close_name(model):
    with pytest.raises(InvalidArgumentError, match="'conv_1'") as info:
        tfprune.prune_filters(model, 0.5, skip=["conv_1"])
    assert "(did you mean " in str(info.value) and "'conv1'" in str(info.value)


def test_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.c = L.Conv2D(4, 3)
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(L.Flatten()(self.c(x)))

    with pytest.raises(UnsupportedModelError, match="subclassed.*call it once"):
        tfprune.prune_filters(Net(), 0.5)  # never called: its input shapes are unknown
    net = Net()
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    net(x)
    assert any(g.prunable for g in tfprune.channel_groups(net))  # its call() is traced
    small = tfprune.strip_filters(tfprune.prune_filters(net, 0.5))
    assert small.count_params() < net.count_params()
    masked = tfprune.prune_filters(net, 0.5)
    np.testing.assert_allclose(masked(x), tfprune.strip_filters(masked)(x), rtol=1e-5, atol=1e-6)


def test_unbuilt_sequential():
    seq = keras.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(2)])
    with pytest.raises(UnsupportedModelError, match="not built") as info:
        tfprune.prune_filters(seq, 0.5)
    assert "input shape" in str(info.value)


def test_not_a_model():
    with pytest.raises(UnsupportedModelError, match="tf_keras Model"):
        tfprune.prune_filters(L.Dense(3), 0.5)


def test_model_without_prunable_group():
    i = keras.Input((5,))
    o = L.Dense(3, name="only")(i)
    m = keras.Model(i, o)
    with pytest.raises(UnsupportedModelError, match="no prunable") as info:
        tfprune.prune_filters(m, 0.5)
    assert "explain" in str(info.value)


def test_regex_that_matches_nothing(model):
    with pytest.raises(InvalidArgumentError, match="No prunable layer matches") as info:
        tfprune.prune_filters(model, {"nothing_.*": 0.5})
    assert "conv1" in str(info.value)  # names prunable producers


def test_regex_that_matches_only_output_layer(model):
    with pytest.raises(InvalidArgumentError, match="No prunable layer matches"):
        tfprune.prune_filters(model, {"out": 0.5})


def test_taylor_without_data(model):
    with pytest.raises(InvalidArgumentError, match="taylor.*needs data"):
        tfprune.prune_filters(model, 0.5, "taylor")


def test_taylor_without_loss(model):
    data = (np.zeros((2, 8, 8, 3), np.float32), np.zeros(2, int))
    with pytest.raises(InvalidArgumentError, match="needs a loss"):
        tfprune.prune_filters(model, 0.5, "taylor", importance_data=data)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"round_to": 0}, "round_to"),
        ({"round_to": 2.5}, "round_to"),
        ({"max_group_sparsity": 1.0}, "max_group_sparsity"),
        ({"global_ranking": "yes"}, "global_ranking"),
        ({"skip": ["nope"]}, "nope"),
    ],
)
def test_other_bad_arguments(model, kwargs, text):
    with pytest.raises(InvalidArgumentError, match=text):
        tfprune.prune_filters(model, 0.5, **kwargs)


def test_empty_sparsity_mapping(model):
    with pytest.raises(InvalidArgumentError, match="empty"):
        tfprune.prune_filters(model, {})


def test_errors_are_value_errors():
    for cls in (InvalidArgumentError, UnsupportedModelError, IncompatiblePlanError):
        assert issubclass(cls, TfpruneError) and issubclass(cls, ValueError)


def test_for_model_on_unmasked_model(model):
    with pytest.raises(UnsupportedModelError, match="no tfprune masks"):
        tfprune.FilterPruner.for_model(model)


def test_original_model_is_never_modified_even_after_training_the_copy(model):
    before = [w.copy() for w in model.get_weights()]
    xs = inputs_for(model)
    out_before = model(xs[0], training=False).numpy()
    masked = tfprune.prune_filters(model, 0.5)
    masked.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    y = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    masked.fit(xs[0], y, epochs=2, verbose=0)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out_before, model(xs[0], training=False).numpy())
    assert not any(is_mask_layer(layer) for layer in model.layers)
    # No variable is shared between the copy and the original.
    assert not {id(v) for v in model.weights} & {id(v) for v in masked.weights}
