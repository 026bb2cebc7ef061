"""The run store: one directory per run, a run is finished iff its ``record.json`` can be read.

Layout of an output directory::

    <output_dir>/config.yaml              the resolved protocol config
    <output_dir>/grid.json                every run of the grid (id, cell, seed)
    <output_dir>/runs/<run_id>/spec.json          what the run is (RunSpec.to_dict())
    <output_dir>/runs/<run_id>/environment.json   package versions, git commit, seeds, shard
    <output_dir>/runs/<run_id>/history.csv        per-epoch metrics
    <output_dir>/runs/<run_id>/error.json         only when the run raised
    <output_dir>/runs/<run_id>/record.json        written atomically and LAST
    <output_dir>/claims/<run_id>.lock             held while a process runs the run
    <output_dir>/claims/<run_id>.json             who holds it (host, pid, start time)

Every file is written through a temporary file in the same folder and ``os.replace``, so a
reader never sees half a file. ``record.json`` is written last: a run killed at any moment
leaves either a finished run or a stale partial folder, which :meth:`RunStore.prepare` wipes
before the run starts again. A crash therefore loses at most the run in progress.

A process runs a run only while it holds the run's claim, an operating-system file lock
(:meth:`RunStore.claim`): two copies of one command, or shards that overlap, never run the same
run twice, and the lock of a process that dies (even by SIGKILL) is released by the system. The
claim files of a finished run are removed by whoever holds its claim
(:meth:`RunStore.release`, :meth:`RunStore.remove_finished_claims`), so a finished grid leaves no
``claims/`` folder.

A ``record.json`` that cannot be read (truncated, empty, not a record) does not count as
finished: :meth:`RunStore.damaged_records` names it, a rerun runs the run again, and
:meth:`RunStore.problems` lists it with the other side files that are missing or unreadable.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from tfprune.errors import InvalidArgumentError, TfpruneError
from tfprune.files import atomic_write_json, atomic_write_text
from tfprune.protocols.spec import RunRecord, RunSpec

__all__ = [
    "CLAIMS_DIR",
    "ENVIRONMENT_FILE",
    "ERROR_FILE",
    "GRID_FILE",
    "HISTORY_FILE",
    "RECORD_FILE",
    "SPEC_FILE",
    "RunStore",
    "environment_info",
    "history_to_csv",
]

RUNS_DIR = "runs"
SPEC_FILE = "spec.json"
ENVIRONMENT_FILE = "environment.json"
HISTORY_FILE = "history.csv"
RECORD_FILE = "record.json"
CLAIMS_DIR = "claims"
ERROR_FILE = "error.json"
GRID_FILE = "grid.json"

_PACKAGES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "keras-tuner", "numpy")


def history_to_csv(history: Mapping[str, Sequence[Any]]) -> str:
    """Per-epoch history (metric -> list of values) as CSV text, one row per epoch.

    Metrics with fewer values than the longest list get empty cells in the missing rows.
    """
    keys = [k for k in history if isinstance(history[k], (list, tuple))]
    n = max((len(history[k]) for k in keys), default=0)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for i in range(n):
        row: list[Any] = [i + 1]
        for k in keys:
            values = history[k]
            row.append(values[i] if i < len(values) else "")
        writer.writerow(row)
    return buf.getvalue()


def _git_commit() -> str | None:
    """The git commit of the tfprune checkout, or None when not in a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return commit + ("-dirty" if dirty else "")


_GIT_COMMIT: list[str | None] = []


