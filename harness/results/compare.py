"""Two runs compared cell by cell: did anything get slower, bigger or less accurate?

Cells are matched by (model, variant, runtime, device). For each cell present and ``ok``
in both runs, latency gets a ratio of p50s and a significance test, and peak memory,
artifact size and accuracy get their change against a :class:`Threshold`. Cells in one
run only and cells that failed on either side are listed with their reasons, never
dropped.

Latency verdicts: ``regressed``/``improved`` when the difference is significant at
``alpha`` *and* at least the minimum effect size (the latency threshold, 5% by
default); ``noise`` when it is significant but smaller; ``unchanged`` when it is not
significant and smaller; ``inconclusive`` (on stored runs) when it is not significant
but at least the minimum effect size: a change that size, measured over that few trials
(3, a suite's default, decide only a tight one), cannot be told from noise, and calling
it ``unchanged`` would pass a +50% slowdown as clean. It is no regression (exit 0), but
it is counted, explained in the row and never shown as a pass. What the test runs over
(its *basis*) matters more than which test it is:

* ``trials``: a test over each cell's per-trial medians. Each trial is its own runner
  process, and back-to-back processes here differ by 6-27% in p50 (memory layout,
  frequency, co-tenants are drawn once per process), so trials are the independent
  observations. Mann-Whitney U when both cells have enough trials for the exact test to
  reach ``alpha`` at all (4 and 4 at 0.05); with 2 or 3 trials a side (3 is the default
  of a suite, where the smallest possible Mann-Whitney p-value is 0.1) Welch's t-test
  on the log trial medians, which can decide with so few because it uses their spread.
* ``samples``: Mann-Whitney U over the raw samples, when a cell has a single trial and
  so no spread between processes to test against. Samples share their process's draw
  of layout, frequency and co-tenants, so they are not independent observations of the
  cell and this basis calls most A/A pairs significant; the effect size then does the
  work, and the comparison warns.
* ``interleaved``: the Wilcoxon signed-rank test over paired rounds of an interleaved
  re-measurement (base and candidate run alternately, see
  :mod:`harness.suite.interleave`); pairing removes the drift both sides share. The
  ratio is then the Hodges-Lehmann estimate over the rounds, not a ratio of two p50s,
  and ``regressed``/``improved`` ask more than significance: the estimate reaches the
  limit and its interval at 1 - ``alpha`` clears a quarter of it (:func:`paired_verdict`).
  A cell that could not be re-measured is ``not_judged`` (no verdict, and the whole
  comparison is incomplete), never judged on the stored runs in its place.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats as sps

from harness.results.store import CellRecord, InterleaveCellRecord, ResultsStore, RunRecord
from harness.results.thresholds import Threshold, default_thresholds

DEFAULT_ALPHA = 0.05
# How far beyond no change, as a fraction of the limit, the near end of an interleaved
# ratio's interval must lie for a regressed/improved verdict (see paired_verdict).
INTERVAL_CLEARANCE = 0.25
# Version keys that describe the harness itself, not the runtimes being measured: the
# code digest changes with every edit of models/recipes/export and is no reason to warn.
_NOT_RUNTIMES = frozenset({"harness", "harness_code"})

CellKey = tuple[str, str, str, str]


class Verdict(str, Enum):
    REGRESSED = "regressed"
    IMPROVED = "improved"
    NOISE = "noise"
    UNCHANGED = "unchanged"
    # Stored runs: not significant, yet the change reaches the minimum effect size, so the
    # test could not tell it from noise (too few trials for their spread): no verdict to
    # pass on, but no regression either (it does not fail the comparison).
    INCONCLUSIVE = "inconclusive"
    # --interleave could not re-measure the cell: no verdict, and the comparison is
    # incomplete (the stored runs are not judged in its place: their drift is no verdict).
    NOT_JUDGED = "not_judged"


# A cell's verdict is its most important metric verdict, in this order (a measured
# cell's: NOT_JUDGED is never one of its metrics').
# INCONCLUSIVE comes before IMPROVED: a cell whose latency may be +50% must not read as
# improved because its file got smaller.
_VERDICT_ORDER = (
    Verdict.REGRESSED,
    Verdict.INCONCLUSIVE,
    Verdict.IMPROVED,
    Verdict.NOISE,
    Verdict.UNCHANGED,
)


class Basis(str, Enum):
    TRIALS = "trials"
    SAMPLES = "samples"
    INTERLEAVED = "interleaved"


# --- the statistics ---------------------------------------------------------------------


def mann_whitney_smallest_p(n_base: int, n_new: int) -> float:
    """The smallest two-sided p-value the exact Mann-Whitney U test can return with
    these sample sizes (complete separation, no ties): 2 / C(n1 + n2, n1)."""
    if n_base < 1 or n_new < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_base + n_new, n_base))


def trials_can_decide(n_base: int, n_new: int, alpha: float) -> bool:
    """Whether a test over this many trials per side can be significant at ``alpha``
    (and each side has a spread at all: one trial is one process)."""
    return min(n_base, n_new) >= 2 and mann_whitney_smallest_p(n_base, n_new) < alpha


def welch_log_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value on the logs of two sets of positive values (trial
    medians): log, because process-to-process drift is multiplicative. 1.0 when a side
    has fewer than two values or nothing varies at all."""
    if len(base) < 2 or len(new) < 2:
        return 1.0
    log_base, log_new = [math.log(v) for v in base], [math.log(v) for v in new]
    if statistics.pvariance(log_base) == 0 and statistics.pvariance(log_new) == 0:
        # Identical trials on each side: nothing to test against (scipy would divide by 0).
        return 1.0 if log_base[0] == log_new[0] else 0.0
    p = float(sps.ttest_ind(log_new, log_base, equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p


def signed_rank_smallest_p(rounds: int) -> float:
    """The smallest two-sided p-value of the exact signed-rank test over ``rounds``
    pairs (every difference the same sign): 2 / 2**rounds."""
    return min(1.0, 2.0 / 2.0**rounds) if rounds > 0 else 1.0


def mann_whitney_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (scipy picks the exact distribution for small
    samples without ties); 1.0 when either side is empty or every value is equal."""
    if not base or not new:
        return 1.0
    if min(min(base), min(new)) == max(max(base), max(new)):
        return 1.0
    p = float(sps.mannwhitneyu(new, base, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def signed_rank_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped, as
    in Wilcoxon's original test); 1.0 when nothing is left to rank."""
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return 1.0
    p = float(sps.wilcoxon(nonzero, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


@lru_cache(maxsize=128)
def _pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n)


def _walsh_averages(values: Sequence[float]) -> np.ndarray:
    """Every pairwise mean of ``values`` (each value with itself included), sorted."""
    array = np.asarray(values, dtype=float)
    i, j = _pair_indices(len(array))
    return np.sort((array[i] + array[j]) / 2.0)


def hodges_lehmann(differences: Sequence[float]) -> float:
    """The one-sample Hodges-Lehmann estimate: the median of the Walsh averages (every
    pairwise mean, each value with itself included). It is the location estimate that
    goes with the signed-rank test; against the plain median it needs about two thirds
    of the rounds for the same precision on normal noise and, like it, shrugs off a
    disturbed round or two."""
    if not differences:
        raise ValueError("Hodges-Lehmann estimate of nothing")
    return float(np.median(_walsh_averages(differences)))


@lru_cache(maxsize=16)
def _two_sided_z(confidence: float) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def hodges_lehmann_ci(
    differences: Sequence[float], confidence: float = 0.95
) -> tuple[float, float]:
    """The interval that inverts the signed-rank test: Walsh averages k and M + 1 - k of
    the M sorted, with k from the normal approximation of the signed-rank statistic
    (Hollander & Wolfe); the full range when there are too few values for one."""
    walsh = _walsh_averages(differences)
    n, m = len(differences), len(walsh)
    z = _two_sided_z(confidence)
    k = math.floor(n * (n + 1) / 4.0 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0))
    if k < 1:
        return float(walsh[0]), float(walsh[-1])
    return float(walsh[k - 1]), float(walsh[m - k])


def latency_verdict(change: float, p_value: float, alpha: float, threshold: Threshold) -> Verdict:
    """The verdict of a test over stored runs (trials or samples)."""
    if not p_value < alpha:
        # Not significant: "unchanged" only when the change is also under the minimum
        # effect; a larger one is a change the test could not tell from noise.
        return Verdict.INCONCLUSIVE if threshold.reaches(change) else Verdict.UNCHANGED
    if not threshold.reaches(change):
        return Verdict.NOISE
    return Verdict.REGRESSED if threshold.worsening(change) > 0 else Verdict.IMPROVED


@dataclass(frozen=True)
class LatencyComparison:
    """p50 of each side, their ratio (new / base) and the test behind the verdict.

    ``n_base``/``n_new`` count the observations the test ran over (trials, samples or
    rounds); ``ratio_ci95`` exists for the interleaved basis (the interval of the
    Hodges-Lehmann ratio that inverts the signed-rank test)."""

    base_p50: float
    new_p50: float
    ratio: float
    basis: Basis
    test: str
    p_value: float
    n_base: int
    n_new: int
    alpha: float
    threshold: Threshold
    verdict: Verdict
    ratio_ci95: tuple[float, float] | None = None

    @property
    def change(self) -> float:
        return self.ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_p50_ms": self.base_p50,
            "new_p50_ms": self.new_p50,
            "ratio": self.ratio,
            "change": self.change,
            "ratio_ci95": list(self.ratio_ci95) if self.ratio_ci95 else None,
            "basis": self.basis.value,
            "test": self.test,
            "p_value": self.p_value,
            "significant": self.p_value < self.alpha,
            "n_base": self.n_base,
            "n_new": self.n_new,
            "min_effect": self.threshold.limit,
            "verdict": self.verdict.value,
        }


def compare_latency_stored(
    base_p50: float,
    new_p50: float,
    base_trial_p50s: Sequence[float],
    new_trial_p50s: Sequence[float],
    threshold: Threshold,
    alpha: float,
    load_samples: Callable[[], tuple[Sequence[float], Sequence[float]]],
) -> LatencyComparison:
    """Latency of two stored cells: a test over trials when both have two or more
    (Mann-Whitney U when it can reach ``alpha``, else Welch's t on the log medians), else
    over the raw samples (``load_samples`` returns (base, new); called only then)."""
    ratio = new_p50 / base_p50 if base_p50 > 0 else math.inf
    n_base, n_new = len(base_trial_p50s), len(new_trial_p50s)
    base_obs: Sequence[float] = base_trial_p50s
    new_obs: Sequence[float] = new_trial_p50s
    if trials_can_decide(n_base, n_new, alpha):
        basis, test = Basis.TRIALS, "mann-whitney-u"
        p_value = mann_whitney_p(base_obs, new_obs)
    elif min(n_base, n_new) >= 2:
        basis, test = Basis.TRIALS, "welch-t-log"
        p_value = welch_log_p(base_obs, new_obs)
    else:
        basis, test = Basis.SAMPLES, "mann-whitney-u"
        base_obs, new_obs = load_samples()
        p_value = mann_whitney_p(base_obs, new_obs)
    return LatencyComparison(
        base_p50=base_p50,
        new_p50=new_p50,
        ratio=ratio,
        basis=basis,
        test=test,
        p_value=p_value,
        n_base=len(base_obs),
        n_new=len(new_obs),
        alpha=alpha,
        threshold=threshold,
        verdict=latency_verdict(ratio - 1.0, p_value, alpha, threshold),
    )


def interval_settles(ratio: float, low: float, high: float, threshold: Threshold) -> bool:
    """Whether more rounds could still change what an interleaved cell is called, given
    its new/base ``ratio`` and the interval (``low``, ``high``) the verdict uses.

    Settled: the interval is wholly beyond the limit on the worse side (regressed,
    whatever the estimate inside it) or on the better side (improved); or it is wholly
    short of the limit on the worse side (it cannot be called regressed) and, on the
    better side, either wholly short of the limit too or with the estimate less than
    half the limit better (no improvement in view). That last case is what lets an
    A/A pair stop early: the gate is on regressions, and an interval that reaches the
    improvement limit only with its far end is not worth more rounds. A cell that looks
    better by half the limit or more goes on until its improvement is settled.
    """
    limit = threshold.limit * (1 - 1e-9)  # as Threshold.reaches
    worse_low, worse_high = sorted(
        (threshold.worsening(low - 1.0), threshold.worsening(high - 1.0))
    )
    if worse_low >= limit or worse_high <= -limit:
        return True
    no_improvement_in_view = worse_low > -limit or threshold.worsening(ratio - 1.0) > -limit / 2
    return worse_high < limit and no_improvement_in_view


def paired_verdict(
    ratio: float, interval: tuple[float, float], p_value: float, alpha: float, threshold: Threshold
) -> Verdict:
    """The interleaved verdict: ``regressed`` (``improved``) when the estimate reaches
    the limit *and* the near end of the ratio's interval at 1 - ``alpha`` is a quarter
    of the limit beyond no change (:data:`INTERVAL_CLEARANCE`; for a 5% limit: ratio
    >= 1.05 and the interval's lower end >= 1.0125); else ``noise`` when the
    signed-rank test is significant, else ``unchanged``.

    Why not just "the interval excludes 1": an A/A cell is then called regressed
    whenever its estimate reaches the limit, and on a loaded machine, where a cell
    ends at the round cap with an interval about as wide as the limit, that happened
    in over 1% of cells (an A/A cell at 1.050 [1.008, 1.088] was called regressed so).
    Asking the interval to clear part of the limit makes the bar rise with the noise:
    the estimate must reach max(limit, limit / 4 + half-width). A quarter balances the
    two errors at the widths noisy cells end with: half the limit cut A/A false
    regressions further but missed one +10% cell in seven when the interval was as wide
    as the limit. tests/suite/test_interleave_rates.py checks the rates by simulation.
    """
    low, high = interval
    change = ratio - 1.0
    if threshold.reaches(change):
        # The end of the interval nearest to no change must be clear of it.
        near = (low if change > 0 else high) - 1.0
        if near * change > 0 and abs(near) >= threshold.limit * INTERVAL_CLEARANCE * (1 - 1e-9):
            return Verdict.REGRESSED if threshold.worsening(change) > 0 else Verdict.IMPROVED
    return Verdict.NOISE if p_value < alpha else Verdict.UNCHANGED


def compare_latency_paired(
    rounds: Sequence[tuple[float, float]], threshold: Threshold, alpha: float
) -> LatencyComparison:
    """Latency from interleaved rounds, each a (base p50, new p50) pair measured back to
    back. The test is the signed-rank test on the per-round log ratios (log, so that
    +10% and -10% weigh alike); the ratio is its Hodges-Lehmann estimate, with the
    interval that inverts the test; the verdict is :func:`paired_verdict`'s."""
    if not rounds:
        raise ValueError("no interleaved rounds to compare")
    log_ratios = [math.log(new / base) for base, new in rounds]
    ratio = math.exp(hodges_lehmann(log_ratios))
    ci95 = _exp_interval(hodges_lehmann_ci(log_ratios))
    decision = ci95 if alpha == DEFAULT_ALPHA else decision_interval(rounds, alpha)
    p_value = signed_rank_p(log_ratios)
    return LatencyComparison(
        base_p50=statistics.median(b for b, _ in rounds),
        new_p50=statistics.median(n for _, n in rounds),
        ratio=ratio,
        basis=Basis.INTERLEAVED,
        test="wilcoxon-signed-rank",
        p_value=p_value,
        n_base=len(rounds),
        n_new=len(rounds),
        alpha=alpha,
        threshold=threshold,
        verdict=paired_verdict(ratio, decision, p_value, alpha, threshold),
        ratio_ci95=ci95,
    )


def _exp_interval(interval: tuple[float, float]) -> tuple[float, float]:
    return math.exp(interval[0]), math.exp(interval[1])


def decision_interval(rounds: Sequence[tuple[float, float]], alpha: float) -> tuple[float, float]:
    """The interval of the new/base ratio at confidence 1 - ``alpha`` over interleaved
    rounds: the one the verdict and the early stop of
    :class:`harness.suite.interleave.RoundsPlan` look at."""
    return _exp_interval(hodges_lehmann_ci([math.log(n / b) for b, n in rounds], 1.0 - alpha))


@dataclass(frozen=True)
class MetricDelta:
    """A deterministic metric (peak memory, size, accuracy) against its threshold;
    ``verdict`` is None when either side did not measure it."""

    metric: str
    base: float | None
    new: float | None
    change: float | None
    threshold: Threshold
    verdict: Verdict | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "base": self.base,
            "new": self.new,
            "change": self.change,
            "limit": self.threshold.limit,
            "kind": self.threshold.kind.value,
            "verdict": self.verdict.value if self.verdict else None,
        }


