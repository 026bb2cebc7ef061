"""tfprune-export run in this process from a command line, plus two fresh-process runs.

The serving guide's command runs here (--verify reloads its export in a fresh process); another
test runs the whole program in a fresh process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfprune.bin import export as export_bin
from tfprune.deploy.serving import WARMUP_FILE

pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
REPO = Path(__file__).resolve().parents[2]


def test_export_zoo_model_into_next_versions_and_refuse_existing(tmp_path, capsys):
    base = str(tmp_path / "serving")
    assert export_bin.BINARY(["--model=lenet5", "--sparsity=0.5", f"--base_dir={base}"]) == 0
    out = capsys.readouterr().out
    assert "version 1" in out and "signature_def['serving_default']" in out
    assert "Method name is: tensorflow/serving/predict" in out
    assert os.path.isfile(os.path.join(base, "1", WARMUP_FILE))
    assert export_bin.BINARY(["--model=lenet5", f"--base_dir={base}", "--version=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfprune-export: error: ") and "already exists" in err
    assert export_bin.BINARY(["--model=lenet5", "--model_path=/x.keras", f"--base_dir={base}"]) == 2
    assert "pass exactly one of --model_path and --model" in capsys.readouterr().err
    assert sorted(os.listdir(base)) == ["1"]


# The serving guide's command (docs/guides/serving.md, "From the command line"), as written but for
# /tmp, which goes into the test's folder; tests/test_readme.py leaves it to this test.
SERVING_GUIDE = (
    "--model=resnet20 --sparsity=0.5 --base_dir=/tmp/serving "
    "--tflite --onnx --verify --preprocess_scale=0.00392 --raw_dtype=uint8"
)


@pytest.mark.slow  # --verify starts a fresh Python process that imports TensorFlow (~10 s)
def test_the_serving_guides_command_verifies_in_a_process_without_tfprune(tmp_path, capsys):
    for module in ("tf2onnx", "onnxruntime"):
        pytest.importorskip(module, reason=f"the deploy extra ({module}) is not installed")
    args = [w.replace("=/tmp/", f"={tmp_path}/") for w in SERVING_GUIDE.split()]
    assert export_bin.BINARY(args) == 0
    out = capsys.readouterr().out
    assert "fresh process (no tfprune)" in out and "-> ok" in out
    assert "signature_def['serving_preprocess']" in out and "dtype: DT_UINT8" in out
    assert "tflite vs SavedModel" in out and "onnx vs SavedModel" in out
    version = tmp_path / "serving" / "1"
    assert (version / "model.tflite").is_file() and (version / "model.onnx").is_file()
    assert os.path.isfile(version / WARMUP_FILE)


@pytest.mark.slow  # starts a fresh Python process that imports TensorFlow (~10 s)
def test_the_program_prints_no_tensorflow_info_lines(tmp_path):
    """TensorFlow's and tf_keras' INFO lines (assets, sharding...) appear only at --verbosity=1."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "tfprune.bin.export", "--model=lenet5", f"--base_dir={tmp_path}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    python_info = re.findall(r"^I\d{4} \S+ +\d+ \S+\.py:\d+\].*$", proc.stderr, re.M)
    assert python_info == []
    assert "version 1" in proc.stdout
