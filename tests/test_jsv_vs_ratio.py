"""Spec table 2.6: mean JSV of MLP-7-Linear falls monotonically with the L1 pruning ratio."""

from __future__ import annotations

import numpy as np

import tfprune
from tfprune.compat import keras
from tfprune.data import load_dataset
from tfprune.models import get_model, mlp_scheme

RATIOS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)


def test_mean_jsv_falls_monotonically_with_l1_pruning_ratio(mnist_dir):
    data = load_dataset("mnist", str(mnist_dir), split="t10k", flatten=True, batch_size=100, seed=0)
    assert (data.num_train, data.num_test) == (8000, 2000)
    keras.utils.set_random_seed(0)
    model = get_model("mlp7_linear", seed=0)
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(data.train, epochs=3, verbose=0)
    assert model.evaluate(data.test, verbose=0)[1] > 0.8
    x = np.concatenate([b[0].numpy() for b in data.train.take(2)])  # 200 training images

    jsv = []
    for pr in RATIOS:
        small = model if pr == 0 else tfprune.shrink(model, mlp_scheme(pr))
        jsv.append(tfprune.mean_jsv(small, x).mean)
    assert all(a > b for a, b in zip(jsv, jsv[1:], strict=False)), dict(zip(RATIOS, jsv))
    assert jsv[-1] < 0.01 * jsv[0]  # pruning 90% of the filters collapses isometry
