"""Dataset sizes as a run would see them, read without loading the data.

The cost of a grid (:mod:`tfprune.protocols.cost.estimate`) needs the number of training
examples per epoch, the number of test examples, the input shape and the number of classes of
each dataset.
:func:`dataset_facts` gives them without loading anything: digits' split is computed, MNIST's
sizes come from the 8-byte headers of its IDX files, and CIFAR's and ImageNet's are their
standard sizes.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
from typing import Any

import numpy as np

from tfprune.data.bundle import resolve_data_dir
from tfprune.data.digits import DIGITS_NUM_EXAMPLES
from tfprune.data.mnist import find_mnist_files
from tfprune.errors import ConfigError

__all__ = ["DataFacts", "dataset_facts"]

_STANDARD_SIZES = {
    "cifar10": (50_000, 10_000, (32, 32, 3), 10),
    "cifar100": (50_000, 10_000, (32, 32, 3), 100),
    "imagenet": (1_281_167, 50_000, (224, 224, 3), 1000),
}


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """What the cost needs to know about a dataset, read without loading it.

    Attributes:
      name: Dataset name.
      num_train: Training examples (one epoch).
      num_test: Test examples (one evaluation pass).
      input_shape: Shape of one model input (flattened for MLPs).
      num_classes: Number of classes.
      note: How the sizes are known (e.g. "MNIST IDX headers", "standard size").
    """

    name: str
    num_train: int
    num_test: int
    input_shape: tuple[int, ...]
    num_classes: int
    note: str = ""


def _idx_count(path: Any) -> int:
    """First dimension of an IDX file, from its 8-byte header (nothing else is read)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(8)
    return int.from_bytes(head[4:8], "big")


def _mnist_sizes(data_dir: str | None, opts: dict[str, Any]) -> tuple[int, int, str]:
    split = opts.get("split", "auto")
    holdout = int(opts.get("holdout", 2000))
    folder = resolve_data_dir("mnist", data_dir)
    found = find_mnist_files(folder) if folder is not None and folder.is_dir() else None
    have_train = bool(found and found["train_images"] and found["train_labels"])
    have_test = bool(found and found["test_labels"])
    if split == "standard" or (split == "auto" and have_train):
        if have_train and have_test:
            assert found is not None
            n_train, n_test = _idx_count(found["train_labels"]), _idx_count(found["test_labels"])
            return n_train, n_test, "MNIST IDX headers"
        return 60_000, 10_000, "standard MNIST size (files not found)"
    if have_test:
        assert found is not None
        n = _idx_count(found["test_labels"])
        return n - holdout, holdout, "MNIST t10k split, IDX header"
    if split == "t10k":
        return 10_000 - holdout, holdout, "MNIST t10k split (files not found)"
    return 60_000, 10_000, "standard MNIST size (files not found)"


def dataset_facts(
    name: str,
    data_dir: str | None = None,
    options: dict[str, Any] | None = None,
    *,
    flatten: bool = False,
) -> DataFacts:
    """Sizes of a dataset as :func:`tfprune.data.load_dataset` would give them, without loading.

    ``options`` are the run's ``data_options`` (``test_fraction``, ``resize``, ``split``,
    ``holdout``, ``label_mode``, ``image_size``, ...). Digits' split sizes are computed exactly
    (scikit-learn rounds the test share up); MNIST's are read from the IDX file headers (8 bytes
    each); CIFAR's and ImageNet's are the standard sizes (``note`` says which).

    Raises:
      ConfigError: an unknown dataset name.
    """
    opts = dict(options or {})
    flatten = flatten or bool(opts.get("flatten", False))
    if name == "digits":
        fraction = float(opts.get("test_fraction", 0.2))
        n_test = math.ceil(fraction * DIGITS_NUM_EXAMPLES)
        facts = (DIGITS_NUM_EXAMPLES - n_test, n_test, (8, 8, 1), 10, "digits split, exact")
    elif name == "mnist":
        n_train, n_test, note = _mnist_sizes(data_dir, opts)
        size = opts.get("resize")
        if size is None:
            shape: tuple[int, ...] = (28, 28, 1)
        else:
            hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
            shape = (*hw, 1)
        facts = (n_train, n_test, shape, 10, note)
    elif name in _STANDARD_SIZES:
        n_train, n_test, shape, classes = _STANDARD_SIZES[name]
        if name == "cifar100" and opts.get("label_mode") == "coarse":
            classes = 20
        if name == "imagenet":
            size = int(opts.get("image_size", 224))
            shape = (size, size, 3)
            classes = int(opts.get("num_classes") or len(opts.get("classes") or ()) or classes)
        facts = (n_train, n_test, shape, classes, f"standard {name} size")
    else:
        raise ConfigError(f"cost: unknown dataset {name!r}")
    n_train, n_test, shape, classes, note = facts
    if flatten:
        shape = (int(np.prod(shape)),)
    return DataFacts(name, int(n_train), int(n_test), tuple(shape), int(classes), note)
