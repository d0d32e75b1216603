"""A cell's p50 across runs (and so across commits), with the steps where its level
changed.

Step detection is binary segmentation. For every split of a segment into before/after,
the standardised Wilcoxon rank-sum of the "before" part says how cleanly the two sides
separate; whether the largest of these is more than chance comes from a permutation
test on that same maximum (shuffling the series many times), which pays for having
looked at every split. The step is placed at the split with the least absolute
deviation from each side's median, and kept only when it is significant at ``alpha``
*and* the medians on either side differ by at least ``min_effect``. Each side is then
searched again. Ranks, medians and absolute deviations keep the occasional wild run (a
co-tenant, a throttled board) from making or moving a step.
"""

from __future__ import annotations

import fnmatch
import functools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from harness.errors import HarnessError
from harness.results.store import CellRecord, ResultsStore, RunRecord

CellKey = tuple[str, str, str, str]
FILTER_FIELDS = ("model", "variant", "runtime", "device")
DEFAULT_MIN_EFFECT = 0.05
DEFAULT_ALPHA = 0.05
PERMUTATIONS = 2000
MIN_SEGMENT = 2


# --- step detection -------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePoint:
    """A level change in a plain series: ``index`` is the first value at the new level."""

    index: int
    before: float
    after: float
    p_value: float

    @property
    def change(self) -> float:
        return self.after / self.before - 1.0 if self.before else float("inf")


def _split_scores(ranks: np.ndarray, min_segment: int) -> np.ndarray:
    """|z| of the rank-sum of the first k values, for k = min_segment .. n - min_segment,
    for each row of ``ranks`` (shape (m, n)); ranks of 1..n make E and Var exact."""
    n = ranks.shape[1]
    k = np.arange(min_segment, n - min_segment + 1)
    sums = np.cumsum(ranks, axis=1)[:, k - 1]
    expected = k * (n + 1) / 2.0
    spread = np.sqrt(k * (n - k) * (n + 1) / 12.0)
    return np.abs(sums - expected) / spread


def _l1_split(values: Sequence[float], min_segment: int) -> int:
    """The split that leaves the least absolute deviation from each side's median: where
    the level changes. (The rank statistic ties between neighbouring splits when the
    value between them sits at the edge of both groups' ranks; the values themselves
    tell which side it belongs to, and absolute deviations keep one wild run from
    pulling the split.)"""
    x = np.log(np.asarray(values, dtype=float))
    costs = []
    for k in range(min_segment, len(x) - min_segment + 1):
        left, right = x[:k], x[k:]
        costs.append(np.abs(left - np.median(left)).sum() + np.abs(right - np.median(right)).sum())
    return min_segment + int(np.argmin(costs))


def _best_split(
    values: Sequence[float], min_segment: int, permutations: int, seed: int
) -> tuple[int, float] | None:
    """(split index, p-value) of the segment's most likely level change, or None when it
    is too short to split. The p-value is a permutation test of the largest rank
    statistic over all splits, so looking at every split is paid for."""
    n = len(values)
    if n < 2 * min_segment:
        return None
    ranks = sps.rankdata(values)[None, :]
    observed = _split_scores(ranks, min_segment)[0].max()
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.repeat(ranks, permutations, axis=0), axis=1)
    null_max = _split_scores(shuffled, min_segment).max(axis=1)
    exceed = int(np.sum(null_max >= observed - 1e-12))
    return _l1_split(values, min_segment), (1 + exceed) / (1 + permutations)


@functools.cache
def smallest_step_p(n: int, min_segment: int = MIN_SEGMENT) -> float:
    """The permutation p-value of the clearest possible step in ``n`` values (half low,
    half high): below ``alpha`` only from about 8 values at 0.05, so a shorter series
    cannot show a significant step however large."""
    if n < 2 * min_segment:
        return 1.0
    half = n // 2
    clean = [1.0] * half + [2.0] * (n - half)
    split = _best_split(clean, min_segment, PERMUTATIONS, 0)
    return split[1] if split else 1.0


