"""A deterministic discrete-event model of a device lab: how long a suite's matrix takes
on N boards fed by one submitting host, under a given scheduling policy.

The lab is boards (a name, a speed factor, the target an artifact is exported for)
and cells in suite order (model, variant, runtime, board, the build seconds of the
cell's artifact, the measure seconds on a board of speed 1). A cell's artifact is
(model, variant, runtime, board target), as :meth:`Pipeline.artifact_key` keys it: the
cells of one artifact on several boards of a target share one build. Builds run on the
submitting host's build workers (1, as the walker has: one thread, under
``SuiteWalker._build_lock``); a board runs one cell at a time (its lane thread, and
with ``--executor ray`` the ``board:NAME`` resource of quantity 1), taking
``measure_s / speed`` seconds.

Policies:

``build-first``
    What :meth:`SuiteWalker._walk_lanes` does today (read from walk.py). The lanes are
    the boards in the order their first cell appears in the suite, each holding its
    cells in suite order. Every artifact is built first, one at a time, lane by lane
    (lane 1's artifacts in its cell order, then lane 2's not built yet, ...); only then
    do the lane threads start, all at once, each running its cells one after the other
    in order. Measuring never overlaps building (so no export disturbs a cell timed on
    the submitting host itself). With one lane the walker builds each artifact just
    before its first cell instead, which, with one build worker, ends at the same time:
    every build and every measure back to back.
``pipelined``
    Builds in suite order (each artifact where its first cell stands); a board starts
    its first pending cell (in suite order) whose artifact is built, as soon as it is
    free: measuring overlaps building.
``demand-ordered``
    Boards as in ``pipelined``; the next build is chosen when a build worker is free,
    the unbuilt artifact with the most weighted work per build second: the sum, over
    its pending cells, of the cell's measure seconds times the unfinished work of the
    cell's board (its pending cells, and what is left of its running one), over the
    artifact's build seconds. The boards with the most work left (the ones that would
    finish last) get their artifacts first, and a quick build that unlocks much goes
    before a slow one (weighted shortest processing time); ties go to suite order.
    (Tried against "the board with the most work left gets its longest artifact": that
    came out 0.3-2.8% above the bound on average over 8 seeds of five lab shapes of
    benchmarks/lab_simulation.py, this 0.0-0.3%.)

Every policy is deterministic: ties (equal times, equal scores) fall to suite order,
then board order.

Lower bounds (any schedule, any policy) judge a makespan:

- build: total build seconds / build workers, plus the shortest cell (the last build
  ends no earlier than the average worker's load, and one of its cells runs after);
- board: per board, its shortest artifact build plus its whole measure load (it can
  start nothing before one of its artifacts exists);
- chain: per cell, its artifact's build plus its measure.

The bound is their maximum; ``ratio`` is makespan / bound (1.0 is optimal).

Pure Python, no dependencies: ``benchmarks/lab_simulation.py`` plans a 50-board,
2,000-cell lab with it in under a second.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

POLICIES = ("build-first", "pipelined", "demand-ordered")
# What SuiteWalker._walk_lanes does today.
TODAY = "build-first"


class LabPlanError(ValueError):
    """A lab the model cannot plan: the message names the cell or board and the key."""


@dataclass(frozen=True)
class Board:
    name: str
    # Relative to a reference board (1.0): a cell takes measure_s / speed on it.
    speed: float = 1.0
    # What DeviceProfile.target() gives: boards of one target share artifacts.
    target: str = ""


@dataclass(frozen=True)
class Cell:
    model: str
    variant: str
    runtime: str
    board: str
    build_s: float  # the cell's artifact; the same for every cell of that artifact
    measure_s: float  # on a board of speed 1.0


ArtifactKey = tuple[str, str, str, str]  # model, variant, runtime, board target


@dataclass(frozen=True)
class Lab:
    boards: tuple[Board, ...]
    cells: tuple[Cell, ...]  # in suite order
    build_workers: int = 1

    def __post_init__(self) -> None:
        if self.build_workers < 1:
            raise LabPlanError(f"build_workers: expected an integer >= 1, got {self.build_workers}")
        names: set[str] = set()
        for board in self.boards:
            if board.name in names:
                raise LabPlanError(f"boards: board name {board.name!r} given twice")
            if not board.speed > 0:
                raise LabPlanError(f"board {board.name}: speed expected > 0, got {board.speed}")
            names.add(board.name)
        builds: dict[ArtifactKey, tuple[float, int]] = {}
        for index, cell in enumerate(self.cells):
            where = f"cell {index} ({cell.model} / {cell.variant} / {cell.runtime} / {cell.board})"
            if cell.board not in names:
                raise LabPlanError(f"{where}: board expected one of the lab's boards")
            if not cell.build_s >= 0:
                raise LabPlanError(f"{where}: build_s expected >= 0, got {cell.build_s}")
            if not cell.measure_s > 0:
                raise LabPlanError(f"{where}: measure_s expected > 0, got {cell.measure_s}")
            key = self.artifact(cell)
            before = builds.setdefault(key, (cell.build_s, index))
            if before[0] != cell.build_s:
                raise LabPlanError(
                    f"{where}: build_s {cell.build_s} differs from {before[0]} given by cell "
                    f"{before[1]} of the same artifact"
                )

    def board(self, name: str) -> Board:
        return next(b for b in self.boards if b.name == name)

    def artifact(self, cell: Cell) -> ArtifactKey:
        return (cell.model, cell.variant, cell.runtime, self.board(cell.board).target)

    def duration(self, cell: Cell) -> float:
        """The cell's seconds on its board."""
        return cell.measure_s / self.board(cell.board).speed


