"""Common ``tf.data`` pipeline builder for in-memory image arrays.

Conventions used by every loader in :mod:`tfprune.data`:

* Images are NHWC. ``uint8`` arrays are scaled to ``[0, 1]`` (divided by 255); floating arrays are
  taken as already scaled.
* The order of the per-example transform is: scale → resize → augmentation (training only) →
  normalisation ``(x - mean) / std`` → flatten. Augmentation therefore acts on raw ``[0, 1]``
  pixels, so CIFAR's zero padding is black padding, as in torchvision.
* ``batch_size`` is the **per-replica** batch. The dataset is batched with the *global* batch
  ``batch_size * strategy.num_replicas_in_sync`` (``strategy=None`` means one replica). Distribution
  itself is left to ``model.fit``, which splits each global batch over the replicas; call
  ``strategy.experimental_distribute_dataset`` yourself for a custom training loop.
* Randomness is seeded: the shuffle uses ``seed`` and each example's augmentation draws a
  stateless seed from ``tf.data.Dataset.random(seed + 1, rerandomize_each_iteration=True)``, so the
  same seed gives the same batches in every run, yet each epoch is reshuffled and re-augmented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tfprune.compat import tf
from tfprune.errors import InvalidArgumentError

__all__ = [
    "AUTOTUNE",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "AugmentFn",
    "Preprocessor",
    "cifar_augment",
    "flip_augment",
    "finalize_dataset",
    "global_batch_size",
    "make_dataset",
    "make_preprocess_fn",
    "resolve_augment",
]

AUTOTUNE = tf.data.AUTOTUNE

#: MNIST normalisation of the Lee et al. 2020 / TPP scripts (on ``[0, 1]`` pixels).
MNIST_MEAN: tuple[float, ...] = (0.1307,)
MNIST_STD: tuple[float, ...] = (0.3081,)
#: ImageNet per-channel statistics (torchvision); Wang et al./GReg/TPP use them on CIFAR.
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)
#: Usual CIFAR-10 statistics (as in the code of Liu et al. 2019).
CIFAR10_MEAN: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
#: Usual CIFAR-100 statistics.
CIFAR100_MEAN: tuple[float, ...] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: tuple[float, ...] = (0.2673, 0.2564, 0.2762)

#: An augmentation: ``fn(image, seed) -> image`` for one HWC float image in ``[0, 1]`` and a
#: stateless seed (int64 tensor of shape ``[2]``). Must use only stateless random ops.
AugmentFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def flip_augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random horizontal flip with probability 1/2 (stateless, seeded)."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def cifar_augment(image: tf.Tensor, seed: tf.Tensor, padding: int = 4) -> tf.Tensor:
    """Standard CIFAR augmentation: zero-pad ``padding`` pixels, random crop back, random flip."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, size=shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


_NAMED_AUGMENTS: dict[str, AugmentFn] = {"cifar": cifar_augment, "flip": flip_augment}


def resolve_augment(augment: str | AugmentFn | bool | None) -> AugmentFn | None:
    """Turn an ``augment`` argument (name, callable, ``None``/``False``) into a function.

    Names: ``"cifar"`` (pad 4 + random crop + flip) and ``"flip"``. ``True`` is not accepted
    because the right augmentation depends on the data; name it.
    """
    if augment is None or augment is False:
        return None
    if isinstance(augment, str):
        if augment not in _NAMED_AUGMENTS:
            raise InvalidArgumentError(
                f"augment={augment!r} is unknown; use one of {sorted(_NAMED_AUGMENTS)}, "
                "a callable fn(image, seed) -> image, or None"
            )
        return _NAMED_AUGMENTS[augment]
    if callable(augment):
        return augment
    raise InvalidArgumentError(
        f"augment={augment!r} must be one of {sorted(_NAMED_AUGMENTS)}, a callable "
        "fn(image, seed) -> image, or None"
    )


