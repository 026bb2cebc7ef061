"""Fixtures that write tiny datasets in the real on-disk formats into ``tmp_path``."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from dataset_fakes import (
    IMAGENET_COLORS,
    fake_mnist_arrays,
    jpeg_bytes,
    write_cifar_batch,
    write_idx,
)

from tfprune.compat import tf


@pytest.fixture
def fake_mnist_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """All four MNIST files (gzipped): 120 train and 50 test images."""
    for prefix, n, seed in (("train", 120, 1), ("t10k", 50, 2)):
        images, labels = fake_mnist_arrays(n, seed)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path


@pytest.fixture
def fake_cifar10_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """``cifar-10-batches-py`` with 5 training batches of 8 images and a test batch of 6."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
        write_cifar_batch(folder / f"data_batch_{i}", images, {"labels": list(range(8))})
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(folder / "test_batch", images, {"labels": [9, 8, 7, 6, 5, 4]})
    return tmp_path


@pytest.fixture
def fake_cifar100_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """``cifar-100-python`` with 10 training and 4 test images."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(
        folder / "train",
        train,
        {"fine_labels": [99, 1, 2, 3, 4, 5, 6, 7, 8, 9], "coarse_labels": [19] + [0] * 9},
    )
    test = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(
        folder / "test", test, {"fine_labels": [0, 1, 2, 3], "coarse_labels": [0] * 4}
    )
    return tmp_path


@pytest.fixture
def fake_imagenet_tfrecords(tmp_path: pathlib.Path) -> pathlib.Path:
    """Two train shards (6 + 6 examples) and one validation shard (3), labels 1..3 (1-based)."""
    sizes = [(40, 60), (50, 50), (70, 45)]

    def example(i: int) -> bytes:
        label = i % 3
        h, w = sizes[i % 3]
        feature = {
            "image/encoded": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[jpeg_bytes(h, w, IMAGENET_COLORS[label])])
            ),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label + 1])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    for name, indices in (
        ("train-00000-of-00002", range(6)),
        ("train-00001-of-00002", range(6, 12)),
        ("validation-00000-of-00001", range(3)),
    ):
        with tf.io.TFRecordWriter(str(tmp_path / name)) as writer:
            for i in indices:
                writer.write(example(i))
    return tmp_path


@pytest.fixture
def fake_imagenet_folders(tmp_path: pathlib.Path) -> pathlib.Path:
    """``train/<wnid>/*.JPEG`` (4 per class) and ``val/<wnid>/*.JPEG`` (2 per class), 3 wnids."""
    wnids = ["n01440764", "n01443537", "n01484850"]
    for split, count in (("train", 4), ("val", 2)):
        for c, wnid in enumerate(wnids):
            folder = tmp_path / split / wnid
            folder.mkdir(parents=True)
            for j in range(count):
                data = jpeg_bytes(36 + 4 * j, 48, IMAGENET_COLORS[c])
                (folder / f"{wnid}_{j}.JPEG").write_bytes(data)
    return tmp_path
