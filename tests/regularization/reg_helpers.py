"""Shared helpers of the regularization tests: a small CNN on digits, fast and deterministic."""

from __future__ import annotations

import functools

import numpy as np

import tfprune
from tfprune.compat import keras, tf
from tfprune.models.small_cnn import small_cnn

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def digits(batch_size: int = 64):
    """A fresh digits dataset bundle (8x8x1 images, 1437 train / 360 test).

    Fresh on every call: a seeded ``tf.data`` shuffle gives a new order each time the same dataset
    is iterated, so a shared bundle would hand each test the epochs the tests before it left over
    (in random test order, a different base and data order per run). A fresh bundle starts at the
    seed's first epoch.
    """
    from tfprune.data import load_dataset

    return load_dataset("digits", batch_size=batch_size, seed=0, deterministic=True)


def digits_train(order_seed: int, batch_size: int = 64) -> tf.data.Dataset:
    """The training split of :func:`digits` (the same images), shuffled by ``order_seed``.

    ``order_seed=0`` gives the batches of ``digits().train``. (Another ``seed`` for
    ``load_dataset`` would also draw another train/test split.)
    """
    from tfprune.data.pipeline import make_dataset

    x, y = digits(batch_size).train_arrays
    return make_dataset(x, y, batch_size, True, seed=order_seed, deterministic=True)


def fixed_batches(n: int = 4, batch_size: int = 32) -> tf.data.Dataset:
    """``n`` fixed batches of digits (same order every epoch), repeated forever."""
    xs, ys = [], []
    for x, y in digits().train.unbatch().take(n * batch_size):
        xs.append(x.numpy())
        ys.append(int(y))
    x = np.stack(xs).astype(np.float32)
    y = np.asarray(ys, np.int64)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).repeat()


def masked_cnn(width: int = 8, seed: int = 0, lr: float = 0.01, strategy=None) -> keras.Model:
    """An untrained small CNN with all-ones masks on every prunable group, compiled (SGD)."""
    keras.utils.set_random_seed(seed)
    base = small_cnn(width=width, seed=seed)
    scope = strategy.scope() if strategy is not None else _null()
    with scope:
        masked = tfprune.prune_filters(base, sparsity=0.0)
        masked.compile(keras.optimizers.SGD(lr, momentum=0.9), LOSS, metrics=["accuracy"])
    return masked


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@functools.cache
def trained_cnn_weights(width: int = 32, epochs: int = 10) -> list[np.ndarray]:
    """Weights of a small CNN trained on digits (cached per process; ~93% after 10 epochs)."""
    keras.utils.set_random_seed(0)
    model = small_cnn(width=width, seed=0)
    model.compile(keras.optimizers.Adam(3e-3), LOSS, metrics=["accuracy"])
    model.fit(digits().train, epochs=epochs, verbose=0)
    return model.get_weights()


def trained_cnn(width: int = 32) -> keras.Model:
    """A fresh copy of the trained small CNN."""
    model = small_cnn(width=width, seed=0)
    model.set_weights(trained_cnn_weights(width))
    return model


def accuracy(model: keras.Model, data=None) -> float:
    """Held-out accuracy on digits."""
    model.compile(loss=LOSS, metrics=["accuracy"])
    return float(model.evaluate(data or digits().test, verbose=0)[1])


def unit_rows(group, variable_name: str = "kernel") -> list[np.ndarray]:
    """Producer filters of ``group`` as (channels, -1) rows."""
    from tfprune.importance.criteria import channel_rows

    rows = []
    for m in group.producers:
        rows.extend(channel_rows(m, (variable_name,)))
    return rows
