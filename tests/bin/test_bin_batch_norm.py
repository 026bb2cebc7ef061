"""BatchNorm statistics in the tools: held-out accuracy near the training accuracy.

Each tool runs in this process from a command line (``BINARY([...])``), on the embedded digits.
"""

from __future__ import annotations

import json

import pytest

from tfprune.bin import prune, train
from tfprune.compat import keras
from tfprune.models import small_cnn


def _table(out: str) -> dict[str, tuple[float, float | None]]:
    """``{row name: (accuracy, training accuracy or None)}`` of tfprune-prune's table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[3].endswith("%"):
            train_acc = None if cells[4] == "-" else float(cells[4].rstrip("%")) / 100
            rows[cells[0]] = (float(cells[3].rstrip("%")) / 100, train_acc)
    return rows


def test_train_small_cnn_for_three_epochs_tests_near_its_training_accuracy(tmp_path, capsys):
    out = tmp_path / "base"
    assert train.BINARY([f"--output_dir={out}", "--model=small_cnn", "--epochs=3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    last_epoch = (out / "history.csv").read_text().splitlines()[-1].split(",")
    assert metrics["train_acc"] == pytest.approx(float(last_epoch[2]))
    assert metrics["train_acc"] > 0.3  # it learnt something, so the comparison means something
    # Held-out within 10 points below the training accuracy (the running mean of the last
    # epoch, which the improving weights may beat), and the check agrees.
    assert metrics["acc"] >= metrics["train_acc"] - 0.10
    assert metrics["acc_gap"] == pytest.approx(metrics["train_acc"] - metrics["acc"])
    assert metrics["batch_norm_gap"] is False
    assert "warning:" not in capsys.readouterr().out


@pytest.mark.slow
def test_prune_reports_raw_and_recalibrated_accuracy_close_to_training(capsys):
    # A 5-epoch base (not the default 15): 99.6% training accuracy, and the figures below keep
    # wide margins (98.8% retrained, 0.1 pt test-train gap, 60% recalibrated vs 18% raw).
    assert prune.BINARY(["--sparsity=0.3", "--train_epochs=5", "--retrain_epochs=2"]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    raw, _ = rows["masked 30% (before retraining)"]
    recalibrated, _ = rows["masked 30% (before retraining, BN recalibrated)"]
    test_acc, train_acc = rows["masked, retrained, BN recalibrated"]
    assert train_acc is not None and train_acc > 0.9
    assert abs(test_acc - train_acc) <= 0.05  # close to the training accuracy
    assert rows["stripped (BN recalibrated)"][0] == pytest.approx(test_acc, abs=0.01)
    assert recalibrated >= raw  # re-estimated statistics fit the masked network
    assert "BN recalibrated: the BatchNormalization statistics were re-estimated" in out
    assert "warning:" not in out


def test_prune_without_recalibration_marks_no_figure(capsys):
    # an untrained base (0 epochs): only the table's rows are checked
    args = ["--train_epochs=0", "--retrain_epochs=1", "--norecalibrate_batch_norm"]
    assert prune.BINARY(args) == 0
    out = capsys.readouterr().out
    names = list(_table(out))
    assert names == [
        "base",
        "masked 50% (before retraining)",
        "masked, retrained",
        "stripped",
    ]
    assert "recalibrated" not in out


@pytest.mark.slow
def test_prune_warns_of_stale_statistics_that_recalibration_removes(tmp_path, capsys):
    # small_cnn with Keras' default BatchNorm momentum 0.99, untrained: two retraining epochs
    # leave its moving statistics describing the initial weights.
    config = small_cnn(seed=0).get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = 0.99
    path = tmp_path / "stale.keras"
    keras.Model.from_config(config).save(path)
    args = [f"--load_model={path}", "--sparsity=0.3", "--retrain_epochs=2"]

    assert prune.BINARY([*args, "--norecalibrate_batch_norm"]) == 0
    out = capsys.readouterr().out
    (warning,) = [line for line in out.splitlines() if line.startswith("warning:")]
    assert "of l1 30% seed 0" in warning and "momentum 0.99" in warning  # the retrained model
    assert "tfprune.recalibrate_batch_norm" in warning and "more steps" in warning
    test_acc, train_acc = _table(out)["masked, retrained"]
    assert train_acc - test_acc >= 0.2

    assert prune.BINARY(args) == 0
    out = capsys.readouterr().out
    assert "warning:" not in out
    test_acc, train_acc = _table(out)["masked, retrained, BN recalibrated"]
    assert test_acc >= train_acc - 0.10
