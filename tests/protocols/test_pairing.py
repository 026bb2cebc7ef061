"""Seed-paired comparisons in every protocol's summary.

Setup labels, differences and p-values come from runs paired by seed and from the reference the
config names (records built with the real setup descriptors of tfprune.protocols.execute; no
training).
"""

from __future__ import annotations

import random

import pytest

from tfprune.errors import ConfigError
from tfprune.protocols.execute import setup_descriptor
from tfprune.protocols.grids import PROTOCOLS
from tfprune.protocols.spec import RunRecord
from tfprune.protocols.stats import paired_test

BASE_FLOPS = 10_000


def _counts(spec) -> tuple[int, int]:
    keep = 1.0 - float(spec.ratio)
    return int(5_000 * keep) + 10, int(BASE_FLOPS * keep) + 10


def _acc(spec) -> float:
    # Deterministic, different per cell and seed, so that paired tests have a spread.
    h = sum(map(ord, spec.cell)) % 97
    return 0.5 + h / 400 + 0.013 * spec.seed**2 * (1 + h / 50)


def _records(protocol: str, config: dict | None = None, *, drop=()) -> list[RunRecord]:
    out = []
    for spec in PROTOCOLS[protocol].expand(config or {}):
        if (spec.cell, spec.seed) in drop:
            continue
        params, flops = _counts(spec)
        setup = setup_descriptor(spec, params=params, flops=flops, base_flops=BASE_FLOPS)
        metrics = {"final_acc": _acc(spec), "params": params, "flops": flops}
        out.append(RunRecord(spec.to_dict(), metrics, {}, setup))
    random.Random(3).shuffle(out)  # store/hash order must not matter
    return out


def _row(summary, cell: str) -> dict:
    return next(r for r in summary.rows if r["cell"] == cell)


def _expected_test(records, cell, ref):
    a = {r.spec["seed"]: r.metrics["final_acc"] for r in records if r.spec["cell"] == cell}
    b = {r.spec["seed"]: r.metrics["final_acc"] for r in records if r.spec["cell"] == ref}
    return paired_test(a, b)


def test_finetune_lr_three_seeds_orthp_vs_l1_is_s42():
    recs = _records("finetune_lr")
    summary = PROTOCOLS["finetune_lr"].summarize(recs)
    row = _row(summary, "L1+OrthP / lr=1e-2 / 20ep")
    assert row["reference"] == "L1 / lr=1e-2 / 20ep"
    assert row["setup"] == "S4.2" and row["setup_mismatches"] == []
    assert row["paired_seeds"] == [0, 1, 2]
    test = _expected_test(recs, row["cell"], row["reference"])
    assert row["diff_vs_ref"] == pytest.approx(test.mean_diff)
    assert row["p_vs_ref"] == pytest.approx(test.p) and test.n == 3
    # Random at the same recipe: same base, same retraining -> S4.2 as well.
    assert _row(summary, "Random / lr=1e-2 / 20ep")["setup"] == "S4.2"
    # Scratch-E (dense recipe over base + retraining epochs) vs L1: same total epochs.
    scratch = _row(summary, "Scratch-E / base+20ep")
    assert scratch["reference"] == "L1 / lr=1e-2 / 20ep" and scratch["setup"] == "SX-A"
    # Another LR: same base, same epochs, different schedule -> S3.1.
    assert _row(summary, "L1 / lr=1e-3 / 20ep")["reference"] is None
    assert _row(summary, "L1+OrthP / lr=1e-3 / 20ep")["setup"] == "S4.2"


def test_missing_partner_seed_is_reported_and_left_out_of_the_test():
    drop = {("L1 / lr=1e-2 / 20ep", 2)}
    recs = _records("finetune_lr", drop=drop)
    row = _row(PROTOCOLS["finetune_lr"].summarize(recs), "L1+OrthP / lr=1e-2 / 20ep")
    assert row["paired_seeds"] == [0, 1]
    assert "seeds without a reference run: [2]" in row["setup_mismatches"]
    test = _expected_test(recs, row["cell"], row["reference"])
    assert test.n == 2 and row["diff_vs_ref"] == pytest.approx(test.mean_diff)


def test_reference_comes_from_the_config():
    cfg = {"reference": "l1_orthp"}
    recs = _records("finetune_lr", cfg)
    summary = PROTOCOLS["finetune_lr"].summarize(recs, cfg)
    assert _row(summary, "L1 / lr=1e-3 / 20ep")["reference"] == "L1+OrthP / lr=1e-3 / 20ep"
    assert _row(summary, "L1+OrthP / lr=1e-3 / 20ep")["reference"] is None
    with pytest.raises(ConfigError, match="reference"):
        PROTOCOLS["finetune_lr"].expand({"reference": "l2"})


