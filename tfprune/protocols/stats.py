"""Statistics over seeds: mean ± std, paired t-tests, formatting."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["PairedTest", "fmt_mean_std", "mean_std", "paired_test"]


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """``(mean, std, n)`` of the non-missing values; std is the sample std (ddof=1, 0 for n=1).

    Returns ``(nan, nan, 0)`` when nothing is left.
    """
    xs = np.asarray([float(v) for v in values if v is not None and not math.isnan(float(v))])
    if xs.size == 0:
        return float("nan"), float("nan"), 0
    std = float(xs.std(ddof=1)) if xs.size > 1 else 0.0
    return float(xs.mean()), std, int(xs.size)


def fmt_mean_std(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    """``"91.36±0.12"`` (accuracies as percentages by default); ``"-"`` for NaN."""
    if mean is None or math.isnan(mean):
        return "-"
    if std is None or math.isnan(std):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}±{std * scale:.{digits}f}"


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """A paired t-test of ``a - b`` over matched seeds.

    Attributes:
        n: Number of pairs.
        mean_diff: Mean of ``a - b``.
        t: t statistic (``nan`` when undefined: n < 2, or every difference equal, where the
            spread over seeds is zero and the t-test cannot weigh the evidence).
        p: Two-sided p-value (``nan`` when undefined; ``1.0`` when every difference is 0).
    """

    n: int
    mean_diff: float
    t: float
    p: float

    def significant(self, alpha: float = 0.05) -> bool:
        """True when ``p < alpha``."""
        return not math.isnan(self.p) and self.p < alpha

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return dataclasses.asdict(self)


def paired_test(a: Mapping[Any, float], b: Mapping[Any, float]) -> PairedTest:
    """Paired t-test (``scipy.stats.ttest_rel``) on the keys (seeds) present in both mappings."""
    keys = sorted(set(a) & set(b), key=str)
    pairs = [(float(a[k]), float(b[k])) for k in keys if a[k] is not None and b[k] is not None]
    n = len(pairs)
    if n == 0:
        return PairedTest(0, float("nan"), float("nan"), float("nan"))
    diffs = np.asarray([x - y for x, y in pairs])
    mean_diff = float(diffs.mean())
    if n < 2:
        return PairedTest(n, mean_diff, float("nan"), float("nan"))
    if np.allclose(diffs, diffs[0], rtol=0.0, atol=1e-12):
        # Zero spread: identical results say nothing against "no difference" (p = 1); equal
        # non-zero differences leave the t statistic undefined, so no p-value is claimed.
        if abs(diffs[0]) <= 1e-12:
            return PairedTest(n, 0.0, float("nan"), 1.0)
        return PairedTest(n, mean_diff, float("nan"), float("nan"))
    res = stats.ttest_rel([x for x, _ in pairs], [y for _, y in pairs])
    return PairedTest(n, mean_diff, float(res.statistic), float(res.pvalue))
