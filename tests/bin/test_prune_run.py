"""tfprune-prune is one protocol run.

Its base model is cached like a grid's, and it keeps the filters the criterion ranks highest on
that base.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfprune import count_params, defaults, prune_filters, strip_filters
from tfprune.errors import ConfigError
from tfprune.protocols.execute import get_base_model, run
from tfprune.protocols.single_run import PruneRunConfig, prune_run_spec, run_prune
from tfprune.protocols.spec import RunSpec

QUIET = {"log": lambda _: None}


def _config(tmp_path, **over):
    kw = dict(
        model="small_cnn",
        train_epochs=1,
        retrain_epochs=1,
        sparsity=0.5,
        output_dir=str(tmp_path / "out"),
    )
    kw.update(over)
    return PruneRunConfig(**kw)


def test_the_base_is_cached_and_the_criterions_filters_are_kept(tmp_path):
    lines: list[str] = []
    first = run_prune(_config(tmp_path), log=lines.append)
    assert not any("loaded from cache" in line for line in lines)
    cached = list((tmp_path / "out" / "base_models").iterdir())
    assert len(cached) == 1 and (cached[0] / "weights.h5").is_file()

    lines.clear()
    # another run on the same base (no retraining: only its base is looked at)
    second = run_prune(_config(tmp_path, sparsity=0.3, retrain_epochs=0), log=lines.append)
    assert any("loaded from cache" in line for line in lines)  # not trained again
    assert list((tmp_path / "out" / "base_models").iterdir()) == cached
    assert second.rows[0]["accuracy"] == first.rows[0]["accuracy"]  # the same base

    # The kept filters are those L1 keeps on the cached base (not merely as many).
    config = _config(tmp_path)
    spec = prune_run_spec(config, 0, None)
    base = get_base_model(spec.base_spec(), config.output_dir, **QUIET).model
    _, plan = strip_filters(prune_filters(base, 0.5, "l1", seed=0), return_plan=True)
    assert first.plan.layers == plan.layers

    # masked ≡ stripped: the retrained masked model and the stripped one score the same
    retrained, stripped = first.rows[-2], first.rows[-1]
    assert retrained["name"].startswith("masked, retrained")
    assert stripped["name"].startswith("stripped")
    assert stripped["accuracy"] == pytest.approx(retrained["accuracy"], abs=1e-9)
    assert stripped["params"] < first.rows[0]["params"]


def test_the_batch_size_is_the_datasets_default(tmp_path):
    train, retrain = _config(tmp_path).recipes()
    assert train.batch_size == retrain.batch_size == defaults.batch_size("digits")
    train, _ = _config(tmp_path, batch_size=8).recipes()
    assert train.batch_size == 8
    with pytest.raises(ValueError, match="train_epochs / retrain_epochs must be an integer >= 0"):
        _config(tmp_path, train_epochs=-1).validate()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        _config(tmp_path, batch_size=0).validate()


@pytest.mark.parametrize("method", ["greg1", "l1_orthp", "scratch"])
def test_masked_retraining_is_refused_where_it_cannot_hold(tmp_path, method):
    spec = RunSpec.from_dict(
        {
            **prune_run_spec(_config(tmp_path), 0, None).to_dict(),
            "method": method,
        }
    )
    with pytest.raises(ConfigError, match="retrain_masked"):
        run(spec, str(tmp_path), **QUIET)
    assert not (tmp_path / "base_models").exists()  # refused before anything trained


def test_a_masked_run_records_the_stripped_counts(tmp_path):
    spec = prune_run_spec(_config(tmp_path, train_epochs=0, retrain_epochs=0), 0, None)
    done = run(spec, str(tmp_path), **QUIET)
    stripped = strip_filters(done.model)
    metrics = done.record.metrics
    assert metrics["params"] < metrics["base_params"]
    assert metrics["params"] == count_params(stripped).total
    x = np.asarray(done.data.preprocess(done.data.train_arrays[0][:16]))
    np.testing.assert_allclose(done.model(x), stripped(x), rtol=1e-5, atol=1e-6)
