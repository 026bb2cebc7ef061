"""keras-hub backbones and tasks built from their constructors (tiny configs, random weights).

tfprune looks inside their custom blocks and claims their embeddings; a model with a head
(image classifier, text classifier) has at least 80 % of its filters prunable. Skipped
without keras-hub (``pip install -e ".[keras-hub]"``).
"""

from __future__ import annotations

import pytest

import tfprune

keras_hub = pytest.importorskip("keras_hub")
H = keras_hub.models


def resnet():
    return H.ResNetBackbone(
        input_conv_filters=[16],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2],
        block_type="bottleneck_block",
        use_pre_activation=False,
        image_shape=(32, 32, 3),
    )


def efficientnet():
    return H.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 3],
        stackwise_num_repeats=[1, 2, 2],
        stackwise_input_filters=[16, 8, 16],
        stackwise_output_filters=[8, 16, 24],
        stackwise_expansion_ratios=[1, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.25, 0.25, 0.25],
        stackwise_strides=[1, 2, 2],
        stackwise_block_types=["v1", "v1", "v1"],
        stackwise_force_input_filters=[0, 0, 0],
        stackwise_nores_option=[False, False, False],
        stackwise_width_coefficients=[1.0] * 3,
        stackwise_depth_coefficients=[1.0] * 3,
        num_features=64,
        input_shape=(32, 32, 3),
    )


def mobilenet():
    return H.MobileNetBackbone(
        stackwise_expansion=[[16, 24], [48, 48]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=48,
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        last_layer_filter=48,
        squeeze_and_excite=0.5,
        input_num_filters=16,
        image_shape=(32, 32, 3),
    )


def vit():
    return H.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )


def bert():
    return H.BertBackbone(
        vocabulary_size=100,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
    )


CLASSIFIERS = {
    "resnet": (resnet, H.ResNetImageClassifier),
    "efficientnet": (efficientnet, H.EfficientNetImageClassifier),
    "mobilenet": (mobilenet, H.MobileNetImageClassifier),
    "vit": (vit, H.ViTImageClassifier),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_image_classifiers_have_80_percent_of_their_filters_prunable(name):
    backbone, task = CLASSIFIERS[name]
    model = task(backbone(), num_classes=4)
    report = tfprune.explain(model)
    assert not report.opaque, report.opaque
    assert report.prunable_fraction >= 0.8, str(report)
    flops = tfprune.count_flops(model)
    assert flops.total > 0 and not flops.uncounted


def _groups(model):
    return {tuple(sorted(m.path for m in g.producers)): g for g in tfprune.channel_groups(model)}


def test_bert_text_classifier_prunes_heads_feed_forward_units_and_the_hidden_width():
    model = H.BertTextClassifier(bert(), num_classes=3, preprocessor=None)
    report = tfprune.explain(model)
    assert not report.opaque and report.prunable_fraction >= 0.8, str(report)
    groups = _groups(model)
    root = model.backbone.name  # "bert_backbone", numbered when built again in this process
    for i in range(2):
        block = f"{root}/transformer_layer_{i}/"
        heads = [
            g
            for key, g in groups.items()
            if key == (block + "self_attention_layer",) and g.n_units == 2
        ]
        assert heads and heads[0].prunable
        ff = groups[(block + "feedforward_intermediate_dense",)]
        assert ff.prunable and ff.n_units == 32
    # Token, position (per channel) and segment embeddings, every attention output and
    # feed-forward output share the hidden width through the residual adds.
    hidden = next(g for key, g in groups.items() if f"{root}/token_embedding" in key)
    assert hidden.prunable and hidden.n_units == 16
    assert (f"{root}/position_embedding", "ch") in {(m.path, m.role) for m in hidden.layers}


def test_backbones_alone_keep_their_outputs_and_prune_inside():
    # A backbone's outputs are model outputs (never pruned); its blocks are.
    for build in (resnet, efficientnet, mobilenet, vit, bert):
        report = tfprune.explain(build())
        assert not report.opaque, report.opaque
        assert 0.3 < report.prunable_fraction < 1.0, (build.__name__, str(report))
