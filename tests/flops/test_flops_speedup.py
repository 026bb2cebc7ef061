"""FLOPs speed-ups counted on the physically pruned models (spec recount)."""

from __future__ import annotations

import pytest

import tfprune
from tfprune.compat import keras
from tfprune.flops import count_flops, count_params
from tfprune.models import resnet50_stage_scheme
from tfprune.models.resnet_cifar import stage_ratio_patterns


def _speedup(model, scheme):
    small = tfprune.shrink(model, scheme)
    return count_flops(model).total / count_flops(small).total, small


@pytest.mark.parametrize(("ratio", "expected"), [(0.5, 1.99), (0.9, 11.58)])
def test_resnet56_conv1_scheme_speedup(resnet56_model, ratio, expected):
    speedup, small = _speedup(resnet56_model, stage_ratio_patterns([0, ratio, ratio, ratio, 0]))
    assert speedup == pytest.approx(expected, abs=0.01)
    assert count_params(small).total < count_params(resnet56_model).total


@pytest.mark.slow
@pytest.mark.parametrize(("ratio", "expected"), [(0.3, 1.45), (0.95, 19.85)])
def test_resnet56_conv1_scheme_speedup_more_ratios(resnet56_model, ratio, expected):
    speedup, _ = _speedup(resnet56_model, stage_ratio_patterns([0, ratio, ratio, ratio, 0]))
    assert speedup == pytest.approx(expected, abs=0.01)


def _resnet50_v15():
    """Torchvision-style ResNet-50 v1.5 (stride in the 3x3 conv) with keras.applications names."""
    L = keras.layers
    inputs = keras.Input((224, 224, 3))
    x = L.ZeroPadding2D(3)(inputs)
    x = L.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    for s, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=2):
        for b in range(1, blocks + 1):
            p = f"conv{s}_block{b}_"
            stride = 2 if (s > 2 and b == 1) else 1
            y = L.Conv2D(width, 1, use_bias=False, name=p + "1_conv")(x)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.Conv2D(
                width, 3, strides=stride, padding="same", use_bias=False, name=p + "2_conv"
            )(y)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(4 * width, 1, use_bias=False, name=p + "3_conv")(y))
            if b == 1:
                x = L.Conv2D(4 * width, 1, strides=stride, use_bias=False, name=p + "0_conv")(x)
                x = L.BatchNormalization()(x)
            x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(1000, name="predictions")(x))


@pytest.fixture(scope="module")
def resnet50_v15_model():
    """Built once: shrink() copies it and never changes it."""
    return _resnet50_v15()


def _check_only_bottleneck_convs_1_2_lost_filters(model, small):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            same = small.get_layer(layer.name).filters == layer.filters
            assert same == (not layer.name.endswith(("_1_conv", "_2_conv"))), layer.name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ratios", "expected"),
    [((0, 0.6, 0.6, 0.6, 0.21, 0), 2.31), ((0, 0.3, 0.3, 0.3, 0.14, 0), 1.49)],
)
def test_resnet50_v15_stage_scheme_speedup_matches_spec(resnet50_v15_model, ratios, expected):
    # The spec's numbers are for torchvision's ResNet-50 (v1.5).
    model = resnet50_v15_model
    speedup, small = _speedup(model, resnet50_stage_scheme(ratios))
    assert speedup == pytest.approx(expected, abs=0.005)
    _check_only_bottleneck_convs_1_2_lost_filters(model, small)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ratios", "expected"),
    [((0, 0.6, 0.6, 0.6, 0.21, 0), 2.34), ((0, 0.3, 0.3, 0.3, 0.14, 0), 1.50)],
)
def test_keras_applications_resnet50_stage_scheme_speedup(keras_resnet50_224, ratios, expected):
    # keras.applications.ResNet50 is v1 (stride in the first 1x1 conv of a downsampling block),
    # so the same scheme saves slightly more than the spec's v1.5 numbers (2.31x / 1.49x).
    model = keras_resnet50_224  # built once per session (conftest); shrink() copies it
    speedup, small = _speedup(model, resnet50_stage_scheme(ratios))
    assert speedup == pytest.approx(expected, abs=0.005)
    _check_only_bottleneck_convs_1_2_lost_filters(model, small)
