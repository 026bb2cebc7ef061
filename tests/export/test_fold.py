"""BatchNorm/Rescaling folding and training-only layer removal (tfprune.deploy.fold)."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune.compat import keras
from tfprune.deploy import FoldReport, optimize_for_inference
from tfprune.errors import UnsupportedModelError
from tfprune.models import keras_application
from tfprune.models.resnet_cifar import resnet_cifar

L = keras.layers


def _randomize_bn(model, seed=0):
    """Non-trivial BN statistics so that a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _randomize_bn(layer, seed + 1)
        elif isinstance(layer, L.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, w.shape)
                    if "gamma" in w.name or "variance" in w.name
                    else rng.normal(0, 0.5, w.shape)
                    for w in layer.weights
                ]
            )
    return model


def _bn_count(model):
    return sum(
        _bn_count(layer)
        if isinstance(layer, keras.Model)
        else isinstance(layer, L.BatchNormalization)
        for layer in model.layers
    )


def _relative(a, b):
    scale = np.abs(a).max()
    assert scale > 0, "the reference output is all zeros: the comparison would prove nothing"
    return float(np.abs(a - b).max() / scale)


def _all_kinds_model():
    image = keras.Input((9, 9, 3), name="image")
    seq = keras.Input((12, 4), name="seq")
    vol = keras.Input((5, 5, 5, 2), name="vol")
    x = L.BatchNormalization(name="bn_conv2d")(L.Conv2D(6, 3, use_bias=False, name="conv2d")(image))
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn_dw")(x)
    x = L.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)
    x = L.Dropout(0.3, name="drop")(x)  # folded through: conv -> dropout -> BN
    x = L.BatchNormalization(name="bn_sep")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, name="convT")(x)
    x = L.BatchNormalization(name="bn_convT")(x)
    x = L.Rescaling(0.5, offset=0.25, name="rescale")(L.Conv2D(3, 1, name="conv1x1")(x))
    x = L.GlobalAveragePooling2D()(x)
    s = L.BatchNormalization(name="bn_conv1d")(L.Conv1D(5, 3, name="conv1d")(seq))
    s = L.GaussianNoise(0.1, name="noise")(L.GlobalAveragePooling1D()(s))
    v = L.BatchNormalization(name="bn_conv3d")(L.Conv3D(3, 2, name="conv3d")(vol))
    v = L.GlobalAveragePooling3D()(v)
    z = L.Concatenate()([x, s, v])
    z = L.BatchNormalization(name="bn_dense")(L.Dense(7, name="dense")(z))
    return keras.Model([image, seq, vol], L.Dense(3, name="logits")(L.ReLU()(z)))


def _inputs(model, seed=1, batch=8):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, *t.shape[1:])).astype(np.float32) for t in model.inputs]


def test_every_foldable_kind_is_folded_exactly_and_the_model_is_untouched():
    # Fixed weights: a dead ReLU before the logits cannot zero the output.
    keras.utils.set_random_seed(3)
    model = _randomize_bn(_all_kinds_model())
    before = [w.copy() for w in model.get_weights()]
    names = [layer.name for layer in model.layers]
    x = _inputs(model)
    folded, report = optimize_for_inference(model, return_report=True)
    assert isinstance(report, FoldReport)
    assert _bn_count(folded) == 0 and report.left == []
    assert sorted(p.split(" -> ")[0] for p in report.folded) == sorted(
        [
            "bn_conv2d",
            "bn_dw",
            "bn_sep",
            "bn_convT",
            "rescale",
            "bn_conv1d",
            "bn_conv3d",
            "bn_dense",
        ]
    )
    assert sorted(report.dropped) == ["drop", "noise"]
    kinds = {type(layer).__name__ for layer in folded.layers}
    assert not kinds & {"BatchNormalization", "Rescaling", "Dropout", "GaussianNoise"}
    assert folded.get_layer("conv2d").use_bias  # a bias-free conv gains the BN shift as bias
    want = model(x, training=False).numpy()
    assert _relative(want, folded(x, training=False).numpy()) < 1e-5
    assert report.max_relative_error < 1e-5
    # the user's model is unchanged
    assert [layer.name for layer in model.layers] == names
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # the result is made of stock layers: it round-trips through its config
    clone = keras.Model.from_config(folded.get_config())
    assert clone.count_params() == folded.count_params()