def judge_delta(threshold: Threshold, base: float | None, new: float | None) -> MetricDelta:
    if base is None or new is None:
        return MetricDelta(threshold.metric, base, new, None, threshold, None)
    change = threshold.change(float(base), float(new))
    if not threshold.reaches(change):
        verdict = Verdict.UNCHANGED
    elif threshold.worsening(change) > 0:
        verdict = Verdict.REGRESSED
    else:
        verdict = Verdict.IMPROVED
    return MetricDelta(threshold.metric, base, new, change, threshold, verdict)


def overall_verdict(verdicts: Sequence[Verdict | None]) -> Verdict:
    present = set(v for v in verdicts if v is not None)
    return next((v for v in _VERDICT_ORDER if v in present), Verdict.UNCHANGED)


# --- cells and runs -----------------------------------------------------------------------


def _key_dict(key: CellKey) -> dict[str, str]:
    return dict(zip(("model", "variant", "runtime", "device"), key, strict=True))


@dataclass(frozen=True)
class CellComparison:
    key: CellKey
    latency: LatencyComparison | None
    deltas: tuple[MetricDelta, ...]
    verdict: Verdict
    same_artifact: bool
    notes: tuple[str, ...] = ()
    # Why the cell has no verdict (``verdict`` is NOT_JUDGED): its interleaved
    # re-measurement failed. Its memory, size and accuracy deltas are still shown, as
    # information, but gate nothing.
    not_judged: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **_key_dict(self.key),
            "verdict": self.verdict.value,
            "not_judged": self.not_judged,
            "latency": self.latency.to_dict() if self.latency else None,
            **{d.metric: d.to_dict() for d in self.deltas},
            "same_artifact": self.same_artifact,
            "notes": list(self.notes),
        }


