"""Tests for tfprune.models.resnet_cifar: structure, names, shortcuts, ratios, save/reload."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.flops import count_flops, count_params
from tfprune.models.resnet_cifar import (
    blocks_per_stage,
    conv1_widths_from_ratios,
    kept_channels,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    resnet_cifar,
    stage_ratio_patterns,
)


@pytest.fixture(scope="module")
def r20():
    return resnet20()


def _convs(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_resnet20_structure_and_names(r20):
    names = {layer.name for layer in r20.layers}
    for expected in (
        "stem_conv",
        "stem_bn",
        "stage1_block0_conv1",
        "stage1_block0_bn1",
        "stage1_block0_conv2",
        "stage1_block0_bn2",
        "stage2_block0_shortcut_subsample",
        "stage2_block0_shortcut_pad",
        "stage3_block2_conv2",
        "avg_pool",
        "fc",
    ):
        assert expected in names
    # depth = stem conv + 2 convs per block * 3n blocks + fc
    assert len(_convs(r20)) + 1 == 20
    assert r20.output_shape == (None, 10)
    assert r20.get_layer("stage2_block0_conv1").strides == (2, 2)
    assert r20.get_layer("stage3_block0_conv2").filters == 64
    assert all(not conv.use_bias for conv in _convs(r20))


@pytest.mark.parametrize(
    "builder, depth, trainable",
    [(resnet20, 20, 269_722), (resnet32, 32, 464_154), (resnet44, 44, 658_586)],
)
def test_depths_and_param_counts(builder, depth, trainable):
    model = builder()
    assert len(_convs(model)) + 1 == depth
    assert count_params(model, trainable_only=True).total == trainable


def test_resnet110_param_count():
    assert count_params(resnet110(), trainable_only=True).total == 1_727_962  # "1.7 M"


def test_option_a_shortcut_is_subsample_and_symmetric_zero_pad(r20):
    block_in = r20.get_layer("stage1_block2_relu2").output
    pad = r20.get_layer("stage2_block0_shortcut_pad").output
    probe = keras.Model(r20.input, [block_in, pad])
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    before, after = (t.numpy() for t in probe(x))
    assert after.shape == (2, 16, 16, 32)
    np.testing.assert_array_equal(after[..., 8:24], before[:, ::2, ::2, :])
    assert not after[..., :8].any() and not after[..., 24:].any()
    assert count_params(r20).per_layer["stage2_block0_shortcut_pad"] == 0


def test_option_b_adds_projection_convs():
    model = resnet56(shortcut="B")
    assert model.get_layer("stage2_block0_shortcut_conv").kernel.shape == (1, 1, 16, 32)
    assert model.get_layer("stage3_block0_shortcut_bn") is not None
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count_params(model, trainable_only=True).total == 853_018 + extra


def test_width_multipliers_scale_every_stage():
    model = resnet20(width_multipliers=0.5)
    assert model.get_layer("stem_conv").filters == 8
    assert model.get_layer("stage2_block1_conv2").filters == 16
    assert model.get_layer("stage3_block0_conv1").filters == 32
    assert model.get_layer("stage3_block0_shortcut_pad").output_shape == (None, 8, 8, 32)


def test_conv1_widths_build_the_small_dense_model():
    widths = conv1_widths_from_ratios(20, [0, 0.5, 0.3, 0.9, 0])
    assert widths == [[8, 8, 8], [22, 22, 22], [6, 6, 6]]
    model = resnet20(conv1_widths=widths)
    assert model.get_layer("stage2_block1_conv1").filters == 22
    assert model.get_layer("stage2_block1_conv2").kernel.shape == (3, 3, 22, 32)
    assert model.get_layer("stage3_block2_bn1").gamma.shape == (6,)
    per_block = resnet20(conv1_widths=[[16, 5, 16], 32, 64])
    assert per_block.get_layer("stage1_block1_conv1").filters == 5
    assert per_block.get_layer("stage1_block2_conv1").filters == 16


def test_kept_channels_follows_ceil_rule_and_keeps_one():
    assert kept_channels(16, 0.3) == 11  # ceil(4.8) = 5 pruned
    assert kept_channels(64, 0.95) == 3  # ceil(60.8) = 61 pruned
    assert kept_channels(16, 0.95) == 1  # ceil(15.2) = 16 would remove all; keep 1
    assert kept_channels(16, 0.0) == 16
    with pytest.raises(InvalidArgumentError, match="ratio"):
        kept_channels(16, 1.0)


def test_stage_ratio_patterns_select_only_first_conv_of_each_block():
    model = resnet56(shortcut="B")
    patterns = stage_ratio_patterns([0, 0.5, 0.6, 0.7, 0])
    matched = {
        layer.name: ratio
        for layer in model.layers
        for pattern, ratio in patterns.items()
        if re.fullmatch(pattern, layer.name)
    }
    assert len(matched) == 27
    assert all(re.fullmatch(r"stage\d_block\d_conv1", name) for name in matched)
    assert matched["stage1_block8_conv1"] == 0.5
    assert matched["stage2_block0_conv1"] == 0.6
    assert matched["stage3_block4_conv1"] == 0.7
    assert stage_ratio_patterns([0, 0.5, 0, 0.5, 0]).keys() == {
        r"stage1_block\d+_conv1",
        r"stage3_block\d+_conv1",
    }


def test_stage_ratio_patterns_skip_blocks_and_validate():
    patterns = stage_ratio_patterns([0, 0.5, 0.5, 0.5, 0], skip=["2.0", (2, 3), "3.10"])
    (stage2,) = [p for p in patterns if p.startswith("stage2")]
    assert not re.fullmatch(stage2, "stage2_block0_conv1")
    assert not re.fullmatch(stage2, "stage2_block3_conv1")
    assert re.fullmatch(stage2, "stage2_block1_conv1")
    assert re.fullmatch(stage2, "stage2_block30_conv1")
    (stage3,) = [p for p in patterns if p.startswith("stage3")]
    assert re.fullmatch(stage3, "stage3_block1_conv1")
    assert not re.fullmatch(stage3, "stage3_block10_conv1")
    with pytest.raises(InvalidArgumentError, match="stem"):
        stage_ratio_patterns([0.1, 0.5, 0.5, 0.5, 0])
    with pytest.raises(InvalidArgumentError, match="5 entries"):
        stage_ratio_patterns([0.5, 0.5, 0.5])
    with pytest.raises(InvalidArgumentError, match="stage.block"):
        stage_ratio_patterns([0, 0.5, 0.5, 0.5, 0], skip=["two"])


def test_invalid_arguments_name_the_argument():
    with pytest.raises(InvalidArgumentError, match="depth"):
        resnet_cifar(21)
    with pytest.raises(InvalidArgumentError, match="shortcut"):
        resnet_cifar(20, shortcut="C")
    with pytest.raises(InvalidArgumentError, match="conv1_widths"):
        resnet_cifar(20, conv1_widths=[16, 32])
    with pytest.raises(InvalidArgumentError, match="width_multipliers"):
        resnet_cifar(20, width_multipliers=[1, 1])
    assert blocks_per_stage(110) == 18


def test_weight_decay_is_l2_of_half_wd_on_every_trainable_weight():
    wd = 5e-4
    model = resnet20(weight_decay=wd)
    assert len(model.losses) == len(model.trainable_weights)
    expected = sum(float(np.sum(np.square(w.numpy()))) for w in model.trainable_weights) * wd / 2
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert resnet20().losses == []


def test_flops_of_small_input_and_classes():
    model = resnet20(num_classes=100, input_shape=(16, 16, 3))
    dense = count_flops(model).per_layer["fc"]
    assert dense == 64 * 100
    assert count_flops(model).per_layer["stem_conv"] == 16 * 16 * 16 * 27


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])
def test_save_and_reload_with_stock_keras(tmp_path, suffix):
    model = resnet_cifar(8, width_multipliers=0.25, weight_decay=1e-4)
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    path = str(tmp_path / f"model{suffix}")
    model.save(path)  # "" = SavedModel folder
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]


@pytest.mark.slow
def test_keras_file_loads_in_a_process_without_tfprune(tmp_path):
    model = resnet_cifar(8, width_multipliers=0.25)
    x = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model(x).numpy())
    model.save(tmp_path / "m.keras")
    script = textwrap.dedent(
        """
        import sys, numpy as np, tf_keras
        m = tf_keras.models.load_model("m.keras")
        np.testing.assert_allclose(m(np.load("x.npy")).numpy(), np.load("y.npy"), atol=1e-5)
        assert not any(k.startswith("tfprune") for k in sys.modules), "tfprune was imported"
        print("OK")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("OK")
