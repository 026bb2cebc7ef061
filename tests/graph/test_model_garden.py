"""TF Model Garden networks (custom blocks everywhere) are traced, pruned and stripped exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

official = pytest.importorskip("official")

import tfprune  # noqa: E402
from tfprune.compat import keras, tf  # noqa: E402
from tfprune.flops import count_flops  # noqa: E402
from tfprune.nested import all_layers  # noqa: E402


def _classifier(backbone, size):
    from official.vision.modeling import classification_model

    spec = keras.layers.InputSpec(shape=[None, size, size, 3])
    return classification_model.ClassificationModel(backbone(spec), num_classes=4, input_specs=spec)


def _resnet_se(model_id):
    def build(spec):
        from official.vision.modeling.backbones import resnet

        return resnet.ResNet(
            model_id=model_id, input_specs=spec, se_ratio=0.25, init_stochastic_depth_rate=0.1
        )

    return build


def _mobilenet(model_id):
    def build(spec):
        from official.vision.modeling.backbones import mobilenet

        return mobilenet.MobileNet(model_id=model_id, input_specs=spec, filter_size_scale=0.5)

    return build


def _check(model, x):
    report = tfprune.explain(model)
    assert report.prunable_fraction >= 0.8, str(report)
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    a, b = masked(x, training=False).numpy(), small(x, training=False).numpy()
    assert np.abs(a - b).max() <= 1e-5 * max(np.abs(a).max(), 1e-12)
    before, after = count_flops(model).total, count_flops(small).total
    assert after < 0.5 * before
    return small


@pytest.fixture(scope="module")
def resnet10_se():
    """``(x, small)``: ResNet-10 with SE and stochastic depth, checked by :func:`_check`.

    Built, pruned and stripped once for the module (its test and the export test).
    """
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    return x, _check(_classifier(_resnet_se(10), 32), x)


def test_resnet10_with_se_and_stochastic_depth(resnet10_se):
    _, small = resnet10_se
    # Stochastic depth stays a (weightless) layer and still drops paths in training.
    names = {type(layer).__name__ for layer in all_layers(small)}
    assert "StochasticDepth" in names and "ResidualBlock" not in names


@pytest.mark.slow
def test_resnet_bottlenecks_with_se_and_stochastic_depth(monkeypatch):
    from official.vision.modeling.backbones import resnet

    # ResNet-50's blocks, fewer of them: a projection and an identity bottleneck in the first
    # group, one projection bottleneck in each other (ResNet-50 repeats the same two kinds).
    spec = [("bottleneck", 64, 2), ("bottleneck", 128, 1), ("bottleneck", 256, 1)]
    monkeypatch.setitem(resnet.RESNET_SPECS, 14, [*spec, ("bottleneck", 512, 1)])
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    model = _classifier(_resnet_se(14), 32)
    blocks = [la for la in all_layers(model) if type(la).__name__ == "BottleneckBlock"]
    assert len(blocks) == 5
    _check(model, x)


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["MobileNetV2", "MobileNetV3Small", "MobileNetV4ConvSmall"])
def test_mobilenets(model_id):
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    _check(_classifier(_mobilenet(model_id), 32), x)


def _bert_classifier():
    from official.nlp.modeling import models, networks

    keras.utils.set_random_seed(0)
    encoder = networks.BertEncoder(
        vocab_size=50,
        hidden_size=16,
        num_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_sequence_length=8,
    )
    return models.BertClassifier(encoder, num_classes=3)


def _token_inputs(n=2, seq=8):
    rng = np.random.default_rng(0)
    return {
        "input_word_ids": rng.integers(0, 50, (n, seq)).astype(np.int32),
        "input_mask": (rng.random((n, seq)) > 0.2).astype(np.int32),
        "input_type_ids": rng.integers(0, 2, (n, seq)).astype(np.int32),
    }


@pytest.fixture(scope="module")
def bert():
    """``(model, masked, small)``: the BERT classifier masked at 50% and stripped.

    Built, pruned and stripped once for the module (its test and the export test).
    """
    model = _bert_classifier()
    masked = tfprune.prune_filters(model, 0.5)
    return model, masked, tfprune.strip_filters(masked)


def test_bert_classifier_prunes_heads_feed_forward_units_and_hidden_width(bert):
    model, masked, small = bert
    report = tfprune.explain(model)
    assert report.prunable_fraction >= 0.8, str(report)
    x = _token_inputs()
    a, b = masked(x, training=False).numpy(), small(x, training=False).numpy()
    assert np.abs(a - b).max() <= 1e-5 * max(np.abs(a).max(), 1e-12)
    attention = [la for la in all_layers(small) if type(la).__name__ == "MultiHeadAttention"]
    assert [la.get_config()["num_heads"] for la in attention] == [2, 2]
    shapes = [(8,)] * 3
    before, after = count_flops(model, input_shapes=shapes), count_flops(small, input_shapes=shapes)
    assert not before.is_lower_bound and not after.is_lower_bound
    assert after.total < 0.5 * before.total


def test_vit_prunes_its_hidden_width_heads_and_mlp_and_copies_layers_without_get_config():
    from official.vision.modeling.backbones import vit

    def backbone(spec):
        return vit.VisionTransformer(
            input_specs=spec,
            patch_size=8,
            hidden_size=16,
            num_layers=1,
            num_heads=2,
            mlp_dim=32,
            pooler="token",
            representation_size=0,
        )

    keras.utils.set_random_seed(0)
    model = _classifier(backbone, 32)
    # Hidden width (through the class token, position embeddings and a reshape that spells
    # out the width), heads and MLP units: all but the logits.
    assert tfprune.explain(model).prunable_fraction >= 0.8
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    a, b = masked(x, training=False).numpy(), small(x, training=False).numpy()
    assert np.abs(a - b).max() <= 1e-5 * max(np.abs(a).max(), 1e-12)
    attention = [la for la in all_layers(small) if type(la).__name__ == "MultiHeadAttention"]
    assert [la.get_config()["num_heads"] for la in attention] == [1]
    # AddPositionEmbs has no get_config(): its copy is checked to compute the same.
    assert any(type(la).__name__ == "AddPositionEmbs" for la in all_layers(small))


# Runs in a fresh Python process that imports TensorFlow only (never tfprune or the Model Garden):
# each export in argv serves its saved inputs and must give the saved outputs (``<path>.npz``),
# within the tolerance of the export's own check when the file gives one.
RELOAD = """
import sys
import numpy as np
import tensorflow as tf
for path in sys.argv[1:]:
    serve = tf.saved_model.load(path).signatures["serving_default"]
    arrays = np.load(path + ".npz")
    inputs = {k[3:]: tf.constant(arrays[k]) for k in arrays.files if k.startswith("in/")}
    (y,) = serve(**inputs).values()
    want = arrays["out"]
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-5, err_msg=path)
    if "tolerance" in arrays.files:  # export_for_serving's own check (its verify=True)
        assert np.abs(y.numpy() - want).max() <= 1e-5 + arrays["tolerance"] * np.abs(want).max()
    print("OK", path, flush=True)
