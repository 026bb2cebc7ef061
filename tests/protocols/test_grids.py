"""tfprune.protocols.grids: expansion of every protocol and summaries of synthetic records."""

from __future__ import annotations

import pytest

from tfprune.errors import ConfigError
from tfprune.protocols import resolve_config
from tfprune.protocols.base import Summary, outcome
from tfprune.protocols.definitions.cross_recipe import cross_recipe_verdict
from tfprune.protocols.definitions.finetune_lr import lengthen_first_stage
from tfprune.protocols.grids import PROTOCOLS
from tfprune.protocols.runner import run_protocol
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.training.schedules import parse_schedule


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
        "Scratch-E / base+20ep",
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


def test_scratch_vs_prune_pipelines_list_rows_with_their_own_epochs_and_lrs():
    proto = PROTOCOLS["scratch_vs_prune"]
    common = {"ratios": [0.5], "seeds": 1, "scratch_b": False}
    crossed = proto.expand({**common, "prune_epochs": [5, 10], "setups": ["S4.2", "SX-A"]})
    listed = proto.expand(
        {
            **common,
            "pipelines": [
                {"setup": "S4.2", "prune_epoch": 5},
                {"setup": "SX-A", "prune_epoch": 5},
                {"setup": "S4.2", "prune_epoch": 10},
                {"setup": "SX-A", "prune_epoch": 10, "lr": 0.02},
            ],
        }
    )
    # The same rows get the same run ids whichever way they are asked for.
    assert [s.run_id() for s in listed] == [s.run_id() for s in crossed]
    rows = proto.expand(
        {
            **common,
            "pipelines": [
                {"setup": "SX-A", "prune_epoch": 10, "lr": 0.002},
                {"setup": "SX-B", "prune_epoch": 5, "lr": 0.02},
                {"setup": "SX-B", "prune_epoch": 5, "lr": 0.002},
            ],
        }
    )
    assert _cells(rows) == [
        "Scratch-E / pr=0.5",
        "SX-A P10F10,0.002 / pr=0.5",
        "SX-B P5/kF15,0.02 / pr=0.5",
        "SX-B P5/kF15,0.002 / pr=0.5",
    ]
    bad = [
        ({"setup": "S4.2", "prune_epoch": 5, "lr": 0.1}, "S4.2 continues the scratch schedule"),
        ({"setup": "SX-C", "prune_epoch": 5}, "unknown setup 'SX-C'"),
        ({"setup": "SX-A", "prune_epoch": 20}, r"must be in \(0, total_epochs=20\)"),
        ({"setup": "SX-A", "prune_epochs": 5}, "did you mean 'prune_epoch'"),
        ({"setup": "SX-A", "prune_epoch": 5, "lr": 0}, "lr must be a positive number"),
    ]
    for row, message in bad:
        with pytest.raises(ConfigError, match=message):
            proto.expand({**common, "pipelines": [row]})
    with pytest.raises(ConfigError, match="listed twice"):
        proto.expand({**common, "pipelines": [{"setup": "S4.2", "prune_epoch": 5}] * 2})


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


def _records(
    protocol: str,
    accs: dict[str, list[float]],
    config: dict | None = None,
    ta: dict[str, float] | None = None,
) -> list[RunRecord]:
    specs = {}
    for s in PROTOCOLS[protocol].expand(config or {}):
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
        if ta is not None:
            metrics["trainability_acc"] = ta[cell]
        setup = _setup(finetune_schedule=spec.retrain.schedule, finetune_epochs=spec.retrain.epochs)
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


FIRST_STAGE = {"methods": ["l1"], "baselines": False, "first_stage_extra": [20, 60]}


def _stages(spec: RunSpec) -> list[tuple[int, float]]:
    return parse_schedule(spec.retrain.schedule, spec.retrain.epochs).stages


