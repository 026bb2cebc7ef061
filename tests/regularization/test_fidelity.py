"""GReg and TPP details that follow the authors' code (stop rules, smoothing, zeroing, warnings)."""

from __future__ import annotations

import numpy as np
import pytest
from reg_helpers import LOSS, fixed_batches, masked_cnn

import tfprune
from tfprune.compat import keras
from tfprune.regularization import (
    GrowingRegularization,
    SeparationWarning,
    TrainabilityPreserving,
)
from tfprune.regularization.terms import magnitude_ratio, unit_magnitudes


def _fit(model, cb, steps):
    return model.fit(fixed_batches(), epochs=1, steps_per_epoch=steps, callbacks=[cb], verbose=0)


def _ratio_now(cb, g, pruned):
    mags = unit_magnitudes(g, cb.slices[g.id])
    return magnitude_ratio(mags, pruned, cb.candidates[g.id] & ~g.blocked)


def _tentative(greg, g):
    """The ceil(0.5 n) smallest-magnitude candidate units of ``g`` now."""
    mags = unit_magnitudes(g, greg.slices[g.id])
    cand = np.flatnonzero(greg.candidates[g.id])
    out = np.zeros(g.n_units, bool)
    out[cand[np.argsort(mags[cand], kind="stable")[: int(np.ceil(0.5 * g.n_units))]]] = True
    return out


def test_greg_smoothed_ratio_starts_at_the_first_ratio_and_tracks_the_pick_while_picking():
    model = masked_cnn()
    greg = GrowingRegularization(
        0.5, variant="greg2", pick_delta=1e-3, pick_ceiling=1.0, update_every=1
    )
    _fit(model, greg, 1)  # one update, after the first step; no step after it
    assert greg.phase == "pick"
    first = {}
    for g in greg.groups:  # starts at the first ratio (not 0.1 x it), against today's pick
        first[g.id] = _ratio_now(greg, g, _tentative(greg, g))
        assert first[g.id] > 1.0
        assert greg.magnitude_ratios()[g.name] == pytest.approx(first[g.id], rel=1e-5)
    _fit(model, greg, 1)
    for g in greg.groups:  # then momentum 0.9, still while picking
        expected = 0.9 * first[g.id] + 0.1 * _ratio_now(greg, g, _tentative(greg, g))
        assert greg.magnitude_ratios()[g.name] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("variant", ["greg1", "greg2"])
def test_greg2_stops_each_group_on_its_own_ratio_greg1_waits_for_all(variant):
    model = masked_cnn()
    greg = GrowingRegularization(
        0.5,
        variant=variant,
        delta=0.01,
        ceiling=10.0,
        pick_delta=0.01,
        pick_ceiling=0.01,  # GReg-2 picks at the first update
        update_every=1,
        stabilize_steps=100,
        mag_ratio_limit=1000.0,
    )
    _fit(model, greg, 1)
    first, *others = greg.groups
    greg.state[f"g{first.id}_hist"].assign(1e5)  # this group is already separated
    _fit(model, greg, 1)  # the update that sees it (GReg-2: the group's last one)
    before = greg.penalties()
    _fit(model, greg, 2)
    stopped = {g.name: float(greg.state[f"g{g.id}_stopped"].numpy()) > 0 for g in greg.groups}
    after = greg.penalties()
    if variant == "greg2":  # the authors' GReg-2: per layer
        assert stopped == {first.name: True, **{g.name: False for g in others}}
        np.testing.assert_array_equal(after[first.name], before[first.name])
        for g in others:
            assert after[g.name].max() == pytest.approx(before[g.name].max() + 0.02)
    else:  # GReg-1: only when every layer is separated (or at the ceiling)
        assert not any(stopped.values())
        assert after[first.name].max() == pytest.approx(before[first.name].max() + 0.02)
    assert greg.phase == "grow"


