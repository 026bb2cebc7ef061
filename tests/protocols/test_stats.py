"""tfprune.protocols.stats: mean ± std over seeds and the paired t-test."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from tfprune.protocols.stats import fmt_mean_std, mean_std, paired_test


def test_mean_std_uses_sample_std_and_skips_missing():
    m, s, n = mean_std([0.9, 0.92, None, 0.94])
    assert n == 3
    assert m == pytest.approx(0.92)
    assert s == pytest.approx(0.02)
    assert mean_std([0.5]) == (0.5, 0.0, 1)
    m, s, n = mean_std([])
    assert n == 0 and math.isnan(m)


def test_fmt_mean_std():
    assert fmt_mean_std(0.9136, 0.0012) == "91.36±0.12"
    assert fmt_mean_std(float("nan"), 0.0) == "-"
    assert fmt_mean_std(1.5, 0.25, scale=1.0, digits=1) == "1.5±0.2"


def test_paired_test_matches_scipy_on_common_seeds():
    a = {0: 0.91, 1: 0.93, 2: 0.90, 3: 0.95}
    b = {0: 0.89, 1: 0.92, 2: 0.90, 9: 0.1}
    r = paired_test(a, b)
    ref = sps.ttest_rel([0.91, 0.93, 0.90], [0.89, 0.92, 0.90])
    assert r.n == 3
    assert r.mean_diff == pytest.approx(0.01)
    assert r.t == pytest.approx(ref.statistic)
    assert r.p == pytest.approx(ref.pvalue)


def test_paired_test_degenerate_cases():
    assert paired_test({0: 1.0}, {1: 1.0}).n == 0
    one = paired_test({0: 1.0}, {0: 0.5})
    assert one.n == 1 and math.isnan(one.p)
    same = paired_test({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    assert same.p == 1.0 and not same.significant()
    # Equal non-zero differences: zero spread, so no p-value (never p = 0).
    const = paired_test({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert const.n == 3 and const.mean_diff == pytest.approx(0.1)
    assert math.isnan(const.p) and math.isnan(const.t) and not const.significant()