def test_first_stage_extra_adds_cells_with_a_longer_first_stage_only():
    specs = PROTOCOLS["finetune_lr"].expand({**FIRST_STAGE, "seeds": 1})
    assert _cells(specs) == [
        "L1 / lr=1e-2 / 20ep",
        "L1 / lr=1e-3 / 20ep",
        "L1 / lr=1e-3 / 20ep+20 first stage",
        "L1 / lr=1e-3 / 20ep+60 first stage",
    ]
    by_cell = {s.cell: s for s in specs}
    plain = by_cell["L1 / lr=1e-3 / 20ep"]
    assert _stages(plain) == [(0, 0.001), (10, 0.0001)] and plain.retrain.epochs == 20
    for n in (20, 60):
        s = by_cell[f"L1 / lr=1e-3 / 20ep+{n} first stage"]
        assert _stages(s) == [(0, 0.001), (10 + n, 0.0001)]  # the last stage keeps 10 epochs
        assert s.retrain.epochs == 20 + n
        assert parse_schedule(s.retrain.schedule, s.retrain.epochs).first_stage_epochs() == 10 + n
        assert s.base_id() == plain.base_id()  # same base model: paired by seed
    assert len({s.run_id() for s in specs}) == len(specs)
    # Off by default: the default grid has no such cells.
    assert not any("first stage" in c for c in _cells(PROTOCOLS["finetune_lr"].expand({})))


def test_first_stage_extra_with_three_stages_budgets_and_lrs():
    cfg = {
        "methods": ["l1", "l1_orthp"],
        "baselines": False,
        "seeds": 1,
        "lrs": [0.1, 0.01, 0.001],
        "budgets": [20, 40],
        "first_stage_extra": [6],
        "lr_schedules": {0.01: "steps:0.01@0,0.001@8,0.0001@14"},
    }
    specs = PROTOCOLS["finetune_lr"].expand(cfg)
    ext = [s for s in specs if "first stage" in s.cell]
    # every LR but the largest, per method and budget
    assert len(ext) == 2 * 2 * 2
    s = next(x for x in ext if x.cell == "L1+OrthP / lr=1e-2 / 20ep+6 first stage")
    assert _stages(s) == [(0, 0.01), (14, 0.001), (20, 0.0001)] and s.retrain.epochs == 26
    s = next(x for x in ext if x.cell == "L1 / lr=1e-3 / 40ep+6 first stage")
    assert s.retrain.epochs == 46 and _stages(s)[1][0] == 20 + 6  # steps:0.001 over 40: 20, 20
    only = PROTOCOLS["finetune_lr"].expand({**cfg, "first_stage_extra_lrs": [0.001]})
    assert {x.cell.split(" / ")[1] for x in only if "first stage" in x.cell} == {"lr=1e-3"}


def test_lengthen_first_stage_reproduces_the_papers_schedule():
    # WHY Tab. 5: P60F60 at 1e-3 (halving rule: 0:1e-3, 30:1e-4, 45:1e-5) with +60 epochs.
    assert lengthen_first_stage("halving:0.001:1e-5", 60, 60) == (
        "0:0.001,90:0.0001,105:1e-05",
        120,
    )
    assert lengthen_first_stage("ft:0.001", 10, 5) == ("0:0.001", 15)
    with pytest.raises(ConfigError, match="first LR stage"):
        lengthen_first_stage("cosine:0.01:1e-4", 20, 5)


@pytest.mark.parametrize(
    "over, match",
    [
        ({"first_stage_extra": [0]}, r"first_stage_extra: 0 is not a whole number"),
        ({"first_stage_extra": [2.5]}, r"first_stage_extra must be a list of whole numbers.*2.5"),
        ({"first_stage_extra": [True]}, r"first_stage_extra must be .*True"),
        ({"first_stage_extra": "20"}, r"first_stage_extra must be a list"),
        ({"first_stage_extra": [20, 20]}, r"first_stage_extra lists an epoch count twice"),
        ({"first_stage_extra_lrs": [0.05]}, r"first_stage_extra_lrs: LR 0.05 is not one of lrs"),
        ({"first_stage_extra_lrs": [0.01]}, r"first_stage_extra_lrs: LR 0.01 is the largest"),
        ({"first_stage_extra_lrs": [0.001, 0.001]}, r"lists LR 0.001 twice"),
        ({"first_stage_extra_lrs": []}, r"first_stage_extra_lrs must be a non-empty list"),
        ({"first_stage_extra_lrs": ["x"]}, r"first_stage_extra_lrs must be a list of numbers.*'x'"),
        ({"lrs": [0.01]}, r"first_stage_extra needs at least two LRs"),
        ({"schedule_type": "cosine"}, r"first_stage_extra \(LR 0.001, 20 epochs\).*'steps:"),
    ],
)
def test_first_stage_extra_validation(over, match):
    with pytest.raises(ConfigError, match=match):
        PROTOCOLS["finetune_lr"].expand({**FIRST_STAGE, **over})