assert not any(k.startswith(("tfprune", "official")) for k in sys.modules)
print("done")
"""


def test_stripped_resnet_and_bert_classifier_export_and_run_in_a_fresh_process(
    resnet10_se, bert, tmp_path
):
    """Both exports compute what the stripped models do, in one process without tfprune.

    One process for both: a Python process importing TensorFlow costs about as much as an export.
    """
    from tfprune.deploy.inputs import input_names
    from tfprune.export import export_for_serving, export_saved_model

    x, resnet = resnet10_se
    resnet_path = export_saved_model(resnet, tmp_path / "serving")
    (name,) = input_names(resnet)
    np.savez(f"{resnet_path}.npz", **{f"in/{name}": x}, out=resnet(x, training=False).numpy())

    _, _, small = bert  # the BERT classifier shrunk at 50%
    tokens = _token_inputs()
    result = export_for_serving(
        small, tmp_path / "bert", check_inputs=[tokens[name] for name in input_names(small)]
    )
    assert result.max_relative_difference <= result.tolerance
    inputs = {f"in/{name}": tokens[name] for name in input_names(small)}
    want = small(tokens, training=False).numpy()
    np.savez(f"{result.path}.npz", **inputs, out=want, tolerance=result.tolerance)

    done = subprocess.run(
        [sys.executable, "-c", RELOAD, str(resnet_path), result.path],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"OK {resnet_path}", f"OK {result.path}", "done"]


# Blocks of MobileNetV4HybridMedium kept in the short hybrid below (35 in all): the stem, every
# stage's first and output blocks, a UIB without depthwise convs, and one attention block of
# each kind (key/value strides 2 at 24 px, 1 at 12 px) with the block after it.
_HYBRID_BLOCKS = (0, 1, 2, 3, 4, 5, 8, 9, 15, 16, 24, 25, 31, 32, 33, 34)


@pytest.mark.slow
def test_mobilenet_v4_hybrid_strips_around_its_blocked_attention_reshapes(monkeypatch):
    # Its attention reshapes split filters into heads (blocked); stripping the groups around
    # them must replay those reshapes as recorded.
    from official.vision.modeling.backbones import mobilenet

    medium = mobilenet.SUPPORTED_SPECS_MAP["MobileNetV4HybridMedium"]
    short = {**medium, "block_specs": [medium["block_specs"][i] for i in _HYBRID_BLOCKS]}
    monkeypatch.setitem(mobilenet.SUPPORTED_SPECS_MAP, "MobileNetV4HybridShort", short)
    kinds = [spec[0] for spec in short["block_specs"]]
    assert kinds.count("mhsa") == 2 and kinds.count("uib") == 9
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)

    def backbone(spec):
        return mobilenet.MobileNet(
            model_id="MobileNetV4HybridShort", input_specs=spec, filter_size_scale=0.25
        )

    model = _classifier(backbone, 64)
    assert tfprune.explain(model).prunable_fraction >= 0.6
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    a, b = masked(x, training=False).numpy(), small(x, training=False).numpy()
    assert np.abs(a - b).max() <= 1e-5 * max(np.abs(a).max(), 1e-12)
    assert count_flops(small).total < 0.7 * count_flops(model).total


@pytest.mark.slow
def test_albert_encoder_with_a_list_of_layer_outputs_exports_one_tensor_per_name(tmp_path):
    from official.nlp.modeling import networks

    from tfprune.export import export_saved_model

    keras.utils.set_random_seed(0)
    encoder = networks.AlbertEncoder(
        vocab_size=50,
        embedding_width=8,
        hidden_size=16,
        num_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_sequence_length=8,
        dict_outputs=True,
    )
    x = _token_inputs()
    path = export_saved_model(encoder, tmp_path / "albert", check_inputs=x)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    got = {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in x.items()}).items()}
    want = encoder(x, training=False)
    layers = {"encoder_outputs_0", "encoder_outputs_1"}
    assert set(got) == {"sequence_output", "pooled_output"} | layers
    for i, layer_output in enumerate(want["encoder_outputs"]):
        np.testing.assert_allclose(got[f"encoder_outputs_{i}"], layer_output.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["pooled_output"], want["pooled_output"].numpy(), atol=1e-5)
