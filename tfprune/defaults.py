"""The defaults the command-line tools and the library share, stated once.

``tfprune-train`` and ``tfprune-prune`` (and the help text of their flags) read them here, and so
does :class:`tfprune.configs.TrainConfig`, so a model trained by one and pruned by the other sees
the same seed, and with it the same held-out test split. The protocols and every training recipe
that gives no batch size take the dataset's batch size from :data:`BATCH_SIZES`. This module
loads nothing (``--help`` stays instant).
"""

from __future__ import annotations

from tfprune.errors import ConfigError

__all__ = [
    "BATCH_SIZES",
    "BATCH_SIZE_HELP",
    "DATASET",
    "MODEL",
    "SEED",
    "WEIGHT_DECAY",
    "batch_size",
]

#: Seed of everything random in a run: weights, shuffling, and the held-out test split.
SEED = 0
#: The default batch size of each dataset (examples per training step over all replicas): the
#: one every tool, protocol and recipe uses when none is given. MNIST, CIFAR and ImageNet take
#: the batch sizes of the papers' recipes in ``configs/``; the small embedded digits data
#: takes small batches.
BATCH_SIZES: dict[str, int] = {
    "digits": 32,
    "mnist": 100,
    "cifar10": 128,
    "cifar100": 128,
    "imagenet": 256,
}
BATCH_SIZE_HELP = (
    "Global batch size: examples per training step, split evenly over the replicas of "
    "--strategy (default: the dataset's: "
    + ", ".join(f"{name} {size}" for name, size in BATCH_SIZES.items())
    + ")."
)
#: L2 weight decay of every training phase.
WEIGHT_DECAY = 0.0
#: The zoo model the tools train when --model is not given (fits the embedded digits data).
MODEL = "small_cnn"
#: The dataset the tools use when --dataset is not given (embedded: no files needed).
DATASET = "digits"


def batch_size(dataset: str) -> int:
    """The default batch size of ``dataset`` (:data:`BATCH_SIZES`).

    Raises:
      ConfigError: an unknown dataset (the message lists the known ones).
    """
    try:
        return BATCH_SIZES[dataset]
    except KeyError:
        raise ConfigError(
            f"no default batch size for dataset {dataset!r}; known datasets: "
            f"{', '.join(BATCH_SIZES)} (or give the batch size)"
        ) from None
