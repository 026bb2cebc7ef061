"""Runner: deterministic sharding, skip finished runs, errors recorded and re-raised, report.

The grid here comes from a small in-test protocol whose ``execute`` is a plain function (no
training); the real protocols run end to end in tests/bin/test_compare.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfprune.configs import ProtocolConfig, RunnerConfig
from tfprune.errors import ConfigError, InvalidArgumentError, RunFailedError, TfpruneError
from tfprune.files import mark_as_tfprune
from tfprune.protocols.base import Protocol, Summary
from tfprune.protocols.runner import plan_shard, run_protocol
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.protocols.store import RunStore
from tfprune.training.recipe import TrainingRecipe


class ToyProtocol(Protocol):
    """lrs × ratios × seeds; summarize = mean/std of final_acc per cell."""

    name = "toy"
    description = "toy grid"
    default_config = {"lrs": [0.01, 0.001], "ratios": [0.5], "seeds": [1, 2], "fail_cell": None}

    def expand(self, config):
        specs = []
        for lr in config["lrs"]:
            for ratio in config["ratios"]:
                for seed in config["seeds"]:
                    specs.append(
                        RunSpec(
                            protocol="toy",
                            cell=f"lr={lr:g} pr={ratio:g}",
                            dataset="digits",
                            model="mlp7_linear",
                            method="l1",
                            ratio=ratio,
                            retrain=TrainingRecipe(schedule=f"0:{lr}", epochs=3, batch_size=100),
                            seed=seed,
                            base={"schedule": "0:0.01", "epochs": 1},
                            # The toy executor fails on a marked model (options are typed).
                            options={
                                "model_kwargs": {
                                    "fail": f"lr={lr:g} pr={ratio:g}" == config["fail_cell"]
                                }
                            },
                        )
                    )
        return specs

    def summarize(self, records, config=None):
        cells = {}
        for r in records:
            cells.setdefault(r.spec["cell"], []).append(r.metrics["final_acc"])
        rows = []
        for cell, accs in sorted(cells.items()):
            mean = sum(accs) / len(accs)
            std = math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs))
            rows.append({"cell": cell, "n": len(accs), "final_acc": mean, "final_acc_std": std})
        return Summary(
            rows=rows, verdicts=["toy verdict"], columns=["cell", "n", "final_acc", "final_acc_std"]
        )


CALLS: list[str] = []


def toy_execute(spec, workdir, *, strategy=None, log=print):
    """Deterministic fake training: accuracy from lr, ratio and seed."""
    CALLS.append(spec.run_id())
    if spec.opts.model_kwargs.get("fail"):
        raise ArithmeticError(f"cell {spec.cell} diverged")
    lr = float(spec.retrain.schedule.split(":")[1])
    acc = [0.5 + 10 * lr * (e + 1) / 3 - 0.01 * spec.seed for e in range(spec.retrain.epochs)]
    return RunRecord(
        spec=spec.to_dict(),
        metrics={"final_acc": acc[-1], "best_acc": max(acc), "speedup": 1 / (1 - spec.ratio)},
        history={"val_accuracy": acc, "jsv_mean": [0.1 * (e + 1) for e in range(4)]},
        setup={"base_id": spec.base_id()},
    )


REGISTRY = {"toy": ToyProtocol()}


def config(continue_on_error=False, **params):
    merged = {**ToyProtocol.default_config, **params}
    runner = RunnerConfig(continue_on_error=continue_on_error)
    return ProtocolConfig(protocol="toy", params=merged, runner=runner)


def run(cfg, out, **kw):
    lines = []
    records = run_protocol(
        cfg, out, registry=REGISTRY, execute_fn=toy_execute, log=lines.append, **kw
    )
    return records, lines


def test_plan_shard_partitions_sorted_grid():
    specs = ToyProtocol().expand({**ToyProtocol.default_config, "seeds": [1, 2, 3]})
    ids = sorted(s.run_id() for s in specs)
    shards = [plan_shard(specs, i, 4) for i in range(4)]
    got = [s.run_id() for shard in shards for s in shard]
    assert sorted(got) == ids and len(got) == len(set(got)) == 6
    assert [s.run_id() for s in shards[1]] == ids[1::4]
    # Duplicated specs are one run.
    assert len(plan_shard(specs + specs, 0, 1)) == 6
    with pytest.raises(ConfigError, match=r"shard_index must be in \[0, 1\]"):
        plan_shard(specs, 2, 2)
    with pytest.raises(ConfigError, match="num_shards must be >= 1"):
        plan_shard(specs, 0, 0)


def test_two_shards_equal_one_process(tmp_path):
    one, _ = run(config(), tmp_path / "one")
    s0, lines0 = run(config(), tmp_path / "two", shard_index=0, num_shards=2)
    s1, _ = run(config(), tmp_path / "two", shard_index=1, num_shards=2)
    ids_one = {r.run_spec().run_id() for r in one}
    assert len(ids_one) == 4
    assert {r.run_spec().run_id() for r in s0}.isdisjoint({r.run_spec().run_id() for r in s1})
    assert {r.run_spec().run_id() for r in s0 + s1} == ids_one

    def acc(records):
        return {r.run_spec().run_id(): r.metrics["final_acc"] for r in records}

    assert acc(s0 + s1) == acc(one)
    assert any("tfprune-report" in line for line in lines0)  # shard 0 finished first
    # The last shard to finish wrote the report.
    assert (tmp_path / "two" / "report" / "summary.md").is_file()
    assert (tmp_path / "one" / "report" / "summary.csv").is_file()
    grid = json.loads((tmp_path / "one" / "grid.json").read_text())
    assert sorted(r["run_id"] for r in grid["runs"]) == sorted(ids_one)
    assert (tmp_path / "one" / "config.yaml").is_file()


def test_rerun_skips_finished_runs(tmp_path):
    CALLS.clear()
    first, _ = run(config(), tmp_path)
    assert len(CALLS) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/record.json")}
    CALLS.clear()
    again, lines = run(config(), tmp_path)
    assert CALLS == []
    assert "4 already finished, 0 to run" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/record.json")} == mtimes
    assert [r.to_dict() for r in again] == [r.to_dict() for r in first]
    # A larger grid is another config: refused, unless asked for; then only the new cells run.
    CALLS.clear()
    with pytest.raises(ConfigError, match=r"seeds: \[1, 2\] there, \[1, 2, 3\] here"):
        run(config(seeds=[1, 2, 3]), tmp_path)
    assert CALLS == []
    run(config(seeds=[1, 2, 3]), tmp_path, replace_config=True)
    assert len(CALLS) == 2


def test_stale_partial_run_is_redone(tmp_path):
    specs = ToyProtocol().expand(ToyProtocol.default_config)
    store = RunStore(tmp_path)
    stale = specs[0].run_id()
    folder = store.prepare(stale, {"stale": True}, {})
    (folder / "history.csv").write_text("epoch\n1\n")
    CALLS.clear()
    run(config(), tmp_path)
    assert stale in CALLS and len(CALLS) == 4
    assert json.loads((folder / "spec.json").read_text()) == specs[0].to_dict()
    assert (folder / "history.csv").read_text().splitlines()[0] == "epoch,val_accuracy,jsv_mean"


def test_failure_recorded_and_reraised(tmp_path):
    cfg = config(fail_cell="lr=0.001 pr=0.5")
    with pytest.raises(ArithmeticError, match="diverged"):
        run(cfg, tmp_path)
    errors = RunStore(tmp_path).errors()
    assert len(errors) == 1
    ((run_id, err),) = errors.items()
    assert err["type"] == "ArithmeticError" and "diverged" in err["traceback"]
    assert not (tmp_path / "report").exists()


def test_continue_on_error_runs_the_rest_then_raises(tmp_path):
    cfg = config(fail_cell="lr=0.001 pr=0.5", continue_on_error=True)
    CALLS.clear()
    with pytest.raises(RunFailedError, match="2 of 4 run\\(s\\) failed") as info:
        run(cfg, tmp_path)
    assert len(CALLS) == 4
    assert set(info.value.failed) == set(RunStore(tmp_path).errors())
    assert len(RunStore(tmp_path).finished_ids()) == 2
    # Fixing the config and rerunning only retries the failed runs... which now differ in
    # their spec (the failure marker), so they are new runs; the finished ones are kept.
    CALLS.clear()
    run(config(), tmp_path, replace_config=True)
    assert len(CALLS) == 2


def test_unknown_protocol(tmp_path):
    with pytest.raises(ConfigError, match="unknown protocol 'nope'"):
        run(ProtocolConfig(protocol="nope"), tmp_path)


def test_a_run_claimed_by_another_process_is_skipped_not_repeated(tmp_path):
    specs = plan_shard(ToyProtocol().expand(ToyProtocol.default_config))
    busy = specs[0].run_id()
    other = RunStore(tmp_path).claim(busy)  # as if a second copy of the command held it
    assert other is not None and RunStore(tmp_path).claim(busy) is None
    CALLS.clear()
    records, lines = run(config(), tmp_path)
    assert busy not in CALLS and len(CALLS) == 3 and len(records) == 3
    skipped = [line for line in lines if busy in line and "skipped" in line]
    assert skipped and f"pid {os.getpid()}" in skipped[0]
    assert any("3/4 runs of the grid are finished" in line for line in lines)
    other.release()
    CALLS.clear()
    records, _ = run(config(), tmp_path)  # the claim is free again: only that run is done now
    assert CALLS == [busy] and len(records) == 4
    assert (tmp_path / "report" / "summary.md").is_file()


@contextlib.contextmanager
def held_by_another_process(lock: Path) -> Iterator[None]:
    """``lock`` held by another process while the block runs, which is then SIGKILLed."""
    lock.parent.mkdir(exist_ok=True)
    code = (
        "import time; from filelock import FileLock; "
        f"held = FileLock({str(lock)!r}); held.acquire(); print('held', flush=True); "
        "time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs
        proc.wait()


def test_the_claim_of_a_killed_process_is_free_at_once(tmp_path):
    with held_by_another_process(tmp_path / "claims" / "abc.lock"):
        assert RunStore(tmp_path).claim("abc") is None
    claim = RunStore(tmp_path).claim("abc")
    assert claim is not None
    claim.release()


def test_the_results_table_can_go_apart_from_progress(tmp_path):
    shown = []
    _, lines = run(config(), tmp_path, results=shown.append)
    assert len(shown) == 1 and "accuracy %" in shown[0]  # the results table, once
    assert shown[0] not in lines and any("done in" in line for line in lines)


def test_a_damaged_record_is_named_and_rerun_repairs_it(tmp_path):
    run(config(), tmp_path)
    ids = sorted(p.parent.name for p in tmp_path.glob("runs/*/record.json"))
    truncated, empty = ids[0], ids[1]
    path = tmp_path / "runs" / truncated / "record.json"
    path.write_text(path.read_text()[:200])
    (tmp_path / "runs" / empty / "record.json").write_text("")
    store = RunStore(tmp_path)
    assert not store.is_finished(truncated) and not store.is_finished(empty)
    damaged = store.damaged_records()
    assert set(damaged) == {truncated, empty}
    assert damaged[truncated].startswith(f"{path}: not valid JSON")
    assert damaged[empty] == f"{tmp_path / 'runs' / empty / 'record.json'}: empty"
    with pytest.raises(InvalidArgumentError, match=f"run {truncated}: {path} is not valid JSON"):
        store.load_record_dict(truncated)
    CALLS.clear()
    records, lines = run(config(), tmp_path)
    assert sorted(CALLS) == [truncated, empty] and len(records) == 4
    assert any(
        line.startswith(f"{path}: not valid JSON") and "runs again" in line for line in lines
    )
    assert "2 already finished, 2 to run" in next(line for line in lines if "in the grid" in line)
    assert RunStore(tmp_path).damaged_records() == {} and len(store.load_records()) == 4


def test_another_config_into_a_used_folder_is_refused_naming_both(tmp_path):
    run(config(), tmp_path)
    saved = (tmp_path / "config.yaml").read_text()
    summary = (tmp_path / "report" / "summary.md").stat().st_mtime_ns
    CALLS.clear()
    with pytest.raises(ConfigError) as info:
        run(config(lrs=[0.1]), tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "config.yaml") in message
    assert "lrs: [0.01, 0.001] there, [0.1] here" in message
    assert "another --output_dir" in message and "--replace_config" in message
    assert CALLS == [] and (tmp_path / "config.yaml").read_text() == saved
    assert (tmp_path / "report" / "summary.md").stat().st_mtime_ns == summary
    # The same config (a rerun, another shard) and what only changes the runner are not refused.
    cfg = config(continue_on_error=True)
    run(cfg, tmp_path)
    # An unreadable config.yaml cannot tell: refused too, naming the file.
    (tmp_path / "config.yaml").write_text("protocol: [unclosed\n")
    with pytest.raises(ConfigError, match="config.yaml, which says what config made its runs"):
        run(config(), tmp_path)
    run(config(lrs=[0.1]), tmp_path, replace_config=True)
    assert "0.1" in (tmp_path / "config.yaml").read_text() and len(CALLS) == 2


def test_report_as_a_file_is_a_one_line_error_before_anything_runs(tmp_path):
    mark_as_tfprune(tmp_path)  # a results folder of tfprune's, where someone left a file
    (tmp_path / "report").write_text("my notes")
    CALLS.clear()
    with pytest.raises(InvalidArgumentError) as info:
        run(config(), tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'report'} is a file, where the report folder goes; move it away (or delete "
        "it), then run again"
    )
    assert CALLS == [] and (tmp_path / "report").read_text() == "my notes"


def test_a_finished_grid_leaves_no_claims_even_in_shards(tmp_path):
    run(config(), tmp_path / "one")
    assert not (tmp_path / "one" / "claims").exists()
    run(config(), tmp_path / "two", shard_index=0, num_shards=2)
    assert list((tmp_path / "two" / "claims").iterdir()) == []  # its runs' claims went
    run(config(), tmp_path / "two", shard_index=1, num_shards=2)
    assert not (tmp_path / "two" / "claims").exists()


def test_a_held_claim_is_left_alone_by_the_clean_up(tmp_path):
    run(config(), tmp_path)
    run_id = RunStore(tmp_path).finished_ids()[0]
    lock = tmp_path / "claims" / f"{run_id}.lock"
    with held_by_another_process(lock):
        RunStore(tmp_path).remove_finished_claims([run_id])
        assert lock.exists()  # another process holds it: not removed under it
    RunStore(tmp_path).remove_finished_claims([run_id])
    assert not (tmp_path / "claims").exists()


def test_continue_on_error_ends_in_one_line_after_the_report_of_what_finished(tmp_path):
    cfg = config(fail_cell="lr=0.001 pr=0.5", continue_on_error=True)
    shown = []
    with pytest.raises(RunFailedError) as info:
        run(cfg, tmp_path, results=shown.append)
    assert isinstance(info.value, TfpruneError)  # the tools show it as one error line
    message = str(info.value)
    failed = sorted(RunStore(tmp_path).errors())
    assert "\n" not in message and message.startswith("2 of 4 run(s) failed: ")
    assert f"{failed[0]} (lr=0.001 pr=0.5, seed " in message
    assert message.count("ArithmeticError: cell lr=0.001 pr=0.5 diverged") == 1  # grouped
    assert f"logs: {tmp_path / 'runs'}/<run id>/error.json" in message
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "PARTIAL: 2 finished runs of 4 in the grid" in summary
    assert len(shown) == 1 and "lr=0.01 pr=0.5" in shown[0]