def detect_steps(
    values: Sequence[float],
    *,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    min_segment: int = MIN_SEGMENT,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> list[ChangePoint]:
    """Level changes in ``values`` (in order), by binary segmentation; deterministic for
    a given ``seed``. A step needs ``min_segment`` values on each side."""
    found: list[ChangePoint] = []

    def search(lo: int, hi: int) -> None:
        segment = list(values[lo:hi])
        split = _best_split(segment, min_segment, permutations, seed + lo)
        if split is None:
            return
        k, p_value = split
        before, after = statistics.median(segment[:k]), statistics.median(segment[k:])
        step = ChangePoint(lo + k, before, after, p_value)
        if p_value >= alpha or abs(step.change) < min_effect:
            return
        found.append(step)
        search(lo, lo + k)
        search(lo + k, hi)

    search(0, len(values))
    # A step found early was measured against the whole segment around it; once every
    # step is known, its levels are the medians of the neighbouring segments.
    bounds = [0, *sorted(s.index for s in found), len(values)]
    return [
        ChangePoint(
            index=bounds[i],
            before=float(statistics.median(values[bounds[i - 1] : bounds[i]])),
            after=float(statistics.median(values[bounds[i] : bounds[i + 1]])),
            p_value=next(s.p_value for s in found if s.index == bounds[i]),
        )
        for i in range(1, len(bounds) - 1)
    ]


# --- cell filters ---------------------------------------------------------------------


@dataclass(frozen=True)
class CellFilter:
    """``model=digits-cnn,variant=int8`` (values may be globs), or one glob on the cell
    label ``model/variant/runtime/device`` such as ``digits-cnn/int8/*``."""

    fields: tuple[tuple[str, str], ...] = ()
    label_glob: str | None = None

    @classmethod
    def parse(cls, text: str) -> CellFilter:
        text = text.strip()
        if not text:
            raise HarnessError(
                "empty cell filter: give model=...,variant=...,runtime=...,device=... "
                "or a glob on model/variant/runtime/device"
            )
        if "=" not in text:
            return cls(label_glob=text)
        fields = []
        for part in text.split(","):
            name, sep, pattern = part.partition("=")
            name = name.strip()
            if not sep or name not in FILTER_FIELDS or not pattern.strip():
                raise HarnessError(
                    f"cell filter {text!r}: {part.strip()!r} is not KEY=VALUE with KEY one of "
                    + ", ".join(FILTER_FIELDS)
                )
            fields.append((name, pattern.strip()))
        return cls(fields=tuple(fields))

    def matches(self, key: CellKey) -> bool:
        values = dict(zip(FILTER_FIELDS, key, strict=True))
        if self.label_glob is not None:
            return fnmatch.fnmatchcase("/".join(key), self.label_glob)
        return all(fnmatch.fnmatchcase(values[name], pattern) for name, pattern in self.fields)

    @property
    def text(self) -> str:
        if self.label_glob is not None:
            return self.label_glob
        return ",".join(f"{k}={v}" for k, v in self.fields)


# --- series ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryPoint:
    """One run's outcome for the cell; ``p50`` and ``ci95`` are None when it failed."""

    run_id: int
    suite_name: str
    started_at: str
    git_commit: str | None
    status: str
    reason: str | None
    p50: float | None
    ci95: tuple[float, float] | None
    ci_basis: str | None
    trials: int | None
    validity: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "suite": self.suite_name,
            "started_at": self.started_at,
            "git_commit": self.git_commit,
            "status": self.status,
            "reason": self.reason,
            "p50_ms": self.p50,
            "ci95_ms": list(self.ci95) if self.ci95 else None,
            "ci_basis": self.ci_basis,
            "trials": self.trials,
            "validity": self.validity,
        }


