"""tfprune-export in-process (absl flagsaver), plus one fresh-process --verify run."""

from __future__ import annotations

import os

import pytest
from absl import app, flags
from absl.testing import flagsaver

from tfprune.bin import export as export_bin
from tfprune.deploy.serving import WARMUP_FILE

FLAGS = flags.FLAGS
pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")


@pytest.fixture(autouse=True)
def _parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS.mark_as_parsed()


def test_export_zoo_model_into_next_versions_and_refuse_existing(tmp_path, capsys):
    base = str(tmp_path / "serving")
    with flagsaver.flagsaver(model="lenet5", sparsity=0.5, base_dir=base):
        export_bin.main(["tfprune-export"])
    out = capsys.readouterr().out
    assert "version 1" in out and "signature_def['serving_default']" in out
    assert "Method name is: tensorflow/serving/predict" in out
    assert os.path.isfile(os.path.join(base, "1", WARMUP_FILE))
    with flagsaver.flagsaver(model="lenet5", base_dir=base, version=1):
        with pytest.raises(app.UsageError, match="already exists"):
            export_bin.main(["tfprune-export"])
    with flagsaver.flagsaver(model="lenet5", model_path="/x.keras", base_dir=base):
        with pytest.raises(app.UsageError, match="exactly one of"):
            export_bin.main(["tfprune-export"])
    assert sorted(os.listdir(base)) == ["1"]


@pytest.mark.slow  # starts a fresh Python process that imports TensorFlow (~10 s)
def test_verify_reloads_in_a_process_without_tfprune(tmp_path, capsys):
    base = str(tmp_path / "serving")
    with flagsaver.flagsaver(
        model="lenet5", sparsity=0.5, base_dir=base, verify=True, preprocess_scale=1 / 255.0
    ):
        export_bin.main(["tfprune-export"])
    out = capsys.readouterr().out
    assert "fresh process (no tfprune)" in out
    assert "signature_def['serving_preprocess']" in out and "dtype: DT_UINT8" in out
