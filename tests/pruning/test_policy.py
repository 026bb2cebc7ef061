"""One pruning policy: validated once, analysed once, held in one place, no per-batch parsing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from core_helpers import ARCHITECTURES, NESTED_CROSSING, all_layers, randomize, residual

import tfprune
from tfprune import pruning
from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.importance import criteria
from tfprune.layers import is_mask_layer


def _model():
    return randomize(residual())


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 3)).astype(np.float32), rng.integers(0, 3, size=n)


@pytest.fixture
def analyses(monkeypatch):
    """Counts channel analyses: every module that runs one, wrapped with a counter."""
    calls = []

    def counting(model):
        calls.append(model.name)
        return real(model)

    real = pruning.analyze
    monkeypatch.setattr(pruning, "analyze", counting)
    monkeypatch.setattr(criteria, "analyze", counting)
    return calls


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sparsity": 0.5},
        {"sparsity": {"b_conv1": 0.5, "stem": 0.25}, "global_ranking": True},
        {"sparsity": tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 8)},
        {"target": {"params_reduction": 1.5}, "target_tolerance": 0.2},
        {
            "sparsity": 0.5,
            "importance": "taylor",
            "importance_data": _data(),
            "loss": "sparse_categorical_crossentropy",
        },
    ],
    ids=["one_shot", "mapping_global", "gradual", "target", "taylor"],
)
def test_prune_filters_analyses_the_model_once(analyses, kwargs):
    masked = tfprune.prune_filters(_model(), **kwargs)
    assert analyses == ["residual"]
    assert tfprune.pruning_policy(masked) is not None


@pytest.mark.parametrize("name", sorted({**ARCHITECTURES, **NESTED_CROSSING}))
def test_one_shot_masks_are_those_the_masked_models_own_groups_give(name):
    """prune_filters chooses one-shot masks on the original's analysis: the same choice."""
    model = randomize({**ARCHITECTURES, **NESTED_CROSSING}[name](), seed=2)
    masked = tfprune.prune_filters(model, 0.5, "l2")
    pruner = tfprune.FilterPruner.for_model(masked)
    before = {k: v.copy() for k, v in pruner.current_pruned().items() if v.any()}
    assert before
    pruner.apply(pruner.compute(pruner.policy.ratios_at(None)[1], monotone=False))
    after = {k: v for k, v in pruner.current_pruned().items() if v.any()}
    assert before.keys() == after.keys()
    for gid, units in before.items():
        np.testing.assert_array_equal(units, after[gid])


def test_masked_model_holds_its_policy_in_one_place():
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 8)
    masked = tfprune.prune_filters(_model(), {"b_conv1": schedule, "stem": 0.25}, seed=3)
    policy = tfprune.pruning_policy(masked)
    assert isinstance(policy, tfprune.PruningPolicy)
    assert policy.sparsity["b_conv1"] is schedule and policy.seed == 3 and policy.is_gradual
    assert tfprune.FilterPruner.for_model(masked).policy is policy
    holders = [
        layer for layer in all_layers(masked) if is_mask_layer(layer) and layer.policy is not None
    ]
    assert len(holders) == 1 and holders[0].policy is policy
    assert not any(isinstance(v, tfprune.PruningPolicy) for v in vars(masked).values())
    with pytest.raises(dataclasses.FrozenInstanceError):  # never drifts from what was checked
        policy.seed = 4


def test_policy_is_validated_when_made():
    with pytest.raises(InvalidArgumentError, match=r"sparsity\['c1'\] must be in \[0, 1\)"):
        tfprune.PruningPolicy({"c1": 1.5})
    with pytest.raises(InvalidArgumentError, match="round_to"):
        tfprune.PruningPolicy(0.5, round_to=0)
    with pytest.raises(UnsupportedModelError, match="no tfprune masks"):
        tfprune.pruning_policy(_model())


_FROM_CONFIG_CALLS = []


@keras.utils.register_keras_serializable(package="tfprune_test")
class CountedSchedule(tfmot.sparsity.keras.ConstantSparsity):
    """A TF-MOT schedule that counts how often it is made from its config."""

    @classmethod
    def from_config(cls, config):
        _FROM_CONFIG_CALLS.append(1)
        return super().from_config(config)

    def get_config(self):
        return {
            "class_name": "tfprune_test>CountedSchedule",
            "config": super().get_config()["config"],
        }


def test_no_schedule_is_deserialized_per_batch(tmp_path):
    _FROM_CONFIG_CALLS.clear()
    masked = tfprune.prune_filters(_model(), CountedSchedule(0.5, begin_step=0, frequency=2))
    masked.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x, _ = _data(32)
    y = np.zeros((32, 3), np.float32)
    masked.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    assert tfprune.FilterPruner.for_model(masked).sparsity() > 0.3
    assert _FROM_CONFIG_CALLS == []  # 16 batches, no schedule made from a config
    path = str(tmp_path / "m.keras")
    masked.save(path)
    reloaded = keras.models.load_model(path, custom_objects=tfprune.custom_objects())
    assert len(_FROM_CONFIG_CALLS) == 1  # once, when the one layer holding it is loaded
    assert isinstance(tfprune.pruning_policy(reloaded).sparsity, CountedSchedule)
    reloaded.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    assert len(_FROM_CONFIG_CALLS) == 1
