"""How long a big device lab takes to walk a suite, per scheduling policy, by simulation
(:mod:`harness.suite.lab_plan`): 50 boards and 2,000 cells by default.

The lab is drawn from a seed:

- boards: Raspberry Pi 4 (40%), Pi 5 (40%) and Jetson Orin Nano (20%). Speed is
  relative to a Pi 5 (1.0): the Orin Nano 0.75 (its calibrated fp32 factor over the
  Pi 5's, 0.50 / 0.69 in harness/builtin/devices), the Pi 4 0.4 (the calibrated factors
  say 0.16 for inference alone; a cell's deploy, load and time-capped trials do not
  scale with it, so less: assumed, not measured); each board +-5% on top. A kind is one
  target, so its boards share artifacts.
- the matrix: models x 4 variants x 3 runtimes (onnxruntime, litert, executorch), as
  many models as make the full matrix 1.5x the cells asked for; the cells are a seeded
  sample of (combination, board), in suite order (model, variant, runtime, board).
- build seconds per artifact (one per combination and board kind): ExecuTorch 10-25 s
  (its lowering measured here takes that), LiteRT 4-10 s, ONNX 1-3 s, uniform.
- measure seconds: per combination 5-60 s on a Pi 5 (log-uniform: most models are
  small), +-10% per cell, divided by the board's speed.

    PYTHONPATH=. .venv/bin/python benchmarks/lab_simulation.py [--seed 0] [--boards 50]
        [--cells 2000] [--build-workers 1] [--policy all|build-first|pipelined|...]

Prints the lab, its lower bounds, and one row per policy: makespan, its ratio to the
lower bound, mean and lowest board utilisation, build host utilisation. The policy the
walker uses today is marked.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.suite.lab_plan import (  # noqa: E402
    POLICIES,
    TODAY,
    Board,
    Cell,
    Lab,
    lower_bounds,
    plan,
)

# kind -> (share of the boards, speed relative to a Pi 5)
BOARD_KINDS = {"pi4": (0.4, 0.4), "pi5": (0.4, 1.0), "orin-nano": (0.2, 0.75)}
VARIANTS = ("fp32", "int8-static", "prune-50", "low-rank")
# runtime -> build seconds of one artifact (uniform between)
BUILD_S = {"onnxruntime": (1.0, 3.0), "litert": (4.0, 10.0), "executorch": (10.0, 25.0)}
MEASURE_S = (5.0, 60.0)  # per combination, on a Pi 5
MATRIX_SLACK = 1.5  # the full matrix is this many times the cells asked for


def make_lab(seed: int, boards: int, cells: int, build_workers: int) -> Lab:
    """A lab drawn from ``seed``: the same arguments give the same lab."""
    rng = random.Random(seed)
    kinds = list(BOARD_KINDS)
    weights = [BOARD_KINDS[k][0] for k in kinds]
    board_list = []
    counts: dict[str, int] = {}
    for _ in range(boards):
        kind = rng.choices(kinds, weights)[0]
        counts[kind] = counts.get(kind, 0) + 1
        speed = BOARD_KINDS[kind][1] * rng.uniform(0.95, 1.05)
        board_list.append(Board(f"{kind}-{counts[kind]:02d}", speed, target=kind))
    per_model = len(VARIANTS) * len(BUILD_S)
    models = max(1, math.ceil(MATRIX_SLACK * cells / (boards * per_model)))
    combos = [
        (f"model-{m:02d}", v, r) for m in range(1, models + 1) for v in VARIANTS for r in BUILD_S
    ]
    total = len(combos) * boards
    if cells > total:
        raise SystemExit(f"--cells: at most {total} for {boards} boards, got {cells}")
    measure = {c: math.exp(rng.uniform(*map(math.log, MEASURE_S))) for c in combos}
    build: dict[tuple[str, str, str, str], float] = {}
    chosen = sorted(rng.sample(range(total), cells))  # combination-major: suite order
    cell_list = []
    for n in chosen:
        combo, board = combos[n // boards], board_list[n % boards]
        key = (*combo, board.target)
        if key not in build:
            build[key] = round(rng.uniform(*BUILD_S[combo[2]]), 1)
        seconds = round(measure[combo] * rng.uniform(0.9, 1.1), 1)
        cell_list.append(Cell(*combo, board.name, build[key], seconds))
    return Lab(tuple(board_list), tuple(cell_list), build_workers)


def describe(lab: Lab) -> list[str]:
    kinds: dict[str, int] = {}
    for board in lab.boards:
        kinds[board.target] = kinds.get(board.target, 0) + 1
    artifacts = {lab.artifact(c): c.build_s for c in lab.cells}
    load: dict[str, float] = {}
    for cell in lab.cells:
        load[cell.board] = load.get(cell.board, 0.0) + lab.duration(cell)
    heaviest = max(load, key=lambda name: load[name])
    measure = sum(load.values())
    bounds = lower_bounds(lab)
    return [
        f"lab: {len(lab.boards)} boards ("
        + ", ".join(f"{k} {n}" for k, n in kinds.items())
        + f"), {len(lab.cells)} cells, {len(artifacts)} artifacts",
        f"build: {sum(artifacts.values()):.0f} s on {lab.build_workers} worker(s)",
        f"measure: {measure:.0f} s, {measure / len(lab.boards):.0f} s a board on "
        f"average, {load[heaviest]:.0f} s on the heaviest ({heaviest})",
        f"lower bounds: build {bounds.build:.0f} s, board {bounds.board:.0f} s, "
        f"chain {bounds.chain:.0f} s -> {bounds.value:.0f} s",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--boards", type=int, default=50)
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--build-workers", type=int, default=1)
    parser.add_argument("--policy", choices=("all", *POLICIES), default="all")
    args = parser.parse_args(argv)
    if args.boards < 1 or args.cells < 1:
        parser.error("--boards and --cells: expected at least 1")
    started = time.perf_counter()
    lab = make_lab(args.seed, args.boards, args.cells, args.build_workers)
    for line in describe(lab):
        print(line)
    policies = POLICIES if args.policy == "all" else (args.policy,)
    print()
    header = f"{'policy':<18} {'makespan':>10} {'x bound':>8} {'board util':>11} "
    header += f"{'min board':>10} {'build host':>11}"
    print(header)
    print("-" * len(header))
    for name in policies:
        result = plan(lab, name)
        label = f"{name} *" if name == TODAY else name
        print(
            f"{label:<18} {result.makespan:>9.0f}s {result.ratio:>8.2f} "
            f"{result.mean_utilisation:>10.0%} {result.min_utilisation:>10.0%} "
            f"{result.build_utilisation:>10.0%}"
        )
    print(f"\n* the harness today (SuiteWalker._walk_lanes); seed {args.seed}, ", end="")
    print(f"planned in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