def global_batch_size(batch_size: int, strategy: tf.distribute.Strategy | None = None) -> int:
    """Global batch = per-replica ``batch_size`` × ``strategy.num_replicas_in_sync`` (1 if None)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise InvalidArgumentError(f"batch_size={batch_size!r} must be a positive int")
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size={batch_size} must be >= 1")
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    return int(batch_size) * replicas


def _as_stat(value: float | Sequence[float] | None, name: str) -> tf.Tensor | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.size == 0:
        raise InvalidArgumentError(f"{name} must not be empty")
    if name == "std" and np.any(arr <= 0):
        raise InvalidArgumentError(f"std={value!r} must be > 0")
    return tf.constant(arr, dtype=tf.float32)


class Preprocessor:
    """The deterministic (evaluation) transform: scale → resize → normalise → flatten.

    Calling it on an HWC image or an NHWC batch (NumPy or tensor, ``uint8`` or float) gives
    exactly what the evaluation pipeline of :func:`make_dataset` yields; use it to preprocess
    arrays for metrics computed outside ``tf.data``.
    """

    def __init__(
        self,
        *,
        resize: tuple[int, int] | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        flatten: bool = False,
    ) -> None:
        """Validate and store the options (see :func:`make_dataset` for their meaning)."""
        if (mean is None) != (std is None):
            raise InvalidArgumentError("mean and std must be given together (or both None)")
        self.mean = _as_stat(mean, "mean")
        self.std = _as_stat(std, "std")
        if resize is not None:
            resize = (int(resize[0]), int(resize[1]))
            if min(resize) < 1:
                raise InvalidArgumentError(f"resize={resize} must be two positive ints")
        self.resize_to = resize
        self.flatten = bool(flatten)

    @staticmethod
    def scale(x: Any) -> tf.Tensor:
        """``uint8`` → float32 in ``[0, 1]``; floats are cast to float32 unchanged."""
        x = tf.convert_to_tensor(x)
        if x.dtype == tf.uint8:
            return tf.cast(x, tf.float32) / 255.0
        return tf.cast(x, tf.float32)

    def resize(self, x: tf.Tensor) -> tf.Tensor:
        """Bilinear, antialiased resize to ``resize`` (identity when not set)."""
        if self.resize_to is None:
            return x
        return tf.image.resize(x, self.resize_to, method="bilinear", antialias=True)

    def finish(self, x: tf.Tensor, batched: bool | None = None) -> tf.Tensor:
        """Normalise with ``(x - mean) / std`` and flatten, as configured.

        ``batched``: whether ``x`` is a batch (flattened per example); ``None`` reads it from
        the rank (4: a batch of images, else one example).
        """
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if self.flatten:
            if batched is None:
                batched = x.shape.rank == 4
            x = tf.reshape(x, [tf.shape(x)[0], -1] if batched else [-1])
        return x

    def __call__(self, x: Any) -> tf.Tensor:
        """Apply the whole evaluation transform to one image or a batch."""
        return self.finish(self.resize(self.scale(x)))


def make_preprocess_fn(
    *,
    resize: tuple[int, int] | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    flatten: bool = False,
) -> Preprocessor:
    """Return the :class:`Preprocessor` matching these :func:`make_dataset` options."""
    return Preprocessor(resize=resize, mean=mean, std=std, flatten=flatten)


def finalize_dataset(
    ds: tf.data.Dataset,
    batch_size: int,
    *,
    deterministic: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batch with the global batch size, prefetch with ``AUTOTUNE`` and set determinism options."""
    ds = ds.batch(global_batch_size(batch_size, strategy), drop_remainder=drop_remainder)
    return _prefetched(ds, deterministic)


