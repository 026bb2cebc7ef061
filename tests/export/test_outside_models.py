"""Exporting models nobody here wrote.

Each either exports and reloads exactly, or is refused with a tfprune error naming the fix.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import tfprune
from tfprune.compat import keras, tf
from tfprune.deploy.inputs import example_inputs
from tfprune.errors import UnsupportedModelError
from tfprune.export import export_for_serving, export_saved_model

L = keras.layers


class _TwoDense(keras.Model):
    def __init__(self) -> None:
        super().__init__(name="two_dense")
        self.hidden = L.Dense(8, activation="relu")
        self.out = L.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def _serve(path, **inputs):
    serve = tf.saved_model.load(path).signatures["serving_default"]
    outputs = serve(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def test_called_subclassed_model_is_refused_with_the_functional_wrapper_to_write(tmp_path):
    model = _TwoDense()
    model(np.zeros((1, 5), np.float32))
    for export in (export_saved_model, export_for_serving):
        with pytest.raises(UnsupportedModelError, match="subclassed") as info:
            export(model, tmp_path / "sub")
        message = str(info.value)
        assert "'two_dense'" in message and "(_TwoDense)" in message
        assert "keras.Input(shape=(5,), dtype='float32')" in message
        assert "keras.Model(inputs, model(inputs))" in message
    assert os.listdir(tmp_path) == []
    # The fix the message names exports, and the reload computes what the model does.
    inputs = keras.Input(shape=(5,), dtype="float32", name="x")
    path = export_saved_model(keras.Model(inputs, model(inputs)), tmp_path / "wrapped")
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    (got,) = _serve(path, x=x).values()
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-6, atol=1e-6)


def test_subclassed_model_never_called_is_told_to_get_an_input_shape(tmp_path):
    with pytest.raises(UnsupportedModelError, match="no input shape yet"):
        export_saved_model(_TwoDense(), tmp_path / "sub")


def test_outputs_in_a_dict_holding_a_list_are_served_one_tensor_per_name(tmp_path):
    # Model Garden's ALBERT/MobileBERT encoders: {"pooled_output": ..., "encoder_outputs": [...]}.
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="features")
    h1 = L.Dense(4, name="h1")(x)
    h2 = L.Dense(4, name="h2")(h1)
    model = keras.Model(x, {"pooled": L.Dense(2, name="pool")(h2), "encoder_outputs": [h1, h2]})
    path = export_saved_model(model, tmp_path / "enc")
    data = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    got = _serve(path, features=data)
    want = model(data)
    assert set(got) == {"pooled", "encoder_outputs_0", "encoder_outputs_1"}
    np.testing.assert_allclose(got["pooled"], want["pooled"].numpy(), rtol=1e-5, atol=1e-6)
    for i in range(2):
        np.testing.assert_allclose(
            got[f"encoder_outputs_{i}"], want["encoder_outputs"][i].numpy(), rtol=1e-5, atol=1e-6
        )


def test_embedding_behind_a_float_input_gets_valid_ids_and_prunes_masked_stripped_exported(
    tmp_path,
):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((7,)),  # float32: Embedding casts the ids
            L.Embedding(30, 8, name="emb"),
            L.GlobalAveragePooling1D(),
            L.Dense(6, activation="relu", name="hidden"),
            L.Dense(2, name="logits"),
        ]
    )
    ids = next(iter(example_inputs(model, batch_size=16).values()))
    assert ids.dtype == np.float32
    assert ids.min() >= 0 and ids.max() < 30 and np.array_equal(ids, np.round(ids))
    assert len(np.unique(ids)) > 2
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("hidden").units == 3
    path = export_saved_model(small, tmp_path / "emb")
    x = np.random.default_rng(2).integers(0, 30, (4, 7)).astype(np.float32)
    want = masked(x).numpy()
    np.testing.assert_allclose(small(x).numpy(), want, rtol=1e-5, atol=1e-6)
    (got,) = _serve(path, **{small.input_names[0]: x}).values()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