def _biased_cnn(seed: int = 0):
    """conv(bias) -> BN -> ReLU twice, GAP, dense; masked with all-ones masks, compiled."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(h))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c2")(h)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn2")(h))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c3")(h)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn3")(h))
    y = keras.layers.Dense(10, name="fc")(keras.layers.GlobalAveragePooling2D()(h))
    base = keras.Model(x, y)
    rng = np.random.default_rng(seed)
    for name in ("c1", "c2", "c3"):
        layer = base.get_layer(name)
        layer.bias.assign(rng.normal(0.0, 0.5, layer.bias.shape).astype(np.float32))
    masked = tfprune.prune_filters(base, sparsity=0.0)
    masked.compile(keras.optimizers.SGD(0.01, momentum=0.9), LOSS)
    return masked


def test_tpp_zeroes_every_step_after_each_layers_turn_counting_all_layers():
    model = _biased_cnn()
    # conv/dense layers in model order: c1 (0), c2 (1), c3 (2), fc (3); only c1 and c3 pruned
    tpp = TrainabilityPreserving(
        {"c1": 0.5, "c3": 0.5},
        delta=1.0,
        ceiling=1.0,  # final at the first update: stabilization starts at step 1
        update_every=1,
        stabilize_steps=40,
        zero_out_interval=3,
        regularize_bn=False,  # the authors zero BN gamma/beta whether or not they regularize it
        mag_ratio_limit=1.5,
    )
    tpp.set_model(model)
    assert tpp.layer_count == 4
    by_name = {g.name: g for g in tpp.groups}
    assert {n: tpp.turn[g.id] for n, g in by_name.items()} == {"c1": 1, "c3": 3}

    def state(name):
        g = by_name[name]
        pruned = np.flatnonzero(tpp.state[f"g{g.id}_pruned"].numpy() > 0.5)
        layer = model.get_layer(name)
        bn = model.get_layer("bn" + name[1])
        return (
            layer.kernel.numpy()[..., pruned],
            layer.bias.numpy()[pruned],
            bn.gamma.numpy()[pruned],
            bn.beta.numpy()[pruned],
        )

    _fit(model, tpp, 1 + 7)  # 7 steps into stabilization: c1's turn (3) passed, c3's (9) not
    kernel, bias, gamma, beta = state("c1")
    # zeroed after *every* step since its turn (4 more SGD steps would have moved them)
    np.testing.assert_array_equal(kernel, 0.0)
    np.testing.assert_array_equal(gamma, 0.0)
    np.testing.assert_array_equal(beta, 0.0)
    assert np.abs(bias).min() > 0  # biases are not zeroed
    kernel, _, gamma, _ = state("c3")  # counting only pruned layers would give turn 6
    assert np.abs(kernel).max() > 0 and np.abs(gamma).max() > 0
    assert int(tpp.state["zeroed"].numpy()) == 1
    _fit(model, tpp, 2)  # 9 steps in: c3's turn
    kernel, bias, gamma, beta = state("c3")
    np.testing.assert_array_equal(kernel, 0.0)
    np.testing.assert_array_equal(beta, 0.0)
    assert np.abs(bias).min() > 0
    ratios = tpp.mask_ratios()  # recorded just before the first zeroing
    assert all(1.0 < r < 1e12 for r in ratios.values()), ratios


def test_tpp_warns_when_pruned_filters_still_carry_magnitude():
    model = masked_cnn()
    tpp = TrainabilityPreserving(
        0.5, delta=0.5, ceiling=0.5, update_every=1, stabilize_steps=25, zero_out_interval=5
    )
    with pytest.warns(SeparationWarning, match=r"ratio is [0-9.]+ in .* raise ceiling"):
        h = _fit(model, tpp, 30)
    assert tpp.phase == "done"
    low = tpp.low_separation()
    assert low and all(v < 1000.0 for v in low.values())
    assert h.history["tpp/low_separation"][-1] == len(low)
    for g in tpp.groups:
        assert h.history[f"tpp/{g.name.replace('+', '_')}/mask_ratio"][-1] == pytest.approx(
            tpp.mask_ratios()[g.name]
        )


def test_tpp_warns_when_stabilization_is_shorter_than_the_zeroing_turns():
    model = masked_cnn()
    tpp = TrainabilityPreserving(0.5, stabilize_steps=100, zero_out_interval=100)
    with pytest.warns(UserWarning, match="shorter than zero_out_interval=100 x 5"):
        tpp.set_model(model)


def test_tpp_zeroing_under_mirrored_strategy(mirrored_strategy):
    model = masked_cnn(strategy=mirrored_strategy)
    tpp = TrainabilityPreserving(
        0.5,
        delta=1.0,
        ceiling=1.0,
        update_every=1,
        stabilize_steps=100,
        zero_out_interval=1,
        mag_ratio_limit=1.01,
    )
    _fit(model, tpp, 1 + 6)  # every group's turn (1..5 for 5 conv/dense layers) has passed
    assert int(tpp.state["zeroed"].numpy()) == len(tpp.groups)
    for g in tpp.groups:
        pruned = tpp.state[f"g{g.id}_pruned"].numpy() > 0.5
        for s in tpp.slices[g.id]:
            if s.kind in ("filter", "norm"):
                for replica in getattr(s.variable, "values", [s.variable]):
                    rows = np.moveaxis(replica.numpy(), s.axis, 0)[pruned[s.units]]
                    np.testing.assert_array_equal(rows, 0.0)