class FailureChange(str, Enum):
    NEWLY_FAILED = "newly_failed"  # ok in the base run, failed in the new one
    STILL_FAILING = "still_failing"
    FIXED = "fixed"  # failed in the base run, ok in the new one


@dataclass(frozen=True)
class FailedCell:
    """A cell present in both runs that failed in at least one; ``newly_failed`` (ok in
    the base, failed in the new run) counts as a regression."""

    key: CellKey
    base_status: str
    base_reason: str | None
    new_status: str
    new_reason: str | None

    @property
    def newly_failed(self) -> bool:
        return self.base_status == "ok" and self.new_status != "ok"

    @property
    def change(self) -> FailureChange:
        if self.newly_failed:
            return FailureChange.NEWLY_FAILED
        return FailureChange.FIXED if self.new_status == "ok" else FailureChange.STILL_FAILING

    def to_dict(self) -> dict[str, Any]:
        return {
            **_key_dict(self.key),
            "change": self.change.value,
            "base_status": self.base_status,
            "base_reason": self.base_reason,
            "new_status": self.new_status,
            "new_reason": self.new_reason,
            "newly_failed": self.newly_failed,
        }


@dataclass(frozen=True)
class UnmatchedCell:
    """A cell in one run only (the matrix changed between the runs)."""

    key: CellKey
    status: str
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**_key_dict(self.key), "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class RunSummary:
    id: int
    suite_name: str
    status: str
    git_commit: str | None
    started_at: str
    machine_fingerprint: str

    @classmethod
    def of(cls, run: RunRecord) -> RunSummary:
        return cls(
            run.id,
            run.suite_name,
            run.status,
            run.git_commit,
            run.started_at,
            run.machine_fingerprint,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "suite": self.suite_name,
            "status": self.status,
            "git_commit": self.git_commit,
            "started_at": self.started_at,
            "machine_fingerprint": self.machine_fingerprint,
        }


