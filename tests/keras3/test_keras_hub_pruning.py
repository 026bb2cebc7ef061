"""keras-hub classifiers prune at 50 % and strip exactly (tiny configs, random weights).

Their custom blocks, which tfprune looks inside, are replaced by their sublayers and ops in the
masked and the stripped model. Skipped without keras-hub.
"""

from __future__ import annotations

import numpy as np
import pytest
from keras3_twins import prunes_and_strips

keras_hub = pytest.importorskip("keras_hub")
from test_keras_hub import CLASSIFIERS, H, bert  # noqa: E402 - needs keras_hub


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_keras_hub_image_classifiers_prune_and_strip(name):
    backbone, task = CLASSIFIERS[name]
    model = task(backbone(), num_classes=4)
    x = np.random.default_rng(0).standard_normal((2, *model.input.shape[1:])).astype("float32")
    prunes_and_strips(model, x)


def test_keras_hub_bert_classifier_prunes_and_strips():
    model = H.BertTextClassifier(bert(), num_classes=3, preprocessor=None)
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, 100, size=(2, 12)).astype("int32"),
        "segment_ids": rng.integers(0, 2, size=(2, 12)).astype("int32"),
        "padding_mask": np.ones((2, 12), "int32"),
    }
    small = prunes_and_strips(model, x)
    # Its transformer blocks are taken apart, named after their path in the backbone.
    inner = small.get_layer(model.backbone.name)
    assert inner.get_layer("transformer_layer_0_feedforward_intermediate_dense").units == 16
    assert "transformer_layer_0" not in [la.name for la in inner.layers]
