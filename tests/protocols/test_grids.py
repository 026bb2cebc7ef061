"""tfprune.protocols.grids: expansion of every protocol and summaries of synthetic records."""

from __future__ import annotations

import pytest

from tfprune.errors import ConfigError
from tfprune.protocols.grids import PROTOCOLS, Summary, cross_recipe_verdict, outcome
from tfprune.protocols.spec import RunRecord, RunSpec


def _cells(specs: list[RunSpec]) -> list[str]:
    out: list[str] = []
    for s in specs:
        if s.cell not in out:
            out.append(s.cell)
    return out


def test_registry_names():
    assert set(PROTOCOLS) == {
        "finetune_lr",
        "scratch_vs_prune",
        "retrain_schedules",
        "cross_recipe",
        "ratio_sweep",
        "setup_check",
    }
    for name, p in PROTOCOLS.items():
        assert p.name == name and p.description


@pytest.mark.parametrize(
    "name", ["finetune_lr", "scratch_vs_prune", "retrain_schedules", "cross_recipe", "ratio_sweep"]
)
def test_every_cell_runs_three_seeds_with_unique_ids(name):
    specs = PROTOCOLS[name].expand({})
    assert len({s.run_id() for s in specs}) == len(specs)
    for cell in _cells(specs):
        assert sorted(s.seed for s in specs if s.cell == cell) == [0, 1, 2]
    assert all(s.protocol == name for s in specs)


def test_finetune_lr_default_grid():
    specs = PROTOCOLS["finetune_lr"].expand({})
    assert _cells(specs) == [
        "L1 / lr=1e-2 / 20ep",
        "L1 / lr=1e-3 / 20ep",
        "L1+OrthP / lr=1e-2 / 20ep",
        "L1+OrthP / lr=1e-3 / 20ep",
        "Random / lr=1e-2 / 20ep",  # baselines run at the first LR only
        "Scratch-E / 20ep",
    ]
    first = specs[0]
    assert (first.dataset, first.model, first.ratio) == ("digits", "mlp7_linear", 0.8)
    assert first.retrain.schedule == "steps:0.01:0.0001" and first.retrain.epochs == 20
    assert len({s.base_id() for s in specs if s.seed == 0}) == 1  # one base per seed
    scratch = [s for s in specs if s.method == "scratch"]
    assert all(s.options["scratch_budget"] == "E" for s in scratch)
    # Scratch trains with the dense model's recipe (spec 1.1), not the retraining recipe.
    assert all(s.retrain.schedule == s.base["schedule"] for s in scratch)
    assert all(s.retrain.epochs == s.base["epochs"] for s in scratch)
    assert all(s.retrain.weight_decay_mode == "coupled" for s in specs)


def test_finetune_lr_without_baselines_and_with_budgets():
    p = PROTOCOLS["finetune_lr"]
    specs = p.expand({"baselines": False, "budgets": [10, 30], "seeds": [5], "lrs": [0.1]})
    assert len(specs) == 2 * 2 * 1
    assert {s.method for s in specs} == {"l1", "l1_orthp"}
    assert {s.seed for s in specs} == {5}
    with pytest.raises(ConfigError, match="unknown config key"):
        p.expand({"lr": [0.1]})
    with pytest.raises(ConfigError, match="schedule_type"):
        p.expand({"schedule_type": "linear"})
    with pytest.raises(ConfigError, match="seeds"):
        p.expand({"seeds": 0})


def test_scratch_vs_prune_rows_and_schedules():
    specs = PROTOCOLS["scratch_vs_prune"].expand({"ratios": [0.5], "prune_epochs": [5], "seeds": 1})
    by_cell = {s.cell: s for s in specs}
    assert list(by_cell) == [
        "Scratch-E / pr=0.5",
        "S4.2 P5F15 / pr=0.5",
        "SX-A P5F15,0.02 / pr=0.5",
        "SX-B P5/kF15,0.02 / pr=0.5",
        "Scratch-B (P5F15) / pr=0.5",
    ]
    s42 = by_cell["S4.2 P5F15 / pr=0.5"]
    assert s42.retrain.schedule == "0:0.02,5:0.002,10:0.0002"  # 0:0.02,10:0.002,15:2e-4 from 5
    assert s42.base["epochs"] == 5 and s42.base["schedule_epochs"] == 20
    assert by_cell["SX-A P5F15,0.02 / pr=0.5"].retrain.schedule == "0:0.02,8:0.002,12:0.0002"
    assert by_cell["SX-B P5/kF15,0.02 / pr=0.5"].options["squeeze_base_by_speedup"] is True
    sb = by_cell["Scratch-B (P5F15) / pr=0.5"]
    assert sb.options["scratch_budget"] == "B" and sb.options["pipeline_epochs"] == 15
    with pytest.raises(ConfigError, match="prune_epochs"):
        PROTOCOLS["scratch_vs_prune"].expand({"prune_epochs": [20]})


def test_retrain_schedules_expands_lrw_from_the_base_recipe():
    specs = PROTOCOLS["retrain_schedules"].expand({"seeds": 1})
    lrw = [s for s in specs if "/ LRW /" in s.cell]
    assert lrw[0].retrain.schedule == "lrw:20@0:0.02,15:0.002"
    assert {s.method for s in specs} == {"l1", "random"}
    assert len(specs) == 2 * 4


