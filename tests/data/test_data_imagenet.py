"""Tests of the ImageNet reader on tiny TFRecord shards and class folders with real JPEGs."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_fakes import IMAGENET_COLORS

from tfprune.data import IMAGENET_MEAN, IMAGENET_STD, load_dataset, load_imagenet
from tfprune.errors import DatasetNotFoundError, InvalidArgumentError

SMALL = dict(image_size=16, resize_size=20, batch_size=4, deterministic=True)


def _normalised(color):
    return (np.array(color) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


def _all(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_tfrecords_train_and_eval_shapes_labels_and_normalisation(fake_imagenet_tfrecords):
    b = load_imagenet(fake_imagenet_tfrecords, num_classes=3, label_offset=1, **SMALL)
    assert b.input_shape == (16, 16, 3) and b.num_classes == 3 and b.num_train is None
    x, y = _all(b.train)
    assert x.shape == (12, 16, 16, 3) and x.dtype == np.float32
    assert sorted(y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    xt, yt = _all(b.test)
    assert yt.tolist() == [0, 1, 2]  # evaluation keeps file order
    for image, label in zip(xt, yt):  # solid-colour JPEGs survive crop + normalisation
        np.testing.assert_allclose(
            image.mean(axis=(0, 1)), _normalised(IMAGENET_COLORS[label]), atol=0.1
        )
    for image, label in zip(x, y):  # random crops of a solid image keep its colour
        np.testing.assert_allclose(
            image.mean(axis=(0, 1)), _normalised(IMAGENET_COLORS[label]), atol=0.1
        )
    assert "TFRecords" in b.description and "label_offset=1" in b.description


def test_tfrecords_pipeline_is_deterministic_for_a_seed(fake_imagenet_tfrecords):
    a = load_imagenet(fake_imagenet_tfrecords, label_offset=1, seed=5, **SMALL)
    b = load_imagenet(fake_imagenet_tfrecords, label_offset=1, seed=5, **SMALL)
    xa, ya = _all(a.train)
    xb, yb = _all(b.train)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(xa, xb)


def test_class_folders_infer_sorted_wnids_and_subset(fake_imagenet_folders):
    b = load_imagenet(fake_imagenet_folders, **SMALL)
    assert b.num_classes == 3 and b.num_train == 12 and b.num_test == 6
    xt, yt = _all(b.test)
    assert yt.tolist() == [0, 0, 1, 1, 2, 2]
    for image, label in zip(xt, yt):
        np.testing.assert_allclose(
            image.mean(axis=(0, 1)), _normalised(IMAGENET_COLORS[label]), atol=0.1
        )
    x, y = _all(b.train)
    assert x.shape == (12, 16, 16, 3) and sorted(y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4

    sub = load_imagenet(fake_imagenet_folders, classes=["n01484850", "n01440764"], **SMALL)
    _, ys = _all(sub.test)
    assert sub.num_classes == 2 and ys.tolist() == [0, 0, 1, 1]
    with pytest.raises(InvalidArgumentError, match="num_classes"):
        load_imagenet(fake_imagenet_folders, num_classes=1000, **SMALL)


def test_imagenet_global_batch_under_strategy(fake_imagenet_folders, mirrored_strategy):
    b = load_imagenet(fake_imagenet_folders, strategy=mirrored_strategy, **SMALL)
    assert b.batch_size == 8
    assert [int(x.shape[0]) for x, _ in b.train] == [8, 4]


def test_imagenet_missing_names_both_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_imagenet(tmp_path)
    message = str(info.value)
    assert "train-00000-of-" in message and "validation-00000-of-" in message
    assert "train/<wnid>/*.JPEG" in message and "val/<wnid>/*.JPEG" in message
    with pytest.raises(DatasetNotFoundError):
        load_dataset("imagenet", tmp_path / "absent")


@pytest.mark.parametrize("layout", ["tfrecords", "folders"])
def test_cached_pipelines_read_the_files_once_and_give_the_same_data(
    layout, fake_imagenet_tfrecords, fake_imagenet_folders, tmp_path
):
    root = fake_imagenet_tfrecords if layout == "tfrecords" else fake_imagenet_folders
    kw = {"label_offset": 1} if layout == "tfrecords" else {}
    plain = load_imagenet(root, seed=3, **kw, **SMALL)
    in_memory = load_imagenet(root, seed=3, cache=True, **kw, **SMALL)
    on_disk = load_imagenet(root, seed=3, cache=str(tmp_path / "enc"), **kw, **SMALL)
    xt, yt = _all(plain.test)
    for cached in (in_memory, on_disk):
        xc, yc = _all(cached.test)
        np.testing.assert_array_equal(yc, yt)
        np.testing.assert_allclose(xc, xt)
        x1, y1 = _all(cached.train)
        x2, y2 = _all(cached.train)  # second epoch: from the cache, reshuffled
        assert sorted(y1.tolist()) == sorted(y2.tolist()) == sorted(_all(plain.train)[1].tolist())
    assert any(p.name.startswith("enc-train") for p in tmp_path.iterdir())
    with pytest.raises(InvalidArgumentError, match="cache"):
        load_imagenet(root, cache=3, **kw, **SMALL)
