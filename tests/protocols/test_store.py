"""Run store: atomic writes, finished iff record.json, stale partial runs wiped, environment."""

from __future__ import annotations

import json
import os

import pytest

from tfprune.files import atomic_write_json
from tfprune.protocols import store as store_lib
from tfprune.protocols.store import RunStore, history_to_csv


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = atomic_write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1.5, 2]})
    assert json.loads(path.read_text()) == {"a": [1.5, 2], "b": 1}
    assert sorted(os.listdir(tmp_path / "a")) == ["x.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = atomic_write_json(tmp_path / "x.json", {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_history_csv_pads_short_metrics():
    text = history_to_csv({"loss": [1.0, 0.5], "jsv_mean": [3.0, 2.0, 1.0], "note": "x"})
    assert text.splitlines() == ["epoch,loss,jsv_mean", "1,1.0,3.0", "2,0.5,2.0", "3,,1.0"]


def test_run_lifecycle_finished_only_after_record(tmp_path):
    s = RunStore(tmp_path)
    env = store_lib.environment_info(seeds=[1], strategy="default", shard_index=1, num_shards=2)
    assert env["shard"] == {"index": 1, "count": 2}
    assert set(env["packages"]) >= {"tensorflow", "tf-keras", "numpy", "keras-tuner"}
    assert env["packages"]["numpy"]
    folder = s.prepare("abc", {"cell": "c"}, env)
    assert not s.is_finished("abc")
    assert s.finished_ids() == [] and s.run_ids() == ["abc"]
    s.write_history("abc", {"accuracy": [0.5, 0.6]})
    assert not s.is_finished("abc")
    s.write_record("abc", {"spec": {"cell": "c"}, "metrics": {"final_acc": 0.6}})
    assert s.is_finished("abc") and s.finished_ids() == ["abc"]
    assert sorted(os.listdir(folder)) == [
        "environment.json",
        "history.csv",
        "record.json",
        "spec.json",
    ]
    assert s.load_record_dicts()[0]["metrics"]["final_acc"] == 0.6
    with pytest.raises(FileExistsError, match="already finished"):
        s.prepare("abc", {}, env)


def test_prepare_wipes_stale_partial_run(tmp_path):
    s = RunStore(tmp_path)
    folder = s.prepare("r1", {"a": 1}, {})
    (folder / "junk.tmp").write_text("half written")
    s.write_error("r1", ValueError("boom"))
    assert s.errors()["r1"]["type"] == "ValueError"
    s.prepare("r1", {"a": 2}, {})
    assert sorted(os.listdir(folder)) == ["environment.json", "spec.json"]
    assert json.loads((folder / "spec.json").read_text()) == {"a": 2}
    assert s.errors() == {}


def test_write_record_clears_error(tmp_path):
    s = RunStore(tmp_path)
    s.prepare("r1", {}, {})
    try:
        raise RuntimeError("first try failed")
    except RuntimeError as err:
        path = s.write_error("r1", err)
    assert "first try failed" in json.loads(path.read_text())["traceback"]
    s.write_record("r1", {"metrics": {}})
    assert not path.exists() and s.errors() == {}


def test_a_non_writing_store_reads_but_writes_nothing(tmp_path):
    chief = RunStore(tmp_path)
    chief.prepare("done", {"seed": 1}, {"env": 1})
    chief.write_record("done", {"metrics": {"final_acc": 0.5}})
    worker = RunStore(tmp_path, writer=False)
    assert worker.is_finished("done") and worker.load_record_dict("done")["metrics"]
    worker.prepare("new", {"seed": 2}, {"env": 2})
    worker.write_history("new", {"loss": [1.0]})
    worker.write_record("new", {"metrics": {}})
    worker.write_error("new", RuntimeError("x"))
    assert not (tmp_path / "runs" / "new").exists()
    assert worker.finished_ids() == ["done"]
