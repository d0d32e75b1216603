"""How often ``compare --interleave`` calls an A/A cell regressed, and catches a 10%
slowdown, measured by simulation: the machine these run on is shared and noisy, so the
rates are proven on synthetic rounds with known truth, through the real stopping rule
(:class:`RoundsPlan` as ``harness compare`` plans it) and the real verdict
(:func:`compare_latency_paired`). Targets (issue 11): A/A <= 1% regressed, +10% >= 95%.

The noise is what the reference machine shows and worse: each runner process (a turn)
draws its own p50 from a log-normal with a per-cell CV of 3-8% (memory layout,
frequency, co-tenants); the machine drifts between turns (a random walk of 1% a turn
and a slow +-10% swing, hitting both sides alike); the second turn of a round runs 1%
faster (warm caches); and 3% of turns are hit by a burst of 10-40% (a co-tenant spike).
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from harness.results.compare import Verdict, compare_latency_paired
from harness.results.thresholds import default_thresholds
from harness.suite.interleave import SIDES, RoundsPlan

LATENCY = default_thresholds()["latency_p50"]
PLAN = RoundsPlan.for_limit(10, 60, LATENCY.limit)  # compare --interleave's defaults
CELLS = 2000


def simulated_cell(
    rng: np.random.Generator,
    true_ratio: float,
    plan: RoundsPlan = PLAN,
    turn_cv: tuple[float, float] = (0.03, 0.08),
) -> tuple[Verdict, list[tuple[float, float]]]:
    """One cell interleaved the way interleave_runs does it (ABBA order, a round at a
    time until the plan stops), on the simulated machine; its verdict and its rounds."""
    cv = rng.uniform(*turn_cv)
    level, walk, turn = 1.3, 0.0, 0
    phase = rng.uniform(0, 2 * math.pi)
    pairs: list[tuple[float, float]] = []
    while not plan.done(pairs):
        order = SIDES if len(pairs) % 2 == 0 else SIDES[::-1]
        p50 = {}
        for position, side in enumerate(order):
            walk += rng.normal(0, 0.01)
            machine = walk + 0.1 * math.sin(phase + turn / 25.0)
            turn += 1
            value = level * math.exp(machine + rng.normal(0, cv))
            value *= true_ratio if side == "new" else 1.0
            value *= 0.99 if position == 1 else 1.0
            if rng.random() < 0.03:
                value *= 1 + rng.uniform(0.1, 0.4)
            p50[side] = value
        pairs.append((p50["base"], p50["new"]))
    return compare_latency_paired(pairs, LATENCY, 0.05).verdict, pairs


def _simulate(
    seed: int, true_ratio: float, cells: int = CELLS, turn_cv: tuple[float, float] = (0.03, 0.08)
):
    rng = np.random.default_rng(seed)
    return [simulated_cell(rng, true_ratio, turn_cv=turn_cv) for _ in range(cells)]


@pytest.fixture(scope="module")
def a_a():
    return _simulate(1, 1.0)


@pytest.fixture(scope="module")
def slower_10():
    return _simulate(2, 1.10)


def _rate(cells, verdict: Verdict) -> float:
    return sum(v is verdict for v, _ in cells) / len(cells)


def round_spread(cells) -> float:
    """The median over cells of the robust sd of the per-round log ratio, as
    benchmarks/compare_acceptance.py prints it for a real machine."""
    spreads = []
    for _, rounds in cells:
        logs = [math.log(n / b) for b, n in rounds]
        center = statistics.median(logs)
        spreads.append(1.4826 * statistics.median(abs(v - center) for v in logs))
    return statistics.median(spreads)


def test_the_simulated_machine_is_as_noisy_as_the_reference_one_or_worse(a_a):
    # 4.3% was measured on the reference machine (docs/compare-acceptance.md); the
    # simulation must not be quieter than that.
    assert 0.05 < round_spread(a_a[:300]) < 0.15


def test_a_a_cells_are_called_regressed_in_at_most_one_percent(a_a):
    assert _rate(a_a, Verdict.REGRESSED) <= 0.01
    assert _rate(a_a, Verdict.IMPROVED) <= 0.01


def test_a_ten_percent_slowdown_is_called_regressed_in_at_least_95_percent(slower_10):
    assert _rate(slower_10, Verdict.REGRESSED) >= 0.95
    assert _rate(slower_10, Verdict.IMPROVED) == 0


def test_a_ten_percent_speedup_is_called_improved_in_at_least_95_percent():
    faster = _simulate(3, 1 / 1.10, cells=500)
    assert _rate(faster, Verdict.IMPROVED) >= 0.95
    assert _rate(faster, Verdict.REGRESSED) == 0


def test_cells_stop_once_settled_instead_of_running_to_the_cap(a_a, slower_10):
    """What makes interleaving affordable in CI: A/A and +10% cells are settled long
    before the 60-round cap (on a loaded machine they ran to it before early stopping)."""
    for cells in (a_a, slower_10):
        rounds = [len(r) for _, r in cells]
        assert statistics.mean(rounds) < 30
        assert sum(n == PLAN.max_rounds for n in rounds) / len(rounds) < 0.1


if __name__ == "__main__":
    # The rates at other noise levels than the test's (the figures in
    # docs/compare-acceptance.md): python -m tests.suite.test_interleave_rates
    print(
        f"{'per-turn CV':<14}{'round spread':>13}  {'pair':<8}{'regressed':>11}"
        f"{'rounds mean':>13}{'at cap':>9}"
    )
    for low_cv, high_cv in ((0.02, 0.04), (0.03, 0.08), (0.08, 0.12)):
        for seed, (name, ratio) in enumerate((("A/A", 1.0), ("+10%", 1.10))):
            cells = _simulate(seed + 1, ratio, CELLS, (low_cv, high_cv))
            rounds = [len(r) for _, r in cells]
            capped = sum(n == PLAN.max_rounds for n in rounds) / len(rounds)
            print(
                f"{f'{low_cv:.0%}-{high_cv:.0%}':<14}{round_spread(cells):>13.1%}  {name:<8}"
                f"{_rate(cells, Verdict.REGRESSED):>11.2%}{statistics.mean(rounds):>13.1f}"
                f"{capped:>9.1%}"
            )
