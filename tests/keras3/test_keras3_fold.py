"""BatchNorm folding on Keras 3 models: the same layers fold, and stay, as on tf_keras."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune import compat
from tfprune.deploy import example_inputs
from tfprune.deploy.fold import max_relative_error
from tfprune.errors import UnsupportedModelError

K3 = compat.keras3()
TK = compat.keras

FOLDED = ["bn_conv -> conv", "bn_dw -> dw", "bn_dense -> dense", "scale -> conv2"]


def _cnn(k, sequential_tail=False):
    """conv->BN, depthwise->BN, conv->Rescaling, a BN after an add, dense->BN, in flavour ``k``."""
    L = k.layers
    x = k.Input((8, 8, 3), name="image")
    a = L.BatchNormalization(name="bn_conv")(L.Conv2D(6, 3, padding="same", name="conv")(x))
    a = L.ReLU(name="relu")(a)
    d = L.BatchNormalization(name="bn_dw")(L.DepthwiseConv2D(3, padding="same", name="dw")(a))
    r = L.Rescaling(0.5, offset=0.1, name="scale")(L.Conv2D(6, 1, name="conv2")(a))
    s = L.Add(name="add")([d, r])
    s = L.BatchNormalization(name="bn_add")(s)  # after an add: nothing to fold into
    h = L.Dropout(0.5, name="drop")(L.GlobalAveragePooling2D(name="gap")(s))
    h = L.BatchNormalization(name="bn_dense")(L.Dense(5, name="dense")(h))
    model = k.Model(x, L.Dense(3, name="logits")(L.ReLU(name="relu_d")(h)), name="cnn")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics and affine parameters that are not the identity
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, n),
                    rng.normal(0, 0.5, n),
                    rng.normal(0, 0.5, n),
                    rng.uniform(0.5, 2, n),
                ]
            )
    return model


def _copy_weights(source, target):
    for a, b in zip(source.layers, target.layers, strict=True):
        b.set_weights(a.get_weights())


def _bns(model, k):
    return sorted(la.name for la in model.layers if isinstance(la, k.layers.BatchNormalization))


def test_keras3_cnn_folds_what_tf_keras_folds():
    k3_model = _cnn(K3)
    folded, report = tfprune.optimize_for_inference(k3_model, return_report=True)
    assert isinstance(folded, K3.Model) and not isinstance(folded, TK.Model)
    assert sorted(report.folded) == sorted(FOLDED)
    assert report.dropped == ["drop"]
    assert [p for p, _ in report.left] == ["bn_add"]
    assert "not the output of a Conv/Dense" in report.left[0][1]
    assert _bns(folded, K3) == ["bn_add"]  # the unfoldable BN is kept, every other is gone
    assert not any(isinstance(la, K3.layers.Rescaling) for la in folded.layers)
    assert folded.get_layer("conv").get_config()["use_bias"]
    x = example_inputs(k3_model, 4, seed=3)
    want = {"o": np.asarray(k3_model(x, training=False))}
    got = {"o": np.asarray(folded(x, training=False))}
    assert max_relative_error(want, got) <= 1e-5
    assert report.max_relative_error <= 1e-5
    # The original is untouched.
    assert _bns(k3_model, K3) == ["bn_add", "bn_conv", "bn_dense", "bn_dw"]

    tk_model = _cnn(TK)
    _copy_weights(k3_model, tk_model)
    tk_folded, tk_report = tfprune.optimize_for_inference(tk_model, return_report=True)
    assert sorted(tk_report.folded) == sorted(report.folded)
    assert tk_report.dropped == report.dropped and tk_report.left == report.left
    np.testing.assert_allclose(
        np.asarray(tk_folded(x, training=False)), got["o"], rtol=1e-5, atol=1e-5
    )


def test_keras3_shared_output_raw_op_and_nested_sequential():
    L = K3.layers
    x = K3.Input((6, 6, 3), name="image")
    c = L.Conv2D(4, 3, padding="same", name="conv")(x)
    kept = L.BatchNormalization(name="bn_shared")(c)  # c also feeds the raw op below
    y = kept + c
    inner = K3.Sequential(
        [K3.Input((6, 6, 4)), L.Conv2D(4, 1, name="ic"), L.BatchNormalization(name="ibn")],
        name="inner",
    )
    y = L.Flatten(name="flat")(inner(y))
    model = K3.Model(x, L.Dense(2, name="head")(y), name="mixed")
    folded, report = tfprune.optimize_for_inference(model, return_report=True)
    assert report.folded == ["inner/ibn -> inner/ic"]
    assert report.left == [("bn_shared", "the output of 'conv' also feeds other layers")]
    nested = folded.get_layer("inner")
    assert isinstance(nested, K3.Sequential) and not _bns(nested, K3)
    assert report.max_relative_error <= 1e-5


def test_keras3_export_folds_by_default(tmp_path):
    model = _cnn(K3)
    result = tfprune.export_saved_model(model, tmp_path / "m")
    assert result.fold_report is not None and len(result.fold_report.folded) == 4
    assert not any("unfolded" in note for note in result.notes)
    nofold = tfprune.export_saved_model(model, tmp_path / "n", fold=False)
    assert nofold.fold_report is None


def test_keras3_fold_refuses_masked_and_subclassed_models():
    class Net(K3.Model):
        def call(self, x):
            return x

    with pytest.raises(UnsupportedModelError, match="Keras 3 subclassed model"):
        tfprune.optimize_for_inference(Net())
    pruned = tfprune.prune_filters(_cnn(K3), 0.5)
    with pytest.raises(UnsupportedModelError, match="strip_filters"):
        tfprune.optimize_for_inference(pruned)


def test_keras3_grouped_conv_with_one_channel_per_group_becomes_depthwise():
    L = K3.layers
    x = K3.Input((6, 6, 4), name="image")
    h = L.Conv2D(8, 3, groups=4, padding="same", name="gconv")(x)
    h = L.BatchNormalization(name="bn")(h)
    model = K3.Model(x, L.Conv2D(2, 1, name="head")(h), name="grouped")
    folded, report = tfprune.optimize_for_inference(model, return_report=True)
    assert report.converted == ["gconv"] and report.folded == ["bn -> gconv"]
    layer = folded.get_layer("gconv")
    assert type(layer) is L.DepthwiseConv2D and layer.depth_multiplier == 2
    assert report.max_relative_error <= 1e-5
