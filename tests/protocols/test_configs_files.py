"""Every example YAML in configs/ resolves, validates and expands against the real protocols."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tfprune.bin import compare as compare_bin
from tfprune.errors import ConfigError
from tfprune.protocols import resolve_config
from tfprune.protocols.grids import PROTOCOLS
from tfprune.training.schedules import parse_schedule

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_there_is_an_example_per_protocol():
    protocols = {resolve_config(None, p, check_files=False).protocol for p in CONFIGS}
    assert protocols == set(PROTOCOLS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_validates_and_expands(path):
    # Files are only checked for the embedded digits data (the GPU datasets are not here).
    cfg = resolve_config(None, path, check_files=False)
    if getattr(cfg.params, "dataset", "digits") == "digits":
        cfg = resolve_config(None, path)
    specs = PROTOCOLS[cfg.protocol].expand(cfg.params)
    assert specs and len({s.run_id() for s in specs}) == len(specs)


def test_finetune_lr_yaml_is_the_default():
    path = next(p for p in CONFIGS if p.name == "finetune_lr.yaml")
    assert resolve_config(None, path) == resolve_config(None)


# The README's dry run of the example config, as written (tests/test_readme.py leaves it here).
README_DRY_RUN = "--config=configs/finetune_lr.yaml --dry_run"


def test_the_readme_dry_run_of_finetune_lr_yaml_prints_the_default_grid(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "configs").symlink_to(REPO / "configs")  # a fresh clone's working folder
    monkeypatch.chdir(tmp_path)
    assert compare_bin.BINARY(shlex.split(README_DRY_RUN)) == 0
    out = capsys.readouterr().out
    assert "protocol: finetune_lr" in out and "# 18 runs in the grid" in out
    assert "training FLOPs: 42.3G" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]  # a dry run writes nothing


def test_override_on_top_of_a_file():
    path = next(p for p in CONFIGS if p.name == "finetune_lr_mnist.yaml")
    cfg = resolve_config(None, path, ["budgets=[5],seeds=[7]", "{lrs: [0.1]}"], check_files=False)
    assert cfg.params.budgets == [5] and cfg.params.seeds == [7]
    assert cfg.params.lrs == [0.1] and cfg.params.dataset == "mnist"


def _resolved(name: str) -> tuple[str, dict, list]:
    cfg = resolve_config(None, CONFIGS[0].parent / name, check_files=False)
    return cfg.protocol, cfg.params, PROTOCOLS[cfg.protocol].expand(cfg.params)


def _stages(spec) -> list[tuple[int, float]]:
    return parse_schedule(spec.retrain.schedule, spec.retrain.epochs).stages


# The spec's retraining schedules (sections 2.2, 2.5, 2.6, 5.2, 8), per config and LR.
SPEC_RETRAIN = {
    "finetune_lr_mnist.yaml": {
        0.01: [(0, 0.01), (30, 0.001), (60, 0.0001)],
        0.001: [(0, 0.001), (45, 0.0001)],
    },
    "finetune_lr_cifar10_resnet56.yaml": {
        0.01: [(0, 0.01), (60, 0.001), (90, 0.0001)],
        0.001: [(0, 0.001), (80, 0.0001)],
    },
    "finetune_lr_imagenet_resnet50.yaml": {
        0.01: [(0, 0.01), (30, 0.001), (60, 0.0001), (75, 1e-5)],
        0.001: [(0, 0.001), (30, 0.0001), (60, 1e-5)],
    },
}


@pytest.mark.parametrize("name", sorted(SPEC_RETRAIN))
def test_finetune_configs_reproduce_the_spec_schedules(name):
    protocol, params, specs = _resolved(name)
    assert protocol == "finetune_lr"
    seen = {}
    for s in specs:
        if s.method == "scratch":
            continue
        lr = parse_schedule(s.retrain.schedule, s.retrain.epochs).lr_at(0)
        seen[lr] = _stages(s)
        assert s.retrain.weight_decay_mode == "coupled"
    for lr, stages in SPEC_RETRAIN[name].items():
        assert seen[lr] == stages  # parsed from decimal text: exact


def test_cifar_configs_use_the_spec_recipes():
    _, params, specs = _resolved("finetune_lr_cifar10_resnet56.yaml")
    s = specs[0]
    assert parse_schedule(s.base["schedule"], s.base["epochs"]).stages == [
        (0, 0.1),
        (100, 0.01),
        (150, 0.001),
    ]
    assert s.base["epochs"] == 200 and s.retrain.weight_decay == 5e-4
    assert s.base_recipe().weight_decay == 5e-4 and s.base_recipe().batch_size == 128
    scratch = [x for x in specs if x.method == "scratch"]
    # Scratch baselines train with the dense recipe (spec 1.1), not a retraining schedule.
    assert scratch and all(x.retrain == x.base_recipe() for x in scratch)
    # RETHINK's CIFAR recipe for M2 (spec 5.2): 160 epochs, 0.1 x0.1 at 80/120, batch 64, 1e-4.
    _, params, specs = _resolved("scratch_vs_prune_cifar10_resnet56.yaml")
    e = next(x for x in specs if x.cell.startswith("Scratch-E"))
    assert _stages(e) == [(0, 0.1), (80, 0.01), (120, 0.001)]
    assert e.retrain.epochs == 160 and e.retrain.batch_size == 64
    assert e.retrain.weight_decay == 1e-4
    s42 = next(x for x in specs if x.cell.startswith("S4.2 P30F130"))
    assert _stages(s42) == [(0, 0.1), (50, 0.01), (90, 0.001)]  # the rest of the scratch run


def test_lehua_ft_is_the_last_base_lr():
    _, params, specs = _resolved("retrain_schedules.yaml")
    ft = next(s for s in specs if "/ FT /" in s.cell)
    base_last = parse_schedule(ft.base["schedule"], ft.base["epochs"]).final_lr()
    assert _stages(ft) == [(0, pytest.approx(base_last))]


def test_milestone_syntax_in_every_digits_schedule():
    _, _, specs = _resolved("ratio_sweep.yaml")
    l1 = next(s for s in specs if s.method == "l1")
    assert _stages(l1) == [(0, 0.01), (3, 0.001), (7, 0.0001)]


def test_first_stage_config_lengthens_only_the_small_lrs_first_stage():
    protocol, params, specs = _resolved("finetune_lr_first_stage_digits.yaml")
    assert protocol == "finetune_lr" and params.dataset == "digits"
    assert (params.model, params.ratio, params.seeds) == ("mlp7_linear", 0.8, 3)
    got = {s.cell: (_stages(s), s.retrain.epochs) for s in specs if s.seed == 0}
    assert got == {
        "L1 / lr=1e-2 / 20ep": ([(0, 0.01), (7, 0.001), (13, 0.0001)], 20),
        "L1 / lr=1e-3 / 20ep": ([(0, 0.001), (10, 0.0001)], 20),
        "L1 / lr=1e-3 / 20ep+20 first stage": ([(0, 0.001), (30, 0.0001)], 40),
        "L1 / lr=1e-3 / 20ep+60 first stage": ([(0, 0.001), (70, 0.0001)], 80),
    }


@pytest.mark.parametrize(
    "protocol, override, message",
    [
        ("finetune_lr", "lrs=[0.01,0]", r"lrs\[1\] must be a learning rate > 0"),
        ("finetune_lr", "budgets=[20,-1]", r"budgets\[1\]=-1 is negative"),
        ("finetune_lr", "first_stage_extra_lrs=-0.1", r"first_stage_extra_lrs must be a lear"),
        ("ratio_sweep", "schedule='cosin:0.1:0.001'", r"schedule=.*did you mean 'cosine'"),
        ("ratio_sweep", "ratios=[0.5,1.5]", r"ratios\[1\] must be in \[0, 1\)"),
        ("scratch_vs_prune", "sxa_lr=0", r"sxa_lr must be a learning rate > 0"),
        ("scratch_vs_prune", "scratch_schedule='0:0.1,5:0.01,3:0.001'", "decreasing epochs"),
        ("cross_recipe", "recipe_epochs.FT_A=2.5", r"recipe_epochs\['FT_A'\] must be a whole"),
        ("cross_recipe", "recipes.FT_B='0:-0.1'", r"recipes\['FT_B'\]=.*non-positive LR"),
        ("retrain_schedules", "schedules.FT='fx:0.1'", r"schedules\['FT'\]=.*not a known sch"),
        ("retrain_schedules", "base.batch_size=0", r"base.batch_size must be >= 1"),
        ("finetune_lr", "model=mlp7_linar", r"did you mean 'mlp7_linear'"),
    ],
)
def test_each_protocol_checks_its_declared_settings_before_anything_runs(
    protocol, override, message
):
    with pytest.raises(ConfigError, match=message):
        resolve_config(protocol, None, override, check_files=False)
