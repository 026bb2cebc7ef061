"""keras-hub classifiers and traced custom Keras 3 layers prune at 50 % and strip exactly.

The custom layers tfprune looks inside are replaced by their sublayers and ops in the masked
and the stripped model (stock layers only), so the channels cut inside them fit; the stripped
model computes what the masked one does. Skipped without keras-hub.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_keras3_tracing import ConvBlock
from test_keras3_tracing import _model as block_model

import tfprune
from tfprune import compat
from tfprune.graph.keras3 import is_keras3

K3 = compat.keras3()
keras_hub = pytest.importorskip("keras_hub")
from test_keras_hub import CLASSIFIERS, H, bert  # noqa: E402 - needs keras_hub


def _data(model):
    rng = np.random.default_rng(0)

    def sample(t):
        shape = [2] + [12 if d is None else int(d) for d in t.shape[1:]]
        if "int" in str(t.dtype):
            return rng.integers(1, 50, size=shape).astype(str(t.dtype))
        return rng.standard_normal(shape).astype(str(t.dtype))

    return K3.tree.map_structure(sample, model.input)


def _check_prunes_and_strips(model):
    x = _data(model)
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert is_keras3(small)
    assert small.count_params() < model.count_params()
    assert not [la for la in small._flatten_layers() if type(la).__module__.startswith("tfprune")]
    want = np.asarray(masked(x))
    got = np.asarray(small(x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
    return small


def test_a_traced_custom_layer_is_replaced_by_its_sublayers_when_pruned():
    model = block_model(ConvBlock(6, name="block"))
    small = _check_prunes_and_strips(model)
    names = [la.name for la in small.layers]
    assert "block" not in names
    assert small.get_layer("block_conv").filters == 3  # half of the stream it shares
    assert {type(la).__module__.split(".")[0] for la in small.layers} == {"keras"}


def test_two_traced_custom_layers_with_the_same_sublayer_names_strip():
    x = K3.Input((8, 8, 3), name="image")
    h = K3.layers.Conv2D(6, 3, padding="same", name="stem")(x)
    h = ConvBlock(6, name="one")(h)
    h = ConvBlock(6, name="two")(h)
    h = K3.layers.GlobalAveragePooling2D()(h)
    small = _check_prunes_and_strips(K3.Model(x, K3.layers.Dense(2)(h)))
    assert small.get_layer("one_conv").filters == small.get_layer("two_conv").filters == 3


FAST = {"resnet"}


@pytest.mark.parametrize(
    "name",
    [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(CLASSIFIERS)],
)
def test_keras_hub_image_classifiers_prune_and_strip(name):
    backbone, task = CLASSIFIERS[name]
    _check_prunes_and_strips(task(backbone(), num_classes=4))


@pytest.mark.slow
def test_keras_hub_bert_classifier_prunes_and_strips():
    _check_prunes_and_strips(H.BertTextClassifier(bert(), num_classes=3, preprocessor=None))
