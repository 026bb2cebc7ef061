"""Cost of a grid before running it: epochs, examples, MACs, training FLOPs, calibrated time.

The FLOPs are checked by hand on the default model, ``mlp7_linear`` (64 -> 100 x 6 -> 10 dense
layers: 64·100 + 5·100·100 + 100·10 = 57,400 MACs; at ratio 0.8 every hidden layer keeps 20
units: 64·20 + 5·20·20 + 20·10 = 3,480 MACs) on digits (1,797 images, 360 held out: 1,437
training examples per epoch).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shlex

import pytest
from absl import flags

from tfprune.bin import compare as compare_bin
from tfprune.data import load_dataset
from tfprune.protocols import resolve_config
from tfprune.protocols.cost.dataset_sizes import dataset_facts
from tfprune.protocols.cost.estimate import CostEstimator, estimate_cost
from tfprune.protocols.cost.report import format_cost
from tfprune.protocols.runner import expand_config, plan_shard
from tfprune.training.schedules import scratch_b_epochs

FLAGS = flags.FLAGS

DENSE, PRUNED, N_TRAIN = 57_400, 3_480, 1_437
TINY = {
    "seeds": 1,
    "methods": ["l1"],
    "lrs": [0.01],
    "budgets": [2],
    "base": {"schedule": "0:0.02", "epochs": 3, "batch_size": 64},
    "batch_size": 64,
    "jsv_samples": 20,
}


def flops(macs: int, epochs: float) -> float:
    """Training FLOPs by the stated convention: 3 passes x 2 FLOPs per MAC."""
    return 3 * 2 * macs * N_TRAIN * epochs


def tiny_specs() -> list:
    return plan_shard(expand_config(resolve_config("finetune_lr", None, [TINY])))


def by_method(specs: list) -> dict:
    return {s.method: s for s in specs}


@pytest.fixture(autouse=True)
def _parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS.mark_as_parsed()


def test_digits_sizes_match_the_loaded_dataset_without_loading_it():
    for fraction in (0.2, 0.3):
        facts = dataset_facts("digits", options={"test_fraction": fraction}, flatten=True)
        data = load_dataset("digits", flatten=True, test_fraction=fraction)
        assert (facts.num_train, facts.num_test) == (data.num_train, data.num_test)
        assert facts.input_shape == data.input_shape == (64,)
    assert dataset_facts("digits").input_shape == (8, 8, 1)


def test_mnist_sizes_come_from_the_idx_headers(tmp_path):
    for name, magic, dims in (
        ("t10k-labels-idx1-ubyte.gz", 0x0801, [500]),
        ("t10k-images-idx3-ubyte.gz", 0x0803, [500, 28, 28]),
    ):
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
        with gzip.open(tmp_path / name, "wb") as f:  # a header is all the estimate reads
            f.write(header)
    facts = dataset_facts("mnist", str(tmp_path), {"holdout": 100, "resize": 32})
    assert (facts.num_train, facts.num_test, facts.input_shape) == (400, 100, (32, 32, 1))
    assert "header" in facts.note


def test_flops_of_a_tiny_grid_by_hand_with_the_shared_base_counted_once():
    specs = tiny_specs()
    assert sorted(s.method for s in specs) == ["l1", "random", "scratch"]
    cost = estimate_cost(specs)
    runs = {r.method: r for r in cost.runs}
    assert all(r.dense_macs == DENSE and r.pruned_macs == PRUNED for r in runs.values())
    assert all(r.examples_per_epoch == N_TRAIN for r in runs.values())
    # L1 and Random share one base (3 epochs); the first of them in run-id order trains it.
    assert runs["l1"].base_id == runs["random"].base_id and runs["scratch"].base_id is None
    assert len(cost.bases) == 1 and [r.trains_base for r in cost.runs].count(True) == 1
    assert cost.runs[0].trains_base or cost.runs[1].trains_base
    assert cost.base_flops == flops(DENSE, 3)
    # Retraining: 2 epochs each; Scratch-E trains base + pruning + retraining = 3 + 0 + 2.
    assert runs["scratch"].retrain.epochs == 5 and runs["scratch"].epochs_text() == "-/-/5"
    assert cost.retrain_flops == flops(PRUNED, 2 + 2 + 5)
    assert cost.train_flops == flops(DENSE, 3) + flops(PRUNED, 9) == 1_754_749_440
    assert cost.epochs == {"base": 3, "prune": 0, "retrain": 9}
    trained = next(r for r in cost.runs if r.trains_base)
    cached = next(r for r in cost.runs if r.base is not None and not r.trains_base)
    assert trained.train_flops == flops(DENSE, 3) + flops(PRUNED, 2)
    assert cached.train_flops == flops(PRUNED, 2) and cached.epochs_text() == "(3)/-/2"
    # Evaluations: after pruning, after each epoch, final (+ the base's, once). Mean JSV
    # (finetune_lr measures it every epoch): after pruning, after each epoch (+ the base's).
    assert trained.evals == 5 and cached.evals == 4 and runs["scratch"].evals == 1 + 5 + 1
    assert (trained.jsv, cached.jsv, runs["scratch"].jsv) == (4, 3, 1 + 5)


def test_scratch_b_regularized_upper_bound_and_squeezed_base():
    specs = by_method(tiny_specs())
    estimator = CostEstimator()
    scratch_b = dataclasses.replace(
        specs["scratch"],
        options={**specs["scratch"].options, "scratch_budget": "B", "scratch_b_variant": "why"},
    )
    expected = scratch_b_epochs(3, DENSE, PRUNED, 2, variant="why")
    assert estimator.run_cost(scratch_b).retrain.epochs == expected > 5

    greg = dataclasses.replace(
        specs["l1"], method="greg1", options={**specs["l1"].options, "prune_max_epochs": 4}
    )
    cost = estimator.run_cost(greg)
    assert cost.prune.upper_bound and cost.prune.epochs == 4 and cost.prune.macs == DENSE
    assert cost.epochs_text() == "3/<=4/2"
    assert cost.train_flops == flops(DENSE, 3 + 4) + flops(PRUNED, 2)
    text = format_cost(estimator.estimate([greg]))
    assert "upper bound" in text and "<=4" in text

    squeezed = dataclasses.replace(
        specs["l1"], options={**specs["l1"].options, "squeeze_base_by_speedup": True}
    )
    cost = estimator.run_cost(squeezed)
    spe = math.ceil(N_TRAIN / 64)
    steps = round(3 * spe / (DENSE / PRUNED))  # SX-B: P/k epochs' worth of steps
    assert cost.base.epochs == pytest.approx(steps / spe)
    assert cost.base_id != specs["l1"].base_id()


def test_shards_partition_the_grid_cost():
    config = resolve_config("finetune_lr", None, [])
    grid = plan_shard(expand_config(config))
    estimator = CostEstimator()
    whole = estimator.estimate(grid)
    shards = [estimator.estimate(plan_shard(grid, k, 3)) for k in range(3)]
    ids = [r.run_id for s in shards for r in s.runs]
    assert sorted(ids) == sorted(r.run_id for r in whole.runs) and len(set(ids)) == len(ids)
    runs_only = [s.retrain_flops + s.prune_flops for s in shards]
    assert sum(runs_only) == pytest.approx(whole.retrain_flops + whole.prune_flops)
    # Every base is trained once per process that needs it: the shards' bases cover the grid's.
    assert set().union(*(s.bases for s in shards)) == set(whole.bases)
    assert sum(s.base_flops for s in shards) >= whole.base_flops == flops(DENSE, 20) * 3
    assert len(whole.runs) == 18 and len(whole.bases) == 3


def test_calibrated_estimate_adds_up_and_grows_with_the_work():
    estimator = CostEstimator(calibrate=True, repeats=1)
    specs = tiny_specs()
    cost = estimator.estimate(specs, startup_seconds=1.5)
    for run in cost.runs:
        assert run.seconds is not None and run.seconds > 0 and math.isfinite(run.seconds)
    assert cost.seconds == pytest.approx(1.5 + sum(r.seconds for r in cost.runs))
    trained = next(r for r in cost.runs if r.trains_base)
    cached = next(r for r in cost.runs if r.base is not None and not r.trains_base)
    assert trained.seconds > cached.seconds  # the same steps, plus training the base
    # The measurements are kept: the same grid is costed again from them, identically.
    again = estimator.estimate(specs, startup_seconds=1.5)
    assert [r.seconds for r in again.runs] == [r.seconds for r in cost.runs]
    # More retraining epochs of one run cost more, from the same measurements.
    l1 = by_method(specs)["l1"]
    longer = dataclasses.replace(l1, retrain=dataclasses.replace(l1.retrain, epochs=4))
    short, long = (estimator.estimate([s]).runs[0] for s in (l1, longer))
    assert long.retrain.epochs == 2 * short.retrain.epochs and long.seconds > short.seconds
    assert short.seconds == trained.seconds  # alone, it trains its base too
    text = format_cost(cost)
    assert "estimated wall time" in text and "est. s" in text
    assert max(len(line) for line in text.splitlines()) <= 100


# The README's calibrated dry run, as written (tests/test_readme.py leaves it to this test).
README_CALIBRATE = "--dry_run --calibrate"


def test_dry_run_with_calibrate_prints_the_costs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a fresh clone's working folder: no results/ yet
    assert compare_bin.BINARY(shlex.split(README_CALIBRATE)) == 0  # the default grid
    out = capsys.readouterr().out
    assert "# 18 runs in the grid" in out and "# cost of the grid (one process" in out
    assert "timed mlp7_linear dense (57.4K MACs)" in out
    assert out.count("estimated wall time:") == 1 and "# every shard" not in out
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing
    args = ["--dry_run", "--calibrate", f"--params_override={json.dumps(TINY)}", "--num_shards=2"]
    assert compare_bin.BINARY(args) == 0
    out = capsys.readouterr().out
    assert "# 3 runs in the grid" in out and "# cost of shard 0/2" in out
    assert "training FLOPs: 1.75G = base 1.48G + pruning 0 + retraining 270M" in out
    assert "# the whole grid (3 runs in one process):" in out
    assert out.count("estimated wall time:") == 2 and "#   shard 1: " in out
    assert compare_bin.BINARY(["--calibrate"]) == 2
    assert "--calibrate only estimates the wall time of a dry run; add --dry_run" in (
        capsys.readouterr().err
    )
