"""The lab model (harness.suite.lab_plan): hand-computed schedules, the lower bound, no
board running two cells at once, and the same plan from the same lab."""

from __future__ import annotations

import random
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from harness.suite.lab_plan import (
    POLICIES,
    TODAY,
    Board,
    Cell,
    Lab,
    LabPlanError,
    Plan,
    lower_bounds,
    plan,
)

REPO = Path(__file__).resolve().parents[2]
EPS = 1e-9


def small_lab(build_workers: int = 1) -> Lab:
    # Artifact X (10 s) on boards A and B, artifact Y (2 s) on B only, in suite order.
    return Lab(
        boards=(Board("A"), Board("B")),
        cells=(
            Cell("m", "x", "onnxruntime", "A", build_s=10, measure_s=5),
            Cell("m", "x", "onnxruntime", "B", build_s=10, measure_s=4),
            Cell("m", "y", "onnxruntime", "B", build_s=2, measure_s=20),
        ),
        build_workers=build_workers,
    )


def spans(result: Plan) -> dict[int, tuple[float, float]]:
    return {run.index: (run.start, run.end) for run in result.runs}


def test_build_first_builds_everything_then_runs_each_lane_in_order() -> None:
    # X 0-10, Y 10-12; the lanes start at 12: A 12-17; B cell 1 12-16, cell 2 16-36.
    result = plan(small_lab(), "build-first")
    assert [(b.artifact[1], b.start, b.end) for b in result.builds] == [
        ("x", 0, 10),
        ("y", 10, 12),
    ]
    assert spans(result) == {0: (12, 17), 1: (12, 16), 2: (16, 36)}
    assert result.makespan == 36
    assert TODAY == "build-first"


def test_pipelined_starts_a_cell_once_its_artifact_and_board_are_ready() -> None:
    # X 0-10, Y 10-12; at 10 A takes cell 0 and B cell 1 (10-14), then cell 2 14-34.
    result = plan(small_lab(), "pipelined")
    assert spans(result) == {0: (10, 15), 1: (10, 14), 2: (14, 34)}
    assert result.makespan == 34


def test_demand_ordered_feeds_the_board_with_the_most_work_first() -> None:
    # At 0: X unlocks 5 s on A (5 s left) and 4 s on B (24 s left): (25 + 96) / 10 =
    # 12.1 a build second; Y unlocks 20 s on B: 480 / 2 = 240. Y 0-2, X 2-12.
    result = plan(small_lab(), "demand-ordered")
    assert [(b.artifact[1], b.start, b.end) for b in result.builds] == [
        ("y", 0, 2),
        ("x", 2, 12),
    ]
    assert spans(result) == {2: (2, 22), 0: (12, 17), 1: (22, 26)}
    assert result.makespan == 26
    assert result.ratio == 1.0


def test_lower_bounds_of_the_small_lab() -> None:
    bounds = lower_bounds(small_lab())
    # build: 12 s of builds + the shortest cell (4); board: B's quickest artifact (2) +
    # its 24 s; chain: Y's 2 s + 20 s.
    assert (bounds.build, bounds.board, bounds.chain, bounds.value) == (16, 26, 22, 26)
    assert lower_bounds(small_lab(build_workers=2)).build == 10


def test_two_build_workers() -> None:
    # Worker 0 takes X (0-10), worker 1 Y (0-2): build-first still waits for both;
    # pipelined lets B run cell 2 at 2, the first of its cells whose artifact exists.
    first = plan(small_lab(2), "build-first")
    assert spans(first) == {0: (10, 15), 1: (10, 14), 2: (14, 34)}
    piped = plan(small_lab(2), "pipelined")
    assert spans(piped) == {2: (2, 22), 0: (10, 15), 1: (22, 26)}
    assert {(b.worker, b.start, b.end) for b in piped.builds} == {(0, 0, 10), (1, 0, 2)}
    assert plan(small_lab(2), "demand-ordered").makespan == 26


def test_utilisation_and_speed() -> None:
    lab = Lab(
        boards=(Board("fast", speed=2.0), Board("idle")),
        cells=(Cell("m", "v", "r", "fast", build_s=4, measure_s=8),),
    )
    result = plan(lab, "pipelined")
    assert spans(result) == {0: (4, 8)}  # 8 s on a board twice the speed: 4 s
    assert result.utilisation() == {"fast": 0.5, "idle": 0.0}
    assert (result.mean_utilisation, result.min_utilisation) == (0.25, 0.0)
    assert result.build_utilisation == 0.5