@dataclass(frozen=True)
class Comparison:
    base: RunSummary
    new: RunSummary
    alpha: float
    thresholds: tuple[Threshold, ...]
    cells: tuple[CellComparison, ...]
    failed: tuple[FailedCell, ...] = ()
    only_in_base: tuple[UnmatchedCell, ...] = ()
    only_in_new: tuple[UnmatchedCell, ...] = ()
    warnings: tuple[str, ...] = ()
    interleave_id: int | None = None

    @property
    def regressed(self) -> bool:
        """Anything regressed: a cell's verdict, or a cell that used to run and now fails."""
        return any(c.verdict is Verdict.REGRESSED for c in self.cells) or any(
            f.newly_failed for f in self.failed
        )

    @property
    def inconclusive(self) -> int:
        """Cells whose latency change could not be told from noise (no regression)."""
        return sum(c.verdict is Verdict.INCONCLUSIVE for c in self.cells)

    @property
    def incomplete(self) -> bool:
        """Some cell could not be judged (its interleaved re-measurement failed)."""
        return any(c.verdict is Verdict.NOT_JUDGED for c in self.cells)

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in (*_VERDICT_ORDER, Verdict.NOT_JUDGED)}
        for c in self.cells:
            out[c.verdict.value] += 1
        for change in FailureChange:
            out[change.value] = sum(f.change is change for f in self.failed)
        out["only_in_base"] = len(self.only_in_base)
        out["only_in_new"] = len(self.only_in_new)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "new": self.new.to_dict(),
            "alpha": self.alpha,
            "thresholds": {t.metric: t.to_dict() for t in self.thresholds},
            "interleave_id": self.interleave_id,
            "regressed": self.regressed,
            "incomplete": self.incomplete,
            "counts": self.counts(),
            "warnings": list(self.warnings),
            "cells": [c.to_dict() for c in self.cells],
            "failed": [f.to_dict() for f in self.failed],
            "only_in_base": [u.to_dict() for u in self.only_in_base],
            "only_in_new": [u.to_dict() for u in self.only_in_new],
        }


