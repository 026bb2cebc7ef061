"""tfprune.training.twins: runs of one model shape share compiled functions, same numbers."""

from __future__ import annotations

import types

import numpy as np
import pytest

from tfprune.compat import keras, tf
from tfprune.data import load_dataset
from tfprune.models import get_model
from tfprune.protocols.execute import execute
from tfprune.protocols.spec import RunSpec
from tfprune.trainability import mean_jsv
from tfprune.training import pipeline, twins
from tfprune.training.recipe import TrainingRecipe
from tfprune.training.schedules import parse_schedule

RECIPE = types.SimpleNamespace(
    optimizer="sgd", momentum=0.9, weight_decay=1e-4, weight_decay_mode="coupled"
)
SCHEDULE = parse_schedule("0:0.05,1:0.01", 2)


def _mlp(seed: int) -> keras.Model:
    return get_model("mlp7_linear", input_dim=64, num_classes=10, width=16, seed=seed)


def _data():
    return load_dataset("digits", batch_size=64, seed=0, flatten=True)


def _train(model: keras.Model, jsv_x: np.ndarray) -> tuple[keras.Model, dict]:
    """What a run does: its own data (shuffle), compile (a twin when sharing), fit, measure."""
    keras.utils.set_random_seed(1)
    data = _data()
    trainee = pipeline.compiled(model, RECIPE, SCHEDULE.lr_at(0), 32)
    history = pipeline.fit(
        trainee, data, RECIPE, SCHEDULE, epochs=2, jsv_inputs=jsv_x, compile=False
    )
    history["acc"] = [pipeline.evaluate(trainee, data)]
    history["jsv_now"] = [pipeline.jsv_mean(trainee, jsv_x)]
    return trainee, history


def test_models_of_one_shape_train_in_one_twin_traced_once_with_the_same_results():
    data = _data()
    jsv_x = np.asarray(data.preprocess(data.train_arrays[0][:50]))
    with twins.sharing(False):
        alone = [_train(_mlp(seed), jsv_x) for seed in (3, 4)]
    with twins.sharing(True):
        first = _train(_mlp(3), jsv_x)
        functions = (first[0].train_function, first[0].test_function)
        traces = [f.experimental_get_tracing_count() for f in functions]
        second = _train(_mlp(4), jsv_x)
        assert twins.stats() == twins.TwinStats(built=1, reused=1)
    shared = [first, second]
    t1, t2 = first[0], second[0]
    assert t1 is t2  # the second model (other names, other weights) was trained as the twin
    assert (t2.train_function, t2.test_function) == functions
    assert [f.experimental_get_tracing_count() for f in functions] == traces  # none again
    assert twins.jsv_meter(t1) is None  # outside its block the twin is not kept
    for (model, h_alone), (_, h_shared) in zip(alone, shared):
        assert model is not t1
        assert h_alone == h_shared  # losses, accuracies, LRs and JSVs: exactly equal
    np.testing.assert_array_equal(alone[1][0].get_weights()[0], t2.get_weights()[0])


def test_a_twin_starts_each_model_with_a_new_optimizer():
    data = _data()
    with twins.sharing(True):
        first = pipeline.compiled(_mlp(0), RECIPE, 0.05, 32)
        pipeline.fit(first, data, RECIPE, SCHEDULE, epochs=2, compile=False)
        again = pipeline.compiled(_mlp(1), RECIPE, 0.02, 32)
    assert again is first
    assert int(again.optimizer.iterations.numpy()) == 0
    assert float(again.optimizer.learning_rate.numpy()) == np.float32(0.02)
    assert all(not np.any(v.numpy()) for v in again.optimizer.variables)


def test_another_recipe_gets_another_twin_and_the_jsv_function_is_kept():
    x = np.random.default_rng(0).random((20, 64), dtype=np.float32)
    with twins.sharing(True):
        a = pipeline.compiled(_mlp(0), RECIPE, 0.1)
        other = types.SimpleNamespace(**{**vars(RECIPE), "momentum": 0.5})
        b = pipeline.compiled(_mlp(0), other, 0.1)
        assert a is not b and twins.stats().built == 2
        model = _mlp(5)
        a = pipeline.compiled(model, RECIPE, 0.1)
        assert twins.jsv_meter(a) is twins.jsv_meter(a)
        assert pipeline.jsv_mean(a, x) == mean_jsv(model, x).mean


def test_building_a_twin_draws_no_random_numbers_and_takes_no_layer_names():
    def sequence(enabled: bool) -> tuple[list[str], np.ndarray]:
        keras.backend.clear_session()  # layer names count from zero again
        with twins.sharing(enabled):
            keras.utils.set_random_seed(7)
            pipeline.compiled(_mlp(0), RECIPE, 0.1)
            after = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3)])
            return [la.name for la in after.layers], after.get_weights()[0]

    names_off, weights_off = sequence(False)
    names_on, weights_on = sequence(True)
    assert names_off == names_on
    np.testing.assert_array_equal(weights_off, weights_on)  # the same random initialization


def test_models_that_draw_random_numbers_or_have_no_config_are_used_themselves():
    dropout = keras.Sequential(
        [keras.layers.Input((8,)), keras.layers.Dropout(0.5), keras.layers.Dense(2)]
    )

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    sub(tf.zeros((1, 8)))
    assert twins.shape_key(dropout) is None and twins.shape_key(sub) is None
    with twins.sharing(True):
        assert pipeline.compiled(dropout, RECIPE, 0.1) is dropout
        assert pipeline.compiled(sub, RECIPE, 0.1) is sub
        assert twins.stats() == twins.TwinStats()
    assert dropout.optimizer is not None


@pytest.mark.slow
def test_runs_of_a_grid_give_the_same_records_with_and_without_twins(tmp_path):
    base = {"schedule": "0:0.05", "epochs": 2, "batch_size": 64}

    def spec(method: str, lr: float) -> RunSpec:
        return RunSpec(
            protocol="test",
            cell=f"{method} {lr}",
            dataset="digits",
            model="mlp7_linear",
            method=method,
            ratio=0.5,
            retrain=TrainingRecipe(f"0:{lr}", 2, batch_size=64),
            seed=0,
            base=base,
            options={"jsv_samples": 32, "jsv_every_epoch": True},
        )

    specs = [spec("l1", 0.01), spec("random", 0.01), spec("scratch", 0.001)]
    records = {}
    for enabled in (False, True):
        with twins.sharing(enabled):
            records[enabled] = [
                execute(s, str(tmp_path / str(enabled)), log=lambda _: None) for s in specs
            ]
            counts = twins.stats()
    # the dense shape trained as a base and measured at the retraining recipe, the pruned
    # shape retrained: three twins, used again by the two runs after the first
    assert counts.built == 3 and counts.reused == 3
    timing = {"seconds", "train_seconds", "base_seconds", "wall_seconds"}
    for off, on in zip(records[False], records[True]):
        assert off.history == on.history
        assert {k: v for k, v in off.metrics.items() if k not in timing} == {
            k: v for k, v in on.metrics.items() if k not in timing
        }
