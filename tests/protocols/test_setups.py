"""Worked examples of WHY Tab. 2 (spec 1.3) for tfprune.protocols.setups.setup_check."""

from __future__ import annotations

from tfprune.protocols.setups import setup_check, strictest_shared, strictest_shared_named
from tfprune.protocols.spec import RunRecord

HYPER = {"batch_size": 100, "momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}


def run(**over):
    s = {
        "dataset": "imagenet",
        "model": "resnet50",
        "params": 1_000_000,
        "flops": 2_000_000,
        "base_id": "torchvision",
        "finetune_schedule": "0:0.01,30:0.001,60:0.0001,75:1e-05",
        "finetune_epochs": 90,
        "hyper": dict(HYPER),
        "prune_epochs": 0,
        "prune_schedule": "",
        "overall_schedule": "",
        "total_epochs": 90,
        "total_flops": 1.0,
        "scratch": False,
    }
    s.update(over)
    return s


def test_identical_runs_are_s42():
    v = setup_check(run(), run())
    assert v.label == "S4.2"
    assert v.mismatches == []
    assert v.fair()


def test_same_base_same_schedule_different_regularization_epochs_is_s32():
    a = run(prune_epochs=0, prune_schedule="")
    b = run(prune_epochs=5, prune_schedule="reg:0:0.01")
    v = setup_check(a, b)
    assert v.label == "S3.2"
    assert any(m.startswith("prune_epochs") for m in v.mismatches)
    assert any(m.startswith("prune_schedule") for m in v.mismatches)


def test_same_pruning_epochs_different_pruning_lr_is_s41():
    a = run(prune_epochs=5, prune_schedule="0:0.01")
    b = run(prune_epochs=5, prune_schedule="0:0.001")
    assert setup_check(a, b).label == "S4.1"


def test_same_epochs_different_initial_lr_is_s31():
    a = run()
    b = run(finetune_schedule="0:0.001,30:0.0001,60:1e-05")
    v = setup_check(a, b)
    assert v.label == "S3.1"
    assert v.mismatches[0].startswith("finetune_schedule")
    assert not v.fair()


def test_same_schedule_different_weight_decay_is_s31():
    v = setup_check(run(), run(hyper={**HYPER, "weight_decay": 5e-4}))
    assert v.label == "S3.1"
    assert any(m.startswith("hyper") for m in v.mismatches)


def test_same_base_different_epochs_is_s2():
    v = setup_check(run(), run(finetune_epochs=20, finetune_schedule="ft:0.001"))
    assert v.label == "S2"


def test_different_base_models_same_speedup_is_s1():
    v = setup_check(run(), run(base_id="own-pretrained"))
    assert v.label == "S1"
    assert v.mismatches[0].startswith("base_id")


def test_same_flops_is_enough_for_s1_even_if_params_differ():
    assert setup_check(run(), run(params=900_000)).label == "S4.2"


def test_different_compression_or_dataset_is_none():
    assert setup_check(run(), run(params=1, flops=1)).label == "none"
    assert setup_check(run(), run(dataset="cifar10")).label == "none"


def test_scratch_vs_pruning_same_total_epochs_is_sx_a():
    prune = run(total_epochs=120, total_flops=30 * 2.0 + 90 * 1.0, overall_schedule="p")
    scratch = run(scratch=True, total_epochs=120, total_flops=120.0, overall_schedule="s")
    v = setup_check(prune, scratch)
    assert v.label == "SX-A"
    assert "SX-B" not in v.satisfied


def test_scratch_vs_pruning_same_total_flops_is_sx_b():
    prune = run(total_epochs=105, total_flops=15 * 2.0 + 90 * 1.0, overall_schedule="p")
    scratch = run(scratch=True, total_epochs=120, total_flops=120.0, overall_schedule="s")
    assert setup_check(prune, scratch).label == "SX-B"


def test_scratch_vs_pruning_same_overall_schedule_is_s42():
    sched = "0:0.1,30:0.01,60:0.001,90:0.0001,105:1e-05"
    prune = run(total_epochs=120, total_flops=150.0, overall_schedule=sched)
    scratch = run(scratch=True, total_epochs=120, total_flops=120.0, overall_schedule=sched)
    v = setup_check(prune, scratch)
    assert v.label == "S4.2"
    assert "SX-A" in v.satisfied


def test_accepts_records_and_record_dicts():
    a = RunRecord(spec={}, metrics={}, history={}, setup=run())
    b = RunRecord(spec={}, metrics={}, history={}, setup=run(base_id="other")).to_dict()
    assert setup_check(a, b).label == "S1"


def test_unknown_items_are_not_granted():
    b = run()
    del b["hyper"]
    v = setup_check(run(), b)
    assert v.label == "S3.1"
    assert "hyper: unknown" in v.mismatches


def test_scratch_b_vs_scratch_e_is_not_s2():
    # Two scratch runs share no base model (base_id None): never S2; different budgets -> S1.
    e = run(scratch=True, base_id=None, total_epochs=20, total_flops=20.0, overall_schedule="e")
    b = run(scratch=True, base_id=None, total_epochs=45, total_flops=45.0, overall_schedule="b")
    v = setup_check(b, e)
    assert v.label == "S1" and v.scratch
    assert "S2" not in v.satisfied
    assert any(m.startswith("total_flops") for m in v.mismatches)


def test_unknown_base_models_are_not_the_same_base():
    v = setup_check(run(base_id=None), run(base_id=None))
    assert v.label == "S1" and "base_id: unknown" in v.mismatches


def test_strictest_shared_takes_the_weakest_pair():
    same = setup_check(run(), run())
    other_base = setup_check(run(), run(base_id="own"))
    v = strictest_shared_named([("seed 0", same), ("seed 1", other_base)])
    assert v.label == "S1"
    assert v.mismatches == ["seed 1: base_id: 'torchvision' vs 'own'"]
    both = strictest_shared([other_base, other_base])
    assert both.label == "S1" and both.mismatches == ["base_id: 'torchvision' vs 'own'"]
    assert strictest_shared([]).label == "none"
