"""Tests for tfprune.flops: hand counts per layer type, nesting, sharing and the spec's numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.flops import (
    ModelCount,
    count_flops,
    count_params,
    param_reduction,
    speedup,
    summarize,
)
from tfprune.models.resnet_cifar import conv1_widths_from_ratios, kept_channels, resnet56

L = keras.layers


def _single(input_shape, layer):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def _macs(model, path):
    return count_flops(model).per_layer[path]


# ---------------------------------------------------------------------------------------------
# Hand counts, one layer type at a time. MACs = output positions x weights touched per position.


def test_conv2d_same_padding_counts_macs_and_params_by_hand():
    model = _single((8, 8, 3), L.Conv2D(4, 3, padding="same", name="c"))
    assert _macs(model, "c") == 8 * 8 * 4 * (3 * 3 * 3)  # 6912
    assert count_params(model).per_layer["c"] == 3 * 3 * 3 * 4 + 4


def test_conv2d_strided_valid_uses_output_positions():
    model = _single((9, 9, 3), L.Conv2D(4, 3, strides=2, name="c"))  # (9 - 3) // 2 + 1 = 4
    assert _macs(model, "c") == 4 * 4 * 4 * 27


def test_conv2d_groups_divide_input_channels():
    model = _single((8, 8, 4), L.Conv2D(6, 3, padding="same", groups=2, use_bias=False, name="c"))
    assert _macs(model, "c") == 8 * 8 * 6 * (3 * 3 * 2)
    assert count_params(model).total == 3 * 3 * 2 * 6


def test_conv2d_channels_first_uses_spatial_dims():
    model = _single((3, 8, 8), L.Conv2D(4, 3, padding="same", data_format="channels_first"))
    assert count_flops(model).total == 8 * 8 * 4 * 27


def test_conv1d_and_conv3d():
    c1 = _single((10, 3), L.Conv1D(5, 3, name="c"))  # 8 output steps
    assert _macs(c1, "c") == 8 * 5 * (3 * 3)
    c3 = _single((4, 4, 4, 2), L.Conv3D(3, 2, name="c"))  # 3x3x3 outputs
    assert _macs(c3, "c") == 27 * 3 * (2 * 2 * 2 * 2)


def test_conv2d_transpose_scatters_each_input_position():
    model = _single((4, 4, 3), L.Conv2DTranspose(2, 3, strides=2, padding="same", name="t"))
    assert model.output_shape == (None, 8, 8, 2)
    # every one of the 4x4 input positions multiplies its 3 channels into a 3x3x2 patch
    assert _macs(model, "t") == 4 * 4 * 3 * (3 * 3 * 2)


def test_depthwise_conv2d_with_depth_multiplier():
    model = _single((8, 8, 3), L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="d"))
    assert _macs(model, "d") == 8 * 8 * (3 * 3) * 3 * 2
    assert count_params(model).per_layer["d"] == 3 * 3 * 3 * 2 + 3 * 2


def test_separable_conv_counts_depthwise_plus_pointwise():
    s2 = _single((8, 8, 3), L.SeparableConv2D(4, 3, padding="same", name="s"))
    assert _macs(s2, "s") == 8 * 8 * (3 * 3 * 3) + 8 * 8 * (3 * 4)
    assert count_params(s2).per_layer["s"] == 27 + 12 + 4
    s1 = _single((10, 3), L.SeparableConv1D(4, 3, depth_multiplier=2, name="s"))  # 8 steps
    assert _macs(s1, "s") == 8 * (3 * 3 * 2) + 8 * (6 * 4)


def test_dense_on_any_rank_multiplies_leading_dims():
    assert _macs(_single((7,), L.Dense(3, name="d")), "d") == 7 * 3
    assert _macs(_single((5, 7), L.Dense(3, name="d")), "d") == 5 * 7 * 3
    assert _macs(_single((2, 5, 7), L.Dense(3, name="d")), "d") == 2 * 5 * 7 * 3


def test_time_distributed_dense_counts_every_step():
    model = _single((5, 3), L.TimeDistributed(L.Dense(4), name="td"))
    assert _macs(model, "td") == 5 * 3 * 4


def test_unit_flops_is_twice_macs():
    model = _single((8, 8, 3), L.Conv2D(4, 3, padding="same"))
    assert count_flops(model, unit="flops").total == 2 * count_flops(model).total
    with pytest.raises(InvalidArgumentError, match="unit"):
        count_flops(model, unit="gflops")


def test_elementwise_ops_only_counted_when_asked():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="c")(inputs)
    y = L.BatchNormalization(name="bn")(x)
    z = L.ReLU(name="relu")(y)
    out = L.Add(name="add")([z, x])
    out = L.GlobalAveragePooling2D(name="gap")(out)
    model = keras.Model(inputs, out)
    conv = 8 * 8 * 4 * 27
    elements = 8 * 8 * 4
    plain = count_flops(model)
    assert plain.total == conv
    assert plain.per_layer["bn"] == plain.per_layer["add"] == 0
    full = count_flops(model, include_elementwise=True)
    assert full.per_layer["bn"] == elements  # folded scale + shift: one MAC per element
    assert full.per_layer["relu"] == elements
    assert full.per_layer["add"] == elements  # two inputs: one add per element
    assert full.per_layer["gap"] == elements
    assert full.total == conv + 4 * elements
    # in 2*MACs units only the MACs double (conv and BN), the single ops do not
    assert count_flops(model, unit="flops", include_elementwise=True).total == (
        2 * conv + 2 * elements + 3 * elements
    )


def test_elementwise_adds_bias_and_fused_activation():
    model = _single((7,), L.Dense(3, activation="relu", name="d"))
    assert count_flops(model, include_elementwise=True).per_layer["d"] == 21 + 3 + 3


# ---------------------------------------------------------------------------------------------
# Params conventions


def test_params_include_bn_moving_stats_unless_trainable_only():
    model = _single((8, 8, 4), L.BatchNormalization(name="bn"))
    assert count_params(model).per_layer["bn"] == 4 * 4  # gamma, beta, moving mean, moving var
    assert count_params(model, trainable_only=True).per_layer["bn"] == 2 * 4
    assert count_params(model).total == model.count_params()


def test_unknown_layer_costs_zero_flops_but_params_count():
    class Scale(L.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(3, 5))

        def call(self, x):
            return x @ self.w

    inputs = keras.Input((3,))
    x = Scale(name="scale")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="d")(x))
    flops = count_flops(model)
    assert flops.per_layer["scale"] == 0
    assert flops.total == 5 * 2
    assert flops.uncounted == ("scale",)
    assert count_params(model).per_layer["scale"] == 15
    assert "no FLOPs rule" in str(flops)


def test_tf_op_layers_are_free():
    inputs = keras.Input((4, 4, 2))
    x = inputs[:, ::2, ::2, :] * 2.0
    model = keras.Model(inputs, L.Flatten()(x))
    result = count_flops(model)
    assert result.total == 0
    assert result.uncounted == ()  # no weights, so nothing is missing from the count


# ---------------------------------------------------------------------------------------------
# Shared layers and nested models


def test_shared_layer_costs_flops_per_call_and_params_once():
    conv = L.Conv2D(2, 3, padding="same", name="shared")
    a = keras.Input((8, 8, 3))
    b = keras.Input((4, 4, 3))
    ya = L.GlobalAveragePooling2D()(conv(a))
    yb = L.GlobalAveragePooling2D()(conv(b))
    model = keras.Model([a, b], L.Add()([ya, yb]))
    flops = count_flops(model)
    assert flops.per_layer["shared"] == (8 * 8 + 4 * 4) * 2 * 27
    assert flops.calls["shared"] == 2
    assert count_params(model).per_layer["shared"] == 27 * 2 + 2
    assert count_params(model).total == model.count_params()


def test_nested_model_layers_get_outer_inner_paths_and_shared_nested_model_counts_twice():
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(4, 3, padding="same", name="conv"),
            L.Flatten(name="flat"),
            L.Dense(2, name="dense"),
        ],
        name="inner",
    )
    a = keras.Input((8, 8, 3))
    b = keras.Input((8, 8, 3))
    out = L.Concatenate()([inner(a), inner(b)])
    model = keras.Model([a, b], L.Dense(1, name="head")(out))
    flops = count_flops(model)
    conv = 8 * 8 * 4 * 27
    dense = 256 * 2
    assert flops.per_layer["inner/conv"] == 2 * conv
    assert flops.per_layer["inner/dense"] == 2 * dense
    assert flops.calls["inner/conv"] == 2
    assert flops.total == 2 * (conv + dense) + 4
    params = count_params(model)
    assert params.per_layer["inner/conv"] == 27 * 4 + 4
    assert params.per_layer["inner/dense"] == 256 * 2 + 2
    assert params.total == model.count_params()
    keys = list(params.per_layer)
    assert keys.index("inner/conv") < keys.index("inner/dense") < keys.index("head")
    assert list(flops.per_layer) == keys


def test_nested_model_built_without_spatial_dims_uses_outer_call_shapes():
    x = keras.Input((None, None, 3))
    inner = keras.Model(x, L.Conv2D(4, 3, padding="same", name="conv")(x), name="fcn")
    outer_in = keras.Input((8, 8, 3))
    model = keras.Model(outer_in, L.GlobalAveragePooling2D()(inner(outer_in)))
    assert count_flops(model).per_layer["fcn/conv"] == 8 * 8 * 4 * 27


def test_unknown_spatial_dims_raise_unless_input_shapes_given():
    x = keras.Input((None, None, 3))
    model = keras.Model(x, L.Conv2D(4, 3, padding="same", name="conv")(x))
    with pytest.raises(UnsupportedModelError, match="input_shapes"):
        count_flops(model)
    assert count_flops(model, input_shapes=[(16, 16, 3)]).total == 16 * 16 * 4 * 27


class _Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = L.Dense(3)

    def call(self, x):
        return self.d(x)


def test_subclassed_model_is_traced_and_counted():
    net = _Net()
    net(np.zeros((1, 4), np.float32))
    assert count_params(net).total == 15
    flops = count_flops(net)
    assert flops.total == 4 * 3 and not flops.is_lower_bound


def test_subclassed_model_never_called_is_refused_with_the_fix():
    with pytest.raises(UnsupportedModelError, match="call it once on a batch"):
        count_flops(_Net())


def test_unbuilt_model_is_refused():
    with pytest.raises(UnsupportedModelError, match="not built"):
        count_params(keras.Sequential([L.Dense(3)]))


def test_result_object_to_dict_and_str():
    model = _single((8, 8, 3), L.Conv2D(4, 3, padding="same", name="c"))
    result = count_flops(model)
    assert isinstance(result, ModelCount)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["total"] == result.total == int(result)
    assert data["per_layer"]["c"] == 6912
    assert data["unit"] == "macs"
    text = str(result)
    assert "c" in text and "Conv2D" in text and "6,912" in text and "total" in text
    assert summarize(model) == {
        "params": 112,
        "trainable_params": 112,
        "macs": 6912,
        "flops": 13824,
        "uncounted_layers": 0,
    }


# ---------------------------------------------------------------------------------------------
# The spec's reference numbers


def test_resnet56_cifar_params_and_flops_match_spec(resnet56_model):
    model = resnet56_model  # resnet56(), built once per session (conftest)
    # Spec: 0.85 M params, 0.25 GFLOPs. The FLOPs are 2 x MACs (125.5 M MACs).
    assert count_flops(model).total == 125_485_696
    assert count_flops(model, unit="flops").total == 250_971_392
    assert round(count_flops(model, unit="flops").total / 1e9, 2) == 0.25
    trainable = count_params(model, trainable_only=True).total
    assert trainable == 853_018  # conv + FC weights/bias + BN gamma/beta
    assert count_params(model).total == trainable + 2 * 2032  # + BN moving mean/var
    assert round(trainable / 1e6, 2) == 0.85


# Spec Sec. 2.1 recount: ResNet-56, only conv1 of each block pruned, kept = n - ceil(pr * n).
RESNET56_CONV1_ONLY = [
    (0.3, 31.14, 1.45),
    (0.5, 49.82, 1.99),
    (0.7, 70.58, 3.59),
    (0.9, 90.45, 11.58),
    (0.95, 95.18, 19.85),
]


@pytest.mark.parametrize("ratio, sparsity, expected_speedup", RESNET56_CONV1_ONLY)
def test_resnet56_conv1_only_sparsity_and_speedup_reproduce_spec(
    resnet56_model, ratio, sparsity, expected_speedup
):
    dense_resnet56 = resnet56_model
    widths = conv1_widths_from_ratios(56, [0, ratio, ratio, ratio, 0])
    pruned = resnet56(conv1_widths=widths)
    assert round(speedup(dense_resnet56, pruned), 2) == expected_speedup
    # "sparsity" = trainable-parameter reduction (BN gamma/beta and FC bias in, moving stats out)
    assert round(100 * param_reduction(dense_resnet56, pruned), 2) == sparsity
    # with BN moving statistics the numbers differ (e.g. 31.06 % at PR 0.3), which pins the
    # convention
    with_stats = 1 - count_params(pruned).total / count_params(dense_resnet56).total
    assert round(100 * with_stats, 2) != sparsity


def test_speedup_and_param_reduction_accept_counts_and_numbers():
    assert speedup(400, 100) == 4.0
    assert param_reduction(200, 50) == 0.75
    model = _single((7,), L.Dense(3))
    assert speedup(count_flops(model), 7) == 3.0
    with pytest.raises(InvalidArgumentError):
        speedup(10, 0)


def _bottleneck_resnet50(widths=None):
    """Torchvision-style ResNet-50 (v1.5: stride in the 3x3 conv, convs without bias).

    ``widths[s][b] = (conv1, conv2)`` filters of block ``b`` of stage ``s``.
    """
    stages = [(64, 3), (128, 4), (256, 6), (512, 3)]
    inputs = keras.Input((224, 224, 3))
    x = L.ZeroPadding2D(3)(inputs)
    x = L.Conv2D(64, 7, strides=2, use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.ZeroPadding2D(1)(x)
    x = L.MaxPooling2D(3, strides=2)(x)
    in_ch = 64
    for s, (width, blocks) in enumerate(stages):
        for b in range(blocks):
            stride = 2 if (s > 0 and b == 0) else 1
            w1, w2 = widths[s][b] if widths else (width, width)
            y = L.ReLU()(L.BatchNormalization()(L.Conv2D(w1, 1, use_bias=False)(x)))
            y = L.Conv2D(w2, 3, strides=stride, padding="same", use_bias=False)(y)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(4 * width, 1, use_bias=False)(y))
            if b == 0:
                x = L.Conv2D(4 * width, 1, strides=stride, use_bias=False)(x)
                x = L.BatchNormalization()(x)
            x = L.ReLU()(L.Add()([x, y]))
            in_ch = 4 * width
    x = L.GlobalAveragePooling2D()(x)
    assert in_ch == 2048
    return keras.Model(inputs, L.Dense(1000)(x))


@pytest.fixture(scope="module")
def dense_resnet50():
    return _bottleneck_resnet50()


def test_resnet50_imagenet_macs_and_params(dense_resnet50, keras_resnet50_224):
    # The spec's 4.09 G MACs / 25.6 M params are torchvision's ResNet-50 (v1.5: the stride of a
    # downsampling block sits in its 3x3 conv).
    v15 = dense_resnet50
    assert count_params(v15, trainable_only=True).total == 25_557_032  # torchvision's count
    assert count_flops(v15).total == pytest.approx(4.09e9, rel=2e-3)
    # keras.applications.ResNet50 is v1 (stride in the first 1x1 conv), so its three downsampling
    # 3x3 convs run at a quarter of the positions: 3.86 G MACs. Its convs have biases, so it has
    # 25.64 M params (moving stats included). 6 % below 4.09 G is the architecture, not the counter.
    apps = keras_resnet50_224  # keras.applications.ResNet50(weights=None), once per session
    assert count_params(apps).total == 25_636_712
    assert count_params(apps).total == apps.count_params()
    assert round(count_params(apps).total / 1e6, 1) == 25.6
    assert count_flops(apps).total == pytest.approx(3.858e9, rel=1e-3)
    assert 0.93 < count_flops(apps).total / 4.09e9 < 0.95


@pytest.mark.parametrize(
    "ratios, expected",
    [
        ([0.3, 0.3, 0.3, 0.14], 1.49),
        ([0.6, 0.6, 0.6, 0.21], 2.31),
        ([0.74, 0.74, 0.6, 0.21], 2.56),
        ([0.68, 0.68, 0.68, 0.5], 3.06),
    ],
)
def test_resnet50_stage_ratio_speedups_reproduce_spec(dense_resnet50, ratios, expected):
    # conv1 and conv2 of each bottleneck pruned with the stage ratio (spec Sec. 4.3)
    stages = [(64, 3), (128, 4), (256, 6), (512, 3)]
    widths = [[(kept_channels(w, r), kept_channels(w, r))] * n for (w, n), r in zip(stages, ratios)]
    dense = dense_resnet50
    pruned = _bottleneck_resnet50(widths)
    assert round(speedup(dense, pruned), 2) == expected
    assert math.isclose(
        speedup(dense, pruned), count_flops(dense).total / count_flops(pruned).total
    )
