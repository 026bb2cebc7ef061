"""scikit-learn's embedded digits (8×8 grey images, 1,797 examples, 10 classes).

This is the project's embedded default dataset: it ships inside scikit-learn, so nothing is read
from the network or from user paths.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as sk_load_digits

from tfprune.data.bundle import ArraySplits, stratified_split
from tfprune.errors import InvalidArgumentError

__all__ = ["DIGITS_NUM_EXAMPLES", "load_digits"]

DIGITS_NUM_EXAMPLES = 1797


def load_digits(test_fraction: float = 0.2, seed: int = 0, flatten: bool = False) -> ArraySplits:
    """Load scikit-learn's digits with a deterministic stratified train/test split.

    Args:
      test_fraction: fraction of the 1,797 images held out for testing (stratified by class).
      seed: seed of the split; the same seed always gives the same split.
      flatten: return ``(N, 64)`` vectors instead of ``(N, 8, 8, 1)`` images.

    Returns:
      :class:`~tfprune.data.bundle.ArraySplits` with float32 pixels in ``[0, 1]`` (the original
      0..16 intensities divided by 16) and int32 labels.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise InvalidArgumentError(f"test_fraction={test_fraction} must be in (0, 1)")
    raw = sk_load_digits()
    x = (np.asarray(raw.images, dtype=np.float32) / 16.0).reshape(-1, 8, 8, 1)
    y = np.asarray(raw.target, dtype=np.int32)
    if flatten:
        x = x.reshape(len(x), 64)
    train_idx, test_idx = stratified_split(y, float(test_fraction), seed)
    description = (
        f"scikit-learn digits (8x8, {len(y)} images, 10 classes), stratified seeded split "
        f"(seed={seed}): {len(train_idx)} train / {len(test_idx)} test "
        f"(test_fraction={test_fraction}); pixels scaled to [0, 1] by /16"
    )
    return ArraySplits(
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
        num_classes=10,
        description=description,
    )
