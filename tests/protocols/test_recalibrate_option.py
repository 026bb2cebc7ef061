"""The protocols' recalibrate_batch_norm option: off by default, a setup of its own when on."""

from __future__ import annotations

import pytest

from tfprune.protocols import execute, resolve_config, setup_check
from tfprune.protocols.runner import expand_config
from tfprune.protocols.spec import RunSpec
from tfprune.training.recipe import TrainingRecipe

QUIET = {"log": lambda _: None}


def _ids(*overrides: str) -> list[str]:
    config = resolve_config("finetune_lr", overrides=list(overrides), check_files=False)
    return [spec.run_id() for spec in expand_config(config)]


def test_the_option_changes_run_ids_only_when_on():
    default = _ids()
    assert _ids("recalibrate_batch_norm=false") == default
    on = _ids("recalibrate_batch_norm=true")
    assert len(on) == len(default) and not set(on) & set(default)
    config = resolve_config("finetune_lr", overrides=["recalibrate_batch_norm=true"])
    assert all(s.options["recalibrate_batch_norm"] is True for s in expand_config(config))


def _spec(**options) -> RunSpec:
    return RunSpec(
        protocol="test",
        cell="l1",
        dataset="digits",
        model="small_cnn",
        method="l1",
        ratio=0.5,
        retrain=TrainingRecipe("0:0.01", 1, batch_size=64),
        seed=0,
        base={"schedule": "0:0.05", "epochs": 1, "batch_size": 64},
        options={"jsv_samples": 0, **options},
    )


@pytest.mark.slow
def test_recalibrated_runs_record_both_figures_and_are_another_setup(tmp_path):
    plain = execute(_spec(), str(tmp_path), **QUIET)
    recal = execute(_spec(recalibrate_batch_norm=True), str(tmp_path), **QUIET)
    assert "acc_after_prune_raw" not in plain.metrics
    assert "recalibrate_batch_norm" not in plain.setup["hyper"]
    # The raw figure is the paper recipe's: the same base, masks and evaluation.
    assert recal.metrics["acc_after_prune_raw"] == pytest.approx(plain.metrics["acc_after_prune"])
    assert recal.setup["hyper"]["recalibrate_batch_norm"] is True
    verdict = setup_check(plain, recal)
    assert not verdict.fair() and any(m.startswith("hyper") for m in verdict.mismatches)
    for record in (plain, recal):  # the training-vs-held-out figures of every run
        m = record.metrics
        assert m["acc_gap"] == pytest.approx(record.history["accuracy"][-1] - m["final_acc"])
        assert m["train_acc"] == pytest.approx(record.history["accuracy"][-1])
        assert isinstance(m["batch_norm_gap"], bool)
