"""tfprune-train's progress and defaults, runtime flags against overrides, the README command.

tfprune-train shows its epochs, the library and the tools share one seed, runtime flags meet
config overrides by one rule, and the README's tfprune-train command runs as written.
Tools run in this process on a command line (``BINARY([...])``).
"""

from __future__ import annotations

import csv
import json
import shlex
import tempfile
from pathlib import Path

import numpy as np
import pytest
from core_helpers import tool_error_line

from tfprune.bin import compare, prune, train
from tfprune.configs import TrainConfig
from tfprune.protocols.execute import get_base_model
from tfprune.protocols.spec import BaseSpec

REPO = Path(__file__).resolve().parents[2]
SMALL_GRID = "methods=[l1],lrs=[0.01],budgets=[1],seeds=[0],baselines=false"


def error_line(capsys, tool: str) -> str:
    """The tool's one-line error (asserts there is no traceback)."""
    return tool_error_line(capsys.readouterr().err, tool)


def read_history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- tfprune-train: one line per epoch, held-out columns in history.csv -------------------------


def test_train_prints_each_epoch_and_records_the_held_out_accuracy(tmp_path, capsys):
    out = tmp_path / "base"
    assert train.BINARY(["--epochs=3", "--schedule=0:0.05", f"--output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    for line in lines:
        assert all(f"  {key} " in line for key in ("loss", "accuracy", "val_accuracy")), line
    assert "held-out test split: digits, seed 0" in printed
    rows = read_history(out / "history.csv")
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    # The held-out column is the test score: after the last epoch it is the saved model's.
    metrics = json.loads((out / "metrics.json").read_text())
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(metrics["acc"], abs=1e-6)
    shown = [float(line.split("val_accuracy ")[1].split()[0]) for line in lines]
    assert shown == pytest.approx([float(row["val_accuracy"]) for row in rows], abs=5e-4)


def test_protocol_base_training_stays_quiet_and_trains_the_same_weights():
    spec = BaseSpec(
        dataset="digits",
        model="small_cnn",
        seed=0,
        base={"schedule": "0:0.05", "epochs": 2, "batch_size": 64},
    )
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        quiet = get_base_model(spec, a, log=lambda _: None)
        shown = get_base_model(spec, b, log=lambda _: None, progress=lines.append)
    assert "val_accuracy" not in quiet.meta["history"]  # what every protocol run does
    assert len(shown.meta["history"]["val_accuracy"]) == 2 and len(lines) == 2
    for x, y in zip(quiet.model.get_weights(), shown.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert quiet.meta["base_id"] == shown.meta["base_id"]


def test_the_library_trains_with_the_tools_seed():
    assert TrainConfig().seed == train.FLAGS["seed"].default == prune.FLAGS["seed"].default


# -- --mixed_precision / --jit_compile with runtime.* in a config or an override ----------------


@pytest.mark.parametrize(
    "flag, override",
    [
        ("--mixed_precision", "runtime.mixed_precision=false"),
        ("--mixed_precision", "runtime.mixed_precision=float32"),
        ("--nomixed_precision", "runtime.mixed_precision=mixed_bfloat16"),
        ("--jit_compile", "runtime.jit_compile=false"),
        ("--nojit_compile", "{runtime: {jit_compile: true}}"),
    ],
)
def test_a_runtime_flag_and_an_override_that_disagree_are_refused_naming_both(
    flag, override, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["--dry_run", flag, f"--params_override={override}", f"--output_dir={out}"]
    assert compare.BINARY(args) == 2
    line = error_line(capsys, "compare")
    name = flag.removeprefix("--").removeprefix("no")
    assert flag in line and f"runtime.{name}=" in line and "disagree" in line, line
    assert "default" not in line
    assert not out.exists()


def resolved_runtime(capsys, *args: str) -> str:
    """The ``runtime:`` line of the config a dry run prints."""
    assert compare.BINARY(["--dry_run", f"--params_override={SMALL_GRID}", *args]) == 0
    return next(x for x in capsys.readouterr().out.splitlines() if x.startswith("runtime:"))


def test_a_runtime_flag_agrees_with_an_override_naming_the_policy_and_beats_the_file(
    tmp_path, capsys
):
    # The flag says "mixed", the override picks which mixed policy.
    line = resolved_runtime(
        capsys, "--mixed_precision", "--params_override=runtime.mixed_precision=mixed_float16"
    )
    assert "mixed_precision: mixed_float16" in line
    assert "jit_compile: true" in resolved_runtime(
        capsys, "--jit_compile", "--params_override=runtime.jit_compile=true"
    )
    config = tmp_path / "mixed.yaml"
    runtime = "runtime: {mixed_precision: true, jit_compile: true}"
    config.write_text(f"protocol: finetune_lr\n{runtime}\n")
    # The command line wins over the file...
    line = resolved_runtime(capsys, f"--config={config}", "--nomixed_precision", "--nojit_compile")
    assert "mixed_precision: false" in line and "jit_compile: false" in line
    # ...and a file's policy name is kept under --mixed_precision.
    config.write_text("protocol: finetune_lr\nruntime: {mixed_precision: mixed_float16}\n")
    line = resolved_runtime(capsys, f"--config={config}", "--mixed_precision")
    assert "mixed_precision: mixed_float16" in line
    # A file's true and an override's policy name are both what the field takes.
    config.write_text("protocol: finetune_lr\nruntime: {mixed_precision: true}\n")
    line = resolved_runtime(
        capsys, f"--config={config}", "--params_override=runtime.mixed_precision=mixed_float16"
    )
    assert "mixed_precision: mixed_float16" in line


def test_a_value_of_the_wrong_kind_is_compared_with_the_value_it_replaces(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("protocol: finetune_lr\nrunner: {continue_on_error: true}\n")
    args = [f"--config={config}", "--params_override=runner.continue_on_error=[1]", "--dry_run"]
    assert compare.BINARY(args) == 2
    line = error_line(capsys, "compare")
    assert "'runner.continue_on_error' must be a bool like its value so far True" in line, line
    assert "default" not in line
    assert compare.BINARY(["--dry_run", "--params_override=runtime=5"]) == 2
    assert "config field 'runtime' must be a mapping, got 5" in error_line(capsys, "compare")


# -- the README's tfprune-train command ---------------------------------------------------------


def readme_train_args() -> list[str]:
    """The flags of the README's ``python -m tfprune.bin.train`` line."""
    lines = (REPO / "README.md").read_text().splitlines()
    command = next(line for line in lines if " -m tfprune.bin.train " in line)
    words = shlex.split(command, comments=True)
    return words[words.index("tfprune.bin.train") + 1 :]


def test_the_readme_train_command_fits_the_default_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train.BINARY([*readme_train_args(), "--epochs=1"]) == 0, capsys.readouterr().err
    assert (tmp_path / "base" / "model.keras").is_file()
