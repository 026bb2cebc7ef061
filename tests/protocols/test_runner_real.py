"""The runner with the real finetune_lr protocol and execute() on digits (tiny budget)."""

from __future__ import annotations

import json

from tfprune.protocols import resolve_config
from tfprune.protocols.runner import run_protocol
from tfprune.protocols.store import RunStore

TINY = (
    "base.epochs=2,base.schedule='0:0.02',budgets=[1],seeds=[0],methods=[l1],"
    "lrs=[0.01,0.001],baselines=false,jsv_every_epoch=false,jsv_samples=0"
)


def test_two_shards_equal_one_process_real_protocol(tmp_path):
    cfg = resolve_config("finetune_lr", overrides=[TINY])
    quiet = {"log": lambda s: None}
    one = run_protocol(cfg, tmp_path / "one", **quiet)
    s0 = run_protocol(cfg, tmp_path / "two", shard_index=0, num_shards=2, **quiet)
    s1 = run_protocol(cfg, tmp_path / "two", shard_index=1, num_shards=2, **quiet)
    ids = [r.run_spec().run_id() for r in one]
    assert len(ids) == 2 and len(s0) == len(s1) == 1
    assert sorted(r.run_spec().run_id() for r in s0 + s1) == sorted(ids)
    assert RunStore(tmp_path / "two").finished_ids() == RunStore(tmp_path / "one").finished_ids()
    for r in one:
        assert 0.0 <= r.metrics["final_acc"] <= 1.0 and r.metrics["params"] > 0
        assert len(r.history["val_accuracy"]) == 1
    # Environment of each run names its shard; the last shard wrote the report.
    env = json.loads(
        (tmp_path / "two" / "runs" / s1[0].run_spec().run_id() / "environment.json").read_text()
    )
    assert env["shard"] == {"index": 1, "count": 2} and env["packages"]["tensorflow"]
    for out in ("one", "two"):
        report = tmp_path / out / "report"
        assert {"summary.md", "summary.csv", "accuracy_vs_epoch.png"} <= {
            p.name for p in report.iterdir()
        }
    assert "L1 / lr=1e-2 / 1ep" in (tmp_path / "one" / "report" / "summary.md").read_text()
