"""Tests for tfprune.models.resnet_imagenet: ResNet-34 layout, counts, schemes and speed-ups.

The speed-ups are the spec's recount (Sec. 2.1, 2.3, 5.1): FLOPs = conv/dense MACs of the
physically pruned model (``tfprune.shrink`` = prune_filters + strip_filters) at 224x224.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import tfprune
from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.flops import count_flops, count_params
from tfprune.models import get_model, list_models, matching_layers
from tfprune.models.resnet_imagenet import (
    RESNET34_BLOCKS,
    RESNET34_LI_RATIOS,
    RESNET34_LI_SKIP,
    resnet34,
    resnet34_conv1_widths,
    resnet34_pruned,
    resnet34_stage_scheme,
)
from tfprune.protocols import resolve_config
from tfprune.protocols.runner import expand_config

CONFIG = (
    Path(__file__).resolve().parents[2] / "configs" / "scratch_vs_prune_imagenet100_resnet34.yaml"
)
FIRST_CONV = re.compile(r"layer(\d)_(\d+)_conv1")


@pytest.fixture(scope="module")
def r34(resnet34_224):
    """resnet34(seed=0) at 224x224, built once per session (conftest); no test changes it."""
    return resnet34_224


def _convs(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def _uniform(ratio):
    return [0, ratio, ratio, ratio, ratio, 0]


def _matched(model, scheme):
    return {
        name: ratio for pat, ratio in scheme.items() for name in matching_layers(model, scheme)[pat]
    }


def test_dense_model_matches_torchvision_counts_and_layout(r34):
    assert count_params(r34, trainable_only=True).total == 21_797_672  # torchvision resnet34
    flops = count_flops(r34)
    assert flops.total == 3_663_761_408 and not flops.uncounted  # the spec's 3.66 G MACs
    assert r34.output_shape == (None, 1000)
    assert r34.layers[-1].activation is keras.activations.linear
    convs = _convs(r34)
    assert len(convs) == 1 + 2 * sum(RESNET34_BLOCKS) + 3  # stem, blocks, 3 downsample convs
    assert all(not conv.use_bias for conv in convs)
    shapes = {
        "conv1": (None, 112, 112, 64),
        "maxpool": (None, 56, 56, 64),
        "layer1_2_relu2": (None, 56, 56, 64),
        "layer2_0_conv1": (None, 28, 28, 128),
        "layer2_0_downsample_conv": (None, 28, 28, 128),
        "layer3_5_conv2": (None, 14, 14, 256),
        "layer4_2_relu2": (None, 7, 7, 512),
        "avgpool": (None, 512),
    }
    for name, shape in shapes.items():
        assert r34.get_layer(name).output_shape == shape, name
    assert r34.get_layer("conv1").kernel.shape == (7, 7, 3, 64)
    assert r34.get_layer("layer4_0_conv1").strides == (2, 2)
    assert r34.get_layer("layer4_0_downsample_conv").kernel.shape == (1, 1, 256, 512)
    assert "layer1_0_downsample_conv" not in {layer.name for layer in r34.layers}


def test_registry_seeds_and_initialisation():
    assert "resnet34" in list_models(include_applications=False)
    # The protocols pass input_shape / num_classes / seed when the builder names them.
    params = inspect.signature(resnet34).parameters
    assert {"input_shape", "num_classes", "seed"} <= set(params)
    a = get_model("resnet34", input_shape=(32, 32, 3), num_classes=100, seed=3)
    b = get_model("resnet34", input_shape=(32, 32, 3), num_classes=100, seed=3)
    assert a.output_shape == (None, 100)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # Every layer has its own seed: same-shaped kernels differ.
    k1, k2 = (a.get_layer(f"layer1_{i}_conv1").kernel.numpy() for i in (1, 2))
    assert not np.allclose(k1, k2)
    # He-normal fan-out: std sqrt(2 / (3 * 3 * 256)) for layer3 convs.
    std = float(np.std(a.get_layer("layer3_1_conv2").kernel.numpy()))
    assert std == pytest.approx(np.sqrt(2 / (9 * 256)), rel=0.05)
    kernel, bias = a.get_layer("fc").get_weights()
    assert np.abs(kernel).max() <= 1 / np.sqrt(512) and np.abs(bias).max() <= 1 / np.sqrt(512)
    assert np.abs(bias).max() > 0  # PyTorch's nn.Linear bias, not zeros


def test_stage_scheme_selects_only_first_convs_of_blocks(r34):
    matched = _matched(r34, resnet34_stage_scheme([0, 0.1, 0.2, 0.3, 0.4, 0]))
    assert len(matched) == sum(RESNET34_BLOCKS) == 16
    assert all(FIRST_CONV.fullmatch(name) for name in matched)
    assert matched["layer1_2_conv1"] == 0.1 and matched["layer4_0_conv1"] == 0.4
    assert resnet34_stage_scheme([0, 0.5, 0, 0, 0.5, 0]).keys() == {
        r"layer1_\d+_conv1",
        r"layer4_\d+_conv1",
    }
    assert resnet34_stage_scheme([0, 0, 0, 0, 0, 0]) == {}


def test_li_skip_list_is_rethinks_conv_ids(r34):
    # RETHINK numbers the convs from 1 (stem) in network order, downsample convs left out.
    numbered = [c.name for c in _convs(r34) if not c.name.endswith("downsample_conv")]
    ids = {numbered.index(f"layer{b.replace('.', '_')}_conv1") + 1 for b in RESNET34_LI_SKIP}
    assert ids == {2, 8, 14, 16, 26, 28, 30, 32}
    matched = _matched(r34, resnet34_pruned("B"))
    expected = {
        f"layer{s}_{b}_conv1": RESNET34_LI_RATIOS["B"][s]
        for s, n in enumerate(RESNET34_BLOCKS, start=1)
        for b in range(n)
        if f"{s}.{b}" not in RESNET34_LI_SKIP
    }
    assert matched == expected and len(matched) == 8
    assert resnet34_pruned("a") == resnet34_pruned("A")


def _check_stripped(model, small, ratios, skip=()):
    widths = resnet34_conv1_widths(ratios, skip=skip)
    for conv in _convs(model):
        got = small.get_layer(conv.name).filters
        match = FIRST_CONV.fullmatch(conv.name)
        want = widths[int(match[1]) - 1][int(match[2])] if match else conv.filters
        assert got == want, conv.name


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        pytest.param(0.1, 1.11, marks=pytest.mark.slow),  # ~3-6 s each: a 224x224 rebuild
        pytest.param(0.3, 1.41, marks=pytest.mark.slow),
        (0.5, 1.93),
        pytest.param(0.7, 3.09, marks=pytest.mark.slow),
        pytest.param(0.9, 7.68, marks=pytest.mark.slow),
        (0.95, 12.04),
    ],
)
def test_uniform_first_conv_ratios_reproduce_the_spec_speedups(r34, ratio, expected):
    small = tfprune.shrink(r34, resnet34_stage_scheme(_uniform(ratio)))
    speedup = count_flops(r34).total / count_flops(small).total
    assert speedup == pytest.approx(expected, rel=0.01)
    assert speedup == pytest.approx(expected, abs=0.005)  # in fact to the printed digits
    _check_stripped(r34, small, _uniform(ratio))


@pytest.mark.parametrize(("variant", "expected"), [("A", 1.18), ("B", 1.32)])
def test_li_pruned_a_and_b_reproduce_the_spec_speedups(r34, variant, expected):
    small = tfprune.shrink(r34, resnet34_pruned(variant))
    speedup = count_flops(r34).total / count_flops(small).total
    assert speedup == pytest.approx(expected, rel=0.01)
    ratios = RESNET34_LI_RATIOS[variant]
    _check_stripped(r34, small, ratios, RESNET34_LI_SKIP)
    # Li et al. keep int(n * (1 - p)) filters; tfprune's n - ceil(p * n) is the same here.
    for conv in _convs(small):
        match = FIRST_CONV.fullmatch(conv.name)
        if match and f"{match[1]}.{match[2]}" not in RESNET34_LI_SKIP:
            n = r34.get_layer(conv.name).filters
            assert conv.filters == int(n * (1 - ratios[int(match[1])]))


def test_whys_100_class_numbers_from_the_small_dense_builder():
    # WHY Tab. 4's FLOPs use a 100-class head: 0.30 G and 12.06x at 95 %.
    dense = count_flops(resnet34(num_classes=100)).total
    widths = resnet34_conv1_widths(_uniform(0.95))
    small = count_flops(resnet34(num_classes=100, conv1_widths=widths)).total
    assert round(small / 1e9, 2) == 0.30
    assert dense / small == pytest.approx(12.06, abs=0.005)


def test_masked_model_equals_stripped_model_on_a_small_input():
    model = resnet34(input_shape=(64, 64, 3), num_classes=10, seed=1)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BN so that masked channels matter
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.1, n),
                    rng.normal(0, 0.1, n),
                    rng.uniform(0.5, 1.5, n),
                ]
            )
    masked = tfprune.prune_filters(model, resnet34_pruned("B"))
    small = tfprune.strip_filters(masked)
    x = rng.standard_normal((4, 64, 64, 3)).astype(np.float32)
    want = masked(x, training=False).numpy()
    got = small(x, training=False).numpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    _check_stripped(model, small, RESNET34_LI_RATIOS["B"], RESNET34_LI_SKIP)


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ([0, 0.5, 0.5, 0.5, 0], r"6 entries"),
        ([0, 0.5, 0.5, 0.5, 0.5, 0, 0], r"6 entries"),
        ([0.1, 0.5, 0.5, 0.5, 0.5, 0], r"ratios\[0\] \(s0, the stem conv1\) must be 0"),
        ([0, 0.5, 0.5, 0.5, 0.5, 0.2], r"ratios\[5\] \(s_fc\) must be 0"),
        ([0, 0.5, 1.0, 0.5, 0.5, 0], r"ratios\[2\] must be a number in \[0, 1\)"),
        ([0, -0.1, 0.5, 0.5, 0.5, 0], r"ratios\[1\] must be a number in \[0, 1\)"),
        ([0, "0.5", 0.5, 0.5, 0.5, 0], r"ratios\[1\] must be a number"),
        (0.5, r"must be a list \[s0, s1, s2, s3, s4, s_fc\]"),
    ],
)
def test_bad_ratio_lists_give_clear_errors(ratios, message):
    with pytest.raises(InvalidArgumentError, match=message):
        resnet34_stage_scheme(ratios)
    with pytest.raises(InvalidArgumentError, match=message):
        resnet34_conv1_widths(ratios)


def test_bad_skips_variants_and_builder_arguments_give_clear_errors():
    ok = _uniform(0.5)
    with pytest.raises(InvalidArgumentError, match="'stage.block' like '2.0'"):
        resnet34_stage_scheme(ok, skip=["two"])
    with pytest.raises(InvalidArgumentError, match="stages 1-4 with blocks"):
        resnet34_stage_scheme(ok, skip=["2.4"])
    with pytest.raises(InvalidArgumentError, match="stages 1-4 with blocks"):
        resnet34_stage_scheme(ok, skip=[(5, 0)])
    with pytest.raises(InvalidArgumentError, match="'A' or 'B'"):
        resnet34_pruned("C")
    with pytest.raises(InvalidArgumentError, match="conv1_widths must have 4 entries"):
        resnet34(conv1_widths=[64, 128, 256])
    with pytest.raises(InvalidArgumentError, match=r"conv1_widths\[1\] must be an int or 4 ints"):
        resnet34(conv1_widths=[64, [128, 128], 256, 512])
    with pytest.raises(InvalidArgumentError, match="num_classes"):
        resnet34(num_classes=0)
    with pytest.raises(InvalidArgumentError, match="at least 32x32"):
        resnet34(input_shape=(16, 16, 3))
    # A skip list that empties a stage drops its pattern.
    assert resnet34_stage_scheme([0, 0, 0, 0, 0.5, 0], skip=["4.0", "4.1", "4.2"]) == {}


def test_imagenet100_config_prunes_first_convs_with_the_scratch_schedule(r34):
    cfg = resolve_config(None, CONFIG, check_files=False)
    params = cfg.params
    assert params.model == "resnet34" and params.dataset == "imagenet"
    assert params.data_options == {"num_classes": 100}
    assert params.scratch_schedule == "0:0.1,30:0.01,60:0.001,90:0.0001,105:0.00001"
    assert params.total_epochs == 120
    pr = [next(iter(r.values())) for r in params.ratios]
    assert pr == [0.1, 0.3, 0.5, 0.7, 0.9, 0.95]
    for ratio in params.ratios:
        (value,) = ratio.values()
        assert _matched(r34, ratio) == _matched(r34, resnet34_stage_scheme(_uniform(value)))
    # Exactly the paper's 11 pipeline rows, each with its schedule, per ratio.
    specs = [s for s in expand_config(cfg) if s.seed == 0 and s.ratio == params.ratios[0]]
    schedules = {s.cell.split(" / ")[0]: s.retrain.schedule for s in specs}
    assert schedules == {
        "Scratch-E": "0:0.1,30:0.01,60:0.001,90:0.0001,105:0.00001",
        "S4.2 P15F105": "0:0.1,15:0.01,45:0.001,75:0.0001,90:1e-05",
        "S4.2 P30F90": "0:0.01,30:0.001,60:0.0001,75:1e-05",
        "S4.2 P45F75": "0:0.01,15:0.001,45:0.0001,60:1e-05",
        "S4.2 P60F60": "0:0.001,30:0.0001,45:1e-05",
        "S4.2 P75F45": "0:0.001,15:0.0001,30:1e-05",
        "S4.2 P90F30": "0:0.0001,15:1e-05",
        "SX-A P30F90,1e-1": "0:0.1,30:0.01,60:0.001,75:0.0001,83:1e-05",
        "SX-A P60F60,1e-2": "0:0.01,30:0.001,45:0.0001,53:1e-05",
        "SX-A P90F30,1e-2": "0:0.01,15:0.001,23:0.0001,27:1e-05",
        "SX-B P30/kF90,1e-1": "0:0.1,30:0.01,60:0.001,75:0.0001,83:1e-05",
        "SX-B P30/kF90,1e-2": "0:0.01,30:0.001,60:0.0001,75:1e-05",
    }
