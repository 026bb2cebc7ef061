"""CIFAR-10 / CIFAR-100 from the standard "python version" pickle batches.

Expected layout (``data_dir`` may be the batch folder itself or its parent)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
    cifar-100-python/train, test

Each file is a pickled dict with ``data`` (``N × 3072`` uint8, channel-major 32×32 planes) and
``labels`` (CIFAR-10) or ``fine_labels`` / ``coarse_labels`` (CIFAR-100). The files are read with a
restricted unpickler that only rebuilds NumPy arrays and plain Python values, so a tampered file
cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tfprune.compat import keras
from tfprune.data.bundle import ArraySplits, missing_files_error, resolve_data_dir
from tfprune.errors import DatasetNotFoundError, InvalidArgumentError

__all__ = ["CIFAR_LAYOUT", "CIFAR_URLS", "load_cifar", "read_cifar_batch"]

#: Per number of classes: (folder name, training files, test files).
CIFAR_LAYOUT: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    10: (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
    ),
    100: ("cifar-100-python", ("train",), ("test",)),
}

#: Download address of each CIFAR archive, by number of classes.
CIFAR_URLS = {
    10: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    100: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only allows the globals needed to rebuild NumPy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def read_cifar_batch(
    path: str | os.PathLike[str], label_key: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR pickle batch into ``uint8`` NHWC images ``(N, 32, 32, 3)`` + int32 labels."""
    with open(path, "rb") as f:
        batch = _SafeUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    if not isinstance(batch, dict):
        raise InvalidArgumentError(f"{path} is not a CIFAR batch (not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise InvalidArgumentError(
            f"{path} has keys {sorted(batch)}; expected 'data' and {label_key!r}"
        )
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int32)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise InvalidArgumentError(
            f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _locate(data_dir: Path, num_classes: int) -> Path | None:
    folder_name, train_files, test_files = CIFAR_LAYOUT[num_classes]
    for candidate in (data_dir, data_dir / folder_name):
        if all((candidate / f).is_file() for f in train_files + test_files):
            return candidate
    return None


def load_cifar(
    data_dir: str | os.PathLike[str] | None = None,
    num_classes: int = 10,
    *,
    label_mode: str = "fine",
    allow_download: bool = False,
) -> ArraySplits:
    """Load CIFAR-10 (``num_classes=10``) or CIFAR-100 (``num_classes=100``) as ``uint8`` NHWC.

    Args:
      data_dir: the ``cifar-10-batches-py`` / ``cifar-100-python`` folder or its parent
        (default ``$TFPRUNE_DATA_DIR/cifar10`` or ``.../cifar100``).
      num_classes: 10 or 100.
      label_mode: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
      allow_download: only when the files are missing, fall back to ``keras.datasets`` (needs
        internet). Never the default.

    Raises:
      DatasetNotFoundError: the batch files are missing; the message lists them.
    """
    if num_classes not in CIFAR_LAYOUT:
        raise InvalidArgumentError(f"num_classes={num_classes} must be 10 or 100")
    if label_mode not in ("fine", "coarse"):
        raise InvalidArgumentError(f"label_mode={label_mode!r} must be 'fine' or 'coarse'")
    name = f"cifar{num_classes}"
    folder_name, train_files, test_files = CIFAR_LAYOUT[num_classes]
    root = resolve_data_dir(name, data_dir)
    folder = _locate(root, num_classes) if root is not None else None
    if folder is None:
        if allow_download:
            return _download(num_classes, label_mode)
        expected = [f"{folder_name}/{f}" for f in train_files + test_files]
        how = (
            f"Download and extract {CIFAR_URLS[num_classes]} into that folder (data_dir may "
            f"also be the {folder_name} folder itself). Pass data_dir=... or set $TFPRUNE_DATA_DIR "
            f"(folder $TFPRUNE_DATA_DIR/{name})."
        )
        raise missing_files_error(f"CIFAR-{num_classes}", root, expected, how)

    key = "labels" if num_classes == 10 else f"{label_mode}_labels"
    train = [read_cifar_batch(folder / f, key) for f in train_files]
    x_test, y_test = read_cifar_batch(folder / test_files[0], key)
    x_train = np.concatenate([b[0] for b in train])
    y_train = np.concatenate([b[1] for b in train])
    classes = 20 if (num_classes == 100 and label_mode == "coarse") else num_classes
    description = (
        f"CIFAR-{num_classes} ({label_mode} labels, {classes} classes) from {folder}: "
        f"{len(y_train)} train / {len(y_test)} test (official split)"
    )
    return ArraySplits(x_train, y_train, x_test, y_test, classes, description)


def _download(num_classes: int, label_mode: str) -> ArraySplits:
    """Fallback used only with ``allow_download=True``: ``keras.datasets`` (internet)."""
    try:
        if num_classes == 10:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        else:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar100.load_data(
                label_mode=label_mode
            )
    except Exception as err:  # network or cache failure: surface as a missing dataset
        raise DatasetNotFoundError(
            f"CIFAR-{num_classes} files are missing and keras.datasets failed: {err}"
        ) from err
    classes = 20 if (num_classes == 100 and label_mode == "coarse") else num_classes
    return ArraySplits(
        x_train.astype(np.uint8),
        y_train.reshape(-1).astype(np.int32),
        x_test.astype(np.uint8),
        y_test.reshape(-1).astype(np.int32),
        classes,
        f"CIFAR-{num_classes} via keras.datasets (downloaded): official split",
    )
