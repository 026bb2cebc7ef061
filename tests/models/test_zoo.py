"""Tests of the model zoo: builders, parameter counts, forward passes, registry and schemes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.models import (
    RESNET50_SCHEMES,
    get_model,
    index_pattern,
    keras_application,
    lenet5,
    lenet5_linear,
    lenet_scheme,
    list_models,
    matching_layers,
    mlp7_linear,
    mlp7_relu,
    mlp_scheme,
    parse_index_ratios,
    resnet50_stage_scheme,
    vgg16_bn,
    vgg16_li_pruned_a_scheme,
    vgg19_bn,
    vgg_scheme,
)


def _kernel_count(model: keras.Model) -> int:
    return sum(
        int(np.prod(layer.kernel.shape)) for layer in model.layers if hasattr(layer, "kernel")
    )


def _matched(model: keras.Model, scheme: dict[str, float]) -> list[str]:
    return sorted(n for names in matching_layers(model, scheme).values() for n in names)


# ---------------------------------------------------------------- MLP-7


def test_mlp7_linear_paper_shapes_and_counts():
    model = mlp7_linear(input_dim=1024, seed=0)
    assert [layer.name for layer in model.layers[1:]] == [f"fc{i}" for i in range(7)]
    assert _kernel_count(model) == 153_400
    assert model.count_params() == 153_400 + 6 * 100 + 10
    assert all(layer.activation is keras.activations.linear for layer in model.layers[1:])
    assert model.output_shape == (None, 10)


def test_mlp7_linear_is_a_linear_map():
    model = mlp7_linear(input_dim=64, seed=1)
    x = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    f = lambda v: model(v).numpy()  # noqa: E731
    zero = f(np.zeros_like(x))
    np.testing.assert_allclose(f(2 * x) - zero, 2 * (f(x) - zero), rtol=1e-4, atol=1e-4)


def test_mlp7_relu_uses_relu_on_hidden_layers_only():
    model = mlp7_relu(seed=0)
    acts = [layer.activation for layer in model.layers[1:]]
    assert all(a is keras.activations.relu for a in acts[:-1])
    assert acts[-1] is keras.activations.linear
    assert model.count_params() == 784 * 100 + 100 + 5 * 10_100 + 1010


def test_torch_init_bounds_and_seed_reproducibility():
    a, b = mlp7_linear(seed=3), mlp7_linear(seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    kernel, bias = a.get_layer("fc0").get_weights()
    bound = 1 / np.sqrt(784)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(bias).max() > bound / 2  # biases are not zero-initialised
    k1 = a.get_layer("fc1").get_weights()[0]
    assert np.abs(k1).max() <= 0.1 and np.abs(k1).max() > 0.09
    keras_init = mlp7_linear(init="keras", seed=3)
    assert not keras_init.get_layer("fc0").get_weights()[1].any()
    with pytest.raises(InvalidArgumentError, match="init"):
        mlp7_linear(init="xavier")


def test_mlp_scheme_matches_hidden_layers_only():
    scheme = mlp_scheme(0.8)
    assert scheme == {"fc[0-5]": 0.8}
    assert _matched(mlp7_linear(), scheme) == [f"fc{i}" for i in range(6)]
    assert mlp_scheme(0.0) == {}
    assert parse_index_ratios("[0-5:0.8, 6:0]", "fc") == scheme


# ---------------------------------------------------------------- LeNet-5


@pytest.mark.parametrize("shape, params", [((32, 32, 1), 61_706), ((28, 28, 1), 44_426)])
def test_lenet5_parameter_counts_and_forward(shape, params):
    model = lenet5(input_shape=shape, seed=0)
    assert model.count_params() == params
    out = model(np.zeros((2, *shape), np.float32))
    assert out.shape == (2, 10)
    names = [layer.name for layer in model.layers]
    for name in ("conv0", "conv1", "fc2", "fc3", "fc4"):
        assert name in names


def test_lenet5_linear_has_no_activation_and_scheme():
    model = lenet5_linear(seed=0)
    for name in ("conv0", "conv1", "fc2", "fc3"):
        assert model.get_layer(name).activation is keras.activations.linear
    assert lenet5(seed=0).get_layer("conv0").activation is keras.activations.relu
    assert _matched(model, lenet_scheme(0.9)) == ["conv0", "conv1", "fc2"]


# ---------------------------------------------------------------- VGG


def test_vgg16_bn_cifar10_counts():
    model = vgg16_bn(10, seed=0)
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [f"conv{i}" for i in range(13)]
    assert _kernel_count(model) - 512 * 10 == 14_710_464
    assert model.count_params() == 14_732_490
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 14_724_042
    assert [layer.name for layer in model.layers if "pool" in layer.name] == [
        "pool0",
        "pool1",
        "pool2",
        "pool3",
    ]


def test_vgg19_bn_cifar100_counts_forward_and_scheme():
    model = vgg19_bn(100, seed=0)
    assert model.count_params() == 20_092_196
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 100)
    matched = _matched(model, vgg_scheme(0.7))
    assert matched == sorted(f"conv{i}" for i in range(1, 16))
    assert vgg_scheme(0.7) == {index_pattern("conv", range(1, 16)): 0.7}
    assert parse_index_ratios("[1-15:0.7]", "conv") == vgg_scheme(0.7)


def test_vgg_scheme_does_not_match_bn_relu_or_fc_and_li_pruned_a():
    model = vgg16_bn(10, width=0.25, seed=0)
    assert _matched(model, vgg_scheme(0.5, depth=16)) == sorted(f"conv{i}" for i in range(1, 13))
    matched = _matched(model, vgg16_li_pruned_a_scheme())
    assert matched == sorted(["conv0"] + [f"conv{i}" for i in range(7, 13)])
    assert model.get_layer("conv0").filters == 16


# ---------------------------------------------------------------- Keras applications


@pytest.fixture(scope="module")
def resnet50() -> keras.Model:
    return keras_application("ResNet50", input_shape=(64, 64, 3), num_classes=10)


def test_keras_application_resnet50_builds_with_logits(resnet50):
    assert resnet50.output_shape == (None, 10)
    assert resnet50.layers[-1].activation is keras.activations.linear
    out = resnet50(np.zeros((1, 64, 64, 3), np.float32))
    assert out.shape == (1, 10)


def test_resnet50_231x_scheme_matches_conv1_conv2_of_all_16_bottlenecks(resnet50):
    scheme = resnet50_stage_scheme(RESNET50_SCHEMES["2.31x"])
    matched = matching_layers(resnet50, scheme)
    names = sorted(n for v in matched.values() for n in v)
    blocks = [("conv2", 3), ("conv3", 4), ("conv4", 6), ("conv5", 3)]
    expected = sorted(
        f"{stage}_block{b}_{k}_conv" for stage, n in blocks for b in range(1, n + 1) for k in (1, 2)
    )
    assert len(names) == 32 and names == expected
    ratios = {n: r for pat, r in scheme.items() for n in matched[pat]}
    assert ratios["conv5_block3_2_conv"] == 0.21 and ratios["conv2_block1_1_conv"] == 0.6
    # never pruned: stem, third convs, downsample convs, classifier
    assert not any(re.search(r"_(0|3)_conv$", n) for n in names)
    assert "conv1_conv" not in names


def test_resnet50_scheme_stem_ratio_zero_stages_and_fc_rule(resnet50):
    scheme = resnet50_stage_scheme([0.1, 0, 0, 0, 0.5, 0])
    assert _matched(resnet50, scheme)[0] == "conv1_conv"
    assert len(_matched(resnet50, scheme)) == 1 + 6
    with pytest.raises(InvalidArgumentError, match="s_fc"):
        resnet50_stage_scheme([0, 0.5, 0.5, 0.5, 0.5, 0.3])
    with pytest.raises(InvalidArgumentError, match="6 entries"):
        resnet50_stage_scheme([0, 0.5])


def test_keras_application_refuses_downloads_and_missing_files(tmp_path):
    with pytest.raises(InvalidArgumentError, match="never downloads"):
        keras_application("ResNet50", weights="imagenet")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        keras_application("ResNet50", weights=tmp_path / "missing.h5")
    with pytest.raises(InvalidArgumentError, match="ResNet50"):
        keras_application("ResNet5")


def test_keras_application_loads_local_weights_file(tmp_path):
    source = keras_application("MobileNetV2", input_shape=(32, 32, 3), num_classes=3, alpha=0.35)
    path = tmp_path / "w.weights.h5"
    source.save_weights(str(path))
    loaded = get_model(
        "keras:MobileNetV2", input_shape=(32, 32, 3), num_classes=3, alpha=0.35, weights=path
    )
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), source(x).numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- registry and helpers


def test_list_models_contains_the_zoo_and_applications():
    names = list_models()
    for name in (
        "mlp7_linear",
        "mlp7_relu",
        "lenet5",
        "lenet5_linear",
        "resnet20",
        "resnet32",
        "resnet56",
        "resnet110",
        "vgg16_bn",
        "vgg19_bn",
        "keras:ResNet50",
    ):
        assert name in names
    assert "keras:ResNet50" not in list_models(include_applications=False)


@pytest.mark.parametrize(
    "name, kwargs, input_shape",
    [
        ("mlp7_linear", dict(input_dim=64), (64,)),
        ("mlp7_relu", {}, (784,)),
        ("lenet5", dict(input_shape=(28, 28, 1)), (28, 28, 1)),
        ("lenet5_linear", {}, (32, 32, 1)),
        ("vgg16_bn", dict(width=0.125), (32, 32, 3)),
        ("vgg19_bn", dict(num_classes=10, width=0.125), (32, 32, 3)),
        ("keras:MobileNetV2", dict(input_shape=(32, 32, 3), num_classes=10), (32, 32, 3)),
    ],
)
def test_get_model_builds_uncompiled_models_that_run(name, kwargs, input_shape):
    model = get_model(name, **kwargs)
    assert model.optimizer is None
    out = model(np.zeros((2, *input_shape), np.float32))
    assert out.shape == (2, 10)


def test_get_model_resnet_is_lazy_and_builds():
    model = get_model("resnet20")
    assert model(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 10)


def test_get_model_unknown_name_lists_names():
    with pytest.raises(InvalidArgumentError) as info:
        get_model("resnet18")
    assert "mlp7_linear" in str(info.value) and "keras:<Application>" in str(info.value)


def test_index_pattern_is_exact():
    pattern = index_pattern("conv", range(1, 16))
    assert re.fullmatch(pattern, "conv15") and re.fullmatch(pattern, "conv1")
    for name in ("conv0", "conv16", "conv150", "conv1_bn", "xconv1"):
        assert not re.fullmatch(pattern, name)
    assert index_pattern("fc", [2]) == "fc2"
    assert index_pattern("fc", [0, 1, 2]) == "fc[0-2]"


@pytest.mark.parametrize(
    "spec", ["[0-5:1.0]", "[0-5:0.5, 5:0.2]", "[3-1:0.5]", "[a:0.5]", "[0-5:-0.1]"]
)
def test_parse_index_ratios_rejects_bad_specs(spec):
    with pytest.raises(InvalidArgumentError):
        parse_index_ratios(spec, "fc")


def test_parse_index_ratios_groups_equal_ratios():
    scheme = parse_index_ratios("[0:0.5, 1-2:0.3, 3:0.5, 4:0]", "conv")
    assert scheme == {"conv(?:0|3)": 0.5, "conv[1-2]": 0.3}


#: Zoo models whose BatchNormalization follows a paper's recipe instead of PyTorch's defaults
#: (name -> (momentum, epsilon)); none today.
_BN_EXCEPTIONS: dict[str, tuple[float, float]] = {}


#: Zoo models that other test modules build with the same builder: taken from the session
#: fixtures (conftest) instead of a second build. A builder sets its BatchNormalization
#: momentum and epsilon whatever its seed, so the check is the same.
_SESSION_MODELS = {"resnet34": "resnet34_224", "resnet56": "resnet56_model"}


@pytest.mark.parametrize("name", list_models(include_applications=False))
def test_every_zoo_batch_norm_uses_pytorch_momentum_and_epsilon(name, request):
    fixture = _SESSION_MODELS.get(name)
    model = request.getfixturevalue(fixture) if fixture else get_model(name)
    norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    momentum, epsilon = _BN_EXCEPTIONS.get(name, (0.9, 1e-5))  # PyTorch's momentum 0.1, eps 1e-5
    for layer in norms:
        assert (layer.momentum, layer.epsilon) == (momentum, epsilon), (name, layer.name)
    # The builders with BatchNormalization are the ones checked (none lost on the way).
    assert bool(norms) == (name.startswith(("resnet", "vgg")) or name == "small_cnn"), name
