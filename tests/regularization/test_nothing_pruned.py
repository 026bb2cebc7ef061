"""Regularization and surgery say when they pruned nothing (NothingPrunedWarning)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from reg_helpers import fixed_batches, masked_cnn

import tfprune
from tfprune.errors import NothingPrunedWarning
from tfprune.models.small_cnn import small_cnn
from tfprune.regularization import GrowingRegularization, TrainabilityPreserving


def _fit(model, callback, steps: int) -> list[str]:
    """Fits ``steps`` steps; the NothingPrunedWarning messages it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(fixed_batches(), epochs=1, steps_per_epoch=steps, callbacks=[callback], verbose=0)
    return [str(w.message) for w in caught if issubclass(w.category, NothingPrunedWarning)]


def test_greg_with_the_authors_schedule_warns_at_fit_end_with_the_steps_it_still_needs():
    greg = GrowingRegularization(0.5)  # delta 1e-4 to ceiling 1 every 10 steps, then 10,000
    messages = _fit(masked_cnn(), greg, steps=5)
    assert len(messages) == 1, messages
    # 10,000 updates x 10 steps from step 0, 5 of them done, then 10,000 steps held.
    assert greg.steps_to_masks() == 10_000 * 10 - 5 + 10_000
    assert "fit ended after 5 steps in phase 'grow'" in messages[0]
    assert "up to 109,995 more steps" in messages[0]
    assert "raise delta (now 0.0001)" in messages[0]
    assert "stabilize_steps (now 10,000)" in messages[0]


def test_greg2_picking_names_pick_delta_and_counts_both_stages():
    greg = GrowingRegularization(
        0.5, variant="greg2", pick_delta=0.1, pick_ceiling=1.0, delta=0.5, ceiling=2.0,
        update_every=2, stabilize_steps=7,
    )  # fmt: skip
    messages = _fit(masked_cnn(), greg, steps=4)  # two uniform updates: 0.2 of 1.0
    assert greg.phase == "pick"
    # 8 more uniform updates, then (2 - 1) / 0.5 = 2 growth updates; 2 steps per update.
    assert greg.steps_to_masks() == (2 + 8 + 2) * 2 - 4 + 7
    assert len(messages) == 1 and "pick_delta (now 0.1)" in messages[0]


def test_greg_in_stabilization_names_only_stabilize_steps():
    greg = GrowingRegularization(0.5, delta=0.5, ceiling=1.0, update_every=1, stabilize_steps=50)
    messages = _fit(masked_cnn(), greg, steps=6)  # ceiling after 2 updates, then held
    assert greg.phase == "stabilize"
    assert greg.steps_to_masks() == 50 - (6 - 2)
    assert len(messages) == 1 and "lower stabilize_steps (now 50)" in messages[0]
    assert "delta" not in messages[0]


def test_greg_that_sets_its_masks_does_not_warn_and_strip_removes_filters():
    model = masked_cnn()
    greg = GrowingRegularization(0.5, delta=0.5, ceiling=1.0, update_every=1, stabilize_steps=4)
    assert _fit(model, greg, steps=20) == []
    assert greg.phase == "done" and greg.steps_to_masks() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", NothingPrunedWarning)
        small = tfprune.strip_filters(model)
    assert small.count_params() < model.count_params()


def test_tpp_warns_at_fit_end_with_the_steps_it_still_needs():
    tpp = TrainabilityPreserving(0.5, delta=0.1, ceiling=1.0, update_every=3, stabilize_steps=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stabilize_steps < zero_out_interval x n
        model = masked_cnn()
    messages = _fit(model, tpp, steps=7)
    assert tpp.phase == "grow"
    assert tpp.steps_to_masks() == 10 * 3 - 7 + 30
    assert len(messages) == 1 and "up to 53 more steps" in messages[0]
    assert "raise delta (now 0.1)" in messages[0]


def test_strip_filters_warns_when_every_mask_is_all_ones():
    model = masked_cnn()  # prune_filters(..., sparsity=0.0): all-ones masks
    with pytest.warns(NothingPrunedWarning, match="every mask of model .* is all ones"):
        small = tfprune.strip_filters(model)
    assert small.count_params() == small_cnn(width=8).count_params()  # the full-size base


def test_strip_filters_is_silent_when_one_unit_is_masked():
    model = masked_cnn()
    pruner = tfprune.FilterPruner.for_model(model)
    group = next(g for g in pruner.analysis.groups if g.prunable)
    pruned = np.zeros(group.n_units, bool)
    pruned[1] = True  # a planted choice: unit 1 of the first prunable group
    pruner.apply({group.id: pruned})
    with warnings.catch_warnings():
        warnings.simplefilter("error", NothingPrunedWarning)
        small = tfprune.strip_filters(model)
    producer = group.producers[0].layer
    kernel = producer.get_weights()[0]
    got = small.get_layer(producer.name).get_weights()[0]
    np.testing.assert_array_equal(got, np.delete(kernel, 1, axis=-1))
