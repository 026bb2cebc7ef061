"""Writing results so that a reader never sees half a file, and folders others can read.

Every output folder tfprune creates or fills holds a marker file (:data:`MARKER`). A folder that
is not empty and holds no marker is someone else's: tfprune refuses to write into it or replace
it, whatever the flags say, so a mistyped ``--output_dir=.`` never touches a checkout.

Every file tfprune writes (configs, records, histories, plans, reports) goes through
:func:`atomic_write_text`: a temporary file in the same folder, flushed to disk, then renamed
over the target, so a crash or kill leaves either the old file or the new one. Files and the
folders made with :func:`staging_dir` get the permissions the process's umask allows (as
``open`` would give them), not the private ``0600`` of a temporary file, so a shared results
folder or a serving process can read them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tfprune.errors import ConfigError

__all__ = [
    "MARKER",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "describe_entries",
    "ensure_output_dir",
    "foreign_entries",
    "mark_as_tfprune",
    "new_output_dir",
    "protected_folder",
    "public_mode",
    "staging_dir",
]


def public_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (``0o666``) or folder under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + rename).

    The folder is created if missing; the file gets the umask's permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, public_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _json_default(value: Any) -> Any:
    """Make numpy scalars/arrays and other simple objects JSON-serialisable."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON (sorted keys) to ``path`` atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    return atomic_write_text(path, text + "\n")


def staging_dir(parent: str | os.PathLike[str], name: str) -> str:
    """A new, empty folder in ``parent`` to fill and then rename into place.

    Unlike :func:`tempfile.mkdtemp` it is readable by others as the umask allows.
    """
    os.makedirs(parent, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    os.chmod(folder, public_mode(directory=True))
    return folder


def ensure_output_dir(
    path: str | os.PathLike[str], flag: str = "output_dir", create: bool = True
) -> Path:
    """Create the results folder ``path`` (and its parents), or say why it cannot be one.

    The folder is marked as tfprune's (:data:`MARKER`). With ``create=False`` only check that
    it could be created (checked before long work, so that a bad path fails in seconds, not
    after training).

    Raises:
      ConfigError: ``path`` (or a parent) is a file, the folder cannot be created or written,
        or it is not empty and tfprune did not write it (``.``, a git checkout, someone's
        files), naming the flag to change.
    """
    folder = Path(path)
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            where = "is a file" if part == folder else f"is under the file {str(part)!r}"
            raise ConfigError(f"--{flag}={str(folder)!r} {where}; give a folder path")
    foreign = foreign_entries(folder)
    if foreign:
        raise ConfigError(
            f"--{flag}={str(folder)!r} is a folder tfprune did not write (it holds "
            f"{describe_entries(foreign)}); give a new or empty folder"
        )
    existing = next(p for p in (folder, *folder.parents, Path(".")) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--{flag}={str(folder)!r}: {str(existing)!r} is not writable; give a folder you "
            "can write to"
        )
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"--{flag}={str(folder)!r} cannot be created ({err.strerror}); give a folder "
                "you can write to"
            ) from None
        mark_as_tfprune(folder)
    return folder


#: The file tfprune writes into each output folder it creates or fills (empty; its name says it).
MARKER = ".tfprune"
#: Folders tfprune's results folders hold (a folder holding one is tfprune's, marker or not).
_RESULTS_LAYOUT = ("runs", "claims", "base_models")


def foreign_entries(
    path: str | os.PathLike[str], ignore: Callable[[str], bool] | None = None
) -> list[str]:
    """The names in folder ``path`` that tfprune did not write, sorted.

    Empty when ``path`` is missing, empty, holds :data:`MARKER`, or is a tfprune results folder
    (it holds ``runs/``, ``claims/`` or ``base_models/``). ``ignore(name)`` True keeps a name
    out of the list.
    """
    folder = Path(path)
    if not folder.is_dir():
        return []
    names = sorted(os.listdir(folder))
    if MARKER in names or any((folder / n).is_dir() for n in _RESULTS_LAYOUT if n in names):
        return []
    return [n for n in names if not (ignore and ignore(n))]


def describe_entries(names: list[str]) -> str:
    """``"a git repository"`` or ``"'a.txt', 'b' and 3 more"`` for a refusal message."""
    if ".git" in names:
        return "a git repository"
    shown = ", ".join(repr(n) for n in names[:2])
    return shown + (f" and {len(names) - 2} more" if len(names) > 2 else "")


def protected_folder(path: str | os.PathLike[str]) -> str | None:
    """Why tfprune must never replace folder ``path`` (None if it may, when asked to).

    The current folder and those above it, the home folder and a git checkout are protected.
    """
    folder = Path(path).resolve()
    cwd = Path.cwd().resolve()
    if folder == cwd or folder in cwd.parents:
        return "it is the current folder or holds it"
    if folder == Path.home().resolve():
        return "it is the home folder"
    if (folder / ".git").exists():
        return "it holds a git repository"
    return None


def mark_as_tfprune(path: str | os.PathLike[str]) -> None:
    """Writes :data:`MARKER` into folder ``path`` (an empty file; no-op if it exists)."""
    marker = Path(path) / MARKER
    if not marker.exists():
        # Not atomic_write: a temporary file beside it would look foreign to a concurrent shard.
        with open(marker, "a"):
            pass


@contextlib.contextmanager
def new_output_dir(path: str | os.PathLike[str], flag: str = "output_dir") -> Iterator[Path]:
    """:func:`ensure_output_dir`, and on an error inside the block removes what it created.

    A folder the block failed to fill (only the marker and empty folders in it) is removed if
    this call created it, so a failed run leaves no empty results folder behind.
    """
    folder = Path(path)
    existed = folder.exists()
    made = ensure_output_dir(folder, flag)
    try:
        yield made
    except BaseException:
        if not existed:
            _remove_if_unused(made)
        raise


def _remove_if_unused(folder: Path) -> None:
    """Removes ``folder`` if it holds nothing but the marker and empty folders."""
    for root, dirs, files in os.walk(folder, topdown=False):
        if any(f != MARKER or Path(root) != folder for f in files):
            return
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, d))
    with contextlib.suppress(OSError):
        (folder / MARKER).unlink(missing_ok=True)
        folder.rmdir()
