"""Every example in ``examples/`` runs as a user runs it, on small inputs.

Each script runs in a subprocess from a temporary folder (the copy a user makes), with the
flags its docstring gives for a quick try; the protocol config runs through
``python -m tfprune.bin.compare`` with a small ``--params_override``. A new file in
``examples/`` without a test here fails :func:`test_every_example_has_a_test`.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest
from core_helpers import run_checkout_python

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"

# The examples each test below runs (file names in examples/).
TESTED = {"prune_and_serve.py", "greg_cnn.py", "custom_layer_rule.py", "my_protocol.yaml"}


def run_example(args: list[str], folder: pathlib.Path) -> str:
    """Run ``python <args>`` in ``folder`` with this checkout's tfprune; return its stdout.

    The run must end without a traceback and without tfprune's warnings that a schedule
    removed nothing or removed filters that still carried weight.
    """
    done = run_checkout_python(args, folder, timeout=1800)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stderr[-3000:]}"
    for warning in ("NothingPrunedWarning", "SeparationWarning"):
        assert warning not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_every_example_has_a_test():
    assert {p.name for p in EXAMPLES.iterdir() if p.is_file()} == TESTED


def test_custom_layer_rule_makes_the_custom_layer_prunable(tmp_path):
    out = run_example([str(EXAMPLES / "custom_layer_rule.py")], tmp_path)
    before, after = out.split("prunable fraction of all filters:")[:2]
    assert "BLOCKED: conv1" in before and "not looked inside" in before
    assert "prunable: conv1" in after
    assert "scale1 keeps 8 of 16 channels" in out
    diff = float(re.search(r"masked and stripped outputs: (\S+)", out)[1])
    assert diff < 1e-5


def test_greg_cnn_sets_its_masks_and_halves_the_filters(tmp_path):
    out = run_example([str(EXAMPLES / "greg_cnn.py"), "--base_epochs=1"], tmp_path)
    assert "GReg phase: done" in out
    assert "params: 38,442 -> 10,010" in out
    before = float(re.search(r"mean JSV after pruning: +(\S+)", out)[1])
    after = float(re.search(r"mean JSV after OrthP: +(\S+)", out)[1])
    assert np.isfinite(before) and np.isfinite(after) and after != before


def test_prune_and_serve_writes_a_checked_serving_export(tmp_path):
    pytest.importorskip("tensorflow_serving", reason="the deploy extra is not installed")
    script = str(EXAMPLES / "prune_and_serve.py")
    out = run_example([script, "--image_size=32", "--steps=2", "--output=serving"], tmp_path)
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "serving" / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    before, after = re.search(r"params: ([\d,]+) -> ([\d,]+)", out).groups()
    assert int(after.replace(",", "")) < int(before.replace(",", "")) / 2
    assert float(re.search(r"speed-up in MACs: (\S+)x", out)[1]) > 1.5


@pytest.mark.slow
def test_my_protocol_config_runs_its_grid(tmp_path):
    # The example's own keys (dataset, model, methods, reference) as written; the quick try of
    # its header, without the Random and Scratch-E baselines and the JSV measurements, which the
    # protocol tests run (half the runs; about 14 of 32 CPU seconds).
    small = (
        "seeds=[0],base.epochs=1,base.schedule='0:0.02',budgets=[1],lrs=[0.01],"
        "jsv_every_epoch=false,baselines=false,jsv_samples=0"
    )
    out = run_example(
        [
            "-m",
            "tfprune.bin.compare",
            f"--config={EXAMPLES / 'my_protocol.yaml'}",
            "--output_dir=results/mine",
            f"--params_override={small}",
        ],
        tmp_path,
    )
    summary = json.loads((tmp_path / "results/mine/report/summary.json").read_text())
    assert "fpgm / lr=1e-2 / 1ep" in out and "L1 / lr=1e-2 / 1ep" in out
    assert summary  # the report of the finished grid
