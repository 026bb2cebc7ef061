"""Coupled (PyTorch) vs decoupled weight decay: the update rule against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfprune.compat import keras
from tfprune.errors import ConfigError
from tfprune.protocols.execute import setup_descriptor
from tfprune.protocols.grids import PROTOCOLS
from tfprune.training import CoupledSGD, make_optimizer
from tfprune.training.recipe import TrainingRecipe


def _hand(coupled: bool, lr=0.1, wd=1e-2, momentum=0.9, steps=100) -> float:
    w, buf = 1.0, 0.0
    for _ in range(steps):
        if coupled:  # torch.optim.SGD: g += wd * w; buf = m * buf + g; w -= lr * buf
            buf = momentum * buf + wd * w
            w -= lr * buf
        else:  # decoupled: w -= lr * wd * w (the gradient is 0)
            w -= lr * wd * w
    return w


@pytest.mark.parametrize("mode, expected", [("coupled", 0.369), ("decoupled", 0.905)])
def test_update_rule_matches_the_hand_computation(mode, expected):
    v = tf.Variable([1.0, -2.0])
    opt = make_optimizer("sgd", 0.1, momentum=0.9, weight_decay=1e-2, weight_decay_mode=mode)

    @tf.function
    def step():
        opt.apply_gradients([(tf.zeros_like(v), v)])  # zero loss: only the decay acts

    for _ in range(100):
        step()
    hand = _hand(mode == "coupled")
    assert hand == pytest.approx(expected, abs=1e-3)
    np.testing.assert_allclose(v.numpy(), [hand, -2.0 * hand], rtol=1e-5)


def test_coupled_decay_under_mirrored_strategy_counts_once(mirrored_strategy):
    # Two replicas, zero data gradient: the L2 term is added after aggregation (once).
    with mirrored_strategy.scope():
        model = keras.Sequential([keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
        model.build((None, 1))
        model.compile(CoupledSGD(0.1, momentum=0.9, l2=1e-2), loss=lambda y, p: 0.0 * p)
    x = np.zeros((40, 1), np.float32)
    model.fit(x, x, batch_size=4, epochs=1, verbose=0, shuffle=False)  # 10 steps
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(_hand(True, steps=10), rel=1e-5)


def test_serialization_and_errors():
    opt = CoupledSGD(0.05, momentum=0.9, l2=5e-4)
    again = CoupledSGD.from_config(opt.get_config())
    assert again.l2 == 5e-4 and float(again.momentum) == pytest.approx(0.9)
    with pytest.raises(ConfigError, match="weight_decay_mode"):
        make_optimizer("sgd", 0.1, weight_decay_mode="torch")
    with pytest.raises(ConfigError, match="weight_decay_mode"):
        TrainingRecipe("0:0.1", 1, 100, weight_decay_mode="l2")


def test_mode_is_in_every_spec_and_setup_descriptor():
    specs = PROTOCOLS["finetune_lr"].expand({"seeds": 1, "weight_decay_mode": "decoupled"})
    for s in specs:
        assert s.retrain.weight_decay_mode == "decoupled"
        assert s.base_recipe().weight_decay_mode == "decoupled"
        setup = setup_descriptor(s, params=10, flops=10, base_flops=100)
        assert setup["hyper"]["weight_decay_mode"] == "decoupled"
    coupled = PROTOCOLS["finetune_lr"].expand({"seeds": 1})
    assert coupled[0].base_id() != specs[0].base_id()  # a base trained otherwise is another base
