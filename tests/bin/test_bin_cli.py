"""The tools' command lines: help, readable usage errors (no tracebacks), tfprune-train.

Each tool runs in this process from a command line (``BINARY([...])``), as it parses and runs in
its own program; one test starts fresh processes to check that help and flag errors are answered
without loading TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

from tfprune.bin import compare, export, prune, report, train
from tfprune.bin.common import Binary, progress
from tfprune.choices import IMPORTANCE_NAMES, STRATEGIES
from tfprune.distribute import get_strategy
from tfprune.errors import InvalidArgumentError, RunFailedError
from tfprune.importance import criteria, get_importance

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"compare": compare, "export": export, "prune": prune, "report": report, "train": train}
A_FLAG = {
    "compare": "--params_override",
    "export": "--base_dir",
    "prune": "--importance",
    "report": "--output_dir",
    "train": "--schedule",
}


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_help_lists_the_tools_own_and_shared_flags(name, capsys):
    assert TOOLS[name].BINARY(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"tfprune-{name}: ")
    assert A_FLAG[name] in out and "--helpfull" in out
    assert ("--[no]jit_compile" in out) == (name in ("compare", "prune", "train"))
    assert TOOLS[name].BINARY(["-h"]) == 0 and capsys.readouterr().out == out
    assert TOOLS[name].BINARY(["--helpfull"]) == 0
    assert "--verbosity" in capsys.readouterr().out  # absl's flags too
    # The work is in tfprune/bin/jobs/<name>.py (the BUILD generator relies on the name).
    assert TOOLS[name].BINARY.job == f"tfprune.bin.jobs.{name}"


def test_help_and_flag_errors_never_load_tensorflow():
    """What makes --help instant: the tool modules load absl and tfprune.choices only."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for name in sorted(TOOLS):
        for args, code in ((["--help"], 0), (["--no_such_flag"], 2)):
            proc = subprocess.run(
                [sys.executable, "-X", "importtime", "-m", f"tfprune.bin.{name}", *args],
                capture_output=True,
                text=True,
                env=env,
                cwd=REPO,
                timeout=120,
            )
            assert proc.returncode == code, proc.stderr[-2000:]
            imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
            assert "tensorflow" not in imported and "tf_keras" not in imported, name
            if code:
                assert f"tfprune-{name}: error: Unknown command line flag 'no_such_flag'" in (
                    proc.stderr
                )


