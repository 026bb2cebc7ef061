"""TF Serving export: version folders, warm-up replay, preprocessing signature, honest checks."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import tfprune
from tfprune.compat import keras, tf
from tfprune.deploy import example_inputs
from tfprune.deploy.serving import WARMUP_FILE, read_warmup_requests
from tfprune.deploy.verify_script import signature_text
from tfprune.errors import InvalidArgumentError, UnsupportedModelError, VersionExistsError
from tfprune.export import ExportResult, export_for_serving, export_saved_model

L = keras.layers
pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")


def _model():
    inp = keras.Input((8, 8, 3), name="image")
    x = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="conv")(inp))
    x = L.Dropout(0.2, name="drop")(L.GlobalAveragePooling2D(name="gap")(L.ReLU()(x)))
    model = keras.Model(inp, L.Dense(3, name="logits")(x), name="tiny")
    bn = model.get_layer("bn")
    bn.set_weights([np.full(4, 1.5), np.full(4, 0.2), np.full(4, 0.1), np.full(4, 0.5)])
    return model


def _entries(path):
    return sorted(os.listdir(path))


def test_versions_warmup_replay_and_folding(tmp_path):
    model = _model()
    first = export_for_serving(model, tmp_path)
    assert isinstance(first, ExportResult)
    assert first.version == 1 and first.path == str(tmp_path / "1")
    assert _entries(tmp_path) == ["1"]
    assert stat.S_IMODE(os.stat(first.path).st_mode) & 0o055 == 0o055  # readable by a server
    # warm-up records parse with tensorflow-serving-api and replay against the SavedModel
    requests = read_warmup_requests(os.path.join(first.path, WARMUP_FILE))
    assert first.warmup_path == os.path.join(first.path, WARMUP_FILE) and len(requests) == 1
    serve = tf.saved_model.load(first.path).signatures["serving_default"]
    for signature, inputs in requests:
        assert signature == "serving_default" and list(inputs) == ["image"]
        got = serve(**{k: tf.constant(v) for k, v in inputs.items()})["logits"].numpy()
        np.testing.assert_allclose(got, model(inputs["image"]).numpy(), rtol=1e-5, atol=1e-6)
    # folded by default: BN and Dropout are gone from the served model
    restored = keras.models.load_model(first.path)
    assert {type(layer).__name__ for layer in restored.layers}.isdisjoint(
        {"BatchNormalization", "Dropout"}
    )
    assert first.fold_report.folded == ["bn -> conv"] and first.fold_report.dropped == ["drop"]
    assert first.max_relative_difference <= first.tolerance
    assert first.tolerance == pytest.approx(
        max(1e-5, 10 * first.eager_graph_difference, 2 * first.fold_difference)
    )
    assert "tolerance" in first.summary()
    # the next export takes version 2; fold=False keeps the BN
    second = export_for_serving(model, tmp_path, fold=False, warmup=False)
    assert second.version == 2 and not os.path.exists(os.path.join(second.path, WARMUP_FILE))
    kept = keras.models.load_model(second.path)
    assert "BatchNormalization" in {type(layer).__name__ for layer in kept.layers}
    # an existing version is refused and nothing changes
    with pytest.raises(VersionExistsError, match="already exists"):
        export_for_serving(model, tmp_path, version=2)
    assert _entries(tmp_path) == ["1", "2"]
    assert "signature_def['serving_default']" in signature_text(first.path)


def test_preprocessing_signature_and_wrong_spec(tmp_path):
    model = _model()
    raw = keras.Input((8, 8, 3), dtype="uint8", name="image")
    pre = keras.Model(raw, L.Rescaling(1 / 255.0, offset=-0.5)(raw))
    result = export_for_serving(model, tmp_path, preprocessing=pre, warmup=False)
    assert result.signatures == ["serving_default", "serving_preprocess"]
    fn = tf.saved_model.load(result.path).signatures["serving_preprocess"]
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    want = model(x.astype(np.float32) / 255.0 - 0.5).numpy()
    np.testing.assert_allclose(fn(image=tf.constant(x))["logits"].numpy(), want, atol=1e-5)
    wrong = keras.Model(raw, L.Rescaling(1.0)(L.Cropping2D(1)(raw)))
    with pytest.raises(InvalidArgumentError, match="do not fit the model inputs"):
        export_for_serving(model, tmp_path, preprocessing=wrong)
    assert _entries(tmp_path) == ["1"]


def test_masked_model_is_refused_unless_allowed(tmp_path):
    masked = tfprune.prune_filters(_model(), 0.5)
    with pytest.raises(UnsupportedModelError, match="strip_filters.*allow_masked"):
        export_saved_model(masked, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    with pytest.warns(UserWarning, match="full size"):
        export_saved_model(masked, tmp_path / "m", allow_masked=True)


def test_embedding_ids_are_valid_check_inputs(tmp_path):
    model = keras.Sequential(
        [keras.Input((5,), dtype="int32"), L.Embedding(7, 4), L.Flatten(), L.Dense(2)]
    )
    ids = example_inputs(model, batch_size=8)[model.input_names[0]]
    assert ids.min() >= 0 and ids.max() < 7 and len(np.unique(ids)) > 2
    path = export_saved_model(model, tmp_path / "emb")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