@dataclass(frozen=True)
class CellRun:
    index: int  # into Lab.cells
    board: str
    start: float
    end: float


@dataclass(frozen=True)
class BuildRun:
    artifact: ArtifactKey
    worker: int
    start: float
    end: float


@dataclass(frozen=True)
class Bounds:
    build: float
    board: float
    chain: float

    @property
    def value(self) -> float:
        return max(self.build, self.board, self.chain)


@dataclass(frozen=True)
class Plan:
    policy: str
    makespan: float
    bounds: Bounds
    build_workers: int
    runs: tuple[CellRun, ...]  # in start order
    builds: tuple[BuildRun, ...]  # in start order
    # (board name, busy seconds), in the lab's board order.
    board_busy: tuple[tuple[str, float], ...] = field(repr=False)

    @property
    def ratio(self) -> float:
        """Makespan over the lower bound: 1.0 is optimal."""
        return self.makespan / self.bounds.value if self.bounds.value else 1.0

    def utilisation(self) -> dict[str, float]:
        """Each board's busy seconds over the makespan."""
        span = self.makespan or 1.0
        return {name: busy / span for name, busy in self.board_busy}

    @property
    def mean_utilisation(self) -> float:
        values = list(self.utilisation().values())
        return sum(values) / len(values) if values else 0.0

    @property
    def min_utilisation(self) -> float:
        return min(self.utilisation().values(), default=0.0)

    @property
    def build_utilisation(self) -> float:
        """The build workers' busy seconds over workers x makespan."""
        busy = sum(b.end - b.start for b in self.builds)
        return busy / (self.build_workers * self.makespan) if self.makespan else 0.0


def lower_bounds(lab: Lab) -> Bounds:
    if not lab.cells:
        return Bounds(0.0, 0.0, 0.0)
    builds = {lab.artifact(c): c.build_s for c in lab.cells}
    shortest = min(lab.duration(c) for c in lab.cells)
    build = sum(builds.values()) / lab.build_workers + shortest
    load: dict[str, float] = {}
    first: dict[str, float] = {}
    for cell in lab.cells:
        load[cell.board] = load.get(cell.board, 0.0) + lab.duration(cell)
        first[cell.board] = min(first.get(cell.board, cell.build_s), cell.build_s)
    board = max(first[name] + load[name] for name in load)
    chain = max(c.build_s + lab.duration(c) for c in lab.cells)
    return Bounds(build, board, chain)


