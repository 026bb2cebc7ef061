"""tfprune.protocols.tuning: a keras-tuner grid over retraining LRs, run through execute()."""

from __future__ import annotations

import os

import pytest

from tfprune.errors import ConfigError
from tfprune.protocols.spec import RetrainRecipe, RunSpec
from tfprune.protocols.tuning import RetrainLRTuner, compare_at_best_lr, tune_retrain_lr

BASE = {"schedule": "0:0.02", "epochs": 3, "batch_size": 64}


def _spec(method: str) -> RunSpec:
    return RunSpec(
        protocol="tuning",
        cell=method,
        dataset="digits",
        model="mlp7_linear",
        method=method,
        ratio=0.5,
        retrain=RetrainRecipe("steps:0.01", 2, batch_size=64),
        seed=0,
        base=BASE,
        options={"jsv_samples": 0},
    )


def test_tuner_tries_every_lr_and_picks_the_best(tmp_path):
    workdir = str(tmp_path)
    res = tune_retrain_lr(_spec("l1"), [1e-2, 1e-4], workdir, log=lambda _: None)
    assert set(res.values) == {1e-2, 1e-4}
    assert res.best_value == max(res.values.values())
    assert res.values[res.best_lr] == res.best_value
    assert {r.spec["retrain"]["schedule"] for r in res.records.values()} == {
        "steps:0.01:1e-4",
        "steps:0.0001:1e-4",
    }
    assert os.path.isdir(tmp_path / "tuning")
    assert len(os.listdir(tmp_path / "base_models")) == 1  # one shared base model
    resumed = tune_retrain_lr(_spec("l1"), [1e-2, 1e-4], workdir, log=lambda _: None)
    assert resumed.records == {}  # every trial was already done: nothing re-runs
    assert resumed.values == res.values and resumed.best_lr == res.best_lr


def test_compare_at_best_lr_runs_each_method(tmp_path):
    out = compare_at_best_lr(
        [_spec("l1"), _spec("random")], [1e-2, 1e-4], str(tmp_path), log=lambda _: None
    )
    assert set(out) == {"l1", "random"}
    for method, res in out.items():
        assert set(res.values) == {1e-2, 1e-4}  # each method at every LR of the same grid
        assert res.best_value == res.values[res.best_lr] == max(res.values.values())
        assert len(res.records) == 2  # a fresh folder: every trial ran here
        assert all(r.spec["method"] == method for r in res.records.values())
    assert len(os.listdir(tmp_path / "base_models")) == 1  # both methods prune the same base


def test_tuner_validates_its_arguments(tmp_path):
    with pytest.raises(ConfigError, match="lrs"):
        RetrainLRTuner(_spec("l1"), [], str(tmp_path))
    with pytest.raises(ConfigError, match="lr"):
        RetrainLRTuner(_spec("l1"), [0.1], str(tmp_path), schedule_template="0:0.1")
    with pytest.raises(ConfigError, match="budget"):
        other = _spec("random")
        other = RunSpec.from_dict(
            {**other.to_dict(), "retrain": {"schedule": "ft:0.1", "epochs": 3}}
        )
        compare_at_best_lr([_spec("l1"), other], [0.1], str(tmp_path))