def test_first_stage_extra_lrs_without_extra_epochs_is_an_error():
    with pytest.raises(
        ConfigError,
        match=r"first_stage_extra_lrs is set but finetune_lr.first_stage_extra is empty",
    ):
        PROTOCOLS["finetune_lr"].expand({"first_stage_extra_lrs": [0.001]})


def _first_stage_records(accs: dict[str, list[float]], ta: dict[str, float]) -> list[RunRecord]:
    return _records("finetune_lr", accs, config=FIRST_STAGE, ta=ta)


FS_ACCS = {
    "L1 / lr=1e-2 / 20ep": [0.88, 0.86, 0.87],
    "L1 / lr=1e-3 / 20ep": [0.15, 0.12, 0.10],
    "L1 / lr=1e-3 / 20ep+20 first stage": [0.70, 0.74, 0.75],
    "L1 / lr=1e-3 / 20ep+60 first stage": [0.86, 0.85, 0.87],
}
FS_TA = {
    "L1 / lr=1e-2 / 20ep": 0.60,
    "L1 / lr=1e-3 / 20ep": 0.10,
    "L1 / lr=1e-3 / 20ep+20 first stage": 0.30,
    "L1 / lr=1e-3 / 20ep+60 first stage": 0.55,
}


def test_first_stage_cells_are_compared_with_the_largest_lr_at_the_plain_budget():
    recs = _first_stage_records(FS_ACCS, FS_TA)
    summary = PROTOCOLS["finetune_lr"].summarize(list(reversed(recs)), FIRST_STAGE)
    assert [r["cell"] for r in summary.rows] == list(FS_ACCS)  # the grid's order
    rows = {r["cell"]: r for r in summary.rows}
    for n, diff in ((20, -0.14), (60, -0.01)):
        row = rows[f"L1 / lr=1e-3 / 20ep+{n} first stage"]
        assert row["reference"] == "L1 / lr=1e-2 / 20ep"
        assert row["setup"] == "S2"  # more epochs: only the base model is shared
        assert f"finetune_epochs: {20 + n} vs 20" in row["setup_mismatches"]
        assert row["diff_vs_ref"] == pytest.approx(diff) and row["paired_seeds"] == [0, 1, 2]
    # The usual LR verdict still compares the two equal-epoch cells only.
    text = "\n".join(summary.verdicts)
    assert "L1 at 20 epochs: LR 1e-2 beats LR 1e-3 (87.00% vs 12.33%" in text


def test_first_stage_verdicts_gap_and_trainability_correlation():
    summary = PROTOCOLS["finetune_lr"].summarize(_first_stage_records(FS_ACCS, FS_TA), FIRST_STAGE)
    gap = next(v for v in summary.verdicts if "against LR 1e-2" in v)
    assert gap.startswith("L1 at 20 epochs, LR 1e-3 against LR 1e-2: -74.67 points with equal")
    assert "-14.00 points at +20 first-stage epochs" in gap
    assert "-1.00 points at +60 first-stage epochs" in gap
    assert "the gap shrinks steadily (99% of it closed at +60)" in gap
    assert gap.endswith("at +60, LR 1e-3 ties with LR 1e-2 at 20 epochs.")
    ta = next(v for v in summary.verdicts if "trainability accuracy (mean accuracy" in v)
    assert "over its 4 cells: Pearson r=0.91 (n=4), a strong positive correlation" in ta

    # Not shrinking; a missing trainability accuracy leaves too few cells to correlate.
    accs = {**FS_ACCS, "L1 / lr=1e-3 / 20ep+60 first stage": [0.05, 0.04, 0.06]}
    ta_few = {c: (v if "first stage" not in c else None) for c, v in FS_TA.items()}
    summary = PROTOCOLS["finetune_lr"].summarize(_first_stage_records(accs, ta_few), FIRST_STAGE)
    text = "\n".join(summary.verdicts)
    assert "the gap does not shrink; at +60, LR 1e-3 loses to LR 1e-2" in text
    assert "too few cells with both values to correlate (n=2)" in text

    # The small LR overtaking the large one closes the gap completely.
    accs = {**FS_ACCS, "L1 / lr=1e-3 / 20ep+60 first stage": [0.92, 0.91, 0.93]}
    summary = PROTOCOLS["finetune_lr"].summarize(_first_stage_records(accs, FS_TA), FIRST_STAGE)
    assert "the gap closes completely by +60; at +60, LR 1e-3 beats LR 1e-2" in "\n".join(
        summary.verdicts
    )


