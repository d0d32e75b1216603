"""Latency statistics computed from raw samples (the runner only returns samples)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scipy import stats as sps


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_ci(sorted_values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    The number of samples below the median is Binomial(n, 1/2); the interval is the
    pair of order statistics that covers the median with at least ``confidence``.
    With fewer than 6 samples no such pair exists at 95% and the full range is returned.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("median CI of an empty sample")
    alpha = 1.0 - confidence
    # Largest k with P(B <= k-1) <= alpha/2: the k-th smallest is the lower bound.
    k = int(sps.binom.ppf(alpha / 2.0, n, 0.5))
    while k > 0 and sps.binom.cdf(k - 1, n, 0.5) > alpha / 2.0:
        k -= 1
    if k < 1:
        return sorted_values[0], sorted_values[-1]
    return sorted_values[k - 1], sorted_values[n - k]


@dataclass(frozen=True)
class LatencyStats:
    count: int
    min: float
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    cv: float
    ci95: tuple[float, float]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d


def summarize(samples_ms: list[float]) -> LatencyStats:
    values = sorted(samples_ms)
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return LatencyStats(
        count=n,
        min=values[0],
        p50=percentile(values, 50),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        ci95=median_ci(values),
    )
