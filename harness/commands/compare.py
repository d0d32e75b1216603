"""``harness compare [BASE] [NEW]``: two runs cell by cell, for CI (exit 1 when anything
regressed, 3 when a cell could not be judged)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.arguments import add_results_option, open_store
from harness.commands.exits import EXIT_INCOMPLETE, EXIT_OK, EXIT_REGRESSED
from harness.commands.output import stderr_console, write_rich, write_text
from harness.errors import HarnessError


def register(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser(
        "compare",
        help="compare two runs cell by cell; exit 1 when anything regressed, 3 when a "
        "cell could not be judged",
        description="Compare two runs cell by cell: latency (ratio of p50s, a significance "
        "test and a minimum effect size), peak memory, artifact size and accuracy against "
        "thresholds. Runs are named by id, 'latest', 'latest~N' or a git commit; with none, "
        "the two most recent runs. Exit 0: nothing regressed; 1: something regressed or a "
        "cell that ran in the base run fails in the new one; 2: bad input; 3: nothing "
        "regressed among the cells judged, but --interleave could not re-measure some "
        "(shown as 'not judged: <reason>'; the comparison is incomplete).",
    )
    compare.add_argument("base", nargs="?", default=None, help="base run (default: latest~1)")
    compare.add_argument("new", nargs="?", default=None, help="new run (default: latest)")
    add_results_option(compare)
    compare.add_argument(
        "--threshold",
        action="append",
        metavar="METRIC=LIMIT",
        help="a limit, repeatable: latency=5%% (also the minimum effect size), memory=10%%, "
        "size=2%%, accuracy=0.5pt (over the suite's [compare] table and the defaults)",
    )
    compare.add_argument(
        "--alpha", type=float, default=None, help="significance level (default 0.05)"
    )
    compare.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="re-measure the base and new artifacts of every common cell alternately "
        "(ABAB...) on its device and compare over the paired rounds: what makes a 5-10%% "
        "slowdown detectable on a noisy machine (default: the suite's [compare] interleave)",
    )
    compare.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds per cell at least (default 10); more are run until the "
        "cell's verdict cannot change (its ratio's interval wholly above the latency limit, "
        "or wholly below it) or the ratio is known to +-half the limit",
    )
    compare.add_argument(
        "--max-rounds",
        type=int,
        default=None,
        help="interleaved rounds per cell at most (default 60; equal to --rounds for a fixed "
        "number)",
    )
    compare.add_argument(
        "--from-interleave",
        type=int,
        metavar="ID",
        default=None,
        help="compare over a stored interleaved re-measurement instead of measuring again",
    )
    compare.add_argument(
        "--suite",
        type=Path,
        help="read the [compare] table from this suite file (default: the new run's suite)",
    )
    compare.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    compare.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    compare.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    compare.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two runs cell by cell; exit 1 when anything regressed, else 3 when a cell
    could not be judged (its interleaved re-measurement failed), else 0 (for CI)."""
    from harness.reports.compare import (
        render_comparison_json,
        render_comparison_markdown,
        render_comparison_rich,
    )
    from harness.results.compare import compare_runs
    from harness.results.selection import select_pair
    from harness.results.thresholds import resolve_thresholds
    from harness.suite.config import CompareConfig, load_compare_config
    from harness.suite.interleave import interleave_compare

    if args.alpha is not None and not 0 < args.alpha < 0.5:
        raise HarnessError(f"--alpha {args.alpha}: expected a level between 0 and 0.5")
    for name in ("rounds", "max_rounds"):
        value = getattr(args, name)
        if value is not None and value < 6:
            flag = "--" + name.replace("_", "-")
            raise HarnessError(f"{flag} {value}: expected at least 6 rounds")
    progress = stderr_console(args.quiet or (args.format == "json" and args.output is None))
    with open_store(args.results) as store:
        if args.from_interleave is not None:
            record = store.get_interleave(args.from_interleave)
            base, new = store.get_run(record.base_run_id), store.get_run(record.new_run_id)
        else:
            base, new = select_pair(store, args.base, args.new)
        suite_file = args.suite or Path(new.suite_path)
        config = (
            load_compare_config(suite_file)
            if args.suite is not None or suite_file.is_file()
            else CompareConfig()
        )
        thresholds = resolve_thresholds(config.limits(), args.threshold or [])
        alpha = args.alpha if args.alpha is not None else config.alpha
        interleaved, interleave_id = None, None
        if args.from_interleave is not None:
            interleave_id = args.from_interleave
            interleaved = {c.key: c for c in store.interleave_cells(interleave_id)}
        elif config.interleave if args.interleave is None else args.interleave:
            outcome = interleave_compare(
                store,
                args.results,
                base,
                new,
                min_rounds=args.rounds or config.rounds,
                max_rounds=args.max_rounds or config.max_rounds,
                thresholds=thresholds,
                alpha=alpha,
                say=lambda line: progress.print(line, markup=False),
            )
            interleaved, interleave_id = outcome.cells, outcome.interleave_id
        comparison = compare_runs(
            store,
            base.id,
            new.id,
            thresholds=thresholds,
            alpha=alpha,
            interleaved=interleaved,
            interleave_id=interleave_id,
        )
    if args.format == "table":
        write_rich(lambda console: render_comparison_rich(comparison, console), args.output)
    else:
        text = (
            render_comparison_json(comparison)
            if args.format == "json"
            else render_comparison_markdown(comparison)
        )
        write_text(text, args.output)
    if comparison.regressed:
        return EXIT_REGRESSED
    return EXIT_INCOMPLETE if comparison.incomplete else EXIT_OK