def _prefetched(ds: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return ds.with_options(options)


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    training: bool,
    *,
    augment: str | AugmentFn | None = None,
    seed: int | None = 0,
    deterministic: bool = False,
    shuffle: bool | None = None,
    resize: tuple[int, int] | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    flatten: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Build a batched ``tf.data`` pipeline over in-memory arrays.

    Args:
      x: images, NHWC (or already flat ``(N, D)`` when no resize/augmentation is asked);
        ``uint8`` is scaled by 1/255, floats are used as they are.
      y: integer labels of shape ``(N,)``.
      batch_size: per-replica batch size; the dataset yields global batches of
        ``batch_size * strategy.num_replicas_in_sync`` (see :func:`global_batch_size`).
      training: training pipeline (shuffled and augmented) or evaluation pipeline (fixed order).
      augment: ``"cifar"`` (pad 4 + random crop + flip), ``"flip"``, a stateless
        ``fn(image, seed) -> image``, or ``None``. Applied only when ``training`` is true.
      seed: seed of the shuffle and of the augmentation stream. ``None`` means unseeded
        (not allowed with ``deterministic=True``).
      deterministic: set ``tf.data.Options.deterministic`` and keep element order in parallel
        maps, so the same seed gives bit-identical batches.
      shuffle: shuffle the examples (default: ``training``). The whole array is shuffled (by
        index, so no copy of the data is buffered) and reshuffled every epoch.
      resize: optional ``(height, width)`` bilinear (antialiased) resize.
      mean: per-channel (or scalar) mean on the ``[0, 1]`` scale, or ``None``.
      std: per-channel (or scalar) standard deviation, given together with ``mean``.
      flatten: flatten each example to a vector (for MLPs).
      strategy: a ``tf.distribute.Strategy`` used only to compute the global batch.
      drop_remainder: drop the last incomplete batch.

    Returns:
      A dataset of ``(images float32, labels int32)`` batches.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2:
        raise InvalidArgumentError(f"x must have a batch dimension; got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise InvalidArgumentError(
            f"y must have shape ({x.shape[0]},) to match x of shape {x.shape}; got {y.shape}"
        )
    if x.shape[0] == 0:
        raise InvalidArgumentError("x is empty")
    if deterministic and seed is None:
        raise InvalidArgumentError("deterministic=True needs an int seed, got seed=None")
    augment_fn = resolve_augment(augment) if training else None
    if augment_fn is not None and x.ndim != 4:
        raise InvalidArgumentError(f"augment needs NHWC images; got x of shape {x.shape}")
    global_batch_size(batch_size, strategy)  # validates batch_size early
    preprocess = make_preprocess_fn(resize=resize, mean=mean, std=std, flatten=flatten)
    do_shuffle = training if shuffle is None else bool(shuffle)

    x_t = tf.constant(x)
    y_t = tf.constant(y.astype(np.int32))
    n = int(x.shape[0])
    ds = tf.data.Dataset.range(n)
    if do_shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def transform(image: tf.Tensor, seed_pair: tf.Tensor | None) -> tf.Tensor:
        image = preprocess.resize(preprocess.scale(image))
        if augment_fn is not None and seed_pair is not None:
            image = augment_fn(image, seed_pair)
        return preprocess.finish(image)

    if augment_fn is None:
        # Without augmentation the transform is per example but needs no example-level state:
        # batches of indices are gathered and transformed at once (the same values and order
        # as example by example, without a map call per example).
        ds = ds.batch(global_batch_size(batch_size, strategy), drop_remainder=drop_remainder)

        def load_batch(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            images = preprocess.resize(preprocess.scale(tf.gather(x_t, index)))
            return preprocess.finish(images, batched=True), tf.gather(y_t, index)

        ds = ds.map(load_batch, num_parallel_calls=AUTOTUNE, deterministic=True)
        return _prefetched(ds, deterministic)

    if augment_fn is not None:
        aug_seed = None if seed is None else int(seed) + 1
        seeds = tf.data.Dataset.random(seed=aug_seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))

        def load(index: tf.Tensor, seed_pair: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return transform(tf.gather(x_t, index), seed_pair), tf.gather(y_t, index)

    else:

        def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:  # type: ignore[misc]
            return transform(tf.gather(x_t, index), None), tf.gather(y_t, index)

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True if deterministic else None)
    return finalize_dataset(
        ds,
        batch_size,
        deterministic=deterministic,
        strategy=strategy,
        drop_remainder=drop_remainder,
    )
