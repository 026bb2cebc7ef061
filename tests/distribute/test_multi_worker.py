"""Two real worker processes on localhost with ``TF_CONFIG`` and ``MultiWorkerMirroredStrategy``.

Each worker (``multi_worker_job.py``) trains a one-shot masked small CNN and a GReg-1 run; both
must end with the same masks and weights, and the stripped model must compute what the masked
one does. Then both run a one-run protocol grid: they get the same record, and only the chief
writes the run store and the report.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

JOB = pathlib.Path(__file__).with_name("multi_worker_job.py")
TIMEOUT_S = 180  # a bound for hangs, not a speed goal: ~150 s at load 10 on 2 cores


def _free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run_workers(out_dir: pathlib.Path) -> None:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.pop("TF_XLA_FLAGS", None)
        log = open(out_dir / f"worker{index}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(JOB), str(out_dir)], env=env, stdout=log, stderr=log
            )
        )
    deadline = time.monotonic() + TIMEOUT_S
    try:  # until both are done, one fails (the other would wait for it forever) or time is up
        while time.monotonic() < deadline:
            codes = [proc.poll() for proc in procs]
            if all(c == 0 for c in codes) or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.5)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    for index, proc in enumerate(procs):
        if proc.returncode != 0:
            tail = (out_dir / f"worker{index}.log").read_text(errors="replace")[-3000:]
            pytest.fail(
                f"worker {index} exited with {proc.returncode} (negative: killed, after "
                f"{TIMEOUT_S} s or because the other worker failed):\n{tail}"
            )


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12))


@pytest.mark.slow
def test_two_workers_end_with_identical_masks_and_weights_and_strip_exactly(tmp_path):
    _run_workers(tmp_path)
    w0 = dict(np.load(tmp_path / "worker0.npz"))
    w1 = dict(np.load(tmp_path / "worker1.npz"))
    assert w0.keys() == w1.keys()
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    for run in ("plain", "greg"):
        pruned = [k for k in w0 if k.startswith(f"{run}_pruned")]
        assert pruned, f"{run}: no pruned groups recorded"
        for k in pruned:  # half of each group's filters masked, by both workers alike
            assert w0[k].sum() == int(np.ceil(0.5 * w0[k].size)), k
        assert int(w0[f"{run}_stripped_params"]) < int(w0[f"{run}_masked_params"])
        assert _rel_err(w0[f"{run}_masked_out"], w0[f"{run}_stripped_out"]) <= 1e-5
    assert bool(w0["greg_phase_done"])
    # The protocol run: both workers ran it in lockstep; only the chief (worker 0) wrote files.
    run_id = str(w0["grid_run_id"])
    assert str(w1["grid_run_id"]) == run_id
    assert float(w0["grid_final_acc"]) == float(w1["grid_final_acc"])
    chief, other = tmp_path / "grid0", tmp_path / "grid1"
    record = json.loads((chief / "runs" / run_id / "record.json").read_text())
    assert record["metrics"]["final_acc"] == pytest.approx(float(w0["grid_final_acc"]))
    assert (chief / "config.yaml").is_file() and (chief / "report" / "summary.md").is_file()
    assert not (other / "runs").exists() and not (other / "config.yaml").exists()
    assert not (other / "report").exists()
    # training moved the weights: the run did real synchronized steps, not a no-op
    assert not np.allclose(w0["plain_masked_out"], w0["greg_masked_out"])