def test_boards_of_one_target_share_an_artifact_and_others_do_not() -> None:
    lab = Lab(
        boards=(Board("p1", target="pi5"), Board("p2", target="pi5"), Board("q", target="pi4")),
        cells=tuple(Cell("m", "v", "r", b, build_s=3, measure_s=1) for b in ("p1", "p2", "q")),
    )
    assert len(plan(lab, "pipelined").builds) == 2


def random_lab(seed: int) -> Lab:
    rng = random.Random(seed)
    boards = tuple(
        Board(f"b{n}", speed=rng.choice((0.4, 0.75, 1.0)), target=rng.choice("xy"))
        for n in range(rng.randint(1, 6))
    )
    build: dict[tuple[str, str], float] = {}
    cells = []
    for _ in range(rng.randint(1, 30)):
        model, board = rng.choice("abcde"), rng.choice(boards)
        key = (model, board.target)
        build.setdefault(key, float(rng.randint(0, 25)))
        cells.append(Cell(model, "v", "r", board.name, build[key], float(rng.randint(1, 60))))
    return Lab(boards, tuple(cells), build_workers=rng.randint(1, 3))


@pytest.mark.parametrize("seed", range(60))
def test_every_schedule_is_feasible_and_above_the_bound(seed: int) -> None:
    lab = random_lab(seed)
    for policy in POLICIES:
        result = plan(lab, policy)
        assert result.makespan >= result.bounds.value - EPS, policy
        assert sorted(r.index for r in result.runs) == list(range(len(lab.cells)))
        built = {b.artifact: b.end for b in result.builds}
        assert len(built) == len(result.builds)  # each artifact built once
        for board in lab.boards:
            mine = sorted((r.start, r.end) for r in result.runs if r.board == board.name)
            for (_, end), (start, _) in pairwise(mine):
                assert start >= end - EPS, f"{policy}: {board.name} runs two cells at once"
        for worker in range(lab.build_workers):
            mine = sorted((b.start, b.end) for b in result.builds if b.worker == worker)
            for (_, end), (start, _) in pairwise(mine):
                assert start >= end - EPS, f"{policy}: worker {worker} builds two at once"
        for run in result.runs:
            cell = lab.cells[run.index]
            assert run.start >= built[lab.artifact(cell)] - EPS
            assert run.end - run.start == pytest.approx(lab.duration(cell))
        if policy == "build-first":
            assert min(r.start for r in result.runs) >= max(built.values()) - EPS
        assert 0.0 <= result.min_utilisation <= result.mean_utilisation <= 1.0 + EPS
        assert plan(lab, policy) == result  # deterministic


def test_bad_labs_are_refused_naming_the_key() -> None:
    with pytest.raises(LabPlanError, match=r"cell 0 .*: board expected one of"):
        Lab((Board("a"),), (Cell("m", "v", "r", "nope", 1, 1),))
    with pytest.raises(LabPlanError, match=r"cell 1 .*: build_s 2 differs from 1 given by cell 0"):
        Lab(
            (Board("a"), Board("b")),
            (Cell("m", "v", "r", "a", 1, 1), Cell("m", "v", "r", "b", 2, 1)),
        )
    with pytest.raises(LabPlanError, match="board a: speed expected > 0"):
        Lab((Board("a", speed=0),), ())
    with pytest.raises(LabPlanError, match="build_workers: expected an integer >= 1"):
        Lab((Board("a"),), (), build_workers=0)
    with pytest.raises(LabPlanError, match="policy: expected one of build-first"):
        plan(small_lab(), "fastest")


def run_benchmark(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "lab_simulation.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout


def test_the_simulation_script_is_deterministic_per_seed_and_fits_80_columns() -> None:
    first = run_benchmark("--seed", "3", "--boards", "8", "--cells", "120")
    again = run_benchmark("--seed", "3", "--boards", "8", "--cells", "120")
    other = run_benchmark("--seed", "4", "--boards", "8", "--cells", "120")

    def table(text: str) -> list[str]:  # all but the "planned in ... s" line
        return [line for line in text.splitlines() if "planned in" not in line]

    assert table(first) == table(again)
    assert table(first) != table(other)
    assert "8 boards" in first and "120 cells" in first
    assert "build-first *" in first  # today's policy is marked
    assert all(p in first for p in POLICIES)
    assert max(len(line) for line in first.splitlines()) <= 80
