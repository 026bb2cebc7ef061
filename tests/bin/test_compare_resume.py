"""tfprune-compare end to end: kill and resume, the README's scratch_vs_prune command, repairs.

SIGKILL mid-grid (while a known run is held) and a rerun redo nothing finished; the README's
scratch_vs_prune command runs (SX-B included); a damaged record is named and repaired, another
config is refused, and dry runs show finished runs and size grids without the data files.

Every process imports TensorFlow (~5-10 s on 2 cores), so the test starts only the one it kills;
the resuming rerun, the do-nothing run and the report run in the test process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
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
seeds: [0]
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


# The grid of CONFIG run by ``run_protocol`` through ``execute``; the second run is held once it
# has started (claimed, its folder made), so the test's SIGKILL lands mid-grid whatever the speed.
HOLD_SECOND_RUN = """
import signal, sys
from tfprune.protocols import execute, resolve_config, run_protocol

config, out = sys.argv[1:]
started = []


def execute_or_hold(spec, workdir, **kwargs):
    started.append(spec.run_id())
    if len(started) == 2:
        print("holding", spec.run_id(), flush=True)
        while True:
            signal.pause()
    return execute(spec, workdir, **kwargs)


run_protocol(resolve_config(None, config), out, execute_fn=execute_or_hold, log=lambda _: None)
"""


@pytest.mark.slow
def test_kill_and_resume(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    log = tmp_path / "held.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_SECOND_RUN, str(config), str(out)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env(),
            cwd=REPO,
        )
    try:
        line = proc.stdout.readline()
        assert line.startswith("holding "), log.read_text()[-3000:]
        held = line.split()[1]
        # The store shows the grid mid-way: one run recorded, the held one claimed but not.
        finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/record.json")}
        assert len(finished) == 1 and held not in {p.parent.name for p in finished}
        assert (out / "runs" / held).is_dir() and not (out / "runs" / held / "record.json").exists()
        assert json.loads((out / "claims" / f"{held}.json").read_text())["pid"] == proc.pid
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "report").exists()

    # The rerun (the binary's main in this process: no second TensorFlow start-up) runs only the
    # killed run.
    args = [f"--config={config}", f"--output_dir={out}"]
    capsys.readouterr()
    assert compare_bin.BINARY(args) == 0
    printed = capsys.readouterr().out
    assert "1 already finished, 1 to run" in printed
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not redone
    assert len(list(out.glob("runs/*/record.json"))) == 2
    assert not list(out.glob("runs/*/.*.tmp")) and not list(out.glob("runs/*/error.json"))
    assert not (out / "claims").exists()
    # The results table is printed (the compact one; the full table is in the report) and the
    # report written.
    assert "\ncell " in printed and "L1 / lr=1e-2 / 1ep" in printed
    assert (out / "report" / "summary.md").is_file()
    assert "seeds:" in (out / "config.yaml").read_text()

    # A third run does nothing, and report regenerates the same table.
    assert compare_bin.BINARY(args) == 0
    assert "2 already finished, 0 to run" in capsys.readouterr().out
    assert report_bin.BINARY([f"--output_dir={out}"]) == 0
    assert "L1 / lr=1e-3 / 1ep" in capsys.readouterr().out


def readme_command(name: str) -> list[str]:
    """The README's ``tfprune-compare`` command that uses ``configs/<name>.yaml``, as argv."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if f"--config=configs/{name}.yaml" in x)
    argv = shlex.split(line.split("#")[0])
    assert argv[:3] == [".venv/bin/python", "-m", "tfprune.bin.compare"], argv
    return argv[3:]


