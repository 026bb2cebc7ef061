"""tfprune-compare end to end: SIGKILL mid-grid, rerun, nothing finished is redone.

Every ``tfprune-compare``/``tfprune-report`` process imports TensorFlow (~5-10 s on 2 cores), so
the test starts only the processes its checks need: the killed run and the resuming rerun; the
third, do-nothing run and the report run in the test process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfprune.bin import compare as compare_bin
from tfprune.bin import report as report_bin

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
protocol: finetune_lr
base: {schedule: "0:0.02", epochs: 1, batch_size: 32}
budgets: [1]
methods: [l1]
lrs: [0.01, 0.001]
seeds: [0, 1]
baselines: false
jsv_samples: 0
jsv_every_epoch: false
"""


def command(config: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tfprune.bin.compare",
        f"--config={config}",
        f"--output_dir={out}",
    ]


def env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))


@pytest.mark.slow
def test_kill_and_resume(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        command(config, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
        cwd=REPO,
    )
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None:
            if list(out.glob("runs/*/record.json")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the grid finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/record.json")}
    assert 1 <= len(finished) < 4
    assert not (out / "report").exists()

    rerun = subprocess.run(
        command(config, out), capture_output=True, text=True, env=env(), cwd=REPO, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(finished)} already finished, {4 - len(finished)} to run" in rerun.stdout
    records = list(out.glob("runs/*/record.json"))
    assert len(records) == 4
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not redone
    assert not list(out.glob("runs/*/.*.tmp")) and not list(out.glob("runs/*/error.json"))
    # The results table is printed (the compact one; the full table is in the report) and the
    # report written.
    assert "\ncell " in rerun.stdout and "L1 / lr=1e-2 / 1ep" in rerun.stdout
    assert (out / "report" / "summary.md").is_file()
    assert "seeds:" in (out / "config.yaml").read_text()

    # A third run does nothing (the binary's main in this process: no third TensorFlow start-up)
    # and report regenerates the same table.
    capsys.readouterr()
    assert compare_bin.BINARY([f"--config={config}", f"--output_dir={out}"]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out
    assert report_bin.BINARY([f"--output_dir={out}"]) == 0
    assert "L1 / lr=1e-3 / 1ep" in capsys.readouterr().out
