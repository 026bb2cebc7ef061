"""Unit tests of tfprune.training.schedules: spec parsing, WHY halving rule, LEHUA schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfprune.compat import keras
from tfprune.errors import ConfigError
from tfprune.training.schedules import (
    EpochLRScheduler,
    StepLRScheduler,
    equal_steps,
    format_piecewise,
    halving_schedule,
    lr_rewinding,
    lr_scheduler,
    parse_piecewise,
    parse_schedule,
    rescale_piecewise,
    scratch_b_epochs,
    scratch_e_epochs,
    truncate_piecewise,
)


def test_parse_piecewise_reads_epoch_lr_pairs():
    assert parse_piecewise("0:0.01, 30:0.001,60:1e-4") == [(0, 0.01), (30, 0.001), (60, 1e-4)]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("", "empty"),
        ("0:0.01,30:0.001,20:1e-4", "increase"),
        ("0:-0.01", "must be > 0"),
        ("5:0.01", "start at epoch 0"),
        ("0:abc", "cannot read"),
        ("0.01", "epoch:lr"),
    ],
)
def test_parse_piecewise_rejects_bad_specs_naming_the_field(spec, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        parse_schedule(spec, 10, field="retrain.schedule")
    assert "retrain.schedule" in str(err.value)


@pytest.mark.parametrize(
    ("lr", "epochs", "expected"),
    [
        (1e-1, 90, "0:0.1,30:0.01,60:0.001,75:0.0001,83:1e-05"),  # P30F90, 1e-1 (WHY App. A)
        (1e-2, 60, "0:0.01,30:0.001,45:0.0001,53:1e-05"),  # P60F60, 1e-2 (WHY App. A)
        (1e-2, 90, "0:0.01,30:0.001,60:0.0001,75:1e-05"),  # S4.2 P30F90, 1e-2
        (1e-3, 60, "0:0.001,30:0.0001,45:1e-05"),  # S4.2 P60F60, 1e-3
    ],
)
def test_halving_reproduces_published_examples(lr, epochs, expected):
    assert format_piecewise(halving_schedule(lr, epochs)) == expected
    assert parse_schedule(f"halving:{lr}:1e-5", epochs).describe() == expected


@pytest.mark.parametrize("lr", [1e-2, 1e-4])
def test_halving_p90f30_first_stage_is_15_epochs(lr):
    stages = halving_schedule(lr, 30)
    assert stages[0] == (0, lr)
    assert len(stages) == 1 or stages[1][0] == 15
    assert math.isclose(stages[-1][1], 1e-5)


def test_halving_rejects_final_above_start():
    with pytest.raises(ConfigError, match="final_lr"):
        halving_schedule(1e-5, 30, final_lr=1e-3)


def test_equal_steps_match_di_mnist_schedules():
    assert format_piecewise(equal_steps(0.01, 90)) == "0:0.01,30:0.001,60:0.0001"
    assert format_piecewise(equal_steps(0.001, 90)) == "0:0.001,45:0.0001"
    assert parse_schedule("steps:0.01:1e-4", 900).describe() == "0:0.01,300:0.001,600:0.0001"
    assert parse_schedule("steps:0.001", 20).describe() == "0:0.001,10:0.0001"


def test_piecewise_lr_per_epoch_and_first_stage():
    s = parse_schedule("0:0.01,3:0.001,5:0.0001", 6)
    assert s.epoch_lrs() == [0.01, 0.01, 0.01, 0.001, 0.001, 0.0001]
    assert s.first_stage_epochs() == 3
    assert s.final_lr() == 0.0001


def test_ft_is_constant():
    s = parse_schedule("ft:0.001", 4)
    assert s.epoch_lrs() == [0.001] * 4
    assert s.first_stage_epochs() == 4


def test_cosine_starts_at_start_and_reaches_end():
    s = parse_schedule("cosine:0.01:1e-4", 10)
    assert s.lr_at(0) == pytest.approx(0.01)
    assert s.lr_at(5) == pytest.approx((0.01 + 1e-4) / 2)
    assert s.lr_at(10) == pytest.approx(1e-4)
    assert np.all(np.diff(s.epoch_lrs()) < 0)
    with pytest.raises(ConfigError, match="cosine end"):
        parse_schedule("cosine:1e-4:0.01", 10)


def test_lr_rewinding_matches_lehua_example():
    # original 160 epochs, decays at 80/120; r = 72 -> 1e-2 for 32 epochs then 1e-3 for 40
    assert lr_rewinding("0:0.1,80:0.01,120:0.001", 160, 72) == [(0, 0.01), (32, 0.001)]
    s = parse_schedule("lrw:160@0:0.1,80:0.01,120:0.001", 72)
    assert s.describe() == "0:0.01,32:0.001"
    assert lr_rewinding("0:0.1,80:0.01,120:0.001", 160, 40) == [(0, 0.001)]
    with pytest.raises(ConfigError, match="lrw"):
        parse_schedule("lrw:0:0.1", 10)


def test_clr_is_one_cycle():
    s = parse_schedule("clr:0.1", 100)
    assert s.lr_at(0) == pytest.approx(1e-3)
    assert s.lr_at(10) == pytest.approx(0.1)
    assert s.lr_at(100) == pytest.approx(1e-5)
    assert s.lr_at(5) == pytest.approx((1e-3 + 0.1) / 2)


def test_slr_warms_up_then_steps_down():
    s = parse_schedule("slr:0.1", 100)
    assert s.lr_at(0) == pytest.approx(1e-3)
    assert s.lr_at(10) == pytest.approx(0.1)
    assert s.lr_at(44) == pytest.approx(0.1)
    assert s.lr_at(46) == pytest.approx(0.01)
    assert s.lr_at(70) == pytest.approx(0.001)


def test_unknown_schedule_kind():
    with pytest.raises(ConfigError, match="unknown LR schedule"):
        parse_schedule("step:0.1", 10)


def test_rescale_and_truncate():
    assert rescale_piecewise("0:0.1,80:0.01,120:0.001", 160, 320) == [
        (0, 0.1),
        (160, 0.01),
        (240, 0.001),
    ]
    # S4.2: the retraining continues the scratch schedule from the pruning epoch
    assert truncate_piecewise("0:0.1,30:0.01,60:0.001,90:1e-4", 60) == [(0, 0.001), (30, 1e-4)]
    assert truncate_piecewise("0:0.1,30:0.01", 45) == [(0, 0.01)]


def test_scratch_budgets():
    # WHY: K1*(F1/F2) + K2
    assert scratch_b_epochs(30, 4.0, 2.0, 90) == 150
    assert scratch_b_epochs(160, 3.0, 1.0, variant="rethink_cifar") == 480
    assert scratch_b_epochs(90, 3.0, 1.0, variant="rethink_imagenet") == 180
    assert scratch_b_epochs(90, 1.5, 1.0, variant="rethink_imagenet") == 135
    assert scratch_e_epochs(30, 90, prune_epochs=5) == 125
    with pytest.raises(ConfigError, match="variant"):
        scratch_b_epochs(10, 2.0, 1.0, variant="x")
    with pytest.raises(ConfigError, match="FLOPs"):
        scratch_b_epochs(10, 2.0, 0.0)


def test_callback_sets_and_records_lr():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.5), "mse")
    cb = EpochLRScheduler(parse_schedule("0:0.01,2:0.001", 3))
    x = np.ones((8, 3), "float32")
    hist = model.fit(x, np.zeros((8, 2)), epochs=3, batch_size=4, verbose=0, callbacks=[cb])
    assert cb.lrs == pytest.approx([0.01, 0.01, 0.001])
    assert hist.history["lr"] == pytest.approx([0.01, 0.01, 0.001])
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.001)


def test_callback_continuous_updates_per_step():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.5), "mse")
    cb = lr_scheduler(parse_schedule("cosine:0.01:0.001", 2))
    assert isinstance(cb, StepLRScheduler)
    x = np.ones((8, 3), "float32")
    model.fit(x, np.zeros((8, 2)), epochs=2, batch_size=4, verbose=0, callbacks=[cb])
    # last step is at epoch 1.5 of 2
    expected = parse_schedule("cosine:0.01:0.001", 2).lr_at(1.5)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(expected, rel=1e-5)


def test_explicit_milestones():
    s = parse_schedule("steps:0.01@0,0.001@60,0.0001@90", 120)
    assert s.stages == [(0, 0.01), (60, 0.001), (90, 0.0001)]
    assert s.epoch_lrs()[59:61] == [0.01, 0.001] and s.final_lr() == 0.0001
    with pytest.raises(ConfigError, match="lr@epoch"):
        parse_schedule("steps:0.01@0,0.001:60", 120)
    with pytest.raises(ConfigError, match="epoch 0"):
        parse_schedule("steps:0.01@5", 10)