def test_flag_choices_are_what_the_library_implements():
    assert tuple(criteria._REGISTRY) == IMPORTANCE_NAMES
    for name in IMPORTANCE_NAMES:
        assert callable(get_importance(name))
    assert get_strategy("default") is not None
    for tool in (compare, prune, train):
        assert tool.FLAGS["strategy"].parser.enum_values == list(STRATEGIES)
    assert prune.FLAGS["importance"].parser.enum_values == list(IMPORTANCE_NAMES)


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("compare", ["--protocol=finetune_lrr"], "unknown protocol 'finetune_lrr'"),
        ("compare", ["--num_shards=2", "--shard_index=2"], "shard_index must be in [0, 1]"),
        (
            "compare",
            ["--config=/nonexistent.yaml"],
            "config file '/nonexistent.yaml' does not exist",
        ),
        ("compare", [f"--config={REPO / 'configs'}"], "configs' is a folder; pass one YAML"),
        ("compare", ["--strategy=gpu"], "value should be one of"),
        ("compare", ["extra_arg"], "Unexpected arguments: extra_arg"),
        ("prune", ["--sparsity=abc"], "flag --sparsity=abc: could not convert string to float"),
        ("train", ["--output_dir=/tmp/x", "--model=resnet57"], "did you mean 'resnet56'"),
        (
            "train",
            ["--output_dir=/tmp/x", "--epochs=-3"],
            "recipe.epochs must be an integer >= 0, got -3",
        ),
        (
            "train",
            ["--output_dir=/tmp/x", "--dataset=mnist", "--data_dir=/nonexistent"],
            "t10k-images-idx3-ubyte",
        ),
        ("report", ["--output_dir=/nonexistent"], "is not a folder"),
        ("report", [], "--output_dir"),
        ("export", ["--base_dir=/tmp/x", "--sparsity=1.5"], "--sparsity must be in [0, 1)"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(name, args, message, capsys):
    assert TOOLS[name].BINARY(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"tfprune-{name}: error: ")
    assert message in captured.err, captured.err[-2000:]
    assert "Traceback" not in captured.err
    assert "--strategy: <" not in captured.err  # one line naming the problem, not the flag list


def test_flag_values_do_not_leak_between_runs(tmp_path, capsys):
    assert report.BINARY([f"--output_dir={tmp_path}", "--noplots"]) == 2
    capsys.readouterr()
    assert not report.FLAGS.is_parsed() and report.FLAGS["plots"].value is True
    assert report.FLAGS["output_dir"].value is None


def test_train_on_data_too_small_for_the_model_says_what_to_use_and_leaves_nothing(
    tmp_path, capsys
):
    out = tmp_path / "lenet"
    assert train.BINARY(["--model=lenet5", "--epochs=1", f"--output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "tfprune-train: error: LeNet-5 needs images of at least 12x12" in err
    assert "--dataset=mnist" in err and "small_cnn" in err
    assert "Traceback" not in err and "--strategy: <" not in err
    assert not any(p.is_file() for p in out.rglob("*"))  # no config.yaml/environment.json


def test_report_of_empty_folder(tmp_path, capsys):
    assert report.BINARY([f"--output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "tfprune-report: error: " in err and "no finished runs" in err


@pytest.mark.slow
def test_train_saves_model_and_history(tmp_path, capsys):
    out = tmp_path / "base"
    args = [f"--output_dir={out}", "--epochs=2", "--schedule=0:0.05,1:0.01"]
    assert train.BINARY(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"] > 0 and 0.0 <= metrics["acc"] <= 1.0 and metrics["cached"] is False
    assert (out / "model.keras").is_file()
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,")
    assert len((out / "history.csv").read_text().splitlines()) == 3
    assert "recipe:" in (out / "config.yaml").read_text()
    assert (out / "base_models" / metrics["base_id"] / "meta.json").is_file()
    env = json.loads((out / "environment.json").read_text())
    assert env["packages"]["tensorflow"] and env["seeds"] == [0]  # the tools' one default seed
    # Second call reuses the cached base model.
    assert train.BINARY(args) == 0
    assert json.loads((out / "metrics.json").read_text())["cached"]


def test_prune_run_with_taylor_importance_uses_training_data(capsys):
    args = ["--importance=taylor", "--train_epochs=1", "--retrain_epochs=1", "--weight_decay=1e-4"]
    assert prune.BINARY(args) == 0
    out = capsys.readouterr().out
    # Per-epoch progress of both phases, and a speed-up with its spread over interleaved rounds.
    assert sum(line.startswith("epoch 1/1") for line in out.splitlines()) == 2
    assert "interleaved rounds" in out and "channel groups pruned" in out
    # Nothing is exported without --export_dir, and the table and last line say so.
    assert "| stripped (BN recalibrated) |" in out and "(exported" not in out and "{" not in out
    assert out.rstrip().splitlines()[-1].startswith("nothing was saved (--export_dir")


def test_progress_lines_follow_verbosity(capsys):
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(verbosity=-1):  # warnings, errors and results only
        progress("hidden")
    with flagsaver.flagsaver(verbosity=0):  # the default
        progress("shown")
    assert capsys.readouterr().out == "shown\n"
    # --verbosity on a tool's command line reaches the same flag, and is restored afterwards.
    verbosity = flags.FLAGS["verbosity"]
    before = (verbosity.value, verbosity.using_default_value)
    assert report.BINARY(["--verbosity=-1", "--output_dir=/nonexistent"]) == 2
    assert (verbosity.value, verbosity.using_default_value) == before


def _failing_tool(monkeypatch, error: BaseException) -> Binary:
    """A tool (the tools' own Binary) whose job raises ``error``."""
    job = types.ModuleType("tfprune_test_failing_job")

    def main(args: flags.FlagValues) -> None:
        raise error

    job.main = main
    monkeypatch.setitem(sys.modules, job.__name__, job)
    return Binary("tfprune-failing", "Fails.", flags.FlagValues(), job=job.__name__)


@pytest.mark.parametrize(
    "error,line",
    [
        (
            InvalidArgumentError("ratio must be below 1, got 2; pass a ratio in [0, 1)"),
            "tfprune-failing: error: ratio must be below 1, got 2; pass a ratio in [0, 1)",
        ),
        (
            RunFailedError({"abc123": "TypeError: bad\nkwarg"}, "out", total=2),
            "tfprune-failing: error: 1 of 2 run(s) failed: abc123: TypeError: bad kwarg (logs: "
            "out/runs/<run id>/error.json; rerunning the same command retries only the "
            "unfinished runs)",
        ),
    ],
    ids=["library_error", "run_failed"],
)
def test_a_library_error_is_one_line_without_the_flags_hint(monkeypatch, capsys, error, line):
    assert _failing_tool(monkeypatch, error)([]) == 2
    assert capsys.readouterr().err == line + "\n"


def test_any_other_error_keeps_its_traceback(monkeypatch, capsys):
    # A ValueError from TensorFlow, numpy or a bug is not a usage error: it propagates.
    tool = _failing_tool(monkeypatch, ValueError("shapes (2,3) and (4,) not aligned"))
    with pytest.raises(ValueError, match="not aligned"):
        tool([])
    assert "error:" not in capsys.readouterr().err
