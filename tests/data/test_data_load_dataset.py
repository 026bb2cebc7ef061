"""Tests of load_dataset, the single entry point of tfprune.data."""

from __future__ import annotations

import numpy as np
import pytest

from tfprune.data import DATA_DIR_ENV, DatasetBundle, list_datasets, load_dataset
from tfprune.errors import DatasetNotFoundError, InvalidArgumentError


def test_unknown_dataset_lists_known_names():
    with pytest.raises(InvalidArgumentError) as info:
        load_dataset("svhn")
    for name in list_datasets():
        assert name in str(info.value)


def test_unknown_option_is_named():
    with pytest.raises(InvalidArgumentError, match="resize"):
        load_dataset("digits", resize=32)


def test_digits_bundle_builds_batches_and_arrays():
    b = load_dataset("digits", batch_size=64, flatten=True, deterministic=True)
    assert isinstance(b, DatasetBundle)
    assert b.input_shape == (64,) and b.num_classes == 10
    assert b.num_train == 1437 and b.num_test == 360 and b.steps_per_epoch == 23
    x, y = next(iter(b.train))
    assert x.shape == (64, 64) and y.dtype.name == "int32"
    xt, _ = next(iter(b.test))
    np.testing.assert_allclose(xt.numpy(), b.preprocess(b.test_arrays[0][:64]).numpy())
    assert "stratified" in b.description and "flattened" in b.description


def test_mnist_bundle_resize_normalise_flatten_like_the_papers(fake_mnist_dir):
    b = load_dataset("mnist", fake_mnist_dir, resize=32, flatten=True, split="t10k", holdout=10)
    assert b.input_shape == (1024,) and b.num_train == 40 and b.num_test == 10
    assert b.batch_size == 100
    x, _ = next(iter(b.test))
    raw = b.test_arrays[0].astype(np.float32) / 255.0
    assert x.shape == (10, 1024)
    # antialiased bilinear resize keeps the mean; normalisation is (x - 0.1307) / 0.3081
    np.testing.assert_allclose(
        x.numpy().mean(), (raw.mean() - 0.1307) / 0.3081, rtol=0.02, atol=0.01
    )
    assert "official TEST images" in b.description and "resized to 32x32" in b.description


def test_real_mnist_bundle(mnist_dir):
    b = load_dataset("mnist", mnist_dir, flatten=True, deterministic=True)
    assert b.num_train == 8000 and b.num_test == 2000 and b.input_shape == (784,)
    x, _ = next(iter(b.train))
    assert x.shape == (100, 784)
    assert abs(float(x.numpy().mean())) < 0.2  # normalised with MNIST statistics
    assert "8000 of the 10000 official TEST images" in b.description


def test_cifar10_defaults_augment_and_imagenet_statistics(fake_cifar10_root):
    b = load_dataset("cifar10", fake_cifar10_root, batch_size=8, deterministic=True)
    assert b.input_shape == (32, 32, 3) and b.num_train == 40 and b.num_classes == 10
    assert "train augmentation=cifar" in b.description and "0.485" in b.description
    x, _ = next(iter(b.test))
    expected = (b.test_arrays[0][:6] / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225]
    )
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    a1 = [xb.numpy() for xb, _ in b.train]
    again = load_dataset("cifar10", fake_cifar10_root, batch_size=8, deterministic=True)
    a2 = [xb.numpy() for xb, _ in again.train]
    for p, q in zip(a1, a2):
        np.testing.assert_array_equal(p, q)


def test_cifar100_via_environment_variable(fake_cifar100_root, monkeypatch):
    (fake_cifar100_root / "cifar100").symlink_to(fake_cifar100_root / "cifar-100-python")
    monkeypatch.setenv(DATA_DIR_ENV, str(fake_cifar100_root))
    b = load_dataset("cifar100", normalize="cifar100", augment=None)
    assert b.num_classes == 100 and b.num_train == 10


def test_missing_path_raises_dataset_not_found(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DatasetNotFoundError, match="TFPRUNE_DATA_DIR is not set"):
        load_dataset("mnist")
    with pytest.raises(DatasetNotFoundError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path / "missing")


def test_strategy_gives_global_batch(mirrored_strategy):
    b = load_dataset("digits", batch_size=50, strategy=mirrored_strategy)
    assert b.batch_size == 100
    x, _ = next(iter(b.train))
    assert x.shape[0] == 100
