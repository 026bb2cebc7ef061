"""tfprune-train's progress and defaults, runtime flags against overrides, the README command.

tfprune-train shows its epochs, the library and the tools share one seed, runtime flags meet
config overrides by one rule, and the README's tfprune-train command runs as written.
Tools run in this process on a command line (``BINARY([...])``).
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tfprune.bin import prune, train
from tfprune.configs import TrainConfig
from tfprune.protocols.execute import get_base_model
from tfprune.protocols.spec import RetrainRecipe, RunSpec


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
    spec = RunSpec(
        protocol="train",
        cell="base",
        dataset="digits",
        model="small_cnn",
        method="dense",
        ratio=0.0,
        retrain=RetrainRecipe(schedule="0:0.05", epochs=0),
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
