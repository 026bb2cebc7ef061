"""One entry point for every dataset: :func:`load_dataset`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tfprune.compat import tf
from tfprune.data.bundle import ArraySplits, DatasetBundle
from tfprune.data.cifar import load_cifar
from tfprune.data.digits import load_digits
from tfprune.data.imagenet import load_imagenet
from tfprune.data.mnist import load_mnist
from tfprune.data.pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    global_batch_size,
    make_dataset,
    make_preprocess_fn,
)
from tfprune.errors import InvalidArgumentError

__all__ = ["DATASET_NAMES", "list_datasets", "load_dataset"]

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "cifar10", "cifar100", "imagenet")

_PIPELINE_OPTIONS = {
    "batch_size",
    "eval_batch_size",
    "seed",
    "deterministic",
    "strategy",
    "drop_remainder",
    "flatten",
    "augment",
    "normalize",
}
_DATASET_OPTIONS: dict[str, set[str]] = {
    "digits": _PIPELINE_OPTIONS | {"test_fraction"},
    "mnist": _PIPELINE_OPTIONS | {"split", "holdout", "resize", "allow_download"},
    "cifar10": _PIPELINE_OPTIONS | {"allow_download"},
    "cifar100": _PIPELINE_OPTIONS | {"allow_download", "label_mode"},
}
_DEFAULT_BATCH = {"digits": 100, "mnist": 100, "cifar10": 128, "cifar100": 128}
_CIFAR_STATS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASET_NAMES)


def _check_options(name: str, options: dict[str, Any]) -> None:
    allowed = _DATASET_OPTIONS[name]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidArgumentError(
            f"load_dataset({name!r}) got unknown option(s) {unknown}; allowed: {sorted(allowed)}"
        )


def _stats(name: str, normalize: Any) -> tuple[Sequence[float] | None, Sequence[float] | None]:
    """Resolve the ``normalize`` option into (mean, std)."""
    if normalize is None or normalize is False:
        return None, None
    if isinstance(normalize, tuple) and len(normalize) == 2 and not isinstance(normalize[0], str):
        return normalize
    if name == "mnist":
        if normalize is True or normalize == "mnist":
            return MNIST_MEAN, MNIST_STD
    elif name in ("cifar10", "cifar100"):
        key = "imagenet" if normalize is True else normalize
        if key in _CIFAR_STATS:
            return _CIFAR_STATS[key]
    elif name == "digits" and normalize is True:
        raise InvalidArgumentError(
            "digits has no standard statistics; pass normalize=(mean, std) or None"
        )
    raise InvalidArgumentError(
        f"normalize={normalize!r} is not valid for {name}; use None, True, (mean, std)"
        + (", 'imagenet', 'cifar10' or 'cifar100'" if name.startswith("cifar") else "")
    )


def _bundle_from_arrays(
    name: str,
    splits: ArraySplits,
    *,
    batch_size: int,
    eval_batch_size: int | None = None,
    seed: int | None = 0,
    deterministic: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    drop_remainder: bool = False,
    flatten: bool = False,
    augment: Any = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: tuple[int, int] | None = None,
) -> DatasetBundle:
    common = {
        "seed": seed,
        "deterministic": deterministic,
        "strategy": strategy,
        "resize": resize,
        "mean": mean,
        "std": std,
        "flatten": flatten,
    }
    train = make_dataset(
        splits.x_train,
        splits.y_train,
        batch_size,
        True,
        augment=augment,
        drop_remainder=drop_remainder,
        **common,
    )
    test = make_dataset(
        splits.x_test,
        splits.y_test,
        batch_size if eval_batch_size is None else eval_batch_size,
        False,
        **common,
    )
    preprocess = make_preprocess_fn(resize=resize, mean=mean, std=std, flatten=flatten)
    input_shape = tuple(int(d) for d in preprocess(splits.x_train[:1]).shape[1:])
    extras = []
    if resize is not None:
        extras.append(f"resized to {resize[0]}x{resize[1]}")
    if mean is not None:
        extras.append(f"normalised with mean={tuple(mean)} std={tuple(std or ())}")
    if augment:
        extras.append(f"train augmentation={augment if isinstance(augment, str) else 'custom'}")
    if flatten:
        extras.append("flattened")
    description = splits.description + ("; " + ", ".join(extras) if extras else "")
    return DatasetBundle(
        name=name,
        train=train,
        test=test,
        input_shape=input_shape,
        num_classes=splits.num_classes,
        num_train=len(splits.y_train),
        num_test=len(splits.y_test),
        batch_size=global_batch_size(batch_size, strategy),
        description=description,
        train_arrays=(splits.x_train, splits.y_train),
        test_arrays=(splits.x_test, splits.y_test),
        preprocess=preprocess,
    )


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, **options: Any
) -> DatasetBundle:
    """Load a dataset by name and build its train/test ``tf.data`` pipelines.

    Names: ``digits`` (embedded, no files needed), ``mnist``, ``cifar10``, ``cifar100``,
    ``imagenet``. ``data_dir`` is the folder with the files (see each reader); without it,
    ``$TFPRUNE_DATA_DIR/<name>`` is used. Nothing is ever downloaded unless
    ``allow_download=True`` is passed (MNIST/CIFAR only).

    Options common to the in-memory datasets: ``batch_size`` (per replica; defaults digits/MNIST
    100, CIFAR 128), ``eval_batch_size``, ``seed`` (0), ``deterministic`` (False), ``strategy``,
    ``drop_remainder``, ``flatten`` (False), ``augment`` (CIFAR default ``"cifar"``, else None),
    ``normalize``:

    * digits: ``None`` (default; pixels in ``[0, 1]``) or ``(mean, std)``; ``test_fraction`` 0.2.
    * mnist: ``True`` (default: mean 0.1307 / std 0.3081), ``None`` or ``(mean, std)``;
      ``resize`` (``None`` or e.g. ``32`` / ``(32, 32)``), ``split`` (``"auto"``/``"standard"``/
      ``"t10k"``), ``holdout`` (2000).
    * cifar10/cifar100: ``True``/``"imagenet"`` (default, as the Wang et al./GReg/TPP code),
      ``"cifar10"``, ``"cifar100"``, ``None`` or ``(mean, std)``; cifar100 ``label_mode``.
    * imagenet: the keyword arguments of :func:`tfprune.data.imagenet.load_imagenet`.

    Raises:
      InvalidArgumentError: unknown name (the message lists the known ones) or option.
      DatasetNotFoundError: the files are missing (the message names them and how to get them).
    """
    if name not in DATASET_NAMES:
        raise InvalidArgumentError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}"
        )
    if name == "imagenet":
        try:
            return load_imagenet(data_dir, **options)
        except TypeError as err:
            raise InvalidArgumentError(f"load_dataset('imagenet'): {err}") from err

    _check_options(name, options)
    opts = dict(options)
    batch_size = opts.pop("batch_size", _DEFAULT_BATCH[name])
    flatten = bool(opts.pop("flatten", False))
    default_norm: Any = None if name == "digits" else True
    mean, std = _stats(name, opts.pop("normalize", default_norm))
    default_augment = "cifar" if name.startswith("cifar") else None
    augment = opts.pop("augment", default_augment)
    pipeline = {k: opts.pop(k) for k in list(opts) if k in _PIPELINE_OPTIONS}
    resize = None

    if name == "digits":
        if data_dir is not None:
            raise InvalidArgumentError("digits is embedded in scikit-learn; do not pass data_dir")
        splits = load_digits(
            test_fraction=opts.pop("test_fraction", 0.2), seed=pipeline.get("seed", 0) or 0
        )
    elif name == "mnist":
        size = opts.pop("resize", None)
        if size is not None:
            resize = (int(size), int(size)) if isinstance(size, int) else tuple(size)
        splits = load_mnist(data_dir, seed=pipeline.get("seed", 0) or 0, **opts)
    else:
        splits = load_cifar(data_dir, 10 if name == "cifar10" else 100, **opts)

    return _bundle_from_arrays(
        name,
        splits,
        batch_size=batch_size,
        flatten=flatten,
        augment=augment,
        mean=mean,
        std=std,
        resize=resize,
        **pipeline,
    )
