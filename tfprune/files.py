"""Writing results so that a reader never sees half a file, and folders others can read.

Every file tfprune writes (configs, records, histories, plans, reports) goes through
:func:`atomic_write_text`: a temporary file in the same folder, flushed to disk, then renamed
over the target, so a crash or kill leaves either the old file or the new one. Files and the
folders made with :func:`staging_dir` get the permissions the process's umask allows (as
``open`` would give them), not the private ``0600`` of a temporary file, so a shared results
folder or a serving process can read them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tfprune.errors import ConfigError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "ensure_output_dir",
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

    With ``create=False`` only check that it could be created (checked before long work, so
    that a bad path fails in seconds, not after training).

    Raises:
      ConfigError: ``path`` (or a parent) is a file, or the folder cannot be created or written,
        naming the flag to change.
    """
    folder = Path(path)
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            where = "is a file" if part == folder else f"is under the file {str(part)!r}"
            raise ConfigError(f"--{flag}={str(folder)!r} {where}; give a folder path")
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
    return folder
