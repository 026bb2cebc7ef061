"""All regularization callbacks: argument errors, get_config, MirroredStrategy, resume."""

from __future__ import annotations

import numpy as np
import pytest
from reg_helpers import fixed_batches, masked_cnn

import tfprune
from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.regularization import (
    GroupLasso,
    GrowingRegularization,
    NetworkSlimming,
    TrainabilityPreserving,
)

ALL = [
    (GrowingRegularization, {"variant": "greg2", "delta": 0.2, "update_every": 2}),
    (TrainabilityPreserving, {"delta": 0.1, "update_every": 2, "zero_out_interval": 3}),
    (NetworkSlimming, {"strength": 1e-3}),
    (GroupLasso, {"strength": 1e-3}),
]


@pytest.mark.parametrize(
    "cls, kwargs, words",
    [
        (GrowingRegularization, {"delta": -1e-4}, ["delta", ">"]),
        (GrowingRegularization, {"delta": 0.1, "ceiling": 0.01}, ["ceiling", "delta=0.1"]),
        (GrowingRegularization, {"sparsity": 1.0}, ["sparsity", "[0, 1)"]),
        (GrowingRegularization, {"sparsity": -0.1}, ["sparsity", "[0, 1)"]),
        (GrowingRegularization, {"update_every": 0}, ["update_every", ">= 1"]),
        (GrowingRegularization, {"stabilize_steps": 1.5}, ["stabilize_steps", "integer"]),
        (GrowingRegularization, {"mag_ratio_limit": 1.0}, ["mag_ratio_limit", "> 1"]),
        (GrowingRegularization, {"pick_delta": 0.1, "pick_ceiling": 0.01}, ["pick_ceiling"]),
        (GrowingRegularization, {"variant": "greg3"}, ["variant", "greg1"]),
        (TrainabilityPreserving, {"delta": -1.0}, ["delta"]),
        (TrainabilityPreserving, {"delta": 0.5, "ceiling": 0.1}, ["ceiling", "delta=0.5"]),
        (TrainabilityPreserving, {"sparsity": {"conv.*": 1.2}}, ["sparsity['conv.*']"]),
        (NetworkSlimming, {"strength": 0.0}, ["strength"]),
        (GroupLasso, {"strength": -1.0}, ["strength"]),
    ],
)
def test_wrong_arguments_name_the_argument(cls, kwargs, words):
    with pytest.raises(InvalidArgumentError) as err:
        cls(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_model_without_masks_or_prunable_groups_is_rejected():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(UnsupportedModelError, match="prune_filters"):
        GrowingRegularization(0.5).set_model(dense)
    with pytest.raises(UnsupportedModelError, match="prunable"):
        tfprune.prune_filters(dense, sparsity=0.0)


def test_sparsity_patterns_matching_nothing_are_rejected():
    model = masked_cnn()
    cb = TrainabilityPreserving({"nope.*": 0.5})
    with pytest.raises(InvalidArgumentError, match="sparsity"):
        cb.set_model(model)


@pytest.mark.parametrize("cls, kwargs", ALL)
def test_get_config_round_trips(cls, kwargs):
    cb = cls(sparsity={"conv0": 0.5, "block_conv1": 0.25}, **kwargs)
    config = cb.get_config()
    again = cls.from_config(config)
    assert again.get_config() == config
    via_keras = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(cb))
    assert type(via_keras) is cls and via_keras.get_config() == config


@pytest.mark.parametrize("cls, kwargs", ALL)
def test_runs_under_mirrored_strategy(cls, kwargs, mirrored_strategy):
    model = masked_cnn(strategy=mirrored_strategy)
    cb = cls(0.5, **kwargs)
    model.fit(fixed_batches(), epochs=2, steps_per_epoch=4, callbacks=[cb], verbose=0)
    if isinstance(cb, (NetworkSlimming, GroupLasso)):
        pruned = tfprune.FilterPruner.for_model(model).current_pruned()
        assert all(p.sum() == int(np.ceil(0.5 * p.size)) for p in pruned.values())
    elif isinstance(cb, GrowingRegularization):
        assert max(c.max() for c in cb.penalties().values()) > 0
        assert isinstance(cb.state["phase"], tf.distribute.DistributedValues) or hasattr(
            cb.state["phase"], "values"
        )
    else:
        assert cb.coefficient == pytest.approx(0.4)


