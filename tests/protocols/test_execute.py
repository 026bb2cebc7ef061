"""tfprune.protocols.execute: one tiny run per method on digits (1-2 epochs each)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tfprune.errors import ConfigError
from tfprune.protocols.execute import execute
from tfprune.protocols.setups import setup_check
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.training.recipe import TrainingRecipe

BASE = {"schedule": "0:0.05", "epochs": 4, "batch_size": 64}
QUIET = {"log": lambda _: None}


def _spec(method: str, **over) -> RunSpec:
    kw = dict(
        protocol="test",
        cell=method,
        dataset="digits",
        model="mlp7_linear",
        method=method,
        ratio=0.5,
        retrain=TrainingRecipe("0:0.01,1:0.001", 2, batch_size=64),
        seed=0,
        base=BASE,
        options={"jsv_samples": 32},
    )
    kw.update(over)
    return RunSpec(**kw)


@pytest.fixture(scope="module")
def l1_run(tmp_path_factory) -> tuple[RunRecord, str]:
    """The L1 run (JSV every epoch) and its own folder, built from scratch; tests only read it."""
    folder = str(tmp_path_factory.mktemp("l1_run"))
    spec = _spec("l1", options={"jsv_samples": 32, "jsv_every_epoch": True})
    return execute(spec, folder, **QUIET), folder


@pytest.fixture
def l1_record(l1_run) -> RunRecord:
    return l1_run[0]


@pytest.fixture
def workdir(tmp_path, l1_run) -> str:
    """A fresh results folder whose base-model cache holds a copy of the L1 run's base."""
    shutil.copytree(os.path.join(l1_run[1], "base_models"), tmp_path / "base_models")
    return str(tmp_path)


def test_l1_record_has_metrics_history_and_setup(l1_run):
    l1_record, folder = l1_run
    m, h, s = l1_record.metrics, l1_record.history, l1_record.setup
    assert m["params"] < m["base_params"] and m["flops"] < m["base_flops"]
    assert m["speedup"] == pytest.approx(m["base_flops"] / m["flops"])
    assert 0 < m["param_reduction"] < 1
    assert len(h["loss"]) == len(h["val_accuracy"]) == len(h["lr"]) == 2
    assert h["lr"] == pytest.approx([0.01, 0.001])
    assert len(h["jsv_mean"]) == 3  # right after pruning + every epoch
    assert h["jsv_mean"][0] == pytest.approx(m["jsv_after_prune"])
    assert m["best_acc"] == pytest.approx(max(h["val_accuracy"]))
    assert m["final_acc"] == pytest.approx(h["val_accuracy"][-1], abs=1e-6)
    assert m["trainability_acc"] == pytest.approx(h["val_accuracy"][0])  # first stage: 1 epoch
    assert m["jsv_after_prune"] < m["jsv_base"]  # the sparsifying action damages isometry
    assert s["finetune_schedule"] == "0:0.01,1:0.001" and s["finetune_epochs"] == 2
    assert s["total_epochs"] == 4 + 2 and s["base_id"] == _spec("l1").base_id()
    assert m["base_cached"] is False  # the base was trained for this run
    assert os.listdir(os.path.join(folder, "base_models")) == [_spec("l1").base_id()]


def test_execute_is_deterministic_and_reuses_the_base(l1_record, workdir):
    again = execute(
        _spec("l1", options={"jsv_samples": 32, "jsv_every_epoch": True}), workdir, **QUIET
    )
    assert again.metrics["base_cached"] is True
    assert again.metrics["final_acc"] == l1_record.metrics["final_acc"]
    np.testing.assert_allclose(again.history["loss"], l1_record.history["loss"], rtol=1e-6)
    entries = os.listdir(os.path.join(workdir, "base_models"))
    assert entries == [_spec("l1").base_id()]  # no temp folders left behind


def test_orthp_restores_isometry(workdir):
    rec = execute(_spec("l1_orthp"), workdir, **QUIET)
    assert rec.metrics["jsv_after_prune"] == pytest.approx(1.0, abs=1e-4)


def test_random_and_other_criteria_prune_the_same_shape(l1_record, workdir):
    rec = execute(_spec("random"), workdir, **QUIET)
    assert rec.metrics["params"] == l1_record.metrics["params"]
    l2 = execute(_spec("l2"), workdir, **QUIET)
    assert l2.metrics["flops"] == l1_record.metrics["flops"]
    assert setup_check(rec, l2).label == "S4.2"  # same base, same schedule, one-shot


def test_dense_is_the_base_model(workdir):
    rec = execute(
        _spec("dense", retrain=TrainingRecipe("0:0.01", 0, batch_size=64)), workdir, **QUIET
    )
    m = rec.metrics
    assert m["params"] == m["base_params"] and m["speedup"] == 1.0
    assert m["final_acc"] == pytest.approx(m["base_acc"], abs=1e-6)
    assert rec.history == {}


