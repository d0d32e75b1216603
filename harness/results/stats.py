"""Latency statistics computed from raw samples (the runner only returns samples)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

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


def robust_cv(sorted_values: list[float]) -> float:
    """Interquartile range over 1.349 x median: equals the CV for normal data, but a
    few preemption spikes (which push a shared machine's plain CV above 1 while the
    median holds to a fraction of a percent) barely move it."""
    if len(sorted_values) < 4:
        return 0.0
    median = percentile(sorted_values, 50)
    if median <= 0:
        return 0.0
    iqr = percentile(sorted_values, 75) - percentile(sorted_values, 25)
    return iqr / (1.349 * median)


def trials_ci(trial_p50s: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the expected median latency, over independent trials.

    Each trial is its own process, so its median carries the process-level variation
    (memory layout, frequency, co-tenants) that samples within one process cannot show:
    back-to-back trials here differ by 8-27%, far outside a within-trial CI. The trial
    medians are few and roughly normal, hence the t interval (a bootstrap over 3 values
    has only 10 distinct resamples). Needs at least 2 trials.
    """
    n = len(trial_p50s)
    if n < 2:
        raise ValueError("a CI over trials needs at least 2 trials")
    mean = sum(trial_p50s) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in trial_p50s) / (n - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


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
    ci_basis: str = "within_trial"
    trials: int = 1
    trial_p50s: tuple[float, ...] = ()
    cv_robust: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        d["trial_p50s"] = list(self.trial_p50s)
        return d


def summarize(samples_ms: list[float]) -> LatencyStats:
    """Statistics of one set of samples; the CI is the within-sample median CI."""
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
        trial_p50s=(percentile(values, 50),),
        cv_robust=robust_cv(values),
    )


def summarize_trials(trial_samples_ms: list[list[float]]) -> LatencyStats:
    """Statistics over several trials (runner processes) of one cell.

    Percentiles, mean and spread describe all samples pooled; ``ci95`` is the t
    interval over the trials' medians (``ci_basis: "trials"``). With one trial it falls
    back to the within-trial order-statistic CI (``ci_basis: "within_trial"``), which
    is too narrow to compare runs by.
    """
    trials = [t for t in trial_samples_ms if t]
    if not trials:
        raise ValueError("no samples in any trial")
    pooled = summarize([v for t in trials for v in t])
    if len(trials) == 1:
        return pooled
    p50s = tuple(percentile(sorted(t), 50) for t in trials)
    return replace(
        pooled,
        ci95=trials_ci(list(p50s)),
        ci_basis="trials",
        trials=len(trials),
        trial_p50s=p50s,
    )
