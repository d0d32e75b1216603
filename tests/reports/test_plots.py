"""The Pareto front the latency-vs-accuracy plot marks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.reports.plots import pareto_front


def test_front_of_a_known_set():
    points = [
        (1.0, 90.0),  # fastest: on the front
        (2.0, 95.0),  # slower but more accurate: on the front
        (2.0, 94.0),  # as fast as the one above, less accurate: beaten
        (3.0, 95.0),  # slower, no more accurate: beaten
        (4.0, 99.0),  # the most accurate: on the front
        (0.5, 80.0),  # fastest of all: on the front
    ]
    assert pareto_front(points) == [5, 0, 1, 4]  # sorted by latency
    assert pareto_front([]) == []


def _beaten(p: tuple[float, float], q: tuple[float, float]) -> bool:
    """q is at least as fast and at least as accurate as p, and better in one."""
    return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])


points = st.lists(
    st.tuples(st.integers(1, 20).map(float), st.integers(50, 100).map(float)), max_size=30
)


@given(points)
def test_front_is_exactly_the_unbeaten_points(pts: list[tuple[float, float]]):
    front = pareto_front(pts)
    unbeaten = {i for i, p in enumerate(pts) if not any(_beaten(p, q) for q in pts)}
    # Exact duplicates are not beaten by each other; the front keeps one of each.
    assert set(front) <= unbeaten
    assert {pts[i] for i in front} == {pts[i] for i in unbeaten}
    assert [pts[i][0] for i in front] == sorted(pts[i][0] for i in front)