def sxb_records(out: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    return [r for r in records if r["spec"]["cell"].startswith("SX-B")]


@pytest.mark.slow
@pytest.mark.acceptance  # minutes as written: CI runs it in its own step
def test_the_readme_scratch_vs_prune_command_runs_end_to_end(tmp_path):
    args = readme_command("scratch_vs_prune")
    out = tmp_path / "out"
    args = [a if not a.startswith("--output_dir=") else f"--output_dir={out}" for a in args]
    assert f"--output_dir={out}" in args
    done = subprocess.run(
        [sys.executable, "-m", "tfprune.bin.compare", *args],
        capture_output=True,
        text=True,
        env=env(),
        cwd=REPO,
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(out.glob("runs/*/record.json"))) == 16
    sxb = sxb_records(out)
    assert len(sxb) == 4 and all(0 < r["setup"]["base_epochs"] < 1 for r in sxb)
    assert "SX-B P5/kF15,0.02 / pr=0.9" in done.stdout and "n<3, not tested" in done.stdout
    assert (out / "report" / "summary.md").is_file() and not (out / "claims").exists()


# The README's scratch_vs_prune command, made small: 2 epochs, SX-B only, no Scratch-B.
SMALL = (
    "total_epochs=2,prune_epochs=[1],scratch_schedule='0:0.02,1:0.002',setups=[SX-B],"
    "scratch_b=false,jsv_samples=0"
)


def test_small_scratch_vs_prune_runs_repairs_and_guards_its_folder(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*readme_command("scratch_vs_prune"), f"--params_override={SMALL}"]
    args = [a if not a.startswith("--output_dir=") else f"--output_dir={out}" for a in args]
    assert compare_bin.BINARY(args) == 0
    printed = capsys.readouterr().out
    sxb = sxb_records(out)
    assert len(sxb) == 2 and all(0 < r["setup"]["base_epochs"] < 1 for r in sxb)
    assert "SX-B P1/kF1,0.02 / pr=0.9" in printed and "n<3, not tested" in printed
    scratch = [line for line in printed.splitlines() if line.startswith("Scratch-E / pr=0.9 seed")]
    assert len(scratch) == 2 and all("acc untrained" in line for line in scratch)
    assert not any("scratch" in line and "after pruning" in line for line in printed.splitlines())
    assert not (out / "claims").exists()

    # A truncated record: tfprune-report names it, and a rerun of the command repairs it.
    record = out / "runs" / sxb[0]["run_id"] / "record.json"
    record.write_text(record.read_text()[:100])
    assert report_bin.BINARY([f"--output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert f"- {record}: not valid JSON" in printed and "(partial: 3 of 4 runs finished)" in printed
    assert compare_bin.BINARY(args) == 0
    printed = capsys.readouterr().out
    assert f"{record}: not valid JSON" in printed and "3 already finished, 1 to run" in printed
    assert json.loads(record.read_text())["run_id"] == sxb[0]["run_id"]

    # Another config into the same folder: one line naming both, nothing changed.
    saved = (out / "config.yaml").read_text()
    assert compare_bin.BINARY([*args, "--params_override=seeds=[0]"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"tfprune-compare: error: --output_dir='{out}' holds the runs of")
    assert "seeds: [0, 1] there, [0] here" in err[0] and "--replace_config" in err[0]
    assert (out / "config.yaml").read_text() == saved

    # The dry run of the same command shows what is already finished.
    assert compare_bin.BINARY([*args, "--dry_run"]) == 0
    printed = capsys.readouterr().out
    assert "4 of the grid already finished" in printed and printed.count("(finished)") == 4
    assert "a run would fail" not in printed
    assert compare_bin.BINARY([*args, "--dry_run", "--params_override=seeds=[0]"]) == 0
    printed = capsys.readouterr().out
    assert f"# a run would fail: --output_dir='{out}' holds the runs of another config" in printed


def test_dry_run_sizes_a_cifar_grid_without_its_files(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TFPRUNE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no data folder here
    args = [
        "--protocol=finetune_lr",
        "--params_override=dataset=cifar10,model=small_cnn,methods=[l1],lrs=[0.01],"
        "budgets=[1],seeds=[0],baselines=false,jsv_samples=0",
        f"--output_dir={tmp_path / 'out'}",
        "--dry_run",
    ]
    assert compare_bin.BINARY(args) == 0
    printed = capsys.readouterr().out
    assert "# CIFAR-10 not found" in printed and "sized from the dataset's standard size" in printed
    assert "1 runs in the grid" in printed and "0 of the grid already finished" in printed
    assert "50,000" in printed or "50000" in printed or "5e+04" in printed
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_continue_on_error_ends_in_one_error_line(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*readme_command("scratch_vs_prune"), f"--params_override={SMALL}"]
    args = [a if not a.startswith("--output_dir=") else f"--output_dir={out}" for a in args]
    # Every run fails when it builds its model: the command still ends in one line.
    args.append("--params_override=runner.continue_on_error=true,model_kwargs={bogus: 1}")
    assert compare_bin.BINARY(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RunFailedError" not in err
    line = err.splitlines()[0]
    assert line.startswith("tfprune-compare: error: 4 of 4 run(s) failed: ")
    assert line.count("unexpected keyword argument 'bogus'") == 1  # one cause, named once
    assert f"logs: {out / 'runs'}/<run id>/error.json" in line
    assert len(list(out.glob("runs/*/error.json"))) == 4
