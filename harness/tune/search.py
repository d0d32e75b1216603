"""Which chain to measure next, and what the measured ones rule out.

The search is a loop over :class:`BudgetSearch`: :meth:`~BudgetSearch.next` proposes a
point, the caller measures it and gives back a :class:`Measured`. Under the space's
partial order (:mod:`harness.tune.space`) a measured point rules others out:

- a point no more compressed than one over a ceiling (p90, memory, energy, size) is
  over it as well, so it is skipped;
- a point more compressed than one that broke a floor (accuracy, SNR) is skipped;
- a point more compressed than one that met every limit cannot be more accurate, so it
  cannot be a better pick, and is skipped.

Among the points left, the next is the least compressed one whose predicted p90 is
within the budget (closest to it from below: the most accurate chain likely to fit),
else the fastest predicted. p90 is predicted by a log-linear model, one factor per knob
setting, fitted to the measured cells with priors from the compute each knob removes.
The search ends when no point is left (the pick is then the best under the partial
order) or the cell budget is spent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.tune.space import ChainSpace, Knobs

# Prior p90 factors, as log ratios to the uncompressed chain: channel pruning removes
# about (1 - r)^2 of a conv's multiply-adds, a rank-q factorization of a 3x3 conv keeps
# about q * 1.1 of them, and int8 about halves a CPU's time. Measurements override them.
INT8_PRIOR = math.log(0.5)
PRIOR_WEIGHT = 0.1


def _prune_prior(ratio: float) -> float:
    return 2 * math.log(max(1 - ratio, 1e-3))


def _rank_prior(kept: float) -> float:
    return math.log(min(1.0, kept * 1.1))


@dataclass(frozen=True)
class Measured:
    """A measured point: its p90 (None when the cell failed), the limits it broke and
    its objective (accuracy, else SNR: higher is better), with a failure's reason."""

    knobs: Knobs
    p90_ms: float | None
    broke_ceiling: bool
    broke_floor: bool
    objective: float | None
    failed: str | None = None
    # A limit the cell has no figure for (energy where no power model exists): the cell
    # cannot be the pick, and rules nothing out.
    unknown: bool = False

    @property
    def meets(self) -> bool:
        return (
            self.failed is None
            and not self.broke_ceiling
            and not self.broke_floor
            and not self.unknown
        )


OVER_CEILING = "no more compressed than a chain over a ceiling"
UNDER_FLOOR = "more compressed than a chain under a floor"
NO_BETTER = "more compressed than a chain that fits (so no more accurate)"


@dataclass(frozen=True)
class RuledOut:
    """Why a point is not measured: the rule, and the measured chain it follows from."""

    rule: str
    by: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.by}"


@dataclass
class BudgetSearch:
    space: ChainSpace
    p90_limit_ms: float | None
    measured: list[Measured] = field(default_factory=list)

    def record(self, outcome: Measured) -> None:
        self.measured.append(outcome)

    def ruled_out(self, knobs: Knobs) -> RuledOut | None:
        """Why ``knobs`` need not be measured, naming the measured point that says so."""
        for m in self.measured:
            if m.failed is not None:
                continue
            by = self.space.name(m.knobs)
            if m.broke_ceiling and m.knobs.at_least_as_compressed(knobs):
                return RuledOut(OVER_CEILING, by)
            if m.broke_floor and knobs.at_least_as_compressed(m.knobs):
                return RuledOut(UNDER_FLOOR, by)
            if m.meets and knobs.at_least_as_compressed(m.knobs):
                return RuledOut(NO_BETTER, by)
        return None

    def remaining(self) -> list[Knobs]:
        tried = {m.knobs for m in self.measured}
        return [k for k in self.space.points() if k not in tried and self.ruled_out(k) is None]

    def next(self) -> Knobs | None:
        left = self.remaining()
        if not left:
            return None
        uncompressed = Knobs(0.0, 1.0, 0)
        if not self.measured and uncompressed in left:
            return uncompressed  # the baseline the latency model is anchored on
        predicted = {k: self.predict_p90(k) for k in left}
        if self.p90_limit_ms is None:
            return min(left, key=_compression)
        fits = [k for k in left if predicted[k] <= self.p90_limit_ms]
        if fits:
            return max(fits, key=lambda k: (predicted[k], *(-c for c in _compression(k))))
        return min(left, key=lambda k: predicted[k])

    def predict_p90(self, knobs: Knobs) -> float:
        """The p90 the fitted log-linear model predicts for ``knobs`` (ms)."""
        features, priors, index = self._design()
        timed = [m for m in self.measured if m.p90_ms is not None]
        if not timed:
            return math.exp(sum(priors @ self._row(knobs, index)))
        x = np.array([self._row(m.knobs, index) for m in timed])
        y = np.array([math.log(m.p90_ms) for m in timed])  # type: ignore[arg-type]
        # Ridge towards the priors: the intercept (column 0) is free, a knob factor with
        # no measurement keeps its prior.
        penalty = np.full(features, PRIOR_WEIGHT)
        penalty[0] = 1e-6
        a = x.T @ x + np.diag(penalty)
        b = x.T @ y + penalty * priors
        weights = np.linalg.solve(a, b)
        return float(math.exp(weights @ self._row(knobs, index)))

    def _design(self) -> tuple[int, np.ndarray, dict[tuple[str, object], int]]:
        index: dict[tuple[str, object], int] = {}
        priors = [0.0]  # the intercept's prior: unused (free)
        for p in self.space.prune:
            if p > 0:
                index[("prune", p)] = len(priors)
                priors.append(_prune_prior(p))
        for r in self.space.low_rank:
            if r < 1:
                index[("rank", r)] = len(priors)
                priors.append(_rank_prior(r))
        for q in range(1, len(self.space.quant)):
            index[("quant", q)] = len(priors)
            priors.append(INT8_PRIOR)
        return len(priors), np.array(priors), index

    @staticmethod
    def _row(knobs: Knobs, index: dict[tuple[str, object], int]) -> np.ndarray:
        row = np.zeros(len(index) + 1)
        row[0] = 1.0
        for key in (("prune", knobs.prune), ("rank", knobs.low_rank), ("quant", knobs.quant)):
            if key in index:
                row[index[key]] = 1.0
        return row

    def pick(self) -> Measured | None:
        """The measured point that meets every limit with the best objective (then the
        lowest p90)."""
        fitting = [m for m in self.measured if m.meets]
        if not fitting:
            return None
        return max(
            fitting,
            key=lambda m: (
                m.objective if m.objective is not None else -math.inf,
                -(m.p90_ms or math.inf),
            ),
        )


def _compression(knobs: Knobs) -> tuple[float, float, int]:
    return (knobs.prune + (1 - knobs.low_rank), knobs.prune, knobs.quant)


def pareto_front(points: Sequence[Measured]) -> list[Measured]:
    """The measured points no other beats on both p90 (lower) and objective (higher)."""
    timed = [m for m in points if m.p90_ms is not None and m.objective is not None]
    front = []
    for m in timed:
        beaten = any(
            o is not m
            and o.p90_ms <= m.p90_ms  # type: ignore[operator]
            and o.objective >= m.objective  # type: ignore[operator]
            and (o.p90_ms < m.p90_ms or o.objective > m.objective)  # type: ignore[operator]
            for o in timed
        )
        if not beaten:
            front.append(m)
    return sorted(front, key=lambda m: m.p90_ms)  # type: ignore[arg-type,return-value]