def _run_warnings(base: RunRecord, new: RunRecord) -> list[str]:
    out = []
    if base.id == new.id:
        out.append(f"run {base.id} is compared with itself")
    if base.machine_fingerprint != new.machine_fingerprint:
        out.append(
            f"the runs come from different machines (fingerprint {base.machine_fingerprint} "
            f"vs {new.machine_fingerprint}): latency and memory differences may be the "
            "machine's, not the code's"
        )
    changed = [
        f"{name} {base.runtime_versions.get(name, 'absent')} -> "
        f"{new.runtime_versions.get(name, 'absent')}"
        for name in sorted(set(base.runtime_versions) | set(new.runtime_versions))
        if name not in _NOT_RUNTIMES
        and base.runtime_versions.get(name) != new.runtime_versions.get(name)
    ]
    if changed:
        out.append("runtime versions differ: " + ", ".join(changed))
    for which, run in (("base", base), ("new", new)):
        if run.status != "complete":
            out.append(f"the {which} run {run.id} is {run.status}, not complete")
    return out


def _validity_text(cell: CellRecord) -> str | None:
    validity = cell.result.validity
    if validity in (None, "ok"):
        return None
    return ", ".join(validity) if isinstance(validity, list) else str(validity)


def _cell_notes(base: CellRecord, new: CellRecord) -> list[str]:
    notes = []
    for which, cell in (("base", base), ("new", new)):
        text = _validity_text(cell)
        if text:
            notes.append(f"{which} measurement not valid: {text}")
    base_measure, new_measure = base.result.measure, new.result.measure
    differing = sorted(
        k for k in set(base_measure) | set(new_measure) if base_measure.get(k) != new_measure.get(k)
    )
    if differing:
        notes.append(
            "measure settings differ: "
            + ", ".join(f"{k} {base_measure.get(k)} -> {new_measure.get(k)}" for k in differing)
        )
    base_rt, new_rt = base.result.runtime_version, new.result.runtime_version
    if base_rt and new_rt and base_rt != new_rt:
        notes.append(f"runtime version {base_rt} -> {new_rt}")
    return notes


