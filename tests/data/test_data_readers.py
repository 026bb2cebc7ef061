"""Tests of the array readers: digits, MNIST IDX files, CIFAR pickle batches."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from dataset_fakes import fake_mnist_arrays, write_cifar_batch, write_idx

from tfprune.data import load_cifar, load_digits, load_mnist, read_cifar_batch, read_idx
from tfprune.errors import DatasetNotFoundError, InvalidArgumentError

# ---------------------------------------------------------------- digits


def test_load_digits_shapes_range_and_stratified_split():
    d = load_digits()
    assert d.x_train.shape == (1437, 8, 8, 1) and d.x_test.shape == (360, 8, 8, 1)
    assert d.x_train.dtype == np.float32
    assert 0.0 == d.x_train.min() and d.x_train.max() == 1.0
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert "1437 train / 360 test" in d.description and "seed=0" in d.description


def test_load_digits_is_deterministic_per_seed_and_flattens():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_train, c.y_train)
    flat = load_digits(seed=1, flatten=True)
    assert flat.x_train.shape == (1437, 64)
    np.testing.assert_array_equal(flat.x_train, a.x_train.reshape(-1, 64))


# ---------------------------------------------------------------- MNIST


def test_read_idx_plain_and_gzip_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", array)
    write_idx(tmp_path / "a-idx3-ubyte.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), array)


def test_read_idx_rejects_bad_magic_and_truncated_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(InvalidArgumentError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x00")
    with pytest.raises(InvalidArgumentError, match="header says"):
        read_idx(tmp_path / "short")


def test_load_mnist_standard_split_when_train_files_exist(fake_mnist_dir):
    d = load_mnist(fake_mnist_dir)
    images, labels = fake_mnist_arrays(120, 1)
    assert d.x_train.shape == (120, 28, 28, 1) and d.x_train.dtype == np.uint8
    np.testing.assert_array_equal(d.x_train[..., 0], images)
    np.testing.assert_array_equal(d.y_train, labels)
    assert d.x_test.shape == (50, 28, 28, 1)
    assert "standard split" in d.description


def test_load_mnist_t10k_split_is_seeded_stratified_and_described(fake_mnist_dir):
    d = load_mnist(fake_mnist_dir, split="t10k", holdout=10, seed=4)
    again = load_mnist(fake_mnist_dir, split="t10k", holdout=10, seed=4)
    assert d.x_train.shape[0] == 40 and d.x_test.shape[0] == 10
    np.testing.assert_array_equal(d.y_test, again.y_test)
    assert sorted(d.y_test.tolist()) == list(range(10))  # one per class
    assert "40 of the 50 official TEST images" in d.description
    assert "split='t10k' requested" in d.description


def test_load_mnist_falls_back_to_t10k_split_and_accepts_dotted_names(tmp_path):
    images, labels = fake_mnist_arrays(30, 3)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", labels)
    d = load_mnist(tmp_path, holdout=10)
    assert len(d.y_train) == 20 and len(d.y_test) == 10
    assert "training images were not found" in d.description
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, split="standard")


def test_load_mnist_missing_folder_names_every_file(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path / "nowhere")
    message = str(info.value)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert name in message
    assert "nowhere" in message and "Download" in message
    assert isinstance(info.value, FileNotFoundError)


def test_load_mnist_rejects_bad_holdout(fake_mnist_dir):
    with pytest.raises(InvalidArgumentError, match="holdout"):
        load_mnist(fake_mnist_dir, split="t10k", holdout=50)


def test_real_mnist_t10k_split_8000_2000(mnist_dir):
    d = load_mnist(mnist_dir)
    assert d.x_train.shape == (8000, 28, 28, 1) and d.x_test.shape == (2000, 28, 28, 1)
    assert d.x_train.dtype == np.uint8 and d.x_train.max() == 255
    # stratified: held-out class frequencies follow the full test set's
    full = np.bincount(np.concatenate([d.y_train, d.y_test]), minlength=10)
    np.testing.assert_allclose(np.bincount(d.y_test, minlength=10), full * 0.2, atol=1)
    assert "8000 of the 10000 official TEST images" in d.description
    again = load_mnist(mnist_dir)
    np.testing.assert_array_equal(d.y_test, again.y_test)


# ---------------------------------------------------------------- CIFAR


def test_read_cifar_batch_converts_channel_major_rows_to_hwc(tmp_path):
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 1, 2] = (10, 20, 30)
    write_cifar_batch(tmp_path / "b", image, {"labels": [3]})
    x, y = read_cifar_batch(tmp_path / "b")
    assert x.shape == (1, 32, 32, 3)
    assert tuple(x[0, 1, 2]) == (10, 20, 30) and x.sum() == 60
    assert y.tolist() == [3]


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-py"])
def test_load_cifar10_from_parent_or_batch_folder(fake_cifar10_root, sub):
    d = load_cifar(fake_cifar10_root / sub if sub else fake_cifar10_root, 10)
    assert d.x_train.shape == (40, 32, 32, 3) and d.x_test.shape == (6, 32, 32, 3)
    assert d.y_train.tolist() == list(range(8)) * 5
    assert d.y_test.tolist() == [9, 8, 7, 6, 5, 4]
    assert d.num_classes == 10 and "official split" in d.description


def test_load_cifar100_fine_and_coarse_labels(fake_cifar100_root):
    fine = load_cifar(fake_cifar100_root, 100)
    coarse = load_cifar(fake_cifar100_root, 100, label_mode="coarse")
    assert fine.y_train[0] == 99 and fine.num_classes == 100
    assert coarse.y_train[0] == 19 and coarse.num_classes == 20
    np.testing.assert_array_equal(fine.x_train, coarse.x_train)


def test_load_cifar_missing_names_batch_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar(tmp_path, 10)
    message = str(info.value)
    for f in ["data_batch_1", "data_batch_5", "test_batch", "cifar-10-python.tar.gz"]:
        assert f in message
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python/train"):
        load_cifar(tmp_path, 100)


def test_cifar_reader_refuses_pickles_that_would_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_cifar_batch(tmp_path / "evil")
