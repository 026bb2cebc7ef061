"""The defaults the command-line tools and the library share, stated once.

``tfprune-train`` and ``tfprune-prune`` (and the help text of their flags) read them here, and so
does :class:`tfprune.configs.TrainConfig`, so a model trained by one and pruned by the other sees
the same seed, and with it the same held-out test split. This module loads nothing (``--help``
stays instant).
"""

from __future__ import annotations

__all__ = ["BATCH_SIZE", "BATCH_SIZE_HELP", "DATASET", "MODEL", "SEED", "WEIGHT_DECAY"]

#: Seed of everything random in a run: weights, shuffling, and the held-out test split.
SEED = 0
#: Examples per training step, over all replicas together.
BATCH_SIZE = 64
BATCH_SIZE_HELP = (
    "Global batch size: examples per training step, split evenly over the replicas of --strategy."
)
#: L2 weight decay of every training phase.
WEIGHT_DECAY = 0.0
#: The zoo model the tools train when --model is not given (fits the embedded digits data).
MODEL = "small_cnn"
#: The dataset the tools use when --dataset is not given (embedded: no files needed).
DATASET = "digits"
