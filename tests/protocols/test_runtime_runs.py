"""Protocol runs under mixed precision and XLA: recorded, part of the setup, masked == stripped."""

from __future__ import annotations

import json

import pytest
import yaml

from tfprune.compat import keras
from tfprune.configs import TrainConfig
from tfprune.errors import ConfigError
from tfprune.protocols import resolve_config
from tfprune.protocols.grids import PROTOCOLS
from tfprune.protocols.runner import expand_config, run_protocol, train_base_model
from tfprune.protocols.setups import setup_check
from tfprune.training import TrainingRecipe

TINY = (
    "base.epochs=1,base.schedule='0:0.02',budgets=[1],seeds=[0],methods=[l1],"
    "lrs=[0.01],baselines=false,jsv_every_epoch=false,jsv_samples=50"
)
QUIET = {"log": lambda s: None}


def test_float32_run_ids_are_unchanged_and_mixed_runs_are_other_runs():
    plain = resolve_config("finetune_lr", overrides=[TINY])
    mixed = resolve_config(
        "finetune_lr", overrides=[TINY, {"runtime": {"mixed_precision": "mixed_bfloat16"}}]
    )
    old = [s.run_id() for s in PROTOCOLS["finetune_lr"].expand(plain.params)]
    assert [s.run_id() for s in expand_config(plain)] == old
    mixed_specs = expand_config(mixed)
    assert {s.opts.precision for s in mixed_specs} == {"mixed_bfloat16"}
    assert not {s.run_id() for s in mixed_specs} & set(old)
    plain_bases = {s.base_id() for s in expand_config(plain)}
    assert not {s.base_id() for s in mixed_specs} & plain_bases


def test_runtime_section_is_validated_and_saved_resolved():
    with pytest.raises(ConfigError, match="runtime.*mixed_bfloat16"):
        resolve_config(overrides=[TINY, "runtime.mixed_precision=half"])
    with pytest.raises(ConfigError, match="jit_compile"):
        resolve_config(overrides=[TINY, "runtime.jit_compile=3"])
    cfg = resolve_config(overrides=[TINY, {"runtime": {"mixed_precision": True}}])
    assert cfg.runtime.mixed_precision in ("mixed_bfloat16", "mixed_float16")
    saved = yaml.safe_load(cfg.to_yaml())["runtime"]
    assert saved["mixed_precision"] == cfg.runtime.mixed_precision


def test_mixed_xla_run_records_its_runtime_and_strips_exactly(tmp_path):
    plain = resolve_config("finetune_lr", overrides=[TINY])
    mixed = resolve_config(
        "finetune_lr",
        overrides=[TINY, {"runtime": {"mixed_precision": "mixed_bfloat16", "jit_compile": True}}],
    )
    (rec32,) = run_protocol(plain, tmp_path / "f32", **QUIET)
    (rec16,) = run_protocol(mixed, tmp_path / "bf16", **QUIET)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run

    m = rec16.metrics
    assert m["precision"] == "mixed_bfloat16" and m["jit_compile"] is True
    assert rec32.metrics["precision"] == "float32" and rec32.metrics["jit_compile"] is False
    assert 0.0 <= m["final_acc"] <= 1.0 and m["jsv_after_prune"] > 0
    # Masked == stripped: exact on the float32 twins, within bf16 rounding in bf16.
    assert m["strip_max_rel_error_float32"] <= 1e-5
    assert m["strip_max_rel_error"] <= 2**-6
    assert rec32.metrics["strip_max_rel_error"] <= 1e-5
    assert rec16.setup["hyper"]["precision"] == "mixed_bfloat16"

    # Another precision is another base model and recipe: never S2 or stricter.
    verdict = setup_check(rec32, rec16)
    assert verdict.label == "S1"
    assert any(s.startswith("base_id") for s in verdict.mismatches)
    assert any("mixed_bfloat16" in s for s in verdict.mismatches)

    run_dir = tmp_path / "bf16" / "runs" / rec16.run_spec().run_id()
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["runtime"] == {"precision": "mixed_bfloat16", "jit_compile": True}
    assert env["devices"]
    saved = yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())
    assert saved["runtime"] == {"mixed_precision": "mixed_bfloat16", "jit_compile": True}


def test_train_binary_config_trains_in_mixed_precision(tmp_path):
    config = TrainConfig(
        model="mlp7_linear",
        recipe=TrainingRecipe(schedule="0:0.02", epochs=1, batch_size=64),
        output_dir=str(tmp_path),
        mixed_precision="mixed_bfloat16",
        jit_compile=True,
    )
    metrics = train_base_model(config, **QUIET)
    assert metrics["precision"] == "mixed_bfloat16" and metrics["jit_compile"] is True
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["runtime"]["precision"] == "mixed_bfloat16"
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(output_dir=str(tmp_path), mixed_precision="fp8").validate()
