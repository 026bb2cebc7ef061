"""Latency-aware per-layer ratios (NetAdapt-style table measured on this machine)."""

from __future__ import annotations

import re

import pytest

import tfprune
from tfprune.compat import keras
from tfprune.deploy.latency import LatencyTable, latency_aware_ratios, measure_latency_table
from tfprune.errors import InvalidArgumentError

L = keras.layers


def _cnn():
    inp = keras.Input((16, 16, 3), name="x")
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", name="c1")(inp)))
    x = L.ReLU()(L.Conv2D(32, 3, padding="same", name="c2")(x))
    x = L.ReLU()(L.Conv2D(8, 3, padding="same", name="c3")(x))
    return keras.Model(inp, L.Dense(4, name="out")(L.GlobalAveragePooling2D()(x)))


def test_table_and_ratios_reach_the_estimated_target():
    model = _cnn()
    table = measure_latency_table(model, ratios=(0.5,), repeats=2)
    assert isinstance(table, LatencyTable)
    assert table.dense == {"c1": (3, 16), "c2": (16, 32), "c3": (32, 8), "out": (8, 4)}
    assert (16, 32) in table.times["c2"] and (8, 16) in table.times["c2"]
    assert all(t > 0 for entries in table.times.values() for t in entries.values())
    mapping, same, fraction = latency_aware_ratios(model, 0.99, table=table)
    assert same is table and mapping
    assert set(mapping.values()) <= {0.5}
    names = {"c1", "c2", "c3"}
    assert all(any(re.fullmatch(k, n) for n in names) for k in mapping)
    assert fraction <= 0.99 or len(mapping) == 3  # reached, or every group moved
    expected = table.total()
    assert fraction == pytest.approx(
        table.total(
            {
                "c1": (3, 8 if "c1" in mapping else 16),
                "c2": (8 if "c1" in mapping else 16, 16 if "c2" in mapping else 32),
                "c3": (16 if "c2" in mapping else 32, 4 if "c3" in mapping else 8),
                "out": (4 if "c3" in mapping else 8, 4),
            }
        )
        / expected
    )
    small = tfprune.shrink(model, mapping)  # the mapping is prune_filters' per-layer form
    assert small.count_params() < model.count_params()


def test_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="target"):
        latency_aware_ratios(_cnn(), 1.5)
    with pytest.raises(InvalidArgumentError, match="ratios"):
        measure_latency_table(_cnn(), ratios=(1.0,))