def test_first_stage_verdict_without_the_equal_epoch_run():
    accs = {k: v for k, v in FS_ACCS.items() if k != "L1 / lr=1e-3 / 20ep"}
    summary = PROTOCOLS["finetune_lr"].summarize(_first_stage_records(accs, FS_TA), FIRST_STAGE)
    gap = next(v for v in summary.verdicts if "against LR 1e-2" in v)
    assert gap.endswith("no seed-paired run with equal epochs to measure the gap against.")
    assert "-14.00 points at +20 first-stage epochs" in gap


TINY_FIRST_STAGE = (
    "base.epochs=2,base.schedule='0:0.02',budgets=[2],seeds=[0],methods=[l1],"
    "lrs=[0.01,0.001],baselines=false,jsv_every_epoch=false,jsv_samples=0,"
    "first_stage_extra=[2]"
)


def test_first_stage_extra_real_tiny_run(tmp_path):
    cfg = resolve_config("finetune_lr", overrides=[TINY_FIRST_STAGE])
    records = run_protocol(cfg, tmp_path, log=lambda s: None)
    rec = next(r for r in records if r.spec["cell"] == "L1 / lr=1e-3 / 2ep+2 first stage")
    val = rec.history["val_accuracy"]
    # steps:0.001:1e-4 over 2 epochs is 1 + 1 epochs; +2 makes the first stage 3 epochs.
    assert rec.spec["retrain"]["schedule"] == "0:0.001,3:0.0001" and len(val) == 4
    assert rec.history["lr"] == pytest.approx([0.001, 0.001, 0.001, 0.0001])
    assert rec.metrics["trainability_acc"] == pytest.approx(sum(val[:3]) / 3)
    summary = PROTOCOLS["finetune_lr"].summarize(records, cfg.params)
    row = next(r for r in summary.rows if r["cell"] == rec.spec["cell"])
    assert row["reference"] == "L1 / lr=1e-2 / 2ep" and row["epochs"] == 4
    assert any("LR 1e-3 against LR 1e-2" in v for v in summary.verdicts)


def test_every_protocol_config_is_typed_and_wrong_types_fail_before_anything_runs():
    for name, proto in PROTOCOLS.items():
        if name == "setup_check":
            continue
        assert proto.params is not None, name
        proto.config({})  # the defaults pass their own types
    bad = [
        ("finetune_lr", {"lrs": "0.01"}, "finetune_lr.lrs must be a list of numbers, got '0.01'"),
        ("finetune_lr", {"baselines": "yes"}, "baselines must be true or false"),
        ("scratch_vs_prune", {"total_epochs": 20.5}, "total_epochs must be a whole number"),
        ("ratio_sweep", {"ratios": [0.1, "x"]}, "a list of numbers or mappings"),
        ("cross_recipe", {"recipes": ["ft:0.001"]}, "recipes must be a mapping"),
        ("retrain_schedules", {"budgets": [10, None]}, "budgets must be a list of whole numbers"),
    ]
    for name, override, message in bad:
        with pytest.raises(ConfigError, match=message):
            PROTOCOLS[name].expand(override)
    # Integers are numbers; a seed count or list both type-check.
    PROTOCOLS["finetune_lr"].config({"lrs": [1, 0.1], "seeds": [0, 2], "ratio": {"d.*": 0.5}})