def test_unfoldable_cases_stay_and_are_reported():
    inp = keras.Input((8, 8, 3), name="x")
    a = L.Conv2D(4, 3, padding="same", name="shared_out")(inp)
    bn_a = L.BatchNormalization(name="bn_a")(a)
    side = L.Conv2D(4, 1, name="side")(a)  # the conv output feeds another layer too
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(inp)
    bn_b = L.BatchNormalization(name="bn_b")(b)  # after a non-linear activation
    bn_c = L.BatchNormalization(name="bn_c")(inp)  # nothing before it
    seq = L.Reshape((64, 4))(L.Add()([bn_a, side, bn_b]))
    d = L.Dense(5, name="dense")(seq)
    bn_d = L.BatchNormalization(axis=1, name="bn_d")(d)  # normalises the sequence axis
    out = L.Flatten()(bn_d)
    model = _randomize_bn(keras.Model(inp, [out, L.GlobalAveragePooling2D()(bn_c)]))
    folded, report = optimize_for_inference(model, return_report=True)
    left = dict(report.left)
    assert set(left) == {"bn_a", "bn_b", "bn_c", "bn_d"}
    assert "also feeds other layers" in left["bn_a"]
    assert "linear activation" in left["bn_b"] and "linear activation" in left["bn_c"]
    assert "axis" in left["bn_d"]
    assert not report.changed and folded is model
    assert "kept bn_d" in str(report)


def test_model_output_bn_and_training_true_calls_are_kept():
    inp = keras.Input((6,), name="x")
    h = L.Dense(4, name="h")(inp)
    mc = L.Dropout(0.5, name="mc_dropout")(h, training=True)  # Monte-Carlo dropout stays
    out = L.BatchNormalization(name="bn_out")(L.Dense(3, name="d")(mc))
    _, report = optimize_for_inference(keras.Model(inp, out), return_report=True, check=False)
    left = dict(report.left)
    assert "training=True" in left["mc_dropout"]
    assert "model output" in left["bn_out"]


def test_nested_and_sequential_models_fold_inside():
    block = keras.Sequential(
        [keras.Input((8, 8, 4)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.ReLU()],
        name="block",
    )
    inp = keras.Input((8, 8, 3), name="x")
    x = L.BatchNormalization(name="stem_bn")(L.Conv2D(4, 3, padding="same", name="stem")(inp))
    x = block(x)
    model = _randomize_bn(keras.Model(inp, L.Dense(2, name="out")(L.Flatten()(x))))
    folded, report = optimize_for_inference(model, return_report=True)
    assert _bn_count(folded) == 0 and len(report.folded) == 2
    assert isinstance(folded.get_layer("block"), keras.Sequential)
    x = _inputs(model)[0]
    assert _relative(model(x).numpy(), folded(x).numpy()) < 1e-5


def test_keras_application_and_stripped_zoo_model_fold_completely():
    app = _randomize_bn(keras_application("MobileNetV2", input_shape=(32, 32, 3), alpha=0.35))
    small = tfprune.shrink(_randomize_bn(resnet_cifar(8, width_multipliers=0.5)), 0.5)
    for model in (app, small):
        folded, report = optimize_for_inference(model, return_report=True)
        assert _bn_count(folded) == 0, report
        x = _inputs(model)[0]
        assert _relative(model(x).numpy(), folded(x).numpy()) < 1e-5
        assert folded.count_params() < model.count_params()


def test_masked_model_is_refused_with_the_fix():
    model = resnet_cifar(8, width_multipliers=0.25)
    with pytest.raises(UnsupportedModelError, match="strip_filters"):
        optimize_for_inference(tfprune.prune_filters(model, 0.5))


def test_grouped_convolutions_with_one_channel_per_group_become_depthwise():
    image = keras.Input((9, 9, 4))
    seq = keras.Input((10, 3))
    x = L.Conv2D(8, 3, padding="same", groups=4, use_bias=False, name="dw_x2")(image)
    x = L.BatchNormalization(name="bn")(x)  # folds into the converted layer
    x = L.Conv2D(8, 3, groups=2, name="grouped")(x)  # two channels per group: stays
    x = L.Conv2D(8, 3, groups=8, activation="relu", name="dw_relu")(x)
    s = L.Conv1D(6, 3, groups=3, name="dw1d")(seq)
    z = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalAveragePooling1D()(s)])
    model = _randomize_bn(keras.Model([image, seq], L.Dense(2, name="out")(z)))
    xs = _inputs(model)
    new, report = optimize_for_inference(model, return_report=True)
    assert sorted(report.converted) == ["dw1d", "dw_relu", "dw_x2"]
    assert report.folded == ["bn -> dw_x2"]
    assert type(new.get_layer("dw_x2")) is L.DepthwiseConv2D
    assert new.get_layer("dw_x2").depth_multiplier == 2
    assert type(new.get_layer("dw_relu")) is L.DepthwiseConv2D
    assert new.get_layer("dw_relu").get_config()["activation"] == "relu"
    assert type(new.get_layer("dw1d")) is L.DepthwiseConv1D
    assert type(new.get_layer("grouped")) is L.Conv2D
    assert _relative(model(xs).numpy(), new(xs).numpy()) < 1e-5
    kept, kept_report = optimize_for_inference(
        model, depthwise_groups=False, fold_batch_norm=False, return_report=True
    )
    assert kept is model and not kept_report.converted
