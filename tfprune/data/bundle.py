"""Containers shared by the dataset readers, and small helpers (splits, paths, errors)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from tfprune.compat import tf
from tfprune.errors import DatasetNotFoundError, InvalidArgumentError

__all__ = [
    "DATA_DIR_ENV",
    "ArraySplits",
    "DatasetBundle",
    "missing_files_error",
    "resolve_data_dir",
    "stratified_split",
]

#: Environment variable giving a default root folder for datasets (``$TFPRUNE_DATA_DIR/<name>``).
DATA_DIR_ENV = "TFPRUNE_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class ArraySplits:
    """A dataset held in memory as NumPy arrays, before any ``tf.data`` processing.

    Attributes:
      x_train, y_train, x_test, y_test: images (NHWC, ``uint8`` or float in ``[0, 1]``, or flat
        ``(N, D)``) and integer labels.
      num_classes: number of classes.
      description: where the arrays came from and how they were split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    description: str


@dataclasses.dataclass(frozen=True)
class DatasetBundle:
    """What :func:`tfprune.data.load_dataset` returns.

    Attributes:
      name: dataset name (``"digits"``, ``"mnist"``, ...).
      train: training pipeline (shuffled, augmented when asked), global batches.
      test: evaluation pipeline (fixed order), global batches.
      input_shape: shape of one preprocessed example (what the model's ``Input`` takes).
      num_classes: number of classes (labels are ``0 .. num_classes - 1``).
      num_train, num_test: number of examples in each split (``None`` when unknown, e.g. sharded
        TFRecords).
      batch_size: the global training batch (per-replica batch × replicas).
      description: human-readable provenance, including any split made from a test set; copy it
        into every result record.
      train_arrays, test_arrays: the raw ``(x, y)`` arrays for in-memory datasets (``None`` for
        ImageNet); apply :attr:`preprocess` to get model inputs.
      preprocess: the deterministic evaluation transform, applicable to one image or a batch.
    """

    name: str
    train: tf.data.Dataset
    test: tf.data.Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    num_train: int | None
    num_test: int | None
    batch_size: int
    description: str
    train_arrays: tuple[np.ndarray, np.ndarray] | None = None
    test_arrays: tuple[np.ndarray, np.ndarray] | None = None
    preprocess: Callable[[Any], tf.Tensor] | None = None

    @property
    def steps_per_epoch(self) -> int | None:
        """Number of training batches per epoch (``None`` when ``num_train`` is unknown)."""
        if self.num_train is None:
            return None
        return -(-self.num_train // self.batch_size)


def stratified_split(
    y: np.ndarray, test_size: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``range(len(y))`` into (train indices, test indices).

    ``test_size`` is a count (int) or a fraction in ``(0, 1)`` (float). The same ``y``, size and
    seed always give the same indices (scikit-learn's ``train_test_split``).
    """
    n = len(y)
    if isinstance(test_size, bool):
        raise InvalidArgumentError(f"test_size={test_size!r} must be an int count or a fraction")
    if isinstance(test_size, (int, np.integer)):
        if not 0 < test_size < n:
            raise InvalidArgumentError(f"test_size={test_size} must be in [1, {n - 1}]")
    elif not 0.0 < float(test_size) < 1.0:
        raise InvalidArgumentError(f"test_size={test_size} must be a fraction in (0, 1)")
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=test_size, random_state=int(seed), stratify=y, shuffle=True
    )
    return np.asarray(train_idx), np.asarray(test_idx)


def resolve_data_dir(name: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    """Folder to read ``name`` from: ``data_dir``, else ``$TFPRUNE_DATA_DIR/<name>``, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    root = os.environ.get(DATA_DIR_ENV)
    if root:
        return Path(root).expanduser() / name
    return None


def missing_files_error(
    dataset: str,
    data_dir: Path | None,
    expected: Sequence[str],
    how_to_get: str,
) -> DatasetNotFoundError:
    """Build a :class:`DatasetNotFoundError` naming the folder, the files and how to get them."""
    where = (
        f"in {str(data_dir)!r}"
        if data_dir is not None
        else f"(no data_dir given and ${DATA_DIR_ENV} is not set)"
    )
    files = "\n".join(f"  - {f}" for f in expected)
    return DatasetNotFoundError(
        f"{dataset} not found {where}. Expected these files:\n{files}\n{how_to_get}"
    )
