"""Reports: Markdown/CSV/JSON tables with mean ± std, verdicts and PNG plots from a run store."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from core_helpers import tool_error_line

from tfprune.bin import report as report_tool
from tfprune.bin.jobs import report as report_job
from tfprune.errors import InvalidArgumentError, NoFinishedRunsError
from tfprune.protocols.base import Protocol, Summary, outcome, paired_test_text, summarize_cells
from tfprune.protocols.report import (
    _accuracy_figure,
    _Curve,
    _line_figure,
    _partial_note,
    _seed_curves,
    _split_long,
    compact_table,
    format_value,
    markdown_table,
    summary_csv,
    write_report,
)
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.protocols.store import RunStore
from tfprune.training.recipe import TrainingRecipe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class CellMeans(Protocol):
    """One row per cell: n, mean/std of final_acc, speed-up."""

    name = "cells"
    description = "two cells"
    default_config = {}

    def summarize(self, records, config=None):
        rows = []
        for cell in sorted({r.spec["cell"] for r in records}):
            accs = [r.metrics["final_acc"] for r in records if r.spec["cell"] == cell]
            mean = sum(accs) / len(accs)
            std = (sum((a - mean) ** 2 for a in accs) / len(accs)) ** 0.5
            rows.append(
                {
                    "cell": cell,
                    "n": len(accs),
                    "mean": mean,
                    "std": std,
                    "speedup": 2.0,
                    "setup": "S3.2",
                }
            )
        return Summary(
            rows=rows,
            verdicts=["lr=0.01 beats lr=0.001"],
            columns=["cell", "n", "mean", "std", "speedup", "setup"],
        )


def fill(store: RunStore, with_jsv: bool = True) -> None:
    """Four finished runs, with the config.yaml and grid.json tfprune-compare writes."""
    (store.output_dir / "config.yaml").write_text("protocol: cells\n")
    runs = []
    for lr, base in ((0.01, 0.9), (0.001, 0.8)):
        for seed in (1, 2):
            spec = RunSpec(
                protocol="cells",
                cell=f"lr={lr:g}",
                dataset="digits",
                model="mlp7_linear",
                method="l1",
                ratio=0.5,
                retrain=TrainingRecipe(schedule=f"0:{lr}", epochs=3, batch_size=100),
                seed=seed,
                base={"schedule": "0:0.01", "epochs": 1},
            )
            acc = [base - 0.1, base - 0.05, base + 0.01 * seed]
            history = {"loss": [1.0, 0.5, 0.3], "val_accuracy": acc}
            if with_jsv:
                history["jsv_mean"] = [0.01, 0.1, 0.5, 0.9]
            record = RunRecord(
                spec=spec.to_dict(),
                metrics={"final_acc": acc[-1], "speedup": 2.0 + seed / 10},
                history=history,
                setup={},
            )
            store.prepare(
                spec.run_id(), spec.to_dict(), {"python": "3", "packages": {"numpy": "1"}}
            )
            store.write_history(spec.run_id(), history)
            store.write_record(spec.run_id(), record.to_dict())
            runs.append({"run_id": spec.run_id(), "cell": spec.cell, "seed": seed})
    (store.output_dir / "grid.json").write_text(json.dumps({"protocol": "cells", "runs": runs}))


def test_write_report_files_and_table(tmp_path):
    fill(RunStore(tmp_path))
    lines = []
    report = write_report(tmp_path, registry={"cells": CellMeans()}, log=lines.append)
    out = tmp_path / "report"
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy_vs_epoch.png",
        "accuracy_vs_speedup.png",
        "jsv_vs_epoch.png",
        "summary.csv",
        "summary.json",
        "summary.md",
    ]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert report.finished == 4 and report.expected == 4 and report.problems == []
    # Printed: verdicts first, then the compact table in percent, then where the rest is.
    printed = report.markdown.splitlines()
    assert printed[0] == "- lr=0.01 beats lr=0.001"
    start = printed.index(next(line for line in printed if line.startswith("cell ")))
    assert printed[start].split() == [
        "cell",
        "n",
        "accuracy",
        "%",
        "vs",
        "reference",
        "setup",
        "MACs",
    ]
    assert printed[start + 2].split() == ["lr=0.001", "2", "81.5", "±", "0.5", "-", "S3.2", "2.00×"]
    assert printed[start + 3].split() == ["lr=0.01", "2", "91.5", "±", "0.5", "-", "S3.2", "2.00×"]
    assert max(len(line) for line in printed[start:-2]) <= 100
    assert printed[-1].endswith("summary.md")
    md = (out / "summary.md").read_text()
    table = md.splitlines()
    head = table.index("| cell | n | mean ± std | speedup | setup |")
    assert table[head + 2] == "| lr=0.001 | 2 | 0.815 ± 0.005 | 2 | S3.2 |"
    assert table[head + 3] == "| lr=0.01 | 2 | 0.915 ± 0.005 | 2 | S3.2 |"
    assert "4 finished runs" in md and "![jsv_vs_epoch](jsv_vs_epoch.png)" in md
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert [r["cell"] for r in rows] == ["lr=0.001", "lr=0.01"]
    assert float(rows[1]["mean"]) == pytest.approx(0.915) and float(
        rows[1]["std"]
    ) == pytest.approx(0.005)


def test_no_jsv_plot_without_jsv(tmp_path):
    fill(RunStore(tmp_path), with_jsv=False)
    report = write_report(tmp_path, registry={"cells": CellMeans()}, log=lambda s: None)
    assert "jsv_vs_epoch" not in report.paths and "accuracy_vs_epoch" in report.paths


def test_report_of_empty_dir_says_what_to_do(tmp_path):
    with pytest.raises(NoFinishedRunsError, match="no finished runs.*tfprune-compare"):
        write_report(tmp_path, registry={"cells": CellMeans()})


def test_report_tool_names_an_unknown_protocol_in_one_line(tmp_path, capsys):
    fill(RunStore(tmp_path))
    assert report_tool.BINARY([f"--output_dir={tmp_path}", "--protocol=finetune_l"]) == 2
    line = tool_error_line(capsys.readouterr().err, "report")
    assert "'finetune_l' is not registered" in line and "did you mean 'finetune_lr'" in line


def test_report_tool_keeps_the_traceback_of_an_unexpected_value_error(tmp_path, monkeypatch):
    # A bug (in numpy, TensorFlow or tfprune) is not a usage error: its traceback is kept.
    fill(RunStore(tmp_path))

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(report_job, "write_report", broken)
    with pytest.raises(ValueError, match="broadcast"):
        report_tool.BINARY([f"--output_dir={tmp_path}"])


def test_formatting_helpers():
    assert format_value(0.123456) == "0.1235" and format_value(1234567.0) == "1.23e+06"
    assert (
        format_value(None) == "-" and format_value(True) == "yes" and format_value("a|b") == "a\\|b"
    )
    assert (
        markdown_table([{"a": 1, "a_std": 0.5}], ["a", "a_std"]).splitlines()[-1] == "| 1 ± 0.5 |"
    )
    assert summary_csv([{"a": [1, 2]}], ["a"]) == 'a\n"[1, 2]"\n'


def test_compact_table_fits_100_columns_and_reads_in_percent():
    rows = [
        {"cell": "L1 / lr=1e-2 / 20ep", "n": 3, "mean": 0.8796, "std": 0.0278, "reference": None},
        {
            "cell": "L1+OrthP with a very long cell label that would not fit / lr=1e-2 / 20ep",
            "n": 3,
            "mean": 0.963,
            "std": 0.0042,
            "reference": "L1 / lr=1e-2 / 20ep",
            "diff_vs_ref": 0.0833,
            "p_vs_ref": 0.045,
            "setup": "S4.2",
            "speedup": 16.49,
        },
        {"cell": "x", "n": 3, "mean": 0.2, "reference": "y", "diff_vs_ref": -0.6, "p_vs_ref": 1e-5},
    ]
    lines = compact_table(rows).splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert "87.96" not in lines[2] and "88.0 ± 2.8" in lines[2] and "(reference)" in lines[2]
    assert "96.3 ± 0.4" in lines[3] and "+8.3 pt p=0.045" in lines[3] and "S4.2" in lines[3]
    assert "16.49×" in lines[3] and "…" in lines[3]
    assert "-60.0 pt p<0.001" in lines[4]


def _spec_dict(cell: str, seed: int) -> dict:
    recipe = TrainingRecipe(schedule="0:0.01", epochs=3, batch_size=100)
    base = {"schedule": "0:0.01", "epochs": 1}
    return RunSpec("cells", cell, "digits", "mlp7_linear", "l1", 0.5, recipe, seed, base).to_dict()


def test_long_curves_get_their_own_panel_and_seed_ranges_are_kept():
    recs = [
        RunRecord(spec=_spec_dict("a", seed), metrics={}, history={"val_accuracy": v}, setup={})
        for seed, v in enumerate(([0.1, 0.5, 0.9], [0.3, 0.7, 0.8]))
    ]
    history = {"val_accuracy": [0.2] * 9}
    recs.append(RunRecord(spec=_spec_dict("scratch", 0), metrics={}, history=history, setup={}))
    curves = _seed_curves(recs, lambda r: r.history["val_accuracy"])
    assert curves["a"].n == 2 and curves["a"].low == [0.1, 0.5, 0.8]
    assert curves["a"].high == [0.3, 0.7, 0.9] and curves["a"].mean[0] == pytest.approx(0.2)
    short, long = _split_long(curves)
    assert set(short) == {"a"} and set(long) == {"scratch"}


def test_report_names_damaged_records_and_missing_or_garbage_side_files(tmp_path):
    store = RunStore(tmp_path)
    fill(store)
    a, b, c = store.finished_ids()[:3]
    (tmp_path / "runs" / a / "record.json").write_text('{"spec": {"cell": "lr=')
    (tmp_path / "runs" / b / "spec.json").unlink()
    (tmp_path / "runs" / c / "history.csv").write_text("epoch,loss\n1,oops\n")
    (tmp_path / "config.yaml").unlink()
    (tmp_path / "grid.json").write_text("[1, 2")
    report = write_report(tmp_path, registry={"cells": CellMeans()}, log=lambda s: None)
    assert report.finished == 3
    runs = tmp_path / "runs"
    expected = [
        f"{runs / a / 'record.json'}: not valid JSON",
        f"{runs / b / 'spec.json'}: missing",
        f"{runs / c / 'history.csv'}: line 2 holds 'oops', not a number",
        f"{tmp_path / 'grid.json'}: unreadable",
        f"{tmp_path / 'config.yaml'}: missing; the report uses the protocol's defaults",
    ]
    for start in expected:
        assert sum(p.startswith(start) for p in report.problems) == 1, start
    printed = report.markdown.splitlines()
    assert printed[0] == "problems found:" and printed[1] == f"- {report.problems[0]}"
    assert "## Problems found" in (tmp_path / "report" / "summary.md").read_text()
    # With the only record damaged, the error names it (and says what to do).
    for run_id in store.finished_ids():
        (tmp_path / "runs" / run_id / "record.json").write_text("")
    with pytest.raises(FileNotFoundError, match=f"damaged: {runs / a / 'record.json'}: "):
        write_report(tmp_path, registry={"cells": CellMeans()}, log=lambda s: None)


def test_report_folder_that_is_a_file_is_named(tmp_path):
    fill(RunStore(tmp_path))
    (tmp_path / "report").write_text("x")
    with pytest.raises(InvalidArgumentError, match="report is a file, where the report folder"):
        write_report(tmp_path, registry={"cells": CellMeans()}, log=lambda s: None)


def _pair_records(seeds, scratch_acc=0.8, pruned_acc=0.1):
    recs = []
    for seed in seeds:
        for cell, method, acc in (("Scratch", "scratch", scratch_acc), ("L1", "l1", pruned_acc)):
            spec = RunSpec(
                "cells",
                cell,
                "digits",
                "mlp7_linear",
                method,
                0.5,
                TrainingRecipe("0:0.01", 3, 100),
                seed,
                {"schedule": "0:0.01", "epochs": 1},
            )
            noise = 0.01 * seed**2 if method == "l1" else 0.01 * seed
            metrics = {"final_acc": acc + noise, "acc_after_prune": 0.1}
            recs.append(RunRecord(spec.to_dict(), metrics, {}, {}))
    return recs


def test_differences_over_fewer_than_three_seed_pairs_are_not_tested():
    def ref(cell, recs):
        return "Scratch"

    rows, _, _ = summarize_cells(_pair_records([0, 1]), reference=ref)
    l1 = next(r for r in rows if r["cell"] == "L1")
    assert l1["diff_vs_ref"] == pytest.approx(-0.7, abs=0.01) and math.isnan(l1["p_vs_ref"])
    assert outcome(l1["diff_vs_ref"], l1["p_vs_ref"]) == "scores below"  # no "tie", no "loses"
    assert paired_test_text(l1["p_vs_ref"], 2) == "n=2<3, not tested"
    line = next(x for x in compact_table(rows).splitlines() if x.startswith("L1"))
    assert "-70.0 pt n<3, not tested" in line and "p=" not in line
    # Scratch runs prune nothing: no "accuracy after pruning" for them.
    scratch = next(r for r in rows if r["cell"] == "Scratch")
    assert math.isnan(scratch["after_prune_mean"]) and l1["after_prune_mean"] == 0.1
    # From three pairs on, the difference is tested.
    rows, _, _ = summarize_cells(_pair_records([0, 1, 2]), reference=ref)
    l1 = next(r for r in rows if r["cell"] == "L1")
    assert l1["p_vs_ref"] < 0.05 and outcome(l1["diff_vs_ref"], l1["p_vs_ref"]) == "loses to"
    assert paired_test_text(l1["p_vs_ref"], 3).startswith("paired p=")


def test_epoch_axes_have_whole_number_ticks():
    curves = {"a": _Curve(mean=[0.1, 0.5, 0.7], low=[0.1, 0.4, 0.6], high=[0.1, 0.6, 0.8], n=2)}
    fig = _line_figure(curves, "acc", "title")
    fig.canvas.draw()  # the locator places the ticks at drawing
    ticks = list(fig.axes[0].get_xticks())
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_accuracy_plot_is_named_and_titled_for_what_it_shows(tmp_path):
    # One MAC reduction for every run: accuracy per cell, in a file named so.
    store = RunStore(tmp_path)
    fill(store)
    for run_id in store.finished_ids():
        data = store.load_record_dict(run_id)
        data["metrics"]["speedup"] = 2.0
        (tmp_path / "runs" / run_id / "record.json").write_text(json.dumps(data))
    report = write_report(tmp_path, registry={"cells": CellMeans()}, log=lambda s: None)
    assert "accuracy_per_cell" in report.paths and "accuracy_vs_speedup" not in report.paths
    assert not (tmp_path / "report" / "accuracy_vs_speedup.png").exists()
    points = {"a": [(2.0, 80.0)], "b": [(2.0, 70.0)]}
    ax = _accuracy_figure(points, "best_acc", None).axes[0]
    assert ax.get_title().startswith("Best test accuracy per cell")
    assert ax.get_ylabel() == "best test accuracy (%)" and "2.00× fewer MACs" in ax.get_xlabel()
    ax = _accuracy_figure({"a": [(2.0, 80.0)], "b": [(4.0, 70.0)]}, "final_acc", None).axes[0]
    assert ax.get_title().startswith("Final test accuracy vs MAC reduction")


def test_a_partial_report_says_so_in_its_plots(tmp_path):
    store = RunStore(tmp_path)
    fill(store)
    grid = json.loads((tmp_path / "grid.json").read_text())
    grid["runs"] += [{"run_id": "f" * 12, "cell": "lr=0.1", "seed": 1}]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    records = store.load_records()
    note = _partial_note(records, grid)
    assert note == "PARTIAL: 4 of 5 runs finished; cells missing runs: lr=0.1 (0 of 1)"
    curves = {"a": _Curve(mean=[0.1, 0.5], low=[0.1, 0.5], high=[0.1, 0.5], n=1)}
    assert _line_figure(curves, "acc", "t", note=note).axes[0].get_title().endswith(note)
    ax = _accuracy_figure({"a": [(2.0, 80.0)]}, "final_acc", note).axes[0]
    assert ax.get_title().endswith(note)
    report = write_report(tmp_path, registry={"cells": CellMeans()}, log=lambda s: None)
    assert "PARTIAL: 4 finished runs of 5" in (tmp_path / "report" / "summary.md").read_text()
    assert report.expected == 5 and _partial_note(records, {}) is None
