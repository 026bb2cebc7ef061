"""Mixed precision and XLA (tfprune.runtime): policies, float32 twins, exactness under bf16."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.models.mlp import mlp7_linear
from tfprune.models.small_cnn import small_cnn
from tfprune.regularization import GrowingRegularization
from tfprune.runtime import (
    Runtime,
    current_runtime,
    float32_twin,
    model_precision,
    resolve_precision,
    use_runtime,
)
from tfprune.training import pipeline
from tfprune.training.optimizers import make_optimizer
from tfprune.training.recipe import TrainingRecipe

BF16 = Runtime("mixed_bfloat16")


def _x(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


def _batches(n: int = 4, batch: int = 16) -> tf.data.Dataset:
    rng = np.random.default_rng(1)
    x = rng.random((n * batch, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, n * batch)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()


@pytest.mark.parametrize(
    "value, policy",
    [
        (False, "float32"),
        (None, "float32"),
        ("off", "float32"),
        ("float32", "float32"),
        ("mixed_bfloat16", "mixed_bfloat16"),
        ("MIXED_FLOAT16", "mixed_float16"),
    ],
)
def test_resolve_precision_names(value, policy):
    assert resolve_precision(value) == policy


def test_auto_precision_is_bfloat16_without_a_gpu():
    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    assert resolve_precision(True) == resolve_precision("auto") == expected


def test_unknown_precision_names_the_accepted_values():
    with pytest.raises(InvalidArgumentError, match="mixed_bfloat16"):
        resolve_precision("half")
    with pytest.raises(InvalidArgumentError, match="jit_compile"):
        Runtime(jit_compile="yes")
    with pytest.raises(InvalidArgumentError, match="unknown field"):
        Runtime.from_dict({"xla": True})


def test_use_runtime_sets_and_restores_the_policy_also_after_an_error():
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError), use_runtime(Runtime("mixed_bfloat16", jit_compile=True)):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert current_runtime().jit_compile
        raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert current_runtime() == Runtime()


def test_compile_model_takes_xla_from_the_runtime_and_the_loss_is_float32():
    recipe = TrainingRecipe(schedule="0:0.01", epochs=1, batch_size=100)
    with use_runtime(Runtime("mixed_float16", jit_compile=True)):
        model = small_cnn(width=4, seed=0)
        pipeline.compile_model(model, recipe, 0.01)
        assert model.jit_compile
        # mixed_float16: Keras wraps the optimizer in a loss-scale optimizer.
        assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
        hist = model.fit(_batches(), steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    logits = tf.constant([[30.0, 0.0], [0.0, 1.0]], tf.bfloat16)
    loss = pipeline.sparse_crossentropy_float32(tf.constant([1, 1]), logits)
    assert loss.dtype == tf.float32
    ref = keras.losses.sparse_categorical_crossentropy(
        tf.constant([1, 1]), tf.cast(logits, tf.float32), from_logits=True
    )
    np.testing.assert_allclose(loss.numpy(), ref.numpy(), rtol=1e-6)


def test_float32_twin_has_the_weights_and_computes_in_float32():
    with use_runtime(BF16):
        model = small_cnn(width=8, seed=0)
    assert model_precision(model) == "mixed_bfloat16"
    twin = float32_twin(model)
    assert model_precision(twin) == "float32" and twin is not model
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = _x()
    y16, y32 = model(x).numpy().astype(np.float64), twin(x).numpy()
    # bf16 keeps 8 bits of mantissa: the mixed model approximates its twin to about 1e-2.
    assert np.max(np.abs(y16 - y32)) <= 3e-2 * np.max(np.abs(y32))
    plain = small_cnn(width=8, seed=0)
    assert float32_twin(plain) is plain


def test_masked_equals_stripped_under_mixed_bfloat16():
    with use_runtime(BF16):
        model = small_cnn(width=16, seed=0)
        model.compile(keras.optimizers.SGD(0.05), pipeline.sparse_crossentropy_float32)
        model.fit(_batches(), steps_per_epoch=4, epochs=1, verbose=0)
        masked = tfprune.prune_filters(model, 0.5, "l1")
        small = tfprune.strip_filters(masked)
    assert model_precision(masked) == model_precision(small) == "mixed_bfloat16"
    assert tfprune.count_flops(small).total < tfprune.count_flops(model).total
    x = _x(32)
    ym = masked(x).numpy().astype(np.float64)
    ys = small(x).numpy().astype(np.float64)
    scale = np.max(np.abs(ym))
    assert np.max(np.abs(ym - ys)) <= 2**-7 * scale  # within bf16 rounding
    # The surgery itself is exact: the float32 twins agree to float32 rounding.
    tm, ts = float32_twin(masked), float32_twin(small)
    np.testing.assert_allclose(ts(x).numpy(), tm(x).numpy(), rtol=1e-5, atol=1e-5 * scale)


def test_mean_jsv_of_a_mixed_model_is_taken_in_float32():
    with use_runtime(BF16):
        model = small_cnn(width=8, seed=0)
    x = _x(8)
    mixed = tfprune.mean_jsv(model, x).mean
    exact = tfprune.mean_jsv(float32_twin(model), x).mean
    assert mixed == pytest.approx(exact, rel=1e-6)
    cb = tfprune.JacobianSingularValues(x, log_on_train_begin=False)
    cb.set_model(model)
    assert cb.compute().mean == pytest.approx(exact, rel=1e-6)


def _greg_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    base = small_cnn(width=8, seed=seed)
    masked = tfprune.prune_filters(base, sparsity=0.0)
    masked.compile(keras.optimizers.SGD(0.01, momentum=0.9), pipeline.sparse_crossentropy_float32)
    return masked


def test_greg_penalty_is_float32_and_resumes_under_mixed_bfloat16(tmp_path):
    kwargs = {"variant": "greg1", "delta": 0.05, "update_every": 2, "stabilize_steps": 1000}
    with use_runtime(BF16):
        full = _greg_model(0)
        cb_full = GrowingRegularization(0.5, **kwargs)
        full.fit(_batches(), epochs=1, steps_per_epoch=12, callbacks=[cb_full], verbose=0)
        # The penalty is taken in float32 from the float32 variables, not bf16 copies.
        assert full.losses and all(loss.dtype == tf.float32 for loss in full.losses)
        assert float(tf.add_n(full.losses)) > 0

        first = _greg_model(0)
        cb1 = GrowingRegularization(0.5, **kwargs)
        first.fit(_batches(), epochs=1, steps_per_epoch=5, callbacks=[cb1], verbose=0)
        path = tf.train.Checkpoint(model=first).save(str(tmp_path / "ckpt"))
        resumed = _greg_model(1)
        tf.train.Checkpoint(model=resumed).restore(path)
        cb2 = GrowingRegularization(0.5, **kwargs)
        resumed.fit(_batches().skip(5), epochs=1, steps_per_epoch=7, callbacks=[cb2], verbose=0)
    full_state, res_state = cb_full.state.numpy(), cb2.state.numpy()
    assert set(full_state) == set(res_state)
    for key in full_state:
        rtol = 1e-2 if key.endswith("_hist") else 1e-6
        np.testing.assert_allclose(res_state[key], full_state[key], rtol=rtol, atol=1e-7)
    assert cb2.pruned_units().keys() == cb_full.pruned_units().keys()


def test_orthp_under_mixed_precision_restores_isometry_exactly():
    with use_runtime(BF16):
        model = mlp7_linear(input_dim=64, width=32, seed=0)
        small = tfprune.strip_filters(tfprune.prune_filters(model, 0.5, "l1"))
        tfprune.orthp(small)
    assert model_precision(small) == "mixed_bfloat16"
    x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    # A linear network re-initialised orthogonally: every singular value is 1 (in float32).
    assert tfprune.mean_jsv(small, x).mean == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_compile_model_traces_the_train_step_once_and_trains_as_a_plain_compile(optimizer):
    recipe = TrainingRecipe("0:0.05", 2, 8, optimizer=optimizer)
    x = np.random.default_rng(0).random((32, 8, 8, 1), np.float32)
    y = np.arange(32) % 10
    runs = []
    for early in (True, False):
        keras.utils.set_random_seed(0)
        model = small_cnn(width=8, seed=0)
        if early:
            pipeline.compile_model(model, recipe, 0.05)
        else:  # what Keras does by itself: the slots and trackers appear in the first step
            model.compile(
                optimizer=make_optimizer(optimizer, 0.05, momentum=0.9, weight_decay=1e-4),
                loss=pipeline.sparse_crossentropy_float32,
                metrics=["accuracy"],
            )
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False).history
        runs.append((model, history))
    (early, h_early), (plain, h_plain) = runs
    assert early.train_function.experimental_get_tracing_count() == 1
    assert h_early == h_plain
    for a, b in zip(early.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    slots = [(v.name, v.numpy()) for v in early.optimizer.variables]
    assert [n for n, _ in slots] == [v.name for v in plain.optimizer.variables]
    for (_, a), b in zip(slots, plain.optimizer.variables):
        np.testing.assert_array_equal(a, b.numpy())
