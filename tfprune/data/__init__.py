"""tfprune.data: ``tf.data`` input pipelines and dataset readers.

Entry point: :func:`load_dataset` (``digits``, ``mnist``, ``cifar10``, ``cifar100``,
``imagenet``) returning a :class:`DatasetBundle`. The readers (:func:`load_digits`,
:func:`load_mnist`, :func:`load_cifar`, :func:`load_imagenet`) and the pipeline builder
(:func:`make_dataset`) can be used on their own. Nothing is downloaded unless asked.
"""

from tfprune.data.bundle import DATA_DIR_ENV, ArraySplits, DatasetBundle, stratified_split
from tfprune.data.cifar import load_cifar, read_cifar_batch
from tfprune.data.digits import load_digits
from tfprune.data.imagenet import load_imagenet
from tfprune.data.mnist import load_mnist, read_idx
from tfprune.data.pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    Preprocessor,
    cifar_augment,
    flip_augment,
    global_batch_size,
    make_dataset,
    make_preprocess_fn,
)
from tfprune.data.registry import DATASET_NAMES, list_datasets, load_dataset

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "ArraySplits",
    "DatasetBundle",
    "Preprocessor",
    "cifar_augment",
    "flip_augment",
    "global_batch_size",
    "list_datasets",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_imagenet",
    "load_mnist",
    "make_dataset",
    "make_preprocess_fn",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
]
