"""MNIST from the standard IDX files (LeCun et al.), optionally gzip-compressed.

Expected files in the folder you give (``.gz`` optional; ``train-images.idx3-ubyte``-style names
with a dot are accepted too)::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   (60,000 training images)
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    (10,000 test images)

When only the ``t10k`` pair is present, :func:`load_mnist` makes an explicit, seeded, stratified
split of the 10,000 test images (8,000 train / 2,000 held out by default) and says so in the
returned description.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from tfprune.compat import keras
from tfprune.data.bundle import ArraySplits, missing_files_error, resolve_data_dir, stratified_split
from tfprune.errors import DatasetNotFoundError, InvalidArgumentError

__all__ = ["HOW_TO_GET", "MNIST_FILES", "find_mnist_files", "load_mnist", "read_idx"]

#: Canonical file names (without ``.gz``) by role.
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Where to get the MNIST files (shown when they are missing).
HOW_TO_GET = (
    "Download the four files from the MNIST page (http://yann.lecun.com/exdb/mnist/ or a mirror "
    "such as https://ossci-datasets.s3.amazonaws.com/mnist/) into that folder; keep them gzipped "
    "or not. With only the two t10k files, split='t10k' trains on a seeded split of the 10,000 "
    "test images. Pass data_dir=... or set $TFPRUNE_DATA_DIR (folder $TFPRUNE_DATA_DIR/mnist)."
)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzip-compressed when the name ends in ``.gz``) into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InvalidArgumentError(f"{path} is not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise InvalidArgumentError(f"{path}: unknown IDX element type 0x{type_code:02x}")
    header_end = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    count = int(np.prod(dims)) if dims else 1
    if len(data) - header_end != count * dtype.itemsize:
        raise InvalidArgumentError(
            f"{path}: header says shape {dims} but the file holds "
            f"{len(data) - header_end} bytes of data"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header_end)
        .reshape(dims)
        .astype(dtype.newbyteorder("="))
    )


def _find(folder: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def find_mnist_files(data_dir: str | os.PathLike[str]) -> dict[str, Path | None]:
    """Locate the four MNIST files in ``data_dir``; missing ones map to ``None``."""
    folder = Path(data_dir)
    return {role: _find(folder, stem) for role, stem in MNIST_FILES.items()}


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise InvalidArgumentError(
            f"{images} / {labels}: expected images (N, H, W) and labels (N,), "
            f"got {x.shape} and {y.shape}"
        )
    return x.reshape(*x.shape, 1).astype(np.uint8), y.astype(np.int32)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    split: str = "auto",
    holdout: int = 2000,
    seed: int = 0,
    allow_download: bool = False,
) -> ArraySplits:
    """Load MNIST as ``uint8`` images ``(N, 28, 28, 1)`` and int32 labels.

    Args:
      data_dir: folder holding the IDX files (default ``$TFPRUNE_DATA_DIR/mnist``).
      split: ``"standard"`` (60,000 train / 10,000 test; needs all four files), ``"t10k"``
        (seeded stratified split of the 10,000 test images into ``10000 - holdout`` train and
        ``holdout`` test), or ``"auto"`` (standard when the train files exist, else t10k).
      holdout: number of t10k images held out for testing under the t10k split.
      seed: seed of the t10k split.
      allow_download: only when the files are missing, fall back to
        ``keras.datasets.mnist.load_data()`` (needs internet; standard split). Never the default.

    Raises:
      DatasetNotFoundError: the needed files are not in ``data_dir``; the message lists them.
    """
    if split not in ("auto", "standard", "t10k"):
        raise InvalidArgumentError(f"split={split!r} must be 'auto', 'standard' or 't10k'")
    folder = resolve_data_dir("mnist", data_dir)
    found = find_mnist_files(folder) if folder is not None and folder.is_dir() else None
    have_train = found is not None and bool(found["train_images"] and found["train_labels"])
    have_test = found is not None and bool(found["test_images"] and found["test_labels"])
    need_train = split == "standard" or (split == "auto" and have_train)

    if not have_test or (need_train and not have_train):
        if allow_download:
            return _download_standard()
        expected = [MNIST_FILES[r] + "[.gz]" for r in MNIST_FILES]
        if split == "t10k":
            expected = expected[2:]
        raise missing_files_error("MNIST", folder, expected, HOW_TO_GET)

    assert found is not None
    x_test, y_test = _read_pair(found["test_images"], found["test_labels"])  # type: ignore[arg-type]
    if need_train:
        x_train, y_train = _read_pair(found["train_images"], found["train_labels"])  # type: ignore[arg-type]
        description = (
            f"MNIST standard split from {folder}: {len(y_train)} train / {len(y_test)} test"
        )
        return ArraySplits(x_train, y_train, x_test, y_test, 10, description)

    n = len(y_test)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, np.integer)):
        raise InvalidArgumentError(f"holdout={holdout!r} must be an int")
    if not 0 < holdout < n:
        raise InvalidArgumentError(f"holdout={holdout} must be in [1, {n - 1}]")
    train_idx, test_idx = stratified_split(y_test, int(holdout), seed)
    reason = (
        "split='t10k' requested" if split == "t10k" else "the 60,000 training images were not found"
    )
    description = (
        f"MNIST t10k split from {folder} ({reason}): train = {len(train_idx)} of the {n} "
        f"official TEST images, test = the other {len(test_idx)} held out "
        f"(stratified, seed={seed}); not comparable to results on the official test set"
    )
    return ArraySplits(
        x_test[train_idx], y_test[train_idx], x_test[test_idx], y_test[test_idx], 10, description
    )


def _download_standard() -> ArraySplits:
    """Fallback used only with ``allow_download=True``: ``keras.datasets.mnist`` (internet)."""
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # network or cache failure: surface as a missing dataset
        raise DatasetNotFoundError(
            f"MNIST files are missing and keras.datasets.mnist.load_data() failed: {err}"
        ) from err
    return ArraySplits(
        x_train.reshape(-1, 28, 28, 1).astype(np.uint8),
        y_train.astype(np.int32),
        x_test.reshape(-1, 28, 28, 1).astype(np.uint8),
        y_test.astype(np.int32),
        10,
        "MNIST standard split via keras.datasets.mnist (downloaded): 60000 train / 10000 test",
    )