def test_scratch_vs_prune_pairs_against_scratch_e():
    cfg = {"ratios": [0.5], "prune_epochs": [5]}
    recs = _records("scratch_vs_prune", cfg)
    summary = PROTOCOLS["scratch_vs_prune"].summarize(recs, cfg)
    # Scratch-B vs Scratch-E: no shared base model, different budgets -> S1, never S2.
    b = _row(summary, "Scratch-B (P5F15) / pr=0.5")
    assert b["reference"] == "Scratch-E / pr=0.5" and b["setup"] == "S1"
    # S4.2 rows continue the scratch schedule: the same overall schedule as Scratch-E.
    assert _row(summary, "S4.2 P5F15 / pr=0.5")["setup"] == "S4.2"
    assert _row(summary, "SX-A P5F15,0.02 / pr=0.5")["setup"] == "SX-A"
    assert _row(summary, "Scratch-E / pr=0.5")["reference"] is None
    summary_b = PROTOCOLS["scratch_vs_prune"].summarize(recs, {**cfg, "reference": "Scratch-B"})
    assert _row(summary_b, "S4.2 P5F15 / pr=0.5")["reference"] == "Scratch-B (P5F15) / pr=0.5"


def test_retrain_schedules_reference_and_labels():
    recs = _records("retrain_schedules")
    summary = PROTOCOLS["retrain_schedules"].summarize(recs)
    assert _row(summary, "Random / FT / 10ep")["reference"] == "L1 / FT / 10ep"
    assert _row(summary, "Random / FT / 10ep")["setup"] == "S4.2"
    assert _row(summary, "L1 / CLR / 10ep")["setup"] == "S3.1"  # same epochs, other schedule
    cfg = {"reference": {"method": "random", "retrain": "CLR"}}
    summary = PROTOCOLS["retrain_schedules"].summarize(_records("retrain_schedules", cfg), cfg)
    assert _row(summary, "L1 / FT / 10ep")["reference"] == "Random / CLR / 10ep"


def test_cross_recipe_and_ratio_sweep_references():
    recs = _records("cross_recipe")
    summary = PROTOCOLS["cross_recipe"].summarize(recs)
    row = _row(summary, "B=Random + FT_A")
    assert row["reference"] == "A=L1 + FT_A" and row["setup"] == "S4.2"
    assert row["paired_seeds"] == [0, 1, 2]
    cfg = {"ratios": [0.5, 0.9]}
    summary = PROTOCOLS["ratio_sweep"].summarize(_records("ratio_sweep", cfg), cfg)
    assert _row(summary, "Random / pr=0.9")["reference"] == "L1 / pr=0.9"
    assert _row(summary, "Random / pr=0.9")["setup"] == "S4.2"
    assert _row(summary, "Scratch-E / pr=0.9")["setup"] == "SX-A"


def test_regularized_method_enters_budget_and_label():
    cfg = {
        "methods": ["l1"],
        "lrs": [0.01],
        "baselines": False,
        "regularization": {"method": "greg1", "max_epochs": 4, "delta": 0.5},
    }
    specs = PROTOCOLS["finetune_lr"].expand(cfg)
    greg = next(s for s in specs if s.method == "greg1")
    assert greg.opts.regularization == {"delta": 0.5}
    assert greg.opts.prune_max_epochs == 4 and greg.opts.prune_schedule == "0:0.001"
    recs = []
    for spec in specs:
        params, flops = _counts(spec)
        prune = 1.5 if spec.method == "greg1" else 0.0
        setup = setup_descriptor(
            spec,
            params=params,
            flops=flops,
            base_flops=BASE_FLOPS,
            prune_epochs=prune,
            prune_schedule="0:0.001" if prune else "",
        )
        recs.append(RunRecord(spec.to_dict(), {"final_acc": _acc(spec)}, {}, setup))
    row = _row(PROTOCOLS["finetune_lr"].summarize(recs, cfg), "GReg-1 / lr=1e-2 / 20ep")
    assert row["setup"] == "S3.2" and row["prune_epochs"] == 1.5
    assert any(m.startswith("prune_epochs") for m in row["setup_mismatches"])
    g = next(r for r in recs if r.spec["method"] == "greg1")
    assert g.setup["total_epochs"] == pytest.approx(20 + 1.5 + 20)
    with pytest.raises(ConfigError, match="regularization options for greg1"):
        PROTOCOLS["finetune_lr"].expand({**cfg, "regularization": {"method": "greg1", "dleta": 1}})
    with pytest.raises(ConfigError, match="regularization.method"):
        PROTOCOLS["finetune_lr"].expand({**cfg, "regularization": {"method": "obd"}})


def test_target_reaches_every_run_and_the_report_columns():
    cfg = {"target": {"flops_reduction": 2.0}, "seeds": 1}
    specs = PROTOCOLS["ratio_sweep"].expand({**cfg, "ratios": [0.5]})
    assert all(s.opts.target == {"flops_reduction": 2.0} for s in specs)
    recs = []
    for spec in specs:
        metrics = {"final_acc": 0.9, "target": 2.0, "target_metric": "flops_reduction"}
        metrics.update(target_achieved=2.01, target_ratio=0.29)
        setup = setup_descriptor(spec, params=10, flops=10, base_flops=20)
        recs.append(RunRecord(spec.to_dict(), metrics, {}, setup))
    summary = PROTOCOLS["ratio_sweep"].summarize(recs, cfg)
    assert {"target", "achieved"} <= set(summary.columns)
    row = summary.rows[0]
    assert row["target"] == "FLOPs ×2" and row["achieved"] == 2.01
