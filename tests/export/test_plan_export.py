"""Pruning plans (JSON round trip, replay, incompatibility) and stock-layer export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from core_helpers import (
    ARCHITECTURES,
    all_layers,
    inputs_for,
    max_rel_error,
    outputs_of,
    randomize,
)

import tfprune
from tfprune.compat import keras
from tfprune.errors import IncompatiblePlanError, UnsupportedModelError
from tfprune.layers import is_mask_layer


def _clone_with_weights(builder, model):
    # A model re-created from code in a fresh session gets the same auto-generated layer names.
    keras.backend.clear_session()
    fresh = builder()
    fresh.set_weights(model.get_weights())
    return fresh


@pytest.mark.parametrize("name", ["residual", "concat", "multi_io", "depthwise", "grouped2"])
def test_plan_json_replay_gives_identical_stripped_model(name, tmp_path):
    builder = ARCHITECTURES[name]
    keras.backend.clear_session()
    model = randomize(builder())
    small, plan = tfprune.strip_filters(tfprune.prune_filters(model, 0.5), return_plan=True)
    assert plan.removed_channels > 0
    text = plan.to_json()
    json.loads(text)
    plan2 = tfprune.PruningPlan.from_json(text)
    assert plan2.to_dict() == plan.to_dict()
    path = tmp_path / "plan.json"
    plan.save(path)
    assert tfprune.PruningPlan.load(path).to_dict() == plan.to_dict()
    assert tfprune.PruningPlan.from_dict(plan.to_dict()).layers == plan.layers
    fresh = _clone_with_weights(builder, model)
    for replay_arg in (plan2, plan.to_dict(), str(path)):
        replayed = tfprune.apply_plan(fresh, replay_arg)
        assert replayed.count_params() == small.count_params()
        assert [w.shape for w in replayed.get_weights()] == [w.shape for w in small.get_weights()]
        for a, b in zip(replayed.get_weights(), small.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        xs = inputs_for(model)
        assert max_rel_error(outputs_of(small, xs), outputs_of(replayed, xs)) < 1e-6


def test_plan_on_different_architecture_names_the_layer():
    model = randomize(ARCHITECTURES["conv_chain"]())
    _, plan = tfprune.shrink(model, 0.5, return_plan=True)
    other = ARCHITECTURES["residual"]()
    with pytest.raises(IncompatiblePlanError, match="'conv1'"):
        tfprune.apply_plan(other, plan)


def test_plan_on_same_names_different_width_names_the_layer():
    from core_helpers import L

    model = randomize(ARCHITECTURES["conv_chain"]())
    _, plan = tfprune.shrink(model, 0.5, return_plan=True)
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(20, 3, padding="same", name="conv1")(i)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    wider = keras.Model(i, L.Dense(4, name="out")(x))
    with pytest.raises(IncompatiblePlanError, match="'conv1'.*20"):
        tfprune.apply_plan(wider, plan)


def test_plan_that_removes_blocked_channels_is_refused():
    model = randomize(ARCHITECTURES["conv_chain"]())
    plan = tfprune.PruningPlan(model_name="x", layers={"out": {"out": {"size": 4, "kept": [0, 1]}}})
    with pytest.raises(IncompatiblePlanError, match="'out'"):
        tfprune.apply_plan(model, plan)


def test_foreign_or_newer_plan_files_are_refused():
    with pytest.raises(IncompatiblePlanError, match="Not a tfprune pruning plan"):
        tfprune.PruningPlan.from_json('{"a": 1}')
    with pytest.raises(IncompatiblePlanError, match="newer"):
        tfprune.PruningPlan.from_dict({"layers": {}, "format_version": 99})


def test_apply_plan_refuses_masked_model():
    model = randomize(ARCHITECTURES["conv_chain"]())
    masked = tfprune.prune_filters(model, 0.5)
    _, plan = tfprune.strip_filters(masked, return_plan=True)
    with pytest.raises(UnsupportedModelError, match="strip_filters"):
        tfprune.apply_plan(masked, plan)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_stripped_model_has_only_stock_tf_keras_layers(name):
    model = randomize(ARCHITECTURES[name]())
    small = tfprune.shrink(model, 0.5)
    for layer in all_layers(small):
        module = type(layer).__module__
        assert module.startswith("tf_keras."), (layer.name, module)
        assert not is_mask_layer(layer)
    # And it round-trips through get_config with no custom objects.
    clone = (
        keras.Model.from_config(small.get_config())
        if not isinstance(small, keras.Sequential)
        else keras.Sequential.from_config(small.get_config())
    )
    assert clone.count_params() == small.count_params()


def test_exported_saved_model_runs_without_tfprune(tmp_path):
    from tfprune.export import export_saved_model

    model = randomize(ARCHITECTURES["residual"]())
    small = tfprune.shrink(model, 0.5)
    path = export_saved_model(small, tmp_path / "export")
    x = inputs_for(model)[0]
    np.save(tmp_path / "x.npy", x)
    expected = outputs_of(small, [x])[0]
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        fn = loaded.signatures["serving_default"]
        name = list(fn.structured_input_signature[1])[0]
        out = fn(**{{name: tf.constant(np.load({str(tmp_path / "x.npy")!r}))}})
        np.save({str(tmp_path / "y.npy")!r}, list(out.values())[0].numpy())
        assert not any(m.startswith("tfprune") for m in sys.modules), "tfprune was imported"
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "y.npy")
    assert max_rel_error([expected], [got]) < 1e-5