def test_ratio_sweep_and_setup_check_expand():
    specs = PROTOCOLS["ratio_sweep"].expand({"ratios": [0.3, 0.9], "seeds": 1})
    assert len(specs) == 2 * 3 and {s.method for s in specs} == {"l1", "random", "scratch"}
    two = [specs[0].to_dict(), specs[1].to_dict()]
    assert PROTOCOLS["setup_check"].expand({"runs": two}) == specs[:2]
    with pytest.raises(ConfigError, match="two"):
        PROTOCOLS["setup_check"].expand({"runs": two[:1]})


def _setup(**over):
    s = {
        "dataset": "digits",
        "model": "mlp7_linear",
        "params": 100,
        "flops": 100,
        "base_id": "b",
        "finetune_epochs": 20,
        "hyper": {},
        "prune_epochs": 0,
        "prune_schedule": "",
        "scratch": False,
    }
    s.update(over)
    return s


def _records(protocol: str, accs: dict[str, list[float]]) -> list[RunRecord]:
    specs = {}
    for s in PROTOCOLS[protocol].expand({}):
        specs.setdefault((s.cell, s.seed), s)
    out = []
    for (cell, seed), spec in specs.items():
        if cell not in accs:
            continue
        acc = accs[cell][seed]
        metrics = {
            "final_acc": acc,
            "best_acc": acc,
            "jsv_after_prune": 0.5,
            "params": 100,
            "flops": 100,
            "speedup": 2.0,
            "param_reduction": 0.5,
        }
        setup = _setup(finetune_schedule=spec.retrain.schedule)
        out.append(RunRecord(spec.to_dict(), metrics, {"val_accuracy": [acc]}, setup))
    return out


def test_cross_recipe_verdict_consistent_winner():
    kind, text = cross_recipe_verdict(
        {("A", "FT_A"): 0.90, ("A", "FT_B"): 0.93, ("B", "FT_A"): 0.88, ("B", "FT_B"): 0.92}
    )
    assert kind == "consistent winner" and "A beats B" in text


def test_cross_recipe_verdict_interaction_weighs_higher_cell():
    kind, text = cross_recipe_verdict(
        {("A", "FT_A"): 0.90, ("A", "FT_B"): 0.91, ("B", "FT_A"): 0.88, ("B", "FT_B"): 0.94}
    )
    assert kind == "interaction"
    assert "B + FT_B" in text and "favours B" in text
    with pytest.raises(ConfigError):
        cross_recipe_verdict({("A", "x"): 1.0})


def test_cross_recipe_summary_on_synthetic_records():
    recs = _records(
        "cross_recipe",
        {
            "A=L1 + FT_A": [0.90, 0.91, 0.92],
            "A=L1 + FT_B": [0.93, 0.94, 0.95],
            "B=Random + FT_A": [0.80, 0.81, 0.82],
            "B=Random + FT_B": [0.96, 0.97, 0.98],
        },
    )
    summary = PROTOCOLS["cross_recipe"].summarize(recs)
    assert isinstance(summary, Summary) and len(summary.rows) == 4
    assert summary.verdicts[0].startswith("interaction")
    row = next(r for r in summary.rows if r["cell"] == "A=L1 + FT_B")
    assert row["mean"] == pytest.approx(0.94) and row["std"] == pytest.approx(0.01)
    assert row["diff_vs_ref"] == pytest.approx(0.03) and row["setup"] == "S3.1"


def test_finetune_lr_summary_verdicts_on_synthetic_records():
    recs = _records(
        "finetune_lr",
        {
            "L1 / lr=1e-2 / 20ep": [0.88, 0.86, 0.87],
            "L1 / lr=1e-3 / 20ep": [0.15, 0.12, 0.10],
            "L1+OrthP / lr=1e-2 / 20ep": [0.96, 0.95, 0.96],
            "L1+OrthP / lr=1e-3 / 20ep": [0.94, 0.95, 0.945],
        },
    )
    summary = PROTOCOLS["finetune_lr"].summarize(recs)
    assert [r["cell"] for r in summary.rows][:2] == ["L1 / lr=1e-2 / 20ep", "L1 / lr=1e-3 / 20ep"]
    text = "\n".join(summary.verdicts)
    assert "L1 at 20 epochs: LR 1e-2 beats LR 1e-3" in text
    assert "L1+OrthP closes the LR gap" in text
    orthp = next(r for r in summary.rows if r["cell"] == "L1+OrthP / lr=1e-3 / 20ep")
    assert orthp["reference"] == "L1 / lr=1e-3 / 20ep"
    assert orthp["p_vs_ref"] < 0.05
    assert set(summary.columns) <= set(summary.rows[0]) | {"reference"}


def test_verdict_words_follow_the_paired_test():
    assert outcome(0.05, 0.01) == "beats" and outcome(-0.05, 0.01) == "loses to"
    assert outcome(0.05, 0.167) == "ties with"  # a p of 0.167 is no win
    assert outcome(0.05, None) == "scores above" and outcome(-0.05, float("nan")) == "scores below"
    recs = _records(
        "finetune_lr",
        {
            "L1 / lr=1e-2 / 20ep": [0.88, 0.80, 0.70],
            "L1 / lr=1e-3 / 20ep": [0.75, 0.82, 0.69],
        },
    )
    text = "\n".join(PROTOCOLS["finetune_lr"].summarize(recs).verdicts)
    assert "LR 1e-2 ties with LR 1e-3" in text
