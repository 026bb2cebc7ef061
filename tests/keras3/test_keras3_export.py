"""Serving a Keras 3 model: the TF Serving layout, named signatures and the tf_keras errors."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import tfprune
from tfprune import compat
from tfprune.deploy import example_inputs
from tfprune.deploy.serving import WARMUP_FILE, read_warmup_requests
from tfprune.errors import (
    ExportDirectoryNotEmptyError,
    InvalidArgumentError,
    UnsupportedModelError,
    VersionExistsError,
)

K3 = compat.keras3()
L = K3.layers
pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")


def _cnn(name="k3_cnn"):
    """Conv/BN/ReLU/Add/Dense with a named input and output; BN statistics not the identity."""
    inp = K3.Input((8, 8, 3), name="image")
    x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(L.Conv2D(6, 3, name="c1")(inp)))
    y = L.ReLU(name="relu2")(
        L.BatchNormalization(name="bn2")(L.Conv2D(6, 3, padding="same", name="c2")(x))
    )
    x = L.Add(name="add")([x, y])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = K3.Model(inp, L.Dense(4, name="logits")(x), name=name)
    for bn in ("bn1", "bn2"):
        model.get_layer(bn).set_weights(
            [np.full(6, 1.5), np.full(6, 0.2), np.full(6, 0.1), np.full(6, 0.5)]
        )
    return model


def _image(batch=3, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, 8, 8, 3)).astype("float32")


def test_keras3_cnn_served_and_reloaded_without_tfprune(tmp_path):
    model = _cnn()
    base = tmp_path / "serving"
    image = _image()
    # verify: reloaded and run on the check inputs in a fresh interpreter that imports TensorFlow
    # only (what TF Serving would see), within the export's tolerance of the model's outputs
    result = tfprune.export_for_serving(model, base, check_inputs={"image": image}, verify=True)
    assert result.verify["ok"] and not result.verify["tfprune_imported"]
    assert result.verify["max_relative_difference"] <= result.tolerance
    assert result.verify["outputs"] == ["logits"]
    assert re.findall(r"inputs\['(\w+)'\]", result.verify["signatures"]) == ["image"]
    assert result.version == 1 and result.path == str(base / "1")
    assert [n for n in os.listdir(base) if not n.startswith(".")] == ["1"]
    assert os.path.isfile(base / "1" / "saved_model.pb")
    assert result.signatures == ["serving_default"]
    assert sorted(result.fold_report.folded) == ["bn1 -> c1", "bn2 -> c2"]
    assert not result.notes and "folded 2 layer(s)" in result.summary()
    assert result.max_relative_difference <= result.tolerance == pytest.approx(1e-5)

    # TF Serving's warm-up requests: the check inputs, under the input name.
    (name, request), *_ = read_warmup_requests(os.path.join(result.path, WARMUP_FILE))
    assert name == "serving_default" and sorted(request) == ["image"]
    np.testing.assert_array_equal(request["image"], image)

    second = tfprune.export_for_serving(model, base, warmup=False)
    assert second.version == 2 and result.warmup_path and not second.warmup_path


def test_keras3_multi_io_sequential_and_check_inputs(tmp_path):
    a = K3.Input((5,), name="a")
    b = K3.Input((3,), name="b")
    h = L.Concatenate(name="cat")([L.Dense(4, name="da")(a), b])
    model = K3.Model([a, b], [L.Dense(2, name="x")(h), L.Dense(1, name="y")(h)], name="two")
    inputs = {
        "a": np.arange(10, dtype="float32").reshape(2, 5) / 10,
        "b": np.ones((2, 3), "float32"),
    }
    result = tfprune.export_saved_model(model, tmp_path / "two", check_inputs=inputs)
    served = compat.tf.saved_model.load(result).signatures["serving_default"]
    got = served(a=compat.tf.constant(inputs["a"]), b=compat.tf.constant(inputs["b"]))
    want = model([inputs["a"], inputs["b"]])
    assert sorted(got) == ["x", "y"]
    np.testing.assert_allclose(got["x"].numpy(), np.asarray(want[0]), atol=1e-5)
    np.testing.assert_allclose(got["y"].numpy(), np.asarray(want[1]), atol=1e-5)

    seq = K3.Sequential(
        [K3.Input((6,), name="features"), L.Dense(3, name="hidden"), L.Dense(2, name="out")],
        name="seq",
    )
    loaded = compat.tf.saved_model.load(tfprune.export_saved_model(seq, tmp_path / "seq"))
    x = np.ones((2, 6), "float32")
    out = loaded.signatures["serving_default"](features=compat.tf.constant(x))
    np.testing.assert_allclose(out["out"].numpy(), np.asarray(seq(x)), atol=1e-5)


def test_keras3_tflite_and_onnx_match_the_saved_model(tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    result = tfprune.export_saved_model(_cnn(), tmp_path / "rt", tflite=True, onnx=True)
    assert os.path.isfile(result.tflite_path) and os.path.isfile(result.onnx_path)
    assert sorted(result.runtime_differences) == ["onnx", "tflite"]
    assert max(result.runtime_differences.values()) <= 1e-4


def test_keras3_signature_name_and_serving_default(tmp_path):
    model = _cnn()
    result = tfprune.export_saved_model(model, tmp_path / "s", signature_name="predict")
    assert result.signatures == ["predict", "serving_default"]
    signatures = compat.tf.saved_model.load(result).signatures
    assert sorted(signatures) == ["predict", "serving_default"]
    image = _image(2)
    for name in ("predict", "serving_default"):
        got = signatures[name](image=compat.tf.constant(image))["logits"].numpy()
        np.testing.assert_allclose(got, np.asarray(model(image)), atol=1e-5)


def test_keras3_embedding_inputs_get_ids_in_the_vocabulary(tmp_path):
    ids = K3.Input((5,), dtype="int32", name="ids")
    h = L.GlobalAveragePooling1D(name="pool")(L.Embedding(7, 4, name="embed")(ids))
    model = K3.Model(ids, L.Dense(2, name="score")(h), name="text")
    check = example_inputs(model, batch_size=64, seed=3)
    assert check["ids"].dtype == np.int32 and set(np.unique(check["ids"])) == set(range(7))
    result = tfprune.export_saved_model(model, tmp_path / "text")
    got = compat.tf.saved_model.load(result).signatures["serving_default"](
        ids=compat.tf.constant(check["ids"])
    )
    np.testing.assert_allclose(got["score"].numpy(), np.asarray(model(check["ids"])), atol=1e-5)


def test_keras3_preprocessing_signature(tmp_path):
    model = _cnn()
    raw = K3.Input((8, 8, 3), name="raw")
    prep = K3.Model(raw, L.Rescaling(1 / 255.0, offset=-0.5, name="scale")(raw), name="prep")
    result = tfprune.export_saved_model(model, tmp_path / "p", preprocessing=prep, warmup=False)
    assert result.signatures == ["serving_default", "serving_preprocess"]
    fn = compat.tf.saved_model.load(result).signatures["serving_preprocess"]
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    got = fn(raw=compat.tf.constant(pixels))["logits"].numpy()
    np.testing.assert_allclose(got, np.asarray(model(prep(pixels))), atol=1e-5)

    tf_keras_prep = compat.keras.Sequential([compat.keras.Input((8, 8, 3))])
    with pytest.raises(InvalidArgumentError, match="keras3 functional or Sequential"):
        tfprune.export_saved_model(model, tmp_path / "q", preprocessing=tf_keras_prep)
    assert not (tmp_path / "q").exists()


def test_keras3_export_errors_follow_tf_keras(tmp_path):
    model = _cnn()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportDirectoryNotEmptyError, match="tfprune did not write"):
        tfprune.export_saved_model(model, busy)
    assert sorted(os.listdir(busy)) == ["notes.txt"]

    target = tmp_path / "saved"
    tfprune.export_saved_model(model, target)
    with pytest.raises(ExportDirectoryNotEmptyError, match="overwrite=True"):
        tfprune.export_saved_model(model, target)
    assert tfprune.export_saved_model(model, target, overwrite=True) == str(target)

    tfprune.export_for_serving(model, tmp_path / "srv", version=3, warmup=False)
    with pytest.raises(VersionExistsError):
        tfprune.export_for_serving(model, tmp_path / "srv", version=3)

    grouped = K3.Sequential([K3.Input((6, 6, 4)), L.Conv2D(4, 3, groups=2, name="gconv")])
    with pytest.raises(UnsupportedModelError, match="'gconv'.*groups=2.*without onnx"):
        tfprune.export_saved_model(grouped, tmp_path / "onnx", onnx=True)
    assert not (tmp_path / "onnx").exists()
    assert tfprune.export_saved_model(model, tmp_path / "nofold", fold=False).fold_report is None


def test_keras3_models_with_masks_or_without_inputs_are_refused(tmp_path):
    inp = K3.Input((6, 6, 3), name="image")
    plain = K3.Model(inp, L.Conv2D(2, 1, name="head")(L.Conv2D(4, 3, name="conv")(inp)))
    masked = tfprune.prune_filters(plain, 0.5)
    with pytest.raises(UnsupportedModelError, match="still holds tfprune masks.*strip_filters"):
        tfprune.export_for_serving(masked, tmp_path / "a")
    inner = K3.Sequential(
        [K3.Input((6, 6, 3)), L.Conv2D(4, 3, name="c1"), L.Conv2D(2, 1, name="c2")], name="inner"
    )
    masked_nested = tfprune.prune_filters(K3.Model(inp, inner(inp), name="outer"), 0.5)
    with pytest.raises(UnsupportedModelError, match="still holds tfprune masks.*strip_filters"):
        tfprune.export_saved_model(masked_nested, tmp_path / "b")

    class Sub(K3.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    sub(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="Keras 3 model without symbolic inputs"):
        tfprune.export_saved_model(sub, tmp_path / "c")
    assert not os.listdir(tmp_path)