def paired_rounds(record: InterleaveCellRecord) -> list[tuple[float, float]]:
    """(base p50, new p50) for every round where both sides were measured."""
    by_round: dict[int, dict[str, float]] = {}
    for turn in record.turns:
        by_round.setdefault(turn.round, {})[turn.side] = turn.p50_ms
    return [
        (sides["base"], sides["new"])
        for _, sides in sorted(by_round.items())
        if "base" in sides and "new" in sides
    ]


def _not_judged_reason(record: InterleaveCellRecord | None, interleave_id: int | None) -> str:
    where = f" #{interleave_id}" if interleave_id is not None else ""
    if record is None:
        return (
            f"the interleaved re-measurement{where} has no record of this cell "
            "(interrupted before it?)"
        )
    if record.status != "ok":
        return record.reason or f"the interleaved re-measurement {record.status}"
    return "the interleaved re-measurement has no complete round"


def inconclusive_note(latency: LatencyComparison) -> str:
    """Why a stored-run latency change is ``inconclusive``, in the cell's own numbers:
    ``inconclusive: +52.65% over 3 trials a side (welch-t-log p 0.24 >= alpha 0.05); ...``."""
    change = latency.threshold.format_change(latency.change)
    if latency.n_base == latency.n_new:
        sides = str(latency.n_base)
    else:
        sides = f"{latency.n_base}/{latency.n_new}"
    if latency.basis is Basis.SAMPLES:
        counted = f"{sides} samples a side (one trial each)"
        why = "one process a side has no spread between processes to test against"
    elif latency.test == "welch-t-log":
        counted = f"{sides} trials a side"
        why = (
            "too few trials: with so few, only a change well outside their spread is "
            "significant, and a change this size cannot be told from noise"
        )
    else:
        counted = f"{sides} trials a side"
        why = "the trials spread too widely to tell a change this size from noise"
    test = f"{latency.test} p {latency.p_value:.2g} >= alpha {latency.alpha:g}"
    return (
        f"inconclusive: {change} over {counted} ({test}); {why}; "
        "use --interleave or more trials ([measure] trials = 5 or more)"
    )