def plan(lab: Lab, policy: str) -> Plan:
    """The schedule ``policy`` makes of ``lab`` (see the module docstring)."""
    if policy not in POLICIES:
        raise LabPlanError(f"policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
    return _Simulation(lab, policy).run()


class _Simulation:
    def __init__(self, lab: Lab, policy: str) -> None:
        self.lab = lab
        self.policy = policy
        self.durations = [lab.duration(c) for c in lab.cells]
        self.keys = [lab.artifact(c) for c in lab.cells]
        self.build_s = {k: c.build_s for k, c in zip(self.keys, lab.cells, strict=True)}
        # Lanes: boards in the order of their first cell (the walker's dict of lanes),
        # then the boards without cells; each lane's cells in suite order.
        self.lanes: dict[str, list[int]] = {}
        for index, cell in enumerate(lab.cells):
            self.lanes.setdefault(cell.board, []).append(index)
        for board in lab.boards:
            self.lanes.setdefault(board.name, [])
        if policy == "build-first":
            order = [self.keys[i] for cells in self.lanes.values() for i in cells]
        else:
            order = list(self.keys)
        self.build_order = list(dict.fromkeys(order))
        self.rank = {key: n for n, key in enumerate(self.build_order)}

    def run(self) -> Plan:
        lab = self.lab
        pending = {name: list(cells) for name, cells in self.lanes.items()}
        unbuilt = list(self.build_order)  # not started
        built: set[ArtifactKey] = set()
        free_workers = list(range(lab.build_workers))
        busy_until: dict[str, float] = {}  # board -> end of its running cell
        events: list[tuple[float, int, str, object]] = []
        seq = 0
        runs: list[CellRun] = []
        builds: list[BuildRun] = []
        now = 0.0
        while True:
            while free_workers and unbuilt:
                key = self._next_build(unbuilt, pending, busy_until, now)
                unbuilt.remove(key)
                worker = free_workers.pop(0)
                end = now + self.build_s[key]
                builds.append(BuildRun(key, worker, now, end))
                heapq.heappush(events, (end, seq, "build", (key, worker)))
                seq += 1
            gate_open = self.policy != "build-first" or len(built) == len(self.build_order)
            if gate_open:
                for name, cells in pending.items():
                    if name in busy_until or not cells:
                        continue
                    index = next((i for i in cells if self.keys[i] in built), None)
                    if index is None:
                        continue
                    cells.remove(index)
                    end = now + self.durations[index]
                    busy_until[name] = end
                    runs.append(CellRun(index, name, now, end))
                    heapq.heappush(events, (end, seq, "cell", (name, index)))
                    seq += 1
            if not events:
                break
            now = events[0][0]
            while events and events[0][0] == now:
                _, _, kind, payload = heapq.heappop(events)
                if kind == "build":
                    key, worker = payload  # type: ignore[misc]
                    built.add(key)
                    free_workers.append(worker)
                    free_workers.sort()
                else:
                    name, _ = payload  # type: ignore[misc]
                    del busy_until[name]
        busy: dict[str, float] = {b.name: 0.0 for b in lab.boards}
        for run in runs:
            busy[run.board] += run.end - run.start
        makespan = max([r.end for r in runs] + [b.end for b in builds], default=0.0)
        return Plan(
            policy=self.policy,
            makespan=makespan,
            bounds=lower_bounds(lab),
            build_workers=lab.build_workers,
            runs=tuple(runs),
            builds=tuple(builds),
            board_busy=tuple((b.name, busy[b.name]) for b in lab.boards),
        )

    def _next_build(
        self,
        unbuilt: list[ArtifactKey],
        pending: dict[str, list[int]],
        busy_until: dict[str, float],
        now: float,
    ) -> ArtifactKey:
        if self.policy != "demand-ordered":
            return unbuilt[0]
        candidates = set(unbuilt)
        # Per artifact: the measure seconds it unlocks on each board, weighted by that
        # board's unfinished work (its pending cells and what is left of its running
        # one), so work for the boards that would finish last counts most.
        urgency: dict[ArtifactKey, float] = {}
        for name, cells in pending.items():
            left = sum(self.durations[i] for i in cells)
            if name in busy_until:
                left += busy_until[name] - now
            for i in cells:
                key = self.keys[i]
                if key in candidates:
                    urgency[key] = urgency.get(key, 0.0) + left * self.durations[i]

        def per_second(key: ArtifactKey) -> float:
            seconds = self.build_s[key]
            return urgency.get(key, 0.0) / seconds if seconds > 0 else float("inf")

        return min(unbuilt, key=lambda k: (-per_second(k), self.rank[k]))
