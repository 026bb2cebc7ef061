"""One architecture per tf_keras.applications family pruned at 50%; two also exported.

The full sweep over every application is ``benchmarks/coverage.py`` (pruning) and
``benchmarks/export_verify.py`` (exports); these tests keep one member of each family in CI (those
in :data:`PRUNED_BY_THE_TWIN_TEST` are pruned, with the same checks, by the Keras 3 twin test of
tests/keras3/test_keras3_graph.py, which builds them anyway) and export the families in
:data:`FRESH_PROCESS`, whose exports are then loaded together in one
process that never imports tfprune (a Python process importing TensorFlow costs ~5-10 s).
InceptionV3 stands for InceptionResNetV2 (the same Inception blocks; its scaled residual, the
one layer kind InceptionV3 lacks, is pruned in a small model here, and the whole
InceptionResNetV2 is analysed and counted in both flavours by tests/keras3/test_keras3_graph.py)
and RegNetY002 for RegNetX002 (the same blocks plus squeeze-and-excitation).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from core_helpers import PRUNED_BY_THE_TWIN_TEST, application_prunes_at_half

import tfprune
from tfprune.compat import keras, tf

# family representative -> input size (the smallest each builder accepts comfortably)
FAMILIES = {
    "ConvNeXtTiny": 32,
    "DenseNet121": 32,
    "EfficientNetB0": 32,
    "EfficientNetV2B0": 32,
    "InceptionV3": 75,
    "MobileNet": 32,
    "MobileNetV2": 32,
    "MobileNetV3Small": 32,
    "NASNetMobile": 32,
    "RegNetY002": 32,
    "ResNet50": 32,
    "ResNet50V2": 32,
    "ResNetRS50": 32,
    "VGG16": 32,
    "Xception": 71,
}


# Families also exported, checked against the stripped model, and loaded in a process that
# never imports tfprune: a concatenating one, and one with squeeze-and-excitation, hard-swish and
# a rescaling constant (an export costs about as much as pruning and stripping; tests/export
# covers the exporter on the zoo and MobileNet).
FRESH_PROCESS = ("DenseNet121", "MobileNetV3Small")


def prune_and_export(name: str, export_dir, export: bool = True) -> None:
    """Prunes the application at 50%, checks masked = stripped, exports the stripped model.

    Writes the SavedModel to ``export_dir/<name>`` and its check input and output beside it
    (unless ``export`` is false).
    """
    size = FAMILIES[name]
    kwargs = {"weights": None, "classifier_activation": None, "classes": 10}
    model = getattr(keras.applications, name)(input_shape=(size, size, 3), **kwargs)
    assert tfprune.explain(model).prunable_fraction > 0.5
    small, x, b = application_prunes_at_half(model, size)
    if not export:
        return
    tfprune.export_saved_model(small, str(export_dir / name), check_inputs=x)
    np.save(export_dir / f"{name}.x.npy", x)
    np.save(export_dir / f"{name}.y.npy", b)


def run_without_tfprune(names, export_root) -> None:
    """The stripped exports load and run, with the same outputs, in one process without tfprune.

    The process prints one line per export, ``<name> ok``, so a failure names the export.
    """
    root = str(export_root)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, tensorflow as tf
        for name in {list(names)!r}:
            fn = tf.saved_model.load({root!r} + "/" + name).signatures["serving_default"]
            x = np.load({root!r} + "/" + name + ".x.npy")
            y = np.load({root!r} + "/" + name + ".y.npy")
            (out,) = fn(**{{list(fn.structured_input_signature[1])[0]: tf.constant(x)}}).values()
            assert np.abs(out.numpy() - y).max() <= 1e-4 * max(1.0, np.abs(y).max()), name
            print(name, "ok", flush=True)
        assert "tfprune" not in sys.modules
        print("done")
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.splitlines() == [*(f"{name} ok" for name in names), "done"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", sorted(set(FAMILIES) - set(FRESH_PROCESS) - set(PRUNED_BY_THE_TWIN_TEST))
)
def test_application_prunes_at_half(name, tmp_path):
    prune_and_export(name, tmp_path, export=False)
    assert not (tmp_path / name).exists()


@pytest.mark.slow
def test_applications_prune_at_half_and_their_exports_run_in_one_process_without_tfprune(
    tmp_path,
):
    for name in FRESH_PROCESS:
        prune_and_export(name, tmp_path)
        assert (tmp_path / name / "saved_model.pb").is_file()
    run_without_tfprune(FRESH_PROCESS, tmp_path)


def _scaled_residual_model(scale_layer):
    """A conv block with InceptionResNetV2's residual: ``x + up * scale`` in ``scale_layer``."""
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", name="stem")(inputs)))
    up = L.Conv2D(8, 1, name="up")(L.Conv2D(6, 1, activation="relu", name="branch")(x))
    x = L.ReLU()(scale_layer(0.17)([x, up]))
    return keras.Model(inputs, L.Dense(4)(L.GlobalAveragePooling2D()(x)))


def test_inception_resnet_scaled_residual_prunes_and_strips():
    stock = vars(importlib.import_module(keras.applications.InceptionResNetV2.__module__))
    model = _scaled_residual_model(stock["CustomScaleLayer"])
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("stem").filters == small.get_layer("up").filters == 4  # one group
    assert small.get_layer("branch").filters == 3
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    a, b = masked(x, training=False).numpy(), small(x, training=False).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_lookalike_of_the_scaled_residual_is_not_taken_for_it():
    class CustomScaleLayer(keras.layers.Layer):  # same name and argument, another computation
        def __init__(self, scale, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, inputs):
            return tf.concat([inputs[0], inputs[1] * self.scale], axis=-1)[..., :8]

    # traced, not trusted: the slice it really computes blocks the residual's channels
    report = tfprune.explain(_scaled_residual_model(CustomScaleLayer))
    (row,) = [r for r in report.rows if set(r["producers"]) == {"stem", "up"}]
    assert row["prunable_units"] == 0
    assert any("custom_scale_layer" in why and "channel axis" in why for why in row["reasons"])


def _layer_scale_model(layer_scale):
    """Two convs around ConvNeXt's per-channel scale, ``layer_scale(1e-6, 8)``."""
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layer_scale(1e-6, 8)(x)
    return keras.Model(inputs, L.Dense(4)(L.GlobalAveragePooling2D()(L.Conv2D(5, 1)(x))))


def test_convnext_layer_scale_prunes_with_its_conv_and_a_lookalike_is_traced():
    stock = vars(importlib.import_module(keras.applications.ConvNeXtTiny.__module__))
    masked = tfprune.prune_filters(_layer_scale_model(stock["LayerScale"]), 0.5)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("conv").filters == 4
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(masked(x).numpy(), small(x).numpy(), rtol=1e-5, atol=1e-6)

    class LayerScale(keras.layers.Layer):  # same name and attribute, mixes the channels
        def __init__(self, init_values, projection_dim, **kwargs):
            super().__init__(**kwargs)
            self.init_values, self.projection_dim = init_values, projection_dim

        def call(self, x):
            return tf.concat([x[..., 1:], x[..., :1]], axis=-1)

    report = tfprune.explain(_layer_scale_model(LayerScale))
    (row,) = [r for r in report.rows if r["producers"] == ["conv"]]
    assert row["prunable_units"] == 0
    assert any("layer_scale" in why for why in row["reasons"]), row["reasons"]
