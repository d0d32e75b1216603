"""The budget search on a synthetic board: latency and accuracy as known functions of the
knobs (so the best chain under the budget is known by enumeration), fed to the search as
measurements are. The harness's own cells are in tests/tune/test_tune_cli.py."""

from __future__ import annotations

import math

import pytest

from harness.suite.config import default_dirs
from harness.tune.search import (
    NO_BETTER,
    OVER_CEILING,
    UNDER_FLOOR,
    BudgetSearch,
    Measured,
    pareto_front,
)
from harness.tune.space import ChainSpace, Knobs, build_space


@pytest.fixture(scope="module")
def space() -> ChainSpace:
    return build_space(default_dirs(None, "recipes", []))


def latency(k: Knobs) -> float:
    """A board where compute sets the time: pruning and low rank cut it, int8 halves it."""
    return 10.0 * (1 - k.prune) ** 2 * min(1.0, k.low_rank * 1.2) * (0.55 if k.quant else 1)


def accuracy(k: Knobs) -> float:
    return 0.99 - 0.2 * k.prune**2 - 0.1 * (1 - k.low_rank) ** 2 - 0.004 * k.quant


def measure(k: Knobs, p90_limit: float, min_accuracy: float) -> Measured:
    p90, acc = latency(k), accuracy(k)
    return Measured(k, p90, p90 > p90_limit, acc < min_accuracy, acc)


def run(space: ChainSpace, p90_limit: float, min_accuracy: float, cells: int) -> BudgetSearch:
    search = BudgetSearch(space, p90_limit)
    for _ in range(cells):
        k = search.next()
        if k is None:
            break
        search.record(measure(k, p90_limit, min_accuracy))
    return search


def best_by_enumeration(space: ChainSpace, p90_limit: float, min_accuracy: float) -> Knobs:
    fitting = [k for k in space.points() if latency(k) <= p90_limit and accuracy(k) >= min_accuracy]
    return max(fitting, key=lambda k: (accuracy(k), -latency(k)))


@pytest.mark.parametrize(
    ("p90_limit", "min_accuracy"), [(3.0, 0.9), (5.0, 0.95), (1.5, 0.85), (8.0, 0.98)]
)
def test_the_search_finds_the_enumerated_best_in_fewer_cells_than_the_grid(
    space: ChainSpace, p90_limit: float, min_accuracy: float
) -> None:
    search = run(space, p90_limit, min_accuracy, cells=len(space.points()))
    assert search.next() is None  # ended on its own: nothing left to measure
    pick = search.pick()
    assert pick is not None
    assert pick.knobs == best_by_enumeration(space, p90_limit, min_accuracy)
    assert len(search.measured) < len(space.points()) / 2, len(search.measured)


def test_the_first_cell_is_the_uncompressed_chain(space: ChainSpace) -> None:
    assert BudgetSearch(space, 3.0).next() == Knobs(0.0, 1.0, 0)


def test_an_impossible_budget_picks_nothing_and_says_what_ruled_chains_out(
    space: ChainSpace,
) -> None:
    search = run(space, p90_limit=0.01, min_accuracy=0.999, cells=len(space.points()))
    assert search.pick() is None
    rules = {r.rule for k in space.points() if (r := search.ruled_out(k)) is not None}
    assert rules <= {OVER_CEILING, UNDER_FLOOR}
    assert UNDER_FLOOR in rules  # fp32 itself is under 0.999


def test_rules_follow_the_partial_order(space: ChainSpace) -> None:
    search = BudgetSearch(space, 5.0)
    mid = Knobs(0.25, 0.5, 0)
    search.record(Measured(mid, 9.0, True, False, 0.97))  # over the ceiling
    assert search.ruled_out(Knobs(0.0, 1.0, 0)).rule == OVER_CEILING  # less compressed
    assert search.ruled_out(Knobs(0.5, 0.5, 0)) is None  # more compressed: may be faster
    search.record(Measured(Knobs(0.75, 0.5, 0), 1.0, False, True, 0.5))  # under the floor
    assert search.ruled_out(Knobs(0.75, 0.25, 1)).rule == UNDER_FLOOR
    search.record(Measured(Knobs(0.5, 1.0, 1), 2.0, False, False, 0.95))  # fits
    assert search.ruled_out(Knobs(0.5, 0.5, 1)).rule == NO_BETTER
    assert search.ruled_out(Knobs(0.5, 0.5, 1)).by == "prune50-int8"
    # A failed cell rules nothing out.
    search.record(Measured(Knobs(0.25, 1.0, 1), None, False, False, None, failed="boom"))
    assert search.ruled_out(Knobs(0.25, 0.25, 1)) is None


def test_the_latency_model_learns_a_factor_the_prior_has_wrong(space: ChainSpace) -> None:
    """int8 slower than fp32 (a tiny model's quantize overhead): after one pair of cells the
    prediction for int8 chains follows the measurement, not the prior's halving."""
    search = BudgetSearch(space, 1.0)
    search.record(Measured(Knobs(0.0, 1.0, 0), 2.0, True, False, 0.99))
    search.record(Measured(Knobs(0.0, 1.0, 1), 2.4, True, False, 0.99))
    predicted = search.predict_p90(Knobs(0.0, 1.0, 1))
    assert math.isclose(predicted, 2.4, rel_tol=0.15), predicted


def test_unknown_limits_keep_a_cell_from_the_pick(space: ChainSpace) -> None:
    search = BudgetSearch(space, None)
    search.record(Measured(Knobs(0.0, 1.0, 0), 2.0, False, False, 0.99, unknown=True))
    assert search.pick() is None
    assert search.ruled_out(Knobs(0.5, 1.0, 0)) is None


def test_the_pareto_front_drops_what_another_beats_on_both(space: ChainSpace) -> None:
    a = Measured(Knobs(0.0, 1.0, 0), 4.0, False, False, 0.99)
    b = Measured(Knobs(0.0, 1.0, 1), 2.0, False, False, 0.98)
    c = Measured(Knobs(0.25, 1.0, 0), 3.0, False, False, 0.97)  # b beats it on both
    assert pareto_front([a, b, c]) == [b, a]


def test_chain_names_and_steps_reuse_the_shipped_presets(space: ChainSpace) -> None:
    k = Knobs(0.25, 0.5, 1)
    assert space.name(k) == "prune25-rank50-int8"
    assert space.name(Knobs(0.0, 1.0, 0)) == "fp32"
    steps = space.steps(k)
    assert [s.recipe for s in steps] == ["prune-channels", "low-rank", "int8-static"]
    assert steps[0].params["ratio"] == 0.25 and steps[0].params["finetune_epochs"] == 5
    assert steps[1].params["rank_ratio"] == 0.5


def test_a_bad_grid_names_the_option() -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="--prune"):
        build_space(default_dirs(None, "recipes", []), prune=[1.0])
    with pytest.raises(ConfigError, match="--quant"):
        build_space(default_dirs(None, "recipes", []), quant=["int4"])