def environment_info(
    *,
    seeds: Sequence[int] | int | None = None,
    strategy: str | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What produced a run: package versions, Python, platform, git commit, seeds, shard."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if not _GIT_COMMIT:
        _GIT_COMMIT.append(_git_commit())
    info: dict[str, Any] = {
        "packages": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "git_commit": _GIT_COMMIT[0],
        "seeds": list(seeds) if isinstance(seeds, (list, tuple)) else seeds,
        "strategy": strategy,
        "shard": {"index": int(shard_index), "count": int(num_shards)},
        "pid": os.getpid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        info.update(extra)
    return info


class RunStore:
    """The ``runs/`` folder of one output directory.

    Args:
      output_dir: the protocol's output directory (created if missing).
      writer: whether this process writes (``False`` on a non-chief multi-worker process: it
        reads the store like the chief, and its writes are skipped, so each file is written
        once).
    """

    def __init__(self, output_dir: str | os.PathLike[str], writer: bool = True):
        self.output_dir = Path(output_dir)
        self.runs_dir = self.output_dir / RUNS_DIR
        self.writer = bool(writer)

    def run_dir(self, run_id: str) -> Path:
        """Folder of run ``run_id``."""
        return self.runs_dir / run_id

    def is_finished(self, run_id: str) -> bool:
        """Whether ``run_id`` has a readable ``record.json`` (the only mark of a finished run)."""
        return self._record_problem(run_id) is None

    def _record_problem(self, run_id: str) -> str | None:
        """Why the ``record.json`` of ``run_id`` is not a finished record (None when it is)."""
        path = self.run_dir(run_id) / RECORD_FILE
        if not path.is_file():
            return "missing"
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError) as err:
            return f"unreadable ({err})"
        except ValueError as err:
            return "empty" if not path.stat().st_size else f"not valid JSON ({err})"
        if not isinstance(data, dict):
            return f"not a record (a JSON {type(data).__name__})"
        return None

    def damaged_records(self, run_ids: Sequence[str] | None = None) -> dict[str, str]:
        """``{run_id: "<path>: why"}`` for each ``record.json`` that exists but cannot be read.

        Such a run counts as unfinished: a rerun of the same command runs it again.
        """
        out = {}
        for run_id in self.run_ids() if run_ids is None else sorted(run_ids):
            problem = self._record_problem(run_id)
            if problem not in (None, "missing"):
                out[run_id] = f"{self.run_dir(run_id) / RECORD_FILE}: {problem}"
        return out

    def run_ids(self) -> list[str]:
        """Sorted ids of every run folder, finished or not."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir())

    def finished_ids(self) -> list[str]:
        """Sorted ids of the finished runs."""
        return [r for r in self.run_ids() if self.is_finished(r)]

    def prepare(self, run_id: str, spec: Mapping[str, Any], environment: Mapping[str, Any]) -> Path:
        """Start (or restart) run ``run_id``: wipe a stale partial folder, write spec/environment.

        Raises:
          FileExistsError: the run is already finished (callers skip finished runs).
        """
        folder = self.run_dir(run_id)
        if self.is_finished(run_id):
            raise FileExistsError(f"run {run_id} is already finished ({folder / RECORD_FILE})")
        if not self.writer:
            return folder
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        atomic_write_json(folder / SPEC_FILE, dict(spec))
        atomic_write_json(folder / ENVIRONMENT_FILE, dict(environment))
        return folder

    def claim(self, run_id: str) -> FileLock | None:
        """Take the claim of ``run_id`` for this process, or ``None`` if another process holds it.

        Release it with ``.release()`` once the run is recorded (or failed). A non-writing store
        (a non-chief multi-worker process) does not claim.
        """
        if not self.writer:
            return None
        folder = self.output_dir / CLAIMS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / f"{run_id}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return None
        atomic_write_json(
            folder / f"{run_id}.json",
            {
                "host": platform.node(),
                "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        return lock

    def _claim_files(self, run_id: str) -> list[Path]:
        folder = self.output_dir / CLAIMS_DIR
        return [folder / f"{run_id}.lock", folder / f"{run_id}.json"]

    def release(self, run_id: str, lock: FileLock) -> None:
        """Release the claim ``lock`` of ``run_id``; a finished run's claim files are removed.

        They are removed while the lock is held: a process that opened the lock file before
        cannot take it, and one that creates it anew finds the run finished and removes it again.
        """
        try:
            if self.is_finished(run_id):
                for path in self._claim_files(run_id):
                    path.unlink(missing_ok=True)
        finally:
            lock.release()

    def remove_finished_claims(self, run_ids: Sequence[str]) -> None:
        """Remove the claim files of the finished runs among ``run_ids`` no process holds.

        The ``claims/`` folder goes too once it is empty. Safe while other shards run: a held
        claim is left alone, and a run's claim is removed only while holding it.
        """
        folder = self.output_dir / CLAIMS_DIR
        if not self.writer or not folder.is_dir():
            return
        for run_id in run_ids:
            if not self._claim_files(run_id)[0].exists() or not self.is_finished(run_id):
                continue
            lock = FileLock(str(folder / f"{run_id}.lock"), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue
            self.release(run_id, lock)
        try:
            folder.rmdir()
        except OSError:  # not empty: runs still claimed or unfinished
            pass

    def claim_owner(self, run_id: str) -> str:
        """Who last claimed ``run_id``: ``host pid N since T`` (``"?"`` if unknown)."""
        path = self.output_dir / CLAIMS_DIR / f"{run_id}.json"
        try:
            with open(path, encoding="utf-8") as f:
                who = json.load(f)
        except (OSError, ValueError):
            return "?"
        return f"{who.get('host')} pid {who.get('pid')} since {who.get('since')}"

    def write_history(self, run_id: str, history: Mapping[str, Sequence[Any]]) -> Path:
        """Write the per-epoch ``history.csv`` of ``run_id``."""
        if not self.writer:
            return self.run_dir(run_id) / HISTORY_FILE
        return atomic_write_text(self.run_dir(run_id) / HISTORY_FILE, history_to_csv(history))

    def write_record(self, run_id: str, record: Mapping[str, Any]) -> Path:
        """Write ``record.json`` atomically; from now on the run counts as finished."""
        folder = self.run_dir(run_id)
        if not self.writer:
            return folder / RECORD_FILE
        error = folder / ERROR_FILE
        if error.exists():
            error.unlink()
        return atomic_write_json(folder / RECORD_FILE, dict(record))

    def write_error(self, run_id: str, error: BaseException) -> Path:
        """Record why ``run_id`` failed (type, message, traceback) in ``error.json``."""
        if not self.writer:
            return self.run_dir(run_id) / ERROR_FILE
        return atomic_write_json(
            self.run_dir(run_id) / ERROR_FILE,
            {
                "run_id": run_id,
                "type": type(error).__name__,
                "message": str(error),
                "traceback": "".join(
                    traceback.format_exception(type(error), error, error.__traceback__)
                ),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )

    def load_record_dict(self, run_id: str) -> dict[str, Any]:
        """The ``record.json`` of ``run_id`` as a dict.

        Raises:
          InvalidArgumentError: the file is missing or cannot be read, naming the run and file.
        """
        problem = self._record_problem(run_id)
        if problem is not None:
            raise InvalidArgumentError(
                f"run {run_id}: {self.run_dir(run_id) / RECORD_FILE} is {problem}; rerun the "
                "same tfprune-compare command to run it again"
            )
        with open(self.run_dir(run_id) / RECORD_FILE, encoding="utf-8") as f:
            return json.load(f)

    def load_record_dicts(self, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every finished record (or those of ``run_ids`` that are finished), sorted by id."""
        return [self.load_record_dict(r) for r in self._finished_among(run_ids)]

    def _finished_among(self, run_ids: Sequence[str] | None) -> list[str]:
        """The finished runs among ``run_ids`` (all finished runs when None), sorted."""
        ids = self.finished_ids() if run_ids is None else sorted(run_ids)
        return [r for r in ids if self.is_finished(r)]

    def load_records(self, run_ids: Sequence[str] | None = None) -> list[Any]:
        """Finished records as :class:`tfprune.protocols.spec.RunRecord` objects, sorted by id.

        Raises:
          InvalidArgumentError: a record holds values of the wrong type or another run's spec,
            naming the file.
        """
        records = []
        for run_id in self._finished_among(run_ids):
            path = self.run_dir(run_id) / RECORD_FILE
            try:
                record = RunRecord.from_dict(self.load_record_dict(run_id))
            except TfpruneError as err:
                raise InvalidArgumentError(f"run {run_id}: {path}: {err}") from None
            if record.run_id != run_id:
                what = (
                    f"the record of run {record.run_id}"
                    if record.run_id
                    else "a record without a run spec"
                )
                raise InvalidArgumentError(
                    f"{path}: {what} is in the folder of run {run_id}; delete the folder and rerun"
                )
            records.append(record)
        return records

    def problems(self, run_ids: Sequence[str] | None = None) -> list[str]:
        """What is wrong in the folders of ``run_ids`` (default: every run), one line each.

        Names each damaged ``record.json`` (the run counts as unfinished) and, for finished
        runs, a missing or unreadable ``spec.json``, ``environment.json`` or ``history.csv``,
        or a ``spec.json`` that is not the record's run.
        """
        out = [
            f"{where} (the run counts as unfinished)"
            for where in self.damaged_records(run_ids).values()
        ]
        for run_id in self._finished_among(run_ids):
            folder = self.run_dir(run_id)
            spec = _read_side_json(folder / SPEC_FILE)
            if isinstance(spec, str):
                out.append(spec)
            else:
                try:
                    spec_id = RunSpec.from_dict(spec).run_id()
                except TfpruneError as err:
                    spec_id = None
                    out.append(f"{folder / SPEC_FILE}: not a run spec ({err})")
                if spec_id is not None and spec_id != run_id:
                    out.append(f"{folder / SPEC_FILE}: the spec of run {spec_id}, not of {run_id}")
            env = _read_side_json(folder / ENVIRONMENT_FILE)
            if isinstance(env, str):
                out.append(env)
            problem = _history_problem(folder / HISTORY_FILE)
            if problem:
                out.append(problem)
        return out

    def errors(self) -> dict[str, dict[str, Any]]:
        """``error.json`` contents of unfinished runs that failed, by run id."""
        out = {}
        for run_id in self.run_ids():
            path = self.run_dir(run_id) / ERROR_FILE
            if path.is_file() and not self.is_finished(run_id):
                with open(path, encoding="utf-8") as f:
                    out[run_id] = json.load(f)
        return out


def _read_side_json(path: Path) -> dict[str, Any] | str:
    """The JSON object in ``path``, or what is wrong with it as ``"<path>: why"``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return f"{path}: missing"
    except (OSError, UnicodeDecodeError) as err:
        return f"{path}: unreadable ({err})"
    except ValueError as err:
        return f"{path}: not valid JSON ({err})"
    if not isinstance(data, dict):
        return f"{path}: not a JSON object"
    return data


def _history_problem(path: Path) -> str | None:
    """What is wrong with a ``history.csv`` (None when it is one row per epoch of numbers)."""
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except FileNotFoundError:
        return f"{path}: missing"
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return f"{path}: unreadable ({err})"
    if not rows or not rows[0] or rows[0][0] != "epoch":
        return f"{path}: no 'epoch,...' header line"
    for k, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            return f"{path}: line {k} has {len(row)} values for {len(rows[0])} columns"
        for cell in row:
            if cell:
                try:
                    float(cell)
                except ValueError:
                    return f"{path}: line {k} holds {cell!r}, not a number"
    return None