@dataclass(frozen=True)
class Step:
    """Where the level changed: ``index`` is the position in the series' points of the
    first run at the new level."""

    index: int
    run_id: int
    git_commit: str | None
    before_ms: float
    after_ms: float
    change: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "git_commit": self.git_commit,
            "before_ms": self.before_ms,
            "after_ms": self.after_ms,
            "change": self.change,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class HistorySeries:
    key: CellKey
    points: tuple[HistoryPoint, ...]
    steps: tuple[Step, ...]
    min_effect: float
    alpha: float

    @property
    def label(self) -> str:
        return " / ".join(self.key)

    @property
    def measured(self) -> int:
        return sum(p.p50 is not None for p in self.points)

    @property
    def steps_detectable(self) -> bool:
        """Whether the series is long enough for any step to reach ``alpha``."""
        return smallest_step_p(self.measured) < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            **dict(zip(FILTER_FIELDS, self.key, strict=True)),
            "label": self.label,
            "min_effect": self.min_effect,
            "alpha": self.alpha,
            "steps_detectable": self.steps_detectable,
            "points": [p.to_dict() for p in self.points],
            "steps": [s.to_dict() for s in self.steps],
        }


def _point(run: RunRecord, cell: CellRecord) -> HistoryPoint:
    latency = cell.result.latency
    ok = cell.status == "ok" and latency.p50_ms is not None
    return HistoryPoint(
        run_id=run.id,
        suite_name=run.suite_name,
        started_at=run.started_at,
        git_commit=run.git_commit,
        status=cell.status,
        reason=cell.reason,
        p50=float(latency.p50_ms) if ok else None,
        ci95=latency.ci95_ms if ok else None,
        ci_basis=latency.ci_basis if ok else None,
        trials=cell.result.trials if ok else None,
        validity=cell.result.validity,
    )


def series_of(
    key: CellKey,
    points: Sequence[HistoryPoint],
    *,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
) -> HistorySeries:
    """A cell's series with its steps found among the measured points (failed runs stay
    in the series but carry no level)."""
    measured = [i for i, p in enumerate(points) if p.p50 is not None]
    changes = detect_steps(
        [points[i].p50 for i in measured],  # type: ignore[misc]
        min_effect=min_effect,
        alpha=alpha,
    )
    steps = []
    for c in changes:
        at = points[measured[c.index]]
        steps.append(
            Step(
                index=measured[c.index],
                run_id=at.run_id,
                git_commit=at.git_commit,
                before_ms=c.before,
                after_ms=c.after,
                change=c.change,
                p_value=c.p_value,
            )
        )
    return HistorySeries(key, tuple(points), tuple(steps), min_effect, alpha)


def history(
    store: ResultsStore,
    cell_filter: CellFilter | str,
    *,
    suite: str | None = None,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
) -> list[HistorySeries]:
    """Every cell matching ``cell_filter`` across the store's runs (of ``suite`` only,
    when given), oldest run first; :class:`HarnessError` when nothing matches."""
    if isinstance(cell_filter, str):
        cell_filter = CellFilter.parse(cell_filter)
    runs = [r for r in store.runs() if suite is None or r.suite_name == suite]
    points: dict[CellKey, list[HistoryPoint]] = {}
    seen: set[CellKey] = set()
    for run in runs:
        for cell in store.cells(run.id):
            seen.add(cell.key)
            if cell_filter.matches(cell.key):
                points.setdefault(cell.key, []).append(_point(run, cell))
    if not points:
        where = f" of suite {suite!r}" if suite else ""
        known = ", ".join("/".join(k) for k in sorted(seen)[:12]) or "none"
        more = f" and {len(seen) - 12} more" if len(seen) > 12 else ""
        raise HarnessError(
            f"no cell in the runs{where} of {store.path} matches {cell_filter.text!r} "
            f"(cells: {known}{more})"
        )
    return [
        series_of(key, pts, min_effect=min_effect, alpha=alpha)
        for key, pts in sorted(points.items())
    ]