def test_scratch_budgets(l1_record, workdir):
    e = execute(
        _spec("scratch", options={"jsv_samples": 0, "scratch_budget": "E"}), workdir, **QUIET
    )
    assert e.metrics["params"] == l1_record.metrics["params"]
    assert e.metrics["retrain_epochs"] == 4 + 2  # base epochs + retraining epochs
    assert e.setup["scratch"] is True and e.setup["base_id"] is None
    assert e.setup["total_epochs"] == l1_record.setup["total_epochs"]
    assert setup_check(l1_record, e).label == "SX-A"
    retrain = TrainingRecipe("0:0.01", 2, batch_size=64)
    base = {"schedule": "0:0.05", "epochs": 1, "batch_size": 64}
    b = execute(
        _spec(
            "scratch", retrain=retrain, base=base, options={"jsv_samples": 0, "scratch_budget": "B"}
        ),
        workdir,
        **QUIET,
    )
    k = b.metrics["base_flops"] / b.metrics["flops"]
    assert b.metrics["retrain_epochs"] == round(1 * k + 2)  # K1 * F1/F2 + K2
    with pytest.raises(ConfigError, match="scratch_budget"):
        execute(_spec("scratch", options={"scratch_budget": "C"}), workdir, **QUIET)


def test_greg1_regularized_pruning_stage(workdir):
    reg = {"delta": 0.5, "ceiling": 1.0, "update_every": 1, "stabilize_steps": 2}
    spec = _spec(
        "greg1",
        options={
            "jsv_samples": 0,
            "prune_max_epochs": 2,
            "prune_schedule": "0:0.01",
            "regularization": reg,
        },
    )
    rec = execute(spec, workdir, **QUIET)
    assert rec.metrics["params"] < rec.metrics["base_params"]
    # The stage stops when GReg has set its masks (mid-epoch: a fraction of an epoch).
    assert 0 < rec.setup["prune_epochs"] <= 2
    assert rec.metrics["prune_epochs"] == rec.setup["prune_epochs"]
    assert rec.setup["prune_schedule"] == "0:0.01"
    assert rec.setup["total_epochs"] == pytest.approx(4 + rec.setup["prune_epochs"] + 2)
    assert "prune_mask_ratio_min" in rec.metrics  # the separation GReg set its masks at


def test_mirrored_strategy_run(mirrored_strategy, workdir):
    rec = execute(
        _spec("l1", retrain=TrainingRecipe("0:0.01", 1, batch_size=64), options={"jsv_samples": 0}),
        workdir,
        strategy=mirrored_strategy,
        **QUIET,
    )
    assert rec.metrics["params"] < rec.metrics["base_params"]
    assert 0.0 <= rec.metrics["final_acc"] <= 1.0


def test_sx_b_pretraining_is_squeezed_in_steps_to_scratch_e_flops(workdir):
    base = {"schedule": "0:0.05", "epochs": 2, "batch_size": 64, "schedule_epochs": 4}
    spec = _spec(
        "l1",
        retrain=TrainingRecipe("0:0.01", 2, batch_size=64),
        base=base,
        options={"jsv_samples": 0, "eval_every_epoch": False, "squeeze_base_by_speedup": True},
    )
    rec = execute(spec, workdir, **QUIET)
    # The record names the run it was given (its folder's id), not the squeezed copy.
    assert rec.run_spec().run_id() == spec.run_id()
    m = rec.metrics
    k = m["base_flops"] / m["flops"]
    spe = -(-int(0.8 * 1797) // 64)  # digits training split, batches of 64
    assert m["base_train_steps"] == pytest.approx(2 * spe / k, abs=1)  # whole steps, not epochs
    # Pipeline FLOPs (P/k * F1 + F * F2) within 2% of Scratch-E's (P + F) * F2.
    assert m["flops_vs_scratch_e"] == pytest.approx(1.0, abs=0.02)
    scratch_e = {**rec.setup, "scratch": True, "base_id": None, "overall_schedule": "0:0.05"}
    scratch_e["total_flops"] = 4.0 * m["flops"]
    assert setup_check(rec, scratch_e).label == "SX-B"


def test_target_operating_point_is_met_and_recorded(workdir):
    spec = _spec(
        "random",
        retrain=TrainingRecipe("0:0.01", 1, batch_size=64),
        options={"jsv_samples": 0, "eval_every_epoch": False, "target": {"flops_reduction": 2.0}},
    )
    m = execute(spec, workdir, **QUIET).metrics
    assert m["target"] == 2.0 and m["target_metric"] == "flops_reduction"
    assert m["target_achieved"] == pytest.approx(2.0, rel=0.01)
    assert m["speedup"] == pytest.approx(m["target_achieved"])
    assert 0 < m["target_ratio"] < 1


def test_group_lasso_stage_runs_its_max_epochs(workdir):
    spec = _spec(
        "group_lasso",
        retrain=TrainingRecipe("0:0.01", 1, batch_size=64),
        options={
            "jsv_samples": 0,
            "eval_every_epoch": False,
            "prune_max_epochs": 1,
            "regularization": {"strength": 1e-3},
        },
    )
    rec = execute(spec, workdir, **QUIET)
    assert rec.metrics["params"] < rec.metrics["base_params"]
    assert rec.setup["prune_epochs"] == 1.0 and rec.setup["prune_schedule"] == "0:0.001"
    with pytest.raises(ConfigError, match="did you mean 'strength'"):
        execute(
            _spec("group_lasso", options={"regularization": {"strenght": 1e-3}}), workdir, **QUIET
        )
    with pytest.raises(ConfigError, match="prune_max_epochs"):
        _spec("l1", options={"prune_max_epoch": 3})
