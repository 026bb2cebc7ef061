"""TFLite and ONNX conversions of stripped+folded exports match TensorFlow (tolerance 1e-4)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import tfprune
from tfprune.batch_norm import recalibrate_batch_norm
from tfprune.compat import keras, tf
from tfprune.deploy import runtimes
from tfprune.models import keras_application
from tfprune.models.resnet_cifar import resnet_cifar

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnxruntime"))
RUNTIME_RTOL = 1e-4


def _convnext_block():
    """A ConvNeXt-style block: normalised input, per-channel grouped conv, exact-GELU MLP.

    The Normalization's mean and variance are constants the SavedModel captures.
    """
    L = keras.layers
    i = keras.Input((32, 32, 3))
    x = L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.1, 0.2, 0.3])(i)
    x = L.Conv2D(16, 4, strides=4, name="stem")(x)
    y = L.Conv2D(16, 7, padding="same", groups=16, name="dw_grouped")(x)
    y = L.LayerNormalization(epsilon=1e-6)(y)
    y = L.Dense(32, activation="gelu", name="expand")(y)
    y = L.Dense(16, name="project")(y)
    x = L.Add()([x, y])
    return keras.Model(i, L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(x)))


@pytest.mark.slow  # two conversions each of three models (~30 s on 2 cores)
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: keras_application("MobileNet", input_shape=(32, 32, 3), alpha=0.25),
            id="keras-MobileNet",
        ),
        pytest.param(lambda: resnet_cifar(8, width_multipliers=0.5), id="zoo-resnet8"),
        pytest.param(_convnext_block, id="grouped-conv"),
    ],
)
def test_tflite_and_onnx_match_the_saved_model(build, tmp_path):
    model = build()
    x = np.random.default_rng(0).normal(size=(8, *model.input_shape[1:]))
    recalibrate_batch_norm(model, x.astype(np.float32))
    small = tfprune.shrink(model, 0.5)
    result = tfprune.export_saved_model(
        small,
        tmp_path / "m",
        tflite=True,
        onnx=HAS_ONNX,
        runtime_rtol=RUNTIME_RTOL,
        return_result=True,
    )
    report = result.fold_report
    assert (report.folded or report.converted) and os.path.isfile(result.tflite_path)
    assert result.runtime_differences["tflite"] <= RUNTIME_RTOL
    # run the written files again on new inputs, against the reloaded SavedModel
    x = np.random.default_rng(7).normal(size=(3, 32, 32, 3)).astype(np.float32)
    name = small.input_names[0]
    want = tf.saved_model.load(result.path).signatures["serving_default"](**{name: x})
    want = {k: v.numpy() for k, v in want.items()}
    outputs = {"tflite": runtimes.run_tflite(result.tflite_path, {name: x})}
    if HAS_ONNX:
        assert result.runtime_differences["onnx"] <= RUNTIME_RTOL
        outputs["onnx"] = runtimes.run_onnx(result.onnx_path, {name: x})
    for kind, got in outputs.items():
        assert sorted(got) == sorted(want), kind
        for key, value in want.items():
            scale = np.abs(value).max()
            assert np.abs(got[key] - value).max() <= RUNTIME_RTOL * scale + 1e-6, kind


def test_onnx_export_of_a_grouped_convolution_is_refused_before_anything_is_written(tmp_path):
    L = keras.layers
    i = keras.Input((8, 8, 8))
    x = L.Conv2D(8, 3, groups=4, name="grouped")(i)  # two channels per group: no depthwise form
    model = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    assert "grouped" in runtimes.onnx_blockers(model)[0]
    with pytest.raises(tfprune.errors.UnsupportedModelError, match="'grouped'.*without onnx"):
        tfprune.export_for_serving(model, tmp_path / "serving", onnx=True)
    assert not (tmp_path / "serving").exists() or not any((tmp_path / "serving").iterdir())
    # One group per channel becomes a depthwise convolution first, which converts.
    j = keras.Input((8, 8, 8))
    y = L.Conv2D(8, 3, groups=8, name="per_channel")(j)
    per_channel = keras.Model(j, L.Dense(2)(L.GlobalAveragePooling2D()(y)))
    assert runtimes.onnx_blockers(tfprune.optimize_for_inference(per_channel)) == []
