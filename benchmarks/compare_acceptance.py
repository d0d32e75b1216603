"""Does ``harness compare`` keep quiet on A/A pairs and catch a 10% slowdown?

The issue's acceptance: on the local device, run the same small suite several times
(A/A) and with a slowdown injected; ``compare`` must call <= 1% of A/A cells regressed
and >= 95% of the slowed cells regressed at +10%. This script:

1. writes a suite of ``--cells`` copies of the zoo ``mlp`` (``--layers`` hidden layers
   of ``--width``, one training epoch, a different seed each: separate cells of equal
   cost; cache-resident, so its per-process p50 noise is a few percent here) and, for
   each slowdown size, the same suite with proportionally more hidden layers (+1 layer
   of 20 is +5%, +2 is +10%, +4 is +20%) under the same suite, model and variant names,
   so the slowed cells match the base cells cell for cell;
2. walks them as separate runs through the real walker (``SuiteWalker``, ``--trials``
   runner processes per cell) in the order A, S+5%, A, S+10%, A, S+20%, A (repeated
   ``--repeats`` times); A/A pairs are consecutive A runs, each slowed run is compared
   with the A run just before it;
3. judges every pair three ways, all with the default thresholds (5% minimum effect,
   alpha 0.05): the stored runs as a default suite measures them (the first 3 trials:
   Welch's t over the log trial medians), the stored runs with all
   ``--trials`` trials (the trials basis), and an interleaved re-measurement planned as
   ``harness compare --interleave`` plans it (base and candidate alternately, at least
   ``--rounds`` rounds per cell, then until the cell's verdict is settled or its ratio
   is known to +-2.5%, at most ``--max-rounds``; stored in the results store);
4. prints the wall time of each interleaved compare (what CI waits for; target: a
   10-cell compare in at most 5 minutes) with its rounds per cell and why they stopped,
   the rates, the same rates had the interleaved cells stopped after 10, 15, 20, ...
   rounds, the per-round noise, and the slowdown each size really is (the median ratio
   over all interleaved rounds of its cells: layer count is not exactly time).

    .venv/bin/python benchmarks/compare_acceptance.py [--cells 4] [--repeats 1]
        [--trials 5] [--rounds 10] [--max-rounds 60] [--slowdowns 5,10,20]
        [--results DIR] [--reuse-runs] [--no-interleave]

``--reuse-runs`` takes the runs already in ``--results`` (made by an earlier call with
the same ``--cells``, ``--repeats`` and ``--slowdowns``, in the schedule's order) and
only judges and interleaves them again.

Runner processes take ~0.5-0.9 s here, so the runs take 2-3 minutes (4 cells x 5
trials x 7 runs) and each interleaved comparison about 2 x rounds x cells processes:
a cell settles in 10-15 rounds on a quiet machine, and a loaded one needs more.
No assertions: it prints the measured rates and wall times against the targets.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.results.compare import (  # noqa: E402
    Verdict,
    compare_latency_paired,
    compare_latency_stored,
    compare_runs,
    match_cells,
    paired_rounds,
)
from harness.results.stats import percentile  # noqa: E402
from harness.results.store import CellRecord, ResultsStore  # noqa: E402
from harness.results.thresholds import default_thresholds  # noqa: E402
from harness.suite.config import load_suite  # noqa: E402
from harness.suite.interleave import (  # noqa: E402
    RoundsPlan,
    StopReason,
    device_dirs_of,
    interleave_runs,
)
from harness.suite.walk import SuiteWalker  # noqa: E402

SUITE_NAME = "compare-acceptance"
DEFAULT_TRIALS_OF_A_SUITE = 3  # what [measure] trials defaults to


def suite_text(cells: int, width: int, layers: int, trials: int) -> str:
    models = "".join(
        textwrap.dedent(
            f"""
            [[models]]
            name = "mlp-{i}"
            zoo = "mlp"
            params = {{ hidden = {[width] * layers}, epochs = 1, seed = {i} }}
            """
        )
        for i in range(cells)
    )
    return (
        textwrap.dedent(
            f"""
            name = "{SUITE_NAME}"
            runtimes = ["onnxruntime"]
            devices = ["local"]
            device_dirs = ["{REPO / "devices"}"]
            recipe_dirs = ["{REPO / "recipes"}"]

            [variants]
            fp32 = []

            [measure]
            threads = 1
            trials = {trials}
            warmup_count = 20
            warmup_seconds = 0.05
            min_count = 50
            min_seconds = 0.2
            max_seconds = 2.0
            """
        )
        + models
    )


@dataclass
class Tally:
    """Verdicts per kind of pair: "A/A" or the nominal slowdown in percent."""

    regressed: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, verdict: Verdict) -> None:
        self.total[kind] = self.total.get(kind, 0) + 1
        self.regressed[kind] = self.regressed.get(kind, 0) + (verdict is Verdict.REGRESSED)

    def rate(self, kind: str) -> str:
        n, k = self.total.get(kind, 0), self.regressed.get(kind, 0)
        return f"{k}/{n} ({100 * k / n:.1f}%)" if n else "-"


def first_trials(store: ResultsStore, cell: CellRecord, trials: int) -> tuple[list, list]:
    """The first ``trials`` trial medians of a stored cell and their raw samples (stored
    one trial after the other; ``trial_results`` holds each trial's sample count)."""
    p50s = cell.result["latency_ms"]["trial_p50s"][:trials]
    counts = [t["count"] for t in cell.result["trial_results"][:trials]]
    return p50s, store.samples(cell.id or -1)[: sum(counts)]


def judge_as_default_suite(
    store: ResultsStore, base_run: int, new_run: int, trials: int
) -> list[Verdict]:
    """What compare says when each cell has only ``trials`` trials: the same measurements,
    cut to the first trials (a default suite measures 3)."""
    threshold = default_thresholds()["latency_p50"]
    verdicts = []
    for base, new in match_cells(store.cells(base_run), store.cells(new_run)).both_ok:
        base_p50s, base_samples = first_trials(store, base, trials)
        new_p50s, new_samples = first_trials(store, new, trials)
        latency = compare_latency_stored(
            percentile(sorted(base_samples), 50),
            percentile(sorted(new_samples), 50),
            base_p50s,
            new_p50s,
            threshold,
            0.05,
            lambda b=base_samples, n=new_samples: (b, n),
        )
        verdicts.append(latency.verdict)
    return verdicts


def walk(suite_path: Path, results: Path) -> int:
    walker = SuiteWalker(load_suite(suite_path), results, new_run=True, on_event=lambda e: None)
    try:
        summary = walker.walk()
    finally:
        walker.close()
    if summary.failed:
        reasons = "; ".join(f"{'/'.join(c.key)}: {c.reason}" for c in summary.failures)
        raise SystemExit(f"{suite_path.name}: {summary.failed} cells failed: {reasons}")
    return summary.run_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds at least")
    parser.add_argument("--max-rounds", type=int, default=60, help="interleaved rounds at most")
    parser.add_argument("--slowdowns", default="5,10,20", help="percent, comma-separated")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--results", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--no-interleave", action="store_true")
    parser.add_argument(
        "--reuse-runs", action="store_true", help="judge the runs already in --results"
    )
    args = parser.parse_args()
    # torch's and torchao's own deprecation chatter, printed at every model build.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    slowdowns = [int(s) for s in args.slowdowns.split(",") if s.strip()]
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="compare-acceptance-") as tmp:
        work = Path(tmp)
        results = args.results or work / "results"
        suites = {"A": work / "base.toml"}
        suites["A"].write_text(suite_text(args.cells, args.width, args.layers, args.trials))
        for pct in slowdowns:
            extra = round(args.layers * pct / 100)
            suites[f"+{pct}%"] = work / f"slow{pct}.toml"
            suites[f"+{pct}%"].write_text(
                suite_text(args.cells, args.width, args.layers + extra, args.trials)
            )
        schedule = ["A"]
        for _ in range(args.repeats):
            for pct in slowdowns:
                schedule += [f"+{pct}%", "A"]
        print(
            f"{args.cells} cells (zoo mlp, {args.layers} x {args.width} hidden, onnxruntime, "
            f"local), {args.trials} trials per cell; runs: {' '.join(schedule)}; "
            f"results in {results}; load average {os.getloadavg()[0]:.2f}"
        )
        runs: list[tuple[str, int]] = []
        if args.reuse_runs:
            with ResultsStore(results / "harness.db") as store:
                stored = [r.id for r in store.runs() if r.suite_name == SUITE_NAME]
            if len(stored) < len(schedule):
                raise SystemExit(
                    f"{results}: {len(stored)} {SUITE_NAME} runs stored, the schedule needs "
                    f"{len(schedule)}"
                )
            runs = list(zip(schedule, stored[: len(schedule)], strict=True))
            print(f"  reusing runs {runs[0][1]}..{runs[-1][1]}")
        for kind in [] if args.reuse_runs else schedule:
            t0 = time.perf_counter()
            run_id = walk(suites[kind], results)
            runs.append((kind, run_id))
            print(f"  run {run_id} ({kind}): {time.perf_counter() - t0:.0f} s", flush=True)

        pairs: list[tuple[str, int, int]] = []
        last_a: int | None = None
        for kind, run_id in runs:
            if kind == "A":
                if last_a is not None:
                    pairs.append(("A/A", last_a, run_id))
                last_a = run_id
            elif last_a is not None:
                pairs.append((kind, last_a, run_id))

        default_mode = f"stored, {DEFAULT_TRIALS_OF_A_SUITE} trials (Welch over trials)"
        trials_mode = f"stored, {args.trials} trials (Mann-Whitney over trials)"
        interleaved_mode = f"interleaved, {args.rounds}-{args.max_rounds} rounds"
        modes = {default_mode: Tally(), trials_mode: Tally()}
        if not args.no_interleave:
            modes[interleaved_mode] = Tally()
        measured_ratios: dict[str, list[float]] = {}
        spreads: list[float] = []
        rounds_used: list[int] = []
        interleave_kinds: dict[int, str] = {}
        failed_interleaves: list[str] = []
        wall_times: dict[str, list[float]] = {}
        # As harness compare --interleave plans it for the default 5% latency limit.
        plan = RoundsPlan.for_limit(args.rounds, args.max_rounds, 0.05)
        with ResultsStore(results / "harness.db") as store:
            for kind, base, new in pairs:
                for verdict in judge_as_default_suite(store, base, new, DEFAULT_TRIALS_OF_A_SUITE):
                    modes[default_mode].add(kind, verdict)
                for cell in compare_runs(store, base, new).cells:
                    modes[trials_mode].add(kind, cell.latency.verdict)
                if args.no_interleave:
                    continue
                t0 = time.perf_counter()
                base_run, new_run = store.get_run(base), store.get_run(new)
                both = match_cells(store.cells(base), store.cells(new)).both_ok
                outcome = interleave_runs(
                    store, results, base_run, new_run, both, plan=plan,
                    device_dirs=device_dirs_of(new_run),
                )  # fmt: skip
                wall = time.perf_counter() - t0
                wall_times.setdefault(kind, []).append(wall)
                interleave_kinds[outcome.interleave_id] = kind
                interleaved = compare_runs(store, base, new, interleaved=outcome.cells)
                stops: dict[str, int] = {}
                cell_rounds: list[int] = []
                for cell in interleaved.cells:
                    if cell.latency is None:  # not judged: the re-measurement failed
                        failed_interleaves.append(
                            f"{'/'.join(cell.key)} runs {base}->{new}: {cell.not_judged}"
                        )
                        continue
                    rounds = paired_rounds(outcome.cells[cell.key])
                    stop = plan.stop_reason(rounds) or StopReason.MAX_ROUNDS
                    stops[stop.value] = stops.get(stop.value, 0) + 1
                    cell_rounds.append(len(rounds))
                    modes[interleaved_mode].add(kind, cell.latency.verdict)
                    rounds_used.append(len(rounds))
                    measured_ratios.setdefault(kind, []).extend(n / b for b, n in rounds)
                    logs = [math.log(n / b) for b, n in rounds]
                    center = statistics.median(logs)
                    spreads.append(1.4826 * statistics.median(abs(v - center) for v in logs))
                latency = [
                    c.latency.verdict.value if c.latency else c.verdict.value
                    for c in interleaved.cells
                ]
                counts = ", ".join(f"{v} {latency.count(v)}" for v in sorted(set(latency)))
                stopped = ", ".join(f"{k} {v}" for k, v in sorted(stops.items()))
                rounds_text = (
                    f"rounds per cell mean {statistics.mean(cell_rounds):.1f}, "
                    f"max {max(cell_rounds)} ({stopped})"
                    if cell_rounds
                    else "no cell measured"
                )
                print(
                    f"  interleaved {kind} pair (runs {base} -> {new}): wall time "
                    f"{wall:.0f} s for {len(both)} cells ({wall / 60:.1f} min), "
                    f"{rounds_text}; {counts}",
                    flush=True,
                )

            # The same stored rounds, cut short: how many rounds the verdicts needed.
            truncated: dict[int, Tally] = {}
            if not args.no_interleave:
                threshold = default_thresholds()["latency_p50"]
                for limit in sorted({10, 15, 20, 30, 40, args.max_rounds}):
                    tally = truncated[limit] = Tally()
                    for interleave_id, kind in interleave_kinds.items():
                        for cell in store.interleave_cells(interleave_id):
                            rounds = paired_rounds(cell)[:limit]
                            if rounds:
                                latency = compare_latency_paired(rounds, threshold, 0.05)
                                tally.add(kind, latency.verdict)

        kinds = ["A/A"] + [f"+{pct}%" for pct in slowdowns]
        if failed_interleaves:
            print(f"{len(failed_interleaves)} interleaved cells not judged (not counted):")
            for line in failed_interleaves[:10]:
                print(f"  {line}")
        elapsed = time.perf_counter() - started
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        if spreads:
            print(
                "per-round spread of new/base (robust sd of the log ratio, median over cells): "
                f"{statistics.median(spreads) * 100:.1f}%; rounds per cell: median "
                f"{statistics.median(rounds_used):g}, max {max(rounds_used)}"
            )
        if wall_times:
            print(
                f"\nwall time of each interleaved compare ({args.cells} cells; target for 10 "
                "cells: <= 300 s):"
            )
            for kind in kinds:
                if kind in wall_times:
                    times = ", ".join(f"{t:.0f}" for t in wall_times[kind])
                    print(f"  {kind:<6} {times} s (max {max(wall_times[kind]):.0f} s)")
        print(f"\nregressed verdicts (targets: A/A <= 1%, +10% >= 95%), {elapsed:.0f} s in all")
        header = f"{'mode':<44}" + "".join(f"{k:>18}" for k in kinds)
        print(header)
        for name, tally in modes.items():
            print(f"{name:<44}" + "".join(f"{tally.rate(k):>18}" for k in kinds))
        for limit, tally in truncated.items():
            name = f"  the same, cut to the first {limit} rounds"
            print(f"{name:<44}" + "".join(f"{tally.rate(k):>18}" for k in kinds))
        if measured_ratios:
            print(
                "slowdown measured interleaved (median new/base over all rounds): "
                + ", ".join(
                    f"{k} -> {(statistics.median(v) - 1) * 100:+.1f}%"
                    for k, v in measured_ratios.items()
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