@pytest.mark.parametrize("cls", [GrowingRegularization, TrainabilityPreserving])
def test_resume_from_mid_regularization_checkpoint_gives_same_penalties(cls, tmp_path):
    kwargs = {"delta": 0.05, "update_every": 2, "stabilize_steps": 1000}
    if cls is GrowingRegularization:
        kwargs["variant"] = "greg2"
        kwargs.update(pick_delta=0.01, pick_ceiling=0.04)

    batches = fixed_batches()  # each fit reads it from its first batch
    # uninterrupted: 20 steps
    full = masked_cnn()
    cb_full = cls(0.5, **kwargs)
    full.fit(batches, epochs=1, steps_per_epoch=20, callbacks=[cb_full], verbose=0)

    # interrupted after 9 steps (mid-update-interval), checkpoint, new model + callback
    first = masked_cnn()
    cb1 = cls(0.5, **kwargs)
    first.fit(batches, epochs=1, steps_per_epoch=9, callbacks=[cb1], verbose=0)
    path = tf.train.Checkpoint(model=first).save(str(tmp_path / "ckpt"))

    resumed = masked_cnn(seed=1)  # different init: everything must come from the checkpoint
    tf.train.Checkpoint(model=resumed).restore(path)
    cb2 = cls(0.5, **kwargs)
    data = batches.skip(9)
    resumed.fit(data, epochs=1, steps_per_epoch=11, callbacks=[cb2], verbose=0)

    assert cb2.phase == cb_full.phase
    full_state, res_state = cb_full.state.numpy(), cb2.state.numpy()
    assert set(full_state) == set(res_state)
    for key in full_state:  # penalties, selection, phase, step: exact; smoothed ratios: close
        rtol = 1e-2 if key.endswith("_hist") else 1e-6
        np.testing.assert_allclose(res_state[key], full_state[key], rtol=rtol, atol=1e-7)
    if cls is GrowingRegularization:
        assert cb2.pruned_units().keys() == cb_full.pruned_units().keys()


def test_state_is_not_a_model_weight_and_save_weights_carries_it(tmp_path):
    model = masked_cnn()
    n = len(model.weights)
    greg = GrowingRegularization(0.5, delta=0.1, update_every=1, stabilize_steps=100)
    model.fit(fixed_batches(), epochs=1, steps_per_epoch=3, callbacks=[greg], verbose=0)
    assert len(model.weights) == n
    model.save_weights(str(tmp_path / "w"))
    other = masked_cnn()
    other.load_weights(str(tmp_path / "w"))
    greg2 = GrowingRegularization(0.5, delta=0.1, update_every=1, stabilize_steps=100)
    greg2.set_model(other)  # creates the state: restored from the pending checkpoint values
    for name, coef in greg.penalties().items():
        np.testing.assert_allclose(greg2.penalties()[name], coef)


def test_greg_values_reach_later_callbacks_csv_logger(tmp_path):
    model = masked_cnn()
    greg = GrowingRegularization(0.5, delta=0.1, update_every=1, stabilize_steps=100)
    csv = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    model.fit(fixed_batches(), epochs=2, steps_per_epoch=2, callbacks=[greg, csv], verbose=0)
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    g = greg.groups[0].name.replace("+", "_")
    assert f"greg/{g}/penalty" in header and f"greg/{g}/mag_ratio" in header


def test_greg_values_reach_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    model = masked_cnn()
    greg = GrowingRegularization(0.5, delta=0.1, update_every=1, stabilize_steps=100)
    tb = keras.callbacks.TensorBoard(str(tmp_path))
    model.fit(fixed_batches(), epochs=2, steps_per_epoch=2, callbacks=[greg, tb], verbose=0)
    tags = set()
    for f in (tmp_path / "train").glob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags.update(v.tag for v in event.summary.value)
    g = greg.groups[0].name.replace("+", "_")
    assert f"epoch_greg/{g}/penalty" in tags and f"epoch_greg/{g}/mag_ratio" in tags


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_step_count_needs_no_device_read_per_step_and_matches_the_optimizer(steps_per_execution):
    model = masked_cnn()
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
    )
    greg = GrowingRegularization(0.5, delta=0.01, update_every=2, stabilize_steps=100)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((greg._iterations(batch), int(self.model.optimizer.iterations.numpy())))

    model.fit(fixed_batches(), epochs=2, steps_per_epoch=6, callbacks=[greg, Probe()], verbose=0)
    assert len(seen) == 12 // steps_per_execution
    assert all(counted == actual for counted, actual in seen), seen
