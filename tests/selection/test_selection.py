"""Selection of filters: ratios, per-layer regexes, skip, round_to, global ranking, criteria."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from core_helpers import (
    ARCHITECTURES,
    DATA_FREE_CRITERIA,
    check_equivalent,
    group_of,
    has_mask,
    inputs_for,
    max_rel_error,
    outputs_of,
    randomize,
)

import tfprune
from tfprune.compat import keras
from tfprune.importance.criteria import _mean_over_members

L = keras.layers


def _chain(widths=(64, 64, 64), name_prefix="conv"):
    i = keras.Input((6, 6, 3))
    x = i
    for k, w in enumerate(widths):
        x = L.Conv2D(w, 3, padding="same", name=f"{name_prefix}{k}")(x)
        x = L.BatchNormalization(name=f"bn{k}")(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o, name="chain")


def _filters(model):
    return {
        layer.name: (layer.filters if hasattr(layer, "filters") else layer.units)
        for layer in model.layers
        if isinstance(layer, (L.Conv2D, L.Dense))
    }


@pytest.mark.parametrize(
    ("ratio", "removed"), [(0.3, 20), (0.5, 32), (0.1, 7), (0.95, 61), (0.25, 16)]
)
def test_uniform_ratio_removes_ceil_ratio_n_per_layer(ratio, removed):
    model = randomize(_chain())
    small = tfprune.shrink(model, ratio)
    f = _filters(small)
    for k in range(3):
        assert f[f"conv{k}"] == 64 - removed
    assert f["out"] == 3


def test_selection_agrees_with_zoo_kept_channels_on_float_artifacts():
    from tfprune.models.resnet_cifar import kept_channels

    # 0.14 * 50 == 7.000000000000001 in floats; both prune exactly ceil(7) = 7 and keep 43.
    model = randomize(_chain(widths=(50,)))
    small = tfprune.shrink(model, 0.14)
    assert small.get_layer("conv0").filters == kept_channels(50, 0.14) == 43


def test_uniform_ratio_never_removes_all_filters():
    model = randomize(_chain(widths=(2, 3, 1)))
    small = tfprune.shrink(model, 0.99)
    f = _filters(small)
    assert f["conv0"] == 1 and f["conv1"] == 1 and f["conv2"] == 1


def test_l1_removes_exactly_the_filters_with_smallest_mean_abs_weight():
    model = _chain(widths=(8, 8))
    conv = model.get_layer("conv0")
    kernel = np.ones(conv.kernel.shape, np.float32)
    scale = np.array([5, 1, 7, 0.5, 3, 8, 0.1, 2], np.float32)
    kernel *= scale  # filter c has mean |w| = scale[c]
    kernel[..., 1] *= -1  # signs must not matter
    conv.set_weights([kernel, np.zeros(8, np.float32)])
    masked = tfprune.prune_filters(model, {"conv0": 0.5}, "l1")
    small, plan = tfprune.strip_filters(masked, return_plan=True)
    kept = plan.layers["conv0"]["out"]["kept"]
    assert kept == [0, 2, 4, 5]  # the four largest: 5, 7, 3, 8
    np.testing.assert_allclose(small.get_layer("conv0").kernel.numpy(), kernel[..., kept])
    assert _filters(small)["conv1"] == 8


def test_l1_scores_are_mean_abs_per_filter():
    model = _chain(widths=(4,))
    conv = model.get_layer("conv0")
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=conv.kernel.shape).astype(np.float32)
    conv.set_weights([kernel, np.zeros(4, np.float32)])
    g = group_of(tfprune.channel_groups(model), "conv0")
    from tfprune.importance import get_importance

    scores = get_importance("l1")(g)
    # The bias is zero; mean |w| over kernel (+ bias) ranks the same as the kernel L1 norm.
    expected = np.abs(kernel).reshape(-1, 4).sum(axis=0)
    assert np.argsort(scores).tolist() == np.argsort(expected).tolist()


def test_resnet56_stage_scheme_prunes_only_conv1s_and_strips_to_masked():
    # Also the masked == stripped check of this scheme (check_equivalent's assertions, same
    # tolerance), so ResNet-56 is pruned and stripped once for both.
    from tfprune.models.resnet_cifar import resnet56, stage_ratio_patterns

    model = randomize(resnet56(input_shape=(8, 8, 3)))
    scheme = stage_ratio_patterns([0, 0.5, 0.5, 0.5, 0])
    masked = tfprune.prune_filters(model, scheme)
    small, plan = tfprune.strip_filters(masked, return_plan=True)
    xs = inputs_for(model, seed=1)
    out_small = outputs_of(small, xs)
    assert [o.shape for o in out_small] == [o.shape for o in outputs_of(model, xs)]
    assert max_rel_error(outputs_of(masked, xs), out_small) < 1e-5
    assert not has_mask(small)
    assert small.count_params() < model.count_params()
    before, after = _filters(model), _filters(small)
    changed = sorted(n for n in before if before[n] != after[n])
    expected = sorted(n for n in before if n.endswith("_conv1"))
    assert changed == expected and len(changed) == 27
    for n in changed:
        assert after[n] == before[n] - int(np.ceil(0.5 * before[n]))
    out_pruned = sorted(p for p, roles in plan.layers.items() if "out" in roles)
    assert out_pruned == expected


def test_regex_matches_with_fullmatch_only():
    model = randomize(_chain())
    small = tfprune.shrink(model, {"conv1": 0.5})  # must not match conv10 style prefixes
    f = _filters(small)
    assert f == {"conv0": 64, "conv1": 32, "conv2": 64, "out": 3}
    small = tfprune.shrink(model, {"conv[02]": 0.25, ".*": 0.5})
    f = _filters(small)
    assert f == {"conv0": 48, "conv1": 32, "conv2": 48, "out": 3}


def test_skip_keeps_named_layer():
    model = randomize(_chain())
    small = tfprune.shrink(model, 0.5, skip=["conv1"])
    assert _filters(small) == {"conv0": 32, "conv1": 64, "conv2": 32, "out": 3}


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_round_to_8_gives_multiples_of_8(ratio):
    model = randomize(_chain(widths=(60, 36, 20)))
    small = tfprune.shrink(model, ratio, round_to=8)
    for name, n in _filters(small).items():
        if name != "out":
            assert n % 8 == 0 or n == {"conv0": 60, "conv1": 36, "conv2": 20}[name], (name, n)
            assert n > 0


def test_round_to_rounds_kept_count_up():
    model = randomize(_chain(widths=(64,)))
    # 0.3 * 64 -> remove 19, keep 45 -> round up to 48.
    small = tfprune.shrink(model, 0.3, round_to=8)
    assert _filters(small)["conv0"] == 48


def test_global_ranking_respects_max_group_sparsity_and_total_budget():
    model = _chain(widths=(16, 16, 16))
    rng = np.random.default_rng(0)
    # conv0 filters are all tiny except one, conv1/conv2 are large: a global ranking on raw
    # scores would take conv0 first; the cap limits any one layer.
    for k, scale in enumerate((1.0, 1.0, 1.0)):
        conv = model.get_layer(f"conv{k}")
        w = rng.normal(size=conv.kernel.shape).astype(np.float32) * scale
        w[..., :8] *= 0.01  # half of every layer is nearly dead
        conv.set_weights([w, np.zeros(16, np.float32)])
    small = tfprune.shrink(model, 0.25, global_ranking=True, max_group_sparsity=0.5)
    f = _filters(small)
    removed = sum(16 - f[f"conv{k}"] for k in range(3))
    assert removed == 12  # ceil(0.25 * 48)
    for k in range(3):
        assert f[f"conv{k}"] >= 8  # never more than half
    small = tfprune.shrink(model, 0.6, global_ranking=True, max_group_sparsity=0.5)
    f = _filters(small)
    assert all(f[f"conv{k}"] >= 8 for k in range(3))


def test_global_ranking_prefers_unimportant_layer():
    model = _chain(widths=(16, 16))
    rng = np.random.default_rng(1)
    c0, c1 = model.get_layer("conv0"), model.get_layer("conv1")
    w0 = rng.normal(size=c0.kernel.shape).astype(np.float32)
    w0[..., :12] *= 1e-3  # 12 of 16 near zero relative to the group mean
    c0.set_weights([w0, np.zeros(16, np.float32)])
    w1 = rng.normal(size=c1.kernel.shape).astype(np.float32) * (1 + np.arange(16) * 0.01)
    c1.set_weights([w1, np.zeros(16, np.float32)])
    small = tfprune.shrink(model, 0.25, global_ranking=True, max_group_sparsity=0.9)
    f = _filters(small)
    assert f["conv0"] == 8 and f["conv1"] == 16


def test_random_importance_is_reproducible_by_seed():
    model = randomize(_chain(widths=(32, 32)))
    _, p1 = tfprune.shrink(model, 0.5, "random", seed=3, return_plan=True)
    _, p2 = tfprune.shrink(model, 0.5, "random", seed=3, return_plan=True)
    _, p3 = tfprune.shrink(model, 0.5, "random", seed=4, return_plan=True)
    assert p1.layers == p2.layers
    assert p1.layers != p3.layers


def test_custom_callable_importance():
    model = randomize(_chain(widths=(8, 8)))
    seen = []

    def prefer_high_index(group):
        seen.append(group.name)
        return np.arange(group.n_units, dtype=float)  # low index = least important

    _, plan = tfprune.shrink(model, 0.5, prefer_high_index, return_plan=True)
    assert plan.layers["conv0"]["out"]["kept"] == [4, 5, 6, 7]
    assert plan.layers["conv1"]["out"]["kept"] == [4, 5, 6, 7]
    assert "conv0" in seen and "conv1" in seen


def test_custom_importance_with_wrong_shape_raises_clear_error():
    model = randomize(_chain(widths=(8, 8)))
    with pytest.raises(tfprune.errors.InvalidArgumentError, match="one score per unit"):
        tfprune.prune_filters(model, 0.5, lambda g: np.zeros(3))


def _classifier():
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, name="out")(x)
    return keras.Model(i, o)


def test_taylor_with_data_and_loss():
    model = randomize(_classifier())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    masked, small = check_equivalent(
        model,
        0.5,
        "taylor",
        importance_data=(x, y),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert small.get_layer("c1").filters == 4


def test_taylor_uses_compiled_loss():
    model = randomize(_classifier())
    model.compile(loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, 6, 6, 3)).astype(np.float32), rng.integers(0, 3, size=8))
    small = tfprune.shrink(model, 0.5, "taylor", importance_data=data)
    assert small.get_layer("c2").filters == 4


def test_taylor_accepts_dataset():
    import tensorflow as tf

    model = randomize(_classifier())
    rng = np.random.default_rng(0)
    ds = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(8, 6, 6, 3)).astype(np.float32), rng.integers(0, 3, size=8))
    ).batch(4)
    small = tfprune.shrink(
        model, 0.5, "taylor", importance_data=ds, loss="sparse_categorical_crossentropy"
    )
    assert small.get_layer("c1").filters == 4


def test_bn_scale_picks_smallest_gamma():
    model = randomize(_classifier())
    bn = model.get_layer("bn1")
    gamma, beta, mean, var = bn.get_weights()
    gamma = np.array([0.9, -0.01, 0.5, 0.02, 1.5, 0.03, 0.7, -0.04], np.float32)
    bn.set_weights([gamma, beta, mean, var])
    _, plan = tfprune.shrink(model, {"c1": 0.5}, "bn_scale", return_plan=True)
    assert plan.layers["c1"]["out"]["kept"] == [0, 2, 4, 6]


def test_fpgm_removes_filters_near_geometric_median():
    model = _chain(widths=(5,))
    conv = model.get_layer("conv0")
    base = np.zeros(conv.kernel.shape, np.float32)
    # Filters 0..3 are spread out, filter 4 sits at their centre (the median): FPGM drops it.
    for c, v in enumerate([-10.0, 10.0, -9.0, 9.0, 0.0]):
        base[..., c] = v
    conv.set_weights([base, np.zeros(5, np.float32)])
    _, plan = tfprune.shrink(model, {"conv0": 0.2}, "fpgm", return_plan=True)
    assert plan.layers["conv0"]["out"]["kept"] == [0, 1, 2, 3]


@pytest.mark.parametrize("importance", DATA_FREE_CRITERIA)
def test_every_criterion_runs_on_residual_model(importance):
    model = randomize(ARCHITECTURES["residual"]())
    _, small = check_equivalent(model, 0.5, importance)
    assert small.get_layer("stem").filters == 6


def test_concat_segments_prune_each_producer_by_ratio():
    model = randomize(ARCHITECTURES["concat"]())
    small = tfprune.shrink(model, 0.5)
    assert small.get_layer("ca").filters == 3
    assert small.get_layer("cb").filters == 5


def test_unit_scores_average_ignores_units_a_member_does_not_see_without_warnings():
    scores = [np.array([1.0, np.nan, 3.0]), np.array([3.0, np.nan, np.nan])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would fail here
        out = _mean_over_members(scores)
    np.testing.assert_array_equal(out, [2.0, 0.0, 3.0])
