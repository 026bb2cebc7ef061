"""The core property: strip_filters(prune_filters(m)) computes what the masked model computes."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import (
    ARCHITECTURES,
    NESTED_CROSSING,
    check_equivalent,
    inputs_for,
    max_rel_error,
    outputs_of,
    randomize,
)

import tfprune
from tfprune.compat import keras


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_strip_matches_masked_on_hand_built_architecture(name):
    model = randomize(ARCHITECTURES[name]())
    check_equivalent(model, 0.5)


@pytest.mark.parametrize("name", sorted(NESTED_CROSSING))
def test_strip_matches_masked_when_group_crosses_nested_model_boundary(name):
    model = randomize(NESTED_CROSSING[name]())
    check_equivalent(model, 0.5)


def test_prune_filters_masks_group_crossing_nested_model_boundary():
    # prune_filters itself handles the crossing group: the masked model runs and masks channels.
    model = randomize(NESTED_CROSSING["nested_functional"]())
    masked = tfprune.prune_filters(model, 0.5)
    xs = inputs_for(model)
    assert np.isfinite(outputs_of(masked, xs)[0]).all()
    g = tfprune.FilterPruner.for_model(masked)
    assert g.sparsity() > 0


@pytest.mark.parametrize("name", ["residual", "concat", "multi_io", "shared"])
@pytest.mark.parametrize("importance", ["l2", "random", "bn_scale", "fpgm"])
def test_strip_matches_masked_for_every_data_free_criterion(name, importance):
    model = randomize(ARCHITECTURES[name](), seed=3)
    check_equivalent(model, 0.4, importance, seed=7)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.7, 0.9])
def test_strip_matches_masked_at_several_ratios(ratio):
    model = randomize(ARCHITECTURES["residual"](), seed=5)
    check_equivalent(model, ratio)


def test_zero_sparsity_strip_is_an_unchanged_copy():
    model = randomize(ARCHITECTURES["conv_chain"]())
    masked = tfprune.prune_filters(model, 0.0)
    small = tfprune.strip_filters(masked)
    assert small.count_params() == model.count_params()
    xs = inputs_for(model)
    assert max_rel_error(outputs_of(model, xs), outputs_of(small, xs)) < 1e-6


def test_masked_model_with_zero_masks_differs_from_original():
    # Sanity check that equivalence is not trivial: masking really changes the function.
    model = randomize(ARCHITECTURES["conv_chain"]())
    masked = tfprune.prune_filters(model, 0.5)
    xs = inputs_for(model)
    assert max_rel_error(outputs_of(model, xs), outputs_of(masked, xs)) > 1e-3


def test_mobilenet_v2_small_input():
    model = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), alpha=0.35, weights=None, classes=10
    )
    randomize(model)
    _, small = check_equivalent(model, 0.5, tol=1e-4)
    assert small.output_shape == (None, 10)


# ResNet-56 with the conv1 stage scheme is checked masked == stripped (same tolerance) by
# test_resnet56_stage_scheme_prunes_only_conv1s_and_strips_to_masked in
# tests/selection/test_selection.py, which prunes and strips it once for its selection checks too.
