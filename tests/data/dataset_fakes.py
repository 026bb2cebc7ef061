"""Writers of tiny datasets in the real on-disk formats (IDX, CIFAR pickles, JPEG)."""

from __future__ import annotations

import gzip
import pathlib
import pickle
import struct

import numpy as np

from tfprune.compat import tf


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def fake_mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_cifar_batch(path: pathlib.Path, images_hwc: np.ndarray, labels: dict[str, list[int]]):
    """Pickle a batch the way the CIFAR python version does (bytes keys, channel-major rows)."""
    data = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), 3072)
    batch = {b"data": data, **{k.encode(): v for k, v in labels.items()}}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def jpeg_bytes(height: int, width: int, color: tuple[int, int, int]) -> bytes:
    """A solid-colour JPEG."""
    image = np.zeros((height, width, 3), np.uint8) + np.array(color, np.uint8)
    return tf.io.encode_jpeg(tf.constant(image), quality=100).numpy()


IMAGENET_COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
