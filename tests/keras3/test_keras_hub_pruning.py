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
    if isinstance(model.input, dict):  # BERT: token ids, segment ids, padding mask
        return {
            "token_ids": rng.integers(0, 100, size=(2, 12)).astype("int32"),
            "segment_ids": rng.integers(0, 2, size=(2, 12)).astype("int32"),
            "padding_mask": np.ones((2, 12), "int32"),
        }
    return rng.standard_normal((2, *model.input.shape[1:])).astype("float32")


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


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_keras_hub_image_classifiers_prune_and_strip(name):
    backbone, task = CLASSIFIERS[name]
    _check_prunes_and_strips(task(backbone(), num_classes=4))


def test_keras_hub_bert_classifier_prunes_and_strips():
    small = _check_prunes_and_strips(H.BertTextClassifier(bert(), num_classes=3, preprocessor=None))
    # Its transformer blocks are taken apart, named after their path in the backbone.
    inner = small.get_layer("bert_backbone")
    assert inner.get_layer("transformer_layer_0_feedforward_intermediate_dense").units == 16
