"""tfprune.protocols.tuning: a keras-tuner grid over retraining LRs, run through execute()."""

from __future__ import annotations

import json
import os

import pytest

from tfprune.bin import compare as compare_bin
from tfprune.errors import ConfigError
from tfprune.protocols.spec import RunSpec
from tfprune.protocols.tuning import RetrainLRTuner, compare_at_best_lr, tune_retrain_lr
from tfprune.training.recipe import TrainingRecipe

BASE = {"schedule": "0:0.02", "epochs": 3, "batch_size": 64}


def _spec(method: str) -> RunSpec:
    return RunSpec(
        protocol="tuning",
        cell=method,
        dataset="digits",
        model="mlp7_linear",
        method=method,
        ratio=0.5,
        retrain=TrainingRecipe("steps:0.01", 2, batch_size=64),
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


TINY_GRID = (
    "methods=[l1],lrs=[0.01],budgets=[1],seeds=[0],baselines=true,jsv_samples=0,"
    "jsv_every_epoch=false,base={schedule: '0:0.02', epochs: 1, batch_size: 64}"
)


def test_compare_tunes_each_methods_lr_before_the_grid(tmp_path, capsys):
    out = tmp_path / "out"
    args = [f"--params_override={TINY_GRID}", f"--output_dir={out}", "--tune_lr=0.01,0.001"]
    assert compare_bin.BINARY(args) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "tuning" / "best_lr.json").read_text())
    assert sorted(saved) == ["l1", "random"]  # the scratch baseline has no LR of a pruned model
    for method, res in saved.items():
        values = {float(lr): v for lr, v in res["values"].items()}
        assert set(values) == {0.01, 0.001} and res["metric"] == "final_acc"
        assert res["best_value"] == values[res["best_lr"]] == max(values.values())
        tried = ", ".join(f"{lr:g}: {values[lr]:.4f}" for lr in (0.01, 0.001))
        assert f"{method}: best LR {res['best_lr']:g} ({tried})" in printed
    # Every trial is stored like a grid run; the grid itself has not run.
    records = {p: p.stat().st_mtime_ns for p in out.glob("tuning/runs/*/record.json")}
    specs = [json.loads(p.read_text())["spec"] for p in records]
    assert sorted((s["method"], s["retrain"]["schedule"]) for s in specs) == [
        ("l1", "steps:0.001:1e-4"),
        ("l1", "steps:0.01:1e-4"),
        ("random", "steps:0.001:1e-4"),
        ("random", "steps:0.01:1e-4"),
    ]
    assert sorted({s["cell"] for s in specs}) == [
        "L1 / 1ep / lr=0.001",
        "L1 / 1ep / lr=0.01",
        "Random / 1ep / lr=0.001",
        "Random / 1ep / lr=0.01",
    ]
    assert all((p.parent / "environment.json").is_file() for p in records)
    assert not (out / "runs").exists() and (out / "config.yaml").is_file()
    assert len(os.listdir(out / "base_models")) == 1  # the base the grid will use
    # A rerun reads the finished trials back and prints the same result.
    assert compare_bin.BINARY(args) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == printed.splitlines()[-3:]
    assert {p: p.stat().st_mtime_ns for p in records} == records


def test_compare_tune_lr_refuses_a_dry_run_and_bad_lrs(tmp_path, capsys):
    out = tmp_path / "out"
    assert compare_bin.BINARY([f"--output_dir={out}", "--tune_lr=0.1", "--dry_run"]) == 2
    assert "--tune_lr tunes in one process" in capsys.readouterr().err
    assert compare_bin.BINARY([f"--output_dir={out}", "--tune_lr=0.1,fast"]) == 2
    assert "--tune_lr must be LRs > 0" in capsys.readouterr().err
    assert not out.exists()


def test_a_failing_trial_stops_the_search_with_its_own_error(tmp_path, capsys):
    out = tmp_path / "out"
    bogus = f"--params_override={TINY_GRID},model_kwargs={{bogus: 1}}"
    assert compare_bin.BINARY([bogus, f"--output_dir={out}", "--tune_lr=0.01,0.001"]) == 2
    # The trial's own error, not keras-tuner's "no trial finished" after trying every LR.
    line = capsys.readouterr().err.strip()
    assert line.startswith("tfprune-compare: error: model 'mlp7_linear': got an unexpected ")
    assert "'bogus'" in line and "\n" not in line
    errors = list(out.glob("tuning/runs/*/error.json"))
    assert len(errors) == 1 and "bogus" in errors[0].read_text()  # the first trial's, then stop
    assert not list(out.glob("tuning/runs/*/record.json"))
