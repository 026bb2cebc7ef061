"""Tests for tfprune.export: round trips, named signatures, refusals, atomicity.

The fresh-process load (no tfprune imported) is tested through ``--verify`` in test_export_bin.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tfprune.compat import keras, tf
from tfprune.errors import ExportDirectoryNotEmptyError, ExportMismatchError, TfpruneError
from tfprune.export import export_saved_model

L = keras.layers


def _single_input_model():
    inputs = keras.Input((6,), name="features")
    x = L.Dense(5, activation="relu", name="hidden")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Dropout(0.5, name="drop")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def _multi_model():
    image = keras.Input((8, 8, 3), name="image")
    meta = keras.Input((4,), name="meta")
    x = L.Conv2D(4, 3, padding="same", name="conv")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Concatenate(name="concat")([x, L.Dense(4, name="meta_dense")(meta)])
    logits = L.Dense(3, name="logits")(x)
    score = L.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model([image, meta], [logits, score])


def _leftovers(parent, name):
    return [p for p in os.listdir(parent) if p.startswith(f".{name}.")]


def test_single_input_round_trip(tmp_path):
    model = _single_input_model()
    target = tmp_path / "export" / "1"
    path = export_saved_model(model, target)
    assert path == str(target.resolve())
    assert (target / "saved_model.pb").is_file()
    assert _leftovers(target.parent, "1") == []
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    _, kwargs = serve.structured_input_signature
    assert list(kwargs) == ["features"]
    assert kwargs["features"].shape.as_list() == [None, 6]
    x = np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)
    out = serve(features=tf.constant(x))
    assert list(out) == ["logits"]
    np.testing.assert_allclose(out["logits"].numpy(), model(x, training=False).numpy(), atol=1e-6)


def test_multi_input_multi_output_round_trip_with_named_check_inputs(tmp_path):
    model = _multi_model()
    rng = np.random.default_rng(4)
    check = {
        "meta": rng.standard_normal((3, 4)),
        "image": rng.standard_normal((3, 8, 8, 3)),
    }
    path = export_saved_model(model, tmp_path / "m", signature_name="predict", check_inputs=check)
    serve = tf.saved_model.load(path).signatures["predict"]
    _, kwargs = serve.structured_input_signature
    assert set(kwargs) == {"image", "meta"}
    got = serve(
        image=tf.constant(check["image"], tf.float32), meta=tf.constant(check["meta"], tf.float32)
    )
    assert set(got) == {"logits", "score"}
    want_logits, want_score = model([check["image"], check["meta"]], training=False)
    np.testing.assert_allclose(got["logits"].numpy(), want_logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["score"].numpy(), want_score.numpy(), atol=1e-5)
    # also loadable as a Keras model (stock layers only)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        restored([check["image"], check["meta"]])[0].numpy(), want_logits.numpy(), atol=1e-5
    )


def test_never_replaces_a_folder_of_other_files_and_its_own_only_with_overwrite(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    model = _single_input_model()
    for overwrite in (False, True):
        with pytest.raises(ExportDirectoryNotEmptyError, match="'keep.txt', which tfprune") as info:
            export_saved_model(model, target, overwrite=overwrite)
        assert isinstance(info.value, TfpruneError)
        assert "\n" not in str(info.value) and "new or empty folder" in str(info.value)
        assert (target / "keep.txt").read_text() == "precious"
        assert _leftovers(tmp_path, "busy") == []
    ours = tmp_path / "ours"
    export_saved_model(model, ours)
    with pytest.raises(ExportDirectoryNotEmptyError, match=r"overwrite=True \(--overwrite\)"):
        export_saved_model(model, ours)
    export_saved_model(model, ours, overwrite=True)
    assert (ours / "saved_model.pb").is_file()
    assert _leftovers(tmp_path, "ours") == []


def test_a_git_checkout_or_the_current_folder_is_never_replaced(tmp_path, monkeypatch):
    model = _single_input_model()
    repo = tmp_path / "repo"
    export_saved_model(model, repo)  # a tfprune export...
    (repo / ".git").mkdir()  # ...that someone made a git checkout
    with pytest.raises(ExportDirectoryNotEmptyError, match="git repository"):
        export_saved_model(model, repo, overwrite=True)
    assert (repo / ".git").is_dir()
    monkeypatch.chdir(tmp_path / "repo")
    (repo / ".git").rmdir()
    with pytest.raises(ExportDirectoryNotEmptyError, match="current folder"):
        export_saved_model(model, ".", overwrite=True)
    assert (repo / "saved_model.pb").is_file()


def test_empty_existing_directory_is_accepted(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    export_saved_model(_single_input_model(), target)
    assert (target / "saved_model.pb").is_file()


def test_mismatch_raises_and_leaves_nothing_behind(tmp_path):
    # A graph with a random op computes something new on every call, so the check must fail.
    inputs = keras.Input((4,), name="x")
    noisy = inputs + tf.random.uniform(tf.shape(inputs))
    model = keras.Model(inputs, L.Dense(2, name="out")(noisy))
    with pytest.raises(ExportMismatchError, match="max \\|difference\\|"):
        export_saved_model(model, tmp_path / "bad")
    assert os.listdir(tmp_path) == []
