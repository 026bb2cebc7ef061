"""The binaries' command lines: --help, readable usage errors (no tracebacks), tfprune-train.

Every case starts a Python process that imports TensorFlow (~5-10 s on 2 cores), so only one case
per binary is in the fast subset; the rest are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_bin(name: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", f"tfprune.bin.{name}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


slow = pytest.mark.slow


@pytest.mark.parametrize(
    "name, flag",
    [
        ("compare", "--params_override"),
        pytest.param("report", "--output_dir", marks=slow),
        pytest.param("train", "--schedule", marks=slow),
    ],
)
def test_help(name, flag):
    proc = run_bin(name, "--help")
    assert proc.returncode in (0, 1), proc.stderr  # absl exits 1 after --help
    assert flag in proc.stdout and f"tfprune-{name}" in proc.stdout
    assert "Traceback" not in proc.stderr


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
        ("compare", ["--strategy=gpu"], "value should be one of"),
        ("compare", ["extra_arg"], "Unexpected arguments: extra_arg"),
        ("train", ["--output_dir=/tmp/x", "--model=resnet57"], "did you mean 'resnet56'"),
        ("train", ["--output_dir=/tmp/x", "--epochs=-3"], "recipe.epochs=-3 is negative"),
        (
            "train",
            ["--output_dir=/tmp/x", "--dataset=mnist", "--data_dir=/nonexistent"],
            "t10k-images-idx3-ubyte",
        ),
        ("report", ["--output_dir=/nonexistent"], "is not a folder"),
        ("report", [], "--output_dir"),
    ],
)
def test_bad_flags_are_usage_errors(name, args, message, tmp_path):
    proc = run_bin(name, *args)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert message in out, out[-2000:]
    assert "Traceback" not in out
    assert "--strategy: <" not in out  # one line naming the problem, not the flag list


@slow
def test_train_on_data_too_small_for_the_model_says_what_to_use_and_leaves_nothing(tmp_path):
    out = tmp_path / "lenet"
    proc = run_bin("train", "--model=lenet5", "--epochs=1", f"--output_dir={out}")
    assert proc.returncode == 2
    assert "tfprune-train: error: LeNet-5 needs images of at least 12x12" in proc.stderr
    assert "--dataset=mnist" in proc.stderr and "small_cnn" in proc.stderr
    assert "Traceback" not in proc.stderr and "--strategy: <" not in proc.stderr
    assert not any(p.is_file() for p in out.rglob("*"))  # no config.yaml/environment.json


def test_report_of_empty_folder(tmp_path):
    proc = run_bin("report", f"--output_dir={tmp_path}")
    assert proc.returncode == 2
    assert "tfprune-report: error: " in proc.stderr and "no finished runs" in proc.stderr
    assert "Traceback" not in proc.stderr


@slow
def test_train_saves_model_and_history(tmp_path):
    out = tmp_path / "base"
    proc = run_bin("train", f"--output_dir={out}", "--epochs=2", "--schedule=0:0.05,1:0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"] > 0 and 0.0 <= metrics["acc"] <= 1.0 and metrics["cached"] is False
    assert (out / "model.keras").is_file()
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,")
    assert len((out / "history.csv").read_text().splitlines()) == 3
    assert "recipe:" in (out / "config.yaml").read_text()
    assert (out / "base_models" / metrics["base_id"] / "meta.json").is_file()
    env = json.loads((out / "environment.json").read_text())
    assert env["packages"]["tensorflow"] and env["seeds"] == [1]
    # Second call reuses the cached base model.
    proc = run_bin("train", f"--output_dir={out}", "--epochs=2", "--schedule=0:0.05,1:0.01")
    assert proc.returncode == 0 and json.loads((out / "metrics.json").read_text())["cached"]


def test_prune_run_with_taylor_importance_uses_training_data():
    from tfprune.protocols.single_run import PruneRunConfig, run_prune

    config = PruneRunConfig(
        importance="taylor",
        train_epochs=1,
        retrain_epochs=1,
        weight_decay=1e-4,
        latency_batch=4,
    )
    lines = []
    result = run_prune(config, log=lines.append)
    base, small = result.rows[0], result.rows[-1]
    assert small["params"] < base["params"] and small["flops"] < base["flops"]
    assert 0.0 <= small["accuracy"] <= 1.0
    # Per-epoch progress of both phases, and a speed-up with its spread over interleaved rounds.
    assert sum(line.startswith("epoch 1/1") for line in lines) == 2
    sp = result.speedup
    assert sp["rounds"] >= 5 and 0 < sp["low"] <= sp["median"] <= sp["high"]
    assert "interleaved rounds" in result.table()


def test_progress_lines_follow_verbosity(capsys):
    from absl import flags
    from absl.testing import flagsaver

    from tfprune.bin.common import progress

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(verbosity=-1):  # warnings, errors and results only
        progress("hidden")
    with flagsaver.flagsaver(verbosity=0):  # the default
        progress("shown")
    assert capsys.readouterr().out == "shown\n"
