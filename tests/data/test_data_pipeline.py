"""Tests of tfprune.data.pipeline: the in-memory tf.data builder."""

from __future__ import annotations

import numpy as np
import pytest

from tfprune.compat import tf
from tfprune.data import (
    cifar_augment,
    global_batch_size,
    make_dataset,
    make_preprocess_fn,
)
from tfprune.errors import InvalidArgumentError


def _images(n: int = 40, size: int = 8, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.int64)
    return x, y


def _epoch(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_make_dataset_same_seed_gives_identical_batches_with_augmentation():
    x, y = _images()
    kwargs = dict(augment="cifar", seed=7, deterministic=True, mean=(0.5,) * 3, std=(0.25,) * 3)
    a = make_dataset(x, y, 8, True, **kwargs)
    b = make_dataset(x, y, 8, True, **kwargs)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    xc, yc = _epoch(make_dataset(x, y, 8, True, **{**kwargs, "seed": 8}))
    xa, ya = _epoch(a)
    assert not (np.array_equal(xa, xc) and np.array_equal(ya, yc))


def test_make_dataset_reshuffles_each_epoch_but_reproducibly():
    x, y = _images()
    y = np.arange(len(y))  # unique labels reveal the order
    a = make_dataset(x, y, 8, True, seed=3, deterministic=True)
    b = make_dataset(x, y, 8, True, seed=3, deterministic=True)
    a1, a2 = _epoch(a)[1], _epoch(a)[1]
    b1, b2 = _epoch(b)[1], _epoch(b)[1]
    assert sorted(a1.tolist()) == list(range(40))
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)


@pytest.mark.parametrize(
    "options",
    [
        {"flatten": True},
        {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3)},
        {"resize": (5, 5), "mean": 0.5, "std": 0.5, "flatten": True},
        {"drop_remainder": True},
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_batches_are_the_examples_transformed_one_by_one(options, training):
    # Without augmentation whole batches are transformed at once: every value and the order
    # (the shuffle of the indices, reshuffled each epoch) are those of transforming each
    # example by itself.
    x, y = _images(n=37)
    y = np.arange(len(y))  # unique labels name each example
    preprocess = make_preprocess_fn(
        **{k: v for k, v in options.items() if k in ("resize", "mean", "std", "flatten")}
    )
    ds = make_dataset(x, y, 8, training, seed=5, **options)
    for _ in range(2):
        batches = [(xb.numpy(), yb.numpy()) for xb, yb in ds]
        assert all(len(yb) == 8 for _, yb in batches) or not options.get("drop_remainder")
        order = np.concatenate([yb for _, yb in batches])
        assert training or order.tolist() == list(range(len(order)))
        for xb, yb in batches:
            one_by_one = np.stack([preprocess(x[i]).numpy() for i in yb])
            np.testing.assert_array_equal(xb, one_by_one)


def test_eval_pipeline_keeps_order_and_matches_preprocess():
    x, y = _images()
    ds = make_dataset(x, y, 16, False, augment="cifar", resize=(4, 4), mean=0.5, std=0.5)
    xs, ys = _epoch(ds)
    np.testing.assert_array_equal(ys, y)
    expected = make_preprocess_fn(resize=(4, 4), mean=0.5, std=0.5)(x).numpy()
    np.testing.assert_allclose(xs, expected, rtol=1e-6, atol=1e-6)
    assert xs.shape == (40, 4, 4, 3)


def test_uint8_is_scaled_and_normalised():
    x = np.full((4, 2, 2, 1), 255, np.uint8)
    xs, _ = _epoch(make_dataset(x, np.zeros(4), 4, False, mean=0.1307, std=0.3081))
    np.testing.assert_allclose(xs, (1.0 - 0.1307) / 0.3081, rtol=1e-6)
    xs, _ = _epoch(make_dataset(x, np.zeros(4), 4, False, flatten=True))
    assert xs.shape == (4, 4)
    np.testing.assert_allclose(xs, 1.0)


def test_float_input_is_used_as_is_and_flat_input_supported():
    x = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    xs, ys = _epoch(make_dataset(x, np.array([0, 1, 2]), 2, False))
    np.testing.assert_array_equal(xs, x)
    assert ys.dtype == np.int32


def test_preprocess_same_on_single_image_and_batch():
    x, _ = _images(3)
    fn = make_preprocess_fn(resize=(5, 5), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), flatten=True)
    batch = fn(x).numpy()
    single = np.stack([fn(img).numpy() for img in x])
    assert batch.shape == (3, 75)
    np.testing.assert_allclose(batch, single, rtol=1e-6, atol=1e-6)


def test_cifar_augment_is_a_shifted_and_maybe_flipped_crop_of_zero_padding():
    rng = np.random.default_rng(1)
    image = rng.random((8, 8, 3)).astype(np.float32)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    windows = [padded[i : i + 8, j : j + 8] for i in range(9) for j in range(9)]
    candidates = windows + [w[:, ::-1] for w in windows]
    seen = set()
    for s in range(20):
        out = cifar_augment(tf.constant(image), tf.constant([s, 0], tf.int64)).numpy()
        matches = [k for k, c in enumerate(candidates) if np.array_equal(out, c)]
        assert matches, f"seed {s}: output is not a crop of the padded image"
        seen.add(matches[0])
    assert len(seen) > 5  # really random


def test_augmentation_is_applied_only_when_training():
    x, y = _images()
    off = _epoch(make_dataset(x, y, 8, False))[0]
    on_eval = _epoch(make_dataset(x, y, 8, False, augment="cifar"))[0]
    np.testing.assert_array_equal(off, on_eval)
    train = make_dataset(x, y, 40, True, augment="flip", shuffle=False, seed=0)
    flipped = _epoch(train)[0]
    assert not np.array_equal(flipped, off)
    for a, b in zip(flipped, off):
        assert np.array_equal(a, b) or np.array_equal(a, b[:, ::-1])


def test_global_batch_size_multiplies_by_replicas(mirrored_strategy):
    assert global_batch_size(16) == 16
    assert global_batch_size(16, mirrored_strategy) == 32
    x, y = _images(70)
    ds = make_dataset(x, y, 16, True, strategy=mirrored_strategy, seed=0)
    sizes = [int(xb.shape[0]) for xb, _ in ds]
    assert sizes == [32, 32, 6]
    dist = mirrored_strategy.experimental_distribute_dataset(
        make_dataset(x, y, 16, True, strategy=mirrored_strategy, seed=0, drop_remainder=True)
    )
    first = next(iter(dist))[0]
    per_replica = mirrored_strategy.experimental_local_results(first)
    assert [int(t.shape[0]) for t in per_replica] == [16, 16]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(augment="mixup"), "augment"),
        (dict(seed=None, deterministic=True), "seed"),
        (dict(mean=0.5), "mean and std"),
        (dict(mean=0.5, std=0.0), "std"),
    ],
)
def test_make_dataset_rejects_bad_arguments(kwargs, match):
    x, y = _images(4)
    batch_size = kwargs.pop("batch_size", 2)
    with pytest.raises(InvalidArgumentError, match=match):
        make_dataset(x, y, batch_size, True, **kwargs)


def test_make_dataset_rejects_mismatched_labels():
    x, _ = _images(4)
    with pytest.raises(InvalidArgumentError, match=r"y must have shape \(4,\)"):
        make_dataset(x, np.zeros(3), 2, True)