def _paired_notes(latency: LatencyComparison, rounds: int) -> list[str]:
    notes = []
    low, high = latency.ratio_ci95 or (latency.ratio, latency.ratio)
    limit = latency.threshold
    if (high - low) / 2.0 > limit.limit:
        notes.append(
            f"too noisy to resolve a {limit.text} change: the ratio's 95% interval is "
            f"[{low:.3f}, {high:.3f}] over {rounds} rounds; use more rounds"
        )
    if limit.reaches(latency.change) and latency.verdict in (Verdict.NOISE, Verdict.UNCHANGED):
        notes.append(
            f"estimate {limit.format_change(latency.change)} reaches the {limit.text} limit "
            f"but its interval [{low:.3f}, {high:.3f}] does not clear a quarter of it: not called "
            f"{'regressed' if limit.worsening(latency.change) > 0 else 'improved'}"
        )
    return notes


def compare_cells(
    store: ResultsStore,
    base: CellRecord,
    new: CellRecord,
    thresholds: Mapping[str, Threshold],
    alpha: float,
    interleaved: InterleaveCellRecord | None = None,
    *,
    interleaving: bool = False,
    interleave_id: int | None = None,
) -> CellComparison:
    """One cell of both runs. With ``interleaving`` (the comparison re-measured its
    cells), latency is judged on ``interleaved``'s rounds only: a cell without them is
    NOT_JUDGED, never judged on the stored runs instead."""
    notes = _cell_notes(base, new)
    latency = None
    base_lat, new_lat = base.result.latency, new.result.latency
    rounds = paired_rounds(interleaved) if interleaved and interleaved.status == "ok" else []
    not_judged = None
    if interleaving and not rounds:
        not_judged = _not_judged_reason(interleaved, interleave_id)
    elif rounds:
        latency = compare_latency_paired(rounds, thresholds["latency_p50"], alpha)
        notes += _paired_notes(latency, len(rounds))
    elif base_lat and new_lat:

        def load_samples() -> tuple[list[float], list[float]]:
            return store.samples(base.id or -1), store.samples(new.id or -1)

        latency = compare_latency_stored(
            float(base_lat.p50_ms),
            float(new_lat.p50_ms),
            list(base.result.latency.trial_p50s_ms),
            list(new.result.latency.trial_p50s_ms),
            thresholds["latency_p50"],
            alpha,
            load_samples,
        )
        if latency.verdict is Verdict.INCONCLUSIVE:
            notes.insert(0, inconclusive_note(latency))
    deltas = (
        judge_delta(
            thresholds["memory_peak"],
            base.result.peak_memory_mb,
            new.result.peak_memory_mb,
        ),
        judge_delta(thresholds["size"], base.size_bytes, new.size_bytes),
        judge_delta(thresholds["accuracy"], base.result.accuracy, new.result.accuracy),
    )
    verdicts = [latency.verdict if latency else None, *(d.verdict for d in deltas)]
    return CellComparison(
        key=base.key,
        latency=latency,
        deltas=deltas,
        verdict=Verdict.NOT_JUDGED if not_judged else overall_verdict(verdicts),
        same_artifact=bool(base.artifact_hash) and base.artifact_hash == new.artifact_hash,
        notes=tuple(notes),
        not_judged=not_judged,
    )


@dataclass(frozen=True)
class _Matched:
    both_ok: list[tuple[CellRecord, CellRecord]] = field(default_factory=list)
    failed: list[FailedCell] = field(default_factory=list)
    only_in_base: list[UnmatchedCell] = field(default_factory=list)
    only_in_new: list[UnmatchedCell] = field(default_factory=list)


