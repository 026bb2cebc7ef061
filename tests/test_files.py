"""Result files: atomic, readable as the umask allows, and clear errors for bad output folders."""

from __future__ import annotations

import os
import stat

import pytest

from tfprune.errors import ConfigError
from tfprune.files import atomic_write_json, atomic_write_text, ensure_output_dir, staging_dir
from tfprune.plan import PruningPlan
from tfprune.protocols.single_run import PruneRunConfig


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_staging_folders_follow_the_umask(tmp_path, umask_022):
    text = atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    data = atomic_write_json(tmp_path / "y.json", {"v": 1})
    folder = staging_dir(tmp_path / "models", "resnet")
    assert _mode(text) == _mode(data) == 0o644  # not mkstemp's private 0600
    assert _mode(folder) == 0o755 and os.listdir(folder) == []
    assert text.read_text() == "hello" and sorted(os.listdir(tmp_path / "a")) == ["x.txt"]


def test_saved_plans_are_written_atomically_with_the_umask(tmp_path, umask_022):
    plan = PruningPlan(model_name="m", layers={}, groups=[])
    plan.save(tmp_path / "plan.json")
    assert _mode(tmp_path / "plan.json") == 0o644
    assert sorted(os.listdir(tmp_path)) == ["plan.json"]  # no temporary file left behind


def test_output_dir_that_is_a_file_or_under_one_names_the_flag(tmp_path):
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"--output_dir=.*is a file; give a folder"):
        ensure_output_dir(afile)
    with pytest.raises(ConfigError, match=r"--export_dir=.*is under the file"):
        ensure_output_dir(afile / "sub", "export_dir")
    made = ensure_output_dir(tmp_path / "new" / "deep")
    assert made.is_dir()
    assert not ensure_output_dir(tmp_path / "later", create=False).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_dir_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="not writable"):
        ensure_output_dir(locked / "out")


def test_prune_checks_its_export_dir_before_training(tmp_path):
    afile = tmp_path / "model"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="--export_dir"):
        PruneRunConfig(export_dir=str(afile)).validate()
