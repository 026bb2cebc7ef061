"""The run ids and saved ``config.yaml`` of every protocol config stay what they are.

Each registered protocol's defaults and every YAML file under ``configs/`` is resolved (dataset
files not checked) and expanded as ``tfprune-compare`` does; the digests of its ``config.yaml``
text and of its sorted run ids must equal those in ``config_pins.json``. A change that moves a run
id or a saved config on purpose rewrites that file with
``python tests/protocols/test_config_pins.py > tests/protocols/config_pins.json``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tfprune.errors import ConfigError
from tfprune.protocols import PROTOCOLS, resolve_config
from tfprune.protocols.runner import expand_config

ROOT = Path(__file__).resolve().parents[2]
PINS = Path(__file__).with_name("config_pins.json")
SOURCES = [(f"default:{name}", name, None) for name in sorted(PROTOCOLS)] + [
    (p.name, None, p) for p in sorted((ROOT / "configs").glob("*.yaml"))
]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def config_pins(protocol: str | None, path: Path | None) -> dict:
    """The digests of one config's ``config.yaml`` and sorted run ids, and its run count."""
    config = resolve_config(protocol, path, check_files=False)
    pins: dict = {"config_sha256": _digest(config.to_yaml())}
    try:
        ids = sorted(s.run_id() for s in expand_config(config))
    except ConfigError as err:  # a default that needs the user's runs (setup_check)
        pins["expand_error"] = str(err)
        ids = []
    pins.update(run_ids_sha256=_digest("\n".join(ids)), runs=len(ids))
    return pins


def test_every_config_is_pinned():
    assert sorted(json.loads(PINS.read_text())) == sorted(label for label, _, _ in SOURCES)


@pytest.mark.parametrize("label,protocol,path", SOURCES, ids=[s[0] for s in SOURCES])
def test_config_yaml_and_run_ids_are_unchanged(label, protocol, path):
    assert config_pins(protocol, path) == json.loads(PINS.read_text())[label]


if __name__ == "__main__":
    pins = {label: config_pins(protocol, path) for label, protocol, path in SOURCES}
    json.dump(pins, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