def match_cells(base_cells: Sequence[CellRecord], new_cells: Sequence[CellRecord]) -> _Matched:
    """Pair cells by key, in key order."""
    base_by_key = {c.key: c for c in base_cells}
    new_by_key = {c.key: c for c in new_cells}
    matched = _Matched()
    for key in sorted(set(base_by_key) | set(new_by_key)):
        b, n = base_by_key.get(key), new_by_key.get(key)
        if b is None and n is not None:
            matched.only_in_new.append(UnmatchedCell(key, n.status, n.reason))
        elif n is None and b is not None:
            matched.only_in_base.append(UnmatchedCell(key, b.status, b.reason))
        elif b is not None and n is not None:
            if b.status == "ok" and n.status == "ok":
                matched.both_ok.append((b, n))
            else:
                matched.failed.append(FailedCell(key, b.status, b.reason, n.status, n.reason))
    return matched


def compare_runs(
    store: ResultsStore,
    base_run_id: int,
    new_run_id: int,
    *,
    thresholds: Mapping[str, Threshold] | None = None,
    alpha: float = DEFAULT_ALPHA,
    interleaved: Mapping[CellKey, InterleaveCellRecord] | None = None,
    interleave_id: int | None = None,
) -> Comparison:
    """Compare every cell of ``new_run_id`` with the same cell of ``base_run_id``.

    ``interleaved`` holds the interleaved re-measurement of the cells (base and new
    artifacts run alternately), whose latency is then judged on the paired rounds; a
    cell it has no rounds for (the re-measurement failed, or never got to it) is
    NOT_JUDGED and the comparison :attr:`~Comparison.incomplete`. None: judge the
    stored runs.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    limits = dict(default_thresholds())
    limits.update(thresholds or {})
    base_run, new_run = store.get_run(base_run_id), store.get_run(new_run_id)
    matched = match_cells(store.cells(base_run_id), store.cells(new_run_id))
    interleaving = interleaved is not None
    interleaved = interleaved or {}
    cells = tuple(
        compare_cells(
            store,
            b,
            n,
            limits,
            alpha,
            interleaved.get(b.key),
            interleaving=interleaving,
            interleave_id=interleave_id,
        )
        for b, n in matched.both_ok
    )
    warnings = _run_warnings(base_run, new_run)
    on_samples = [c for c in cells if c.latency and c.latency.basis is Basis.SAMPLES]
    if on_samples:
        keys = {c.key for c in on_samples}
        sizes = sorted(
            {
                (
                    len(list(b.result.latency.trial_p50s_ms)),
                    len(list(n.result.latency.trial_p50s_ms)),
                )
                for b, n in matched.both_ok
                if b.key in keys
            }
        )
        trials_text = ", ".join(f"{a} vs {b}" for a, b in sizes)
        warnings.append(
            f"{len(on_samples)} cell(s) tested on raw samples: with trials {trials_text} there "
            "is no spread between processes to test against, and samples of one process "
            "share its drift, so significance is overstated (the minimum effect size "
            "decides); measure with [measure] trials >= 2 (3 by default) or compare with "
            "--interleave"
        )
    on_stored = [c for c in cells if c.latency and c.latency.basis is Basis.TRIALS]
    if on_stored:
        # Trials within a run share that run's slot of time, so their spread does not
        # include the drift between the two runs; measured (docs/compare-acceptance.md),
        # that drift made 12-15% of A/A cells "regressed" on a shared machine.
        warnings.append(
            f"{len(on_stored)} cell(s) judged on stored runs measured at different times: "
            "drift between the runs (other load, a warming board) falls on one side only "
            "and can pass for a change; for a verdict to gate on, compare with --interleave"
        )
    few_rounds = [
        c
        for c in cells
        if c.latency
        and c.latency.basis is Basis.INTERLEAVED
        and not signed_rank_smallest_p(c.latency.n_base) < alpha
    ]
    if few_rounds:
        warnings.append(
            f"{len(few_rounds)} cell(s) have too few interleaved rounds to be significant at "
            f"alpha {alpha:g} whatever the difference; use more --rounds"
        )
    not_judged = sum(c.verdict is Verdict.NOT_JUDGED for c in cells)
    if not_judged:
        warnings.append(
            f"{not_judged} cell(s) not judged: they could not be re-measured interleaved, "
            "and their stored runs are not judged instead (drift between the runs is no "
            "verdict); the comparison is incomplete"
        )
    return Comparison(
        base=RunSummary.of(base_run),
        new=RunSummary.of(new_run),
        alpha=alpha,
        thresholds=tuple(limits[name] for name in sorted(limits)),
        cells=cells,
        failed=tuple(matched.failed),
        only_in_base=tuple(matched.only_in_base),
        only_in_new=tuple(matched.only_in_new),
        warnings=tuple(warnings),
        interleave_id=interleave_id,
    )
