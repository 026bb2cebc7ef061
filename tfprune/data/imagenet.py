"""ImageNet (or a class subset such as ImageNet100) from TFRecords or from class folders.

Two layouts are read (``data_dir`` is the root):

* TFRecords as written by the usual ``build_imagenet_data.py`` scripts: shards ``train-*`` and
  ``validation-*`` holding ``tf.train.Example`` s with ``image/encoded`` (JPEG bytes) and
  ``image/class/label`` (int64). Those scripts write labels ``1..1000``; pass
  ``label_offset=1`` to shift them to ``0..999``.
* Class folders: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (``validation/`` also works).
  Class ``i`` is the ``i``-th wnid of the sorted training folder names (or of ``classes``).

Preprocessing (torchvision conventions): training = random resized crop (scale 0.08–1, aspect
3/4–4/3) to ``image_size`` + random horizontal flip; evaluation = resize the shorter side to
``resize_size`` (256) + central ``image_size`` (224) crop. Then per-channel normalisation with the
ImageNet mean/std on ``[0, 1]`` pixels. All randomness is stateless and seeded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tfprune.compat import tf
from tfprune.data.bundle import DatasetBundle, missing_files_error, resolve_data_dir
from tfprune.data.pipeline import (
    AUTOTUNE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    finalize_dataset,
    global_batch_size,
)
from tfprune.errors import InvalidArgumentError

__all__ = [
    "HOW_TO_GET",
    "IMAGE_EXTENSIONS",
    "decode_and_preprocess",
    "load_imagenet",
    "parse_example",
]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")

#: How to lay out ImageNet (shown when its files are missing).
HOW_TO_GET = (
    "ImageNet cannot be downloaded automatically (registration needed at https://image-net.org). "
    "Provide either TFRecord shards train-*-of-* and validation-*-of-* (features image/encoded, "
    "image/class/label), or class folders train/<wnid>/*.JPEG and val/<wnid>/*.JPEG. Pass "
    "data_dir=... or set $TFPRUNE_DATA_DIR (folder $TFPRUNE_DATA_DIR/imagenet)."
)


def parse_example(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Parse one ImageNet ``tf.train.Example`` into (encoded image bytes, int64 label)."""
    features = tf.io.parse_single_example(
        serialized,
        {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    return features["image/encoded"], features["image/class/label"]


def _random_resized_crop(
    image: tf.Tensor,
    seed: tf.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> tf.Tensor:
    bbox = tf.zeros([1, 0, 4], tf.float32)  # no box: sample over the whole image
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=bbox,
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, [size, size], method="bilinear", antialias=True)


def _resize_center_crop(image: tf.Tensor, resize_size: int, size: int) -> tf.Tensor:
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = float(resize_size) / tf.reduce_min(shape)
    new_hw = tf.cast(tf.round(shape * factor), tf.int32)
    resized = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    top = (new_hw[0] - size) // 2
    left = (new_hw[1] - size) // 2
    return tf.image.crop_to_bounding_box(resized, top, left, size, size)


def decode_and_preprocess(
    encoded: tf.Tensor,
    training: bool,
    seed: tf.Tensor | None = None,
    *,
    image_size: int = 224,
    resize_size: int = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tf.Tensor:
    """Decode JPEG/PNG bytes and apply the training or evaluation transform (see module doc).

    ``seed`` (int64 ``[2]``) is required when ``training`` is true.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.cast(image, tf.float32) / 255.0
    if training:
        if seed is None:
            raise InvalidArgumentError("decode_and_preprocess(training=True) needs a seed")
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = _random_resized_crop(image, crop_seed, image_size)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    else:
        image = _resize_center_crop(image, resize_size, image_size)
    image = (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def _class_folder(root: Path, split: str) -> Path | None:
    names = ("train",) if split == "train" else ("val", "validation")
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _list_folder(folder: Path, wnids: Sequence[str]) -> tuple[list[str], list[int]]:
    paths: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        class_dir = folder / wnid
        if not class_dir.is_dir():
            continue
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(str(file))
                labels.append(label)
    return paths, labels


def load_imagenet(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 256,
    eval_batch_size: int | None = None,
    image_size: int = 224,
    resize_size: int = 256,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    label_offset: int = 0,
    seed: int | None = 0,
    deterministic: bool = False,
    shuffle_buffer: int = 10_000,
    strategy: tf.distribute.Strategy | None = None,
    drop_remainder: bool = False,
    cache: bool | str = False,
) -> DatasetBundle:
    """Build ImageNet train/validation pipelines from TFRecords or class folders.

    Reading is interleaved over shards, decoding and augmentation run in parallel
    (``AUTOTUNE``), batches are prefetched, and with ``cache`` the encoded images are read from
    disk once: in memory (``True``, for subsets that fit, e.g. ImageNet-100 on a large host) or
    in a cache file (a path prefix); decoding and the random augmentation still run every epoch.

    Args:
      data_dir: root folder (default ``$TFPRUNE_DATA_DIR/imagenet``).
      batch_size: per-replica training batch (global = × replicas).
      eval_batch_size: per-replica evaluation batch (default ``batch_size``).
      image_size: crop size (224).
      resize_size: evaluation shorter-side resize (256) before the central crop.
      num_classes: TFRecords: number of classes (default 1000). Folders: inferred.
      classes: folders only: the wnids to use, in label order (e.g. an ImageNet100 list).
      label_offset: TFRecords only: subtracted from stored labels (1 for ``1..1000`` labels).
      seed: seed of file order, shuffling and augmentation.
      deterministic: keep element order everywhere (slower; for tests and exact replays).
      shuffle_buffer: TFRecords only: examples buffered for shuffling.
      strategy: used only for the global batch size.
      drop_remainder: drop the last incomplete training batch.
      cache: ``False``, ``True`` (memory) or a file path prefix (``<prefix>-train``,
        ``<prefix>-validation``) for the encoded examples.

    Raises:
      DatasetNotFoundError: neither layout is present; the message lists both.
      InvalidArgumentError: ``cache`` is neither a bool nor a path.
    """
    if not isinstance(cache, (bool, str)) or cache == "":
        raise InvalidArgumentError(
            f"cache must be true/false (memory) or a file path prefix, got {cache!r}"
        )

    def cached(ds: tf.data.Dataset, split: str) -> tf.data.Dataset:
        if cache is False:
            return ds
        return ds.cache("" if cache is True else f"{cache}-{split}")

    if deterministic and seed is None:
        raise InvalidArgumentError("deterministic=True needs an int seed, got seed=None")
    root = resolve_data_dir("imagenet", data_dir)
    eval_batch = batch_size if eval_batch_size is None else eval_batch_size
    det = True if deterministic else None
    kw = {"image_size": image_size, "resize_size": resize_size}
    expected = [
        "train-00000-of-NNNNN ... (TFRecord shards)",
        "validation-00000-of-NNNNN ... (TFRecord shards)",
        "or train/<wnid>/*.JPEG and val/<wnid>/*.JPEG",
    ]
    if root is None or not root.is_dir():
        raise missing_files_error("ImageNet", root, expected, HOW_TO_GET)

    train_shards = sorted(str(p) for p in root.glob("train-*") if p.is_file())
    val_shards = sorted(str(p) for p in root.glob("validation-*") if p.is_file())
    train_dir = _class_folder(root, "train")
    val_dir = _class_folder(root, "val")

    def with_seeds(ds: tf.data.Dataset) -> tf.data.Dataset:
        aug_seed = None if seed is None else int(seed) + 1
        seeds = tf.data.Dataset.random(seed=aug_seed, rerandomize_each_iteration=True).batch(2)
        return tf.data.Dataset.zip((ds, seeds))

    if train_shards and val_shards:
        if classes is not None:
            raise InvalidArgumentError("classes=... applies to class folders, not TFRecords")
        n_classes = 1000 if num_classes is None else int(num_classes)
        offset = tf.constant(int(label_offset), tf.int64)

        def records(files: list[str], training: bool) -> tf.data.Dataset:
            ds = tf.data.Dataset.from_tensor_slices(files)
            if training:
                ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
            ds = ds.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(8, len(files)),
                num_parallel_calls=AUTOTUNE,
                deterministic=det,
            )
            ds = ds.map(parse_example, num_parallel_calls=AUTOTUNE, deterministic=det)
            ds = cached(ds, "train" if training else "validation")
            if training:
                ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
            return ds

        def train_map(
            example: tuple[tf.Tensor, tf.Tensor], seed_pair: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            encoded, label = example
            image = decode_and_preprocess(encoded, True, seed_pair, **kw)
            return image, tf.cast(label - offset, tf.int32)

        def eval_map(encoded: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return decode_and_preprocess(encoded, False, **kw), tf.cast(label - offset, tf.int32)

        train = with_seeds(records(train_shards, True)).map(
            train_map, num_parallel_calls=AUTOTUNE, deterministic=det
        )
        test = records(val_shards, False).map(
            eval_map, num_parallel_calls=AUTOTUNE, deterministic=det
        )
        num_train = num_test = None
        source = (
            f"TFRecords in {root} ({len(train_shards)} train / {len(val_shards)} validation "
            f"shards, label_offset={label_offset})"
        )
    elif train_dir is not None and val_dir is not None:
        wnids = (
            list(classes)
            if classes is not None
            else sorted(p.name for p in train_dir.iterdir() if p.is_dir())
        )
        if not wnids:
            raise missing_files_error("ImageNet", root, expected, HOW_TO_GET)
        n_classes = len(wnids)
        if num_classes is not None and int(num_classes) != n_classes:
            raise InvalidArgumentError(
                f"num_classes={num_classes} but {n_classes} class folders were found/selected"
            )
        train_paths, train_labels = _list_folder(train_dir, wnids)
        val_paths, val_labels = _list_folder(val_dir, wnids)
        if not train_paths or not val_paths:
            raise missing_files_error("ImageNet", root, expected, HOW_TO_GET)

        def read(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.io.read_file(path), label

        def files(paths: list[str], labels: list[int], training: bool) -> tf.data.Dataset:
            ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int32)))
            if training and cache is False:  # shuffle the paths: nothing is held in memory
                ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
            ds = ds.map(read, num_parallel_calls=AUTOTUNE, deterministic=det)
            if cache is not False:
                ds = cached(ds, "train" if training else "validation")
                if training:
                    ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
            return ds

        def train_map(  # type: ignore[misc]
            example: tuple[tf.Tensor, tf.Tensor], seed_pair: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            encoded, label = example
            return decode_and_preprocess(encoded, True, seed_pair, **kw), label

        def eval_map(encoded: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:  # type: ignore[misc]
            return decode_and_preprocess(encoded, False, **kw), label

        train = with_seeds(files(train_paths, train_labels, True)).map(
            train_map, num_parallel_calls=AUTOTUNE, deterministic=det
        )
        test = files(val_paths, val_labels, False).map(
            eval_map, num_parallel_calls=AUTOTUNE, deterministic=det
        )
        num_train, num_test = len(train_paths), len(val_paths)
        source = (
            f"class folders in {root} ({n_classes} classes"
            f"{', selected by classes=' if classes is not None else ''}; "
            f"{num_train} train / {num_test} val images)"
        )
    else:
        raise missing_files_error("ImageNet", root, expected, HOW_TO_GET)

    train = finalize_dataset(
        train,
        batch_size,
        deterministic=deterministic,
        strategy=strategy,
        drop_remainder=drop_remainder,
    )
    test = finalize_dataset(test, eval_batch, deterministic=deterministic, strategy=strategy)
    description = (
        f"ImageNet from {source}; train: random resized crop {image_size} + flip; "
        f"eval: resize {resize_size} + center crop {image_size}; ImageNet mean/std"
    )
    return DatasetBundle(
        name="imagenet",
        train=train,
        test=test,
        input_shape=(image_size, image_size, 3),
        num_classes=n_classes,
        num_train=num_train,
        num_test=num_test,
        batch_size=global_batch_size(batch_size, strategy),
        description=description,
    )
