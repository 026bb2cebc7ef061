"""Every example YAML in configs/ resolves, validates and expands against the real protocols."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfprune.configs import resolve_protocol_config
from tfprune.protocols.grids import PROTOCOLS

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_is_an_example_per_protocol():
    protocols = {resolve_protocol_config(None, p, check_files=False).protocol for p in CONFIGS}
    assert protocols == set(PROTOCOLS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_validates_and_expands(path):
    # Files are only checked for the embedded digits data (the GPU datasets are not here).
    cfg = resolve_protocol_config(None, path, check_files=False)
    if cfg.params.get("dataset", "digits") == "digits":
        cfg = resolve_protocol_config(None, path)
    specs = PROTOCOLS[cfg.protocol].expand(cfg.params)
    assert specs and len({s.run_id() for s in specs}) == len(specs)


def test_finetune_lr_yaml_is_the_default():
    path = next(p for p in CONFIGS if p.name == "finetune_lr.yaml")
    assert resolve_protocol_config(None, path) == resolve_protocol_config(None)


def test_override_on_top_of_a_file():
    path = next(p for p in CONFIGS if p.name == "finetune_lr_mnist.yaml")
    cfg = resolve_protocol_config(
        None, path, ["budgets=[5],seeds=[7]", "{lrs: [0.1]}"], check_files=False
    )
    assert cfg.params["budgets"] == [5] and cfg.params["seeds"] == [7]
    assert cfg.params["lrs"] == [0.1] and cfg.params["dataset"] == "mnist"
