"""The run-spec contract: stable content ids, JSON round trips, validation."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from tfprune import defaults
from tfprune.errors import ConfigError, InvalidArgumentError, RecipeValueError
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.protocols.store import RunStore
from tfprune.training.recipe import TrainingRecipe


def _spec(**over):
    kw = dict(
        protocol="finetune_lr",
        cell="L1 / lr=1e-2 / 20ep",
        dataset="digits",
        model="mlp7_linear",
        method="l1",
        ratio=0.8,
        retrain=TrainingRecipe("0:0.01,7:0.001", 20, 100),
        seed=0,
        base={"schedule": "0:0.02", "epochs": 20, "batch_size": 32},
        options={"jsv_samples": 64, "data_options": {"test_fraction": 0.2}},
    )
    kw.update(over)
    return RunSpec(**kw)


def test_run_id_is_stable_and_content_derived():
    a = _spec()
    b = _spec(
        base={"batch_size": 32, "epochs": 20, "schedule": "0:0.02"},
        options={"data_options": {"test_fraction": 0.2}, "jsv_samples": 64},
    )
    assert a.run_id() == b.run_id()
    assert len(a.run_id()) == 12 and all(c in "0123456789abcdef" for c in a.run_id())
    assert _spec(seed=1).run_id() != a.run_id()
    assert _spec(ratio=1 / 2).run_id() == _spec(ratio=0.5).run_id()
    assert a.base_id() == _spec(method="l1_orthp", cell="x").base_id()
    assert a.base_id() != _spec(seed=1).base_id()


def test_round_trip_through_json():
    a = _spec(ratio={"fc[0-5]": 0.8})
    b = RunSpec.from_dict(json.loads(json.dumps(a.to_dict())))
    assert b == a and b.run_id() == a.run_id()
    rec = RunRecord(spec=a.to_dict(), metrics={"final_acc": 0.9}, history={"loss": [1.0]}, setup={})
    back = RunRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec
    assert back.run_spec() == a


def test_record_id_is_fixed_when_made_stored_and_checked_on_load(tmp_path):
    spec = _spec()
    rec = RunRecord(spec=spec.to_dict(), metrics={"final_acc": 0.9}, history={}, setup={})
    assert rec.run_id == spec.run_id() and rec.to_dict()["run_id"] == spec.run_id()
    # A spec changed after the record was made cannot be written under the old id...
    rec.spec["seed"] = 1
    with pytest.raises(InvalidArgumentError, match=f"record of run {spec.run_id()}: its spec"):
        rec.to_dict()
    # ...nor read back when record.json was edited.
    data = RunRecord(spec=spec.to_dict(), metrics={}, history={}, setup={}).to_dict()
    data["spec"]["ratio"] = 0.5
    with pytest.raises(InvalidArgumentError, match="delete its folder"):
        RunRecord.from_dict(data)
    # The store reads a record only from its own run's folder.
    store = RunStore(tmp_path)
    other = _spec(seed=3).run_id()
    store.prepare(other, _spec(seed=3).to_dict(), {})
    store.write_record(other, RunRecord(spec.to_dict(), {}, {}, {}).to_dict())
    with pytest.raises(InvalidArgumentError, match=f"is in the folder of run {other}"):
        store.load_records()
    store.write_record(other, {"metrics": {}})  # damaged: no spec at all
    with pytest.raises(InvalidArgumentError, match="a record without a run spec is in the folder"):
        store.load_records()
    # Records written before ids were stored get theirs from the spec.
    legacy = RunRecord(spec.to_dict(), {}, {}, {}).to_dict()
    del legacy["run_id"]
    assert RunRecord.from_dict(legacy).run_id == spec.run_id()


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"ratio": 1.0}, "ratio"),
        ({"ratio": {"fc0": -0.1}}, "ratio"),
        ({"method": ""}, "method"),
        ({"seed": 0.5}, "seed"),
        ({"base": "x"}, "base"),
    ],
)
def test_spec_validation_names_the_field(over, needle):
    with pytest.raises(ConfigError, match=needle):
        _spec(**over)


def test_recipe_validation():
    with pytest.raises(ConfigError, match="recipe.schedule"):
        TrainingRecipe("", 10, 100)
    with pytest.raises(ConfigError, match="recipe.epochs"):
        TrainingRecipe("0:0.1", -1, 100)
    with pytest.raises(ConfigError, match="recipe.batch_size"):
        TrainingRecipe("0:0.1", 1, 0)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainingRecipe("0:0.1", 1, 100, optimizer="rmsprop")
    with pytest.raises(ConfigError, match="'lr'"):
        TrainingRecipe.from_dict({"schedule": "0:0.1", "epochs": 1, "batch_size": 8, "lr": 0.1})
    # read from a section, errors name it
    with pytest.raises(ConfigError, match=r"retrain\.epochs must be an integer >= 0"):
        TrainingRecipe.from_dict({"schedule": "0:0.1", "epochs": -1, "batch_size": 8}, "retrain")
    with pytest.raises(ConfigError, match="base: needs batch_size"):
        TrainingRecipe.from_dict({"schedule": "0:0.1", "epochs": 1}, "base")


def test_a_recipe_value_error_names_the_field_where_it_was_read():
    with pytest.raises(RecipeValueError) as caught:
        TrainingRecipe("0:0.1", 1, 100, momentum=1.5)
    err = caught.value
    assert (err.field, err.requirement, err.value) == ("momentum", "in [0, 1)", 1.5)
    assert str(err) == "recipe.momentum must be in [0, 1), got 1.5"
    assert str(err.renamed("--momentum")) == "--momentum must be in [0, 1), got 1.5"
    assert str(pickle.loads(pickle.dumps(err))) == str(err)  # crosses process boundaries
    data = {"schedule": "0:0.1", "epochs": 1, "batch_size": "8"}
    with pytest.raises(RecipeValueError, match=r"^base\.batch_size must be an integer, got '8'$"):
        TrainingRecipe.from_dict(data, where="base")


def test_a_recipe_without_batch_size_takes_the_dataset_default():
    spec = _spec()
    assert spec.base_recipe().batch_size == spec.base["batch_size"]
    bare = dataclasses.replace(spec, base={"schedule": "0:0.1", "epochs": 1})
    assert bare.base_recipe().batch_size == defaults.batch_size(spec.dataset)
    # the default is part of the base id: a base trained at another size is another base
    sized = dataclasses.replace(
        spec,
        base={"schedule": "0:0.1", "epochs": 1, "batch_size": defaults.batch_size(spec.dataset)},
    )
    assert bare.base_id() == sized.base_id()
    other = dataclasses.replace(spec, base={"schedule": "0:0.1", "epochs": 1, "batch_size": 7})
    assert other.base_id() != bare.base_id()
    retrain = RunSpec.from_dict({**spec.to_dict(), "retrain": {"schedule": "0:0.1", "epochs": 1}})
    assert retrain.retrain.batch_size == defaults.batch_size(spec.dataset)


def test_record_sections_are_typed_and_a_damaged_record_is_named():
    good = {
        "run_id": _spec().run_id(),
        "spec": _spec().to_dict(),
        "metrics": {"final_acc": 0.9, "params": 100, "jsv_base": None, "my_method_stat": [1, 2]},
        "history": {"val_accuracy": [0.5, 0.9]},
        "setup": {"base_id": "abc", "total_flops": 1e9, "scratch": False},
    }
    record = RunRecord.from_dict(good)
    assert record.to_dict()["metrics"]["my_method_stat"] == [1, 2]  # methods may add keys
    bad = [
        ("metrics", "final_acc", "0.9", "metrics.final_acc must be a number"),
        ("metrics", "params", 1.5, "metrics.params must be a whole number"),
        ("setup", "scratch", "no", "setup.scratch must be true or false"),
        ("history", "loss", 0.3, "history.loss must be a per-epoch list"),
        ("spec", "seed", 7, "record of run .*: its spec is that of run"),
    ]
    for section, key, value, message in bad:
        data = json.loads(json.dumps(good))
        data[section][key] = value
        with pytest.raises(InvalidArgumentError, match=message):
            RunRecord.from_dict(data)
    del data["spec"]["seed"]
    with pytest.raises(ConfigError, match=r"run spec: missing field\(s\) \['seed'\]"):
        RunRecord.from_dict(data)
    with pytest.raises(InvalidArgumentError, match="L1 / lr=1e-2 / 20ep.*final_acc"):
        RunRecord(spec=good["spec"], metrics={"final_acc": "x"}, history={}, setup={}).to_dict()


def test_sxb_fractional_pretraining_epochs_are_a_valid_record():
    # SX-B pretrains P/k epochs' worth of steps: 1/9 epoch at k = 9 (the README's pr=0.9 run).
    setup = {"base_epochs": 1 / 9, "total_epochs": 15 + 1 / 9, "prune_epochs": 0}
    metrics = {"final_acc": 0.9, "base_train_steps": 5, "flops_vs_scratch_e": 1.01}
    rec = RunRecord(_spec().to_dict(), metrics, {}, setup)
    back = RunRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.setup["base_epochs"] == pytest.approx(1 / 9) and back == rec


def test_a_wrong_value_a_run_produced_is_called_a_bug_not_a_damaged_file():
    made = RunRecord(_spec().to_dict(), {"params": 1.5}, {}, {})
    with pytest.raises(InvalidArgumentError, match="params must be a whole number") as info:
        made.to_dict()
    assert "bug in tfprune" in str(info.value) and "delete its folder" not in str(info.value)
    # Read back from a file, the same value is a damaged record, to be rerun.
    data = RunRecord(_spec().to_dict(), {}, {}, {}).to_dict()
    data["metrics"]["params"] = 1.5
    with pytest.raises(InvalidArgumentError, match="damaged.*delete its folder"):
        RunRecord.from_dict(data)
