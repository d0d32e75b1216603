"""``harness history FILTER``: a cell's p50 across runs, with the steps where it changed."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.arguments import add_results_option, open_store
from harness.commands.exits import EXIT_OK
from harness.commands.output import write_rich, write_text
from harness.errors import ConfigError, HarnessError


def register(sub: argparse._SubParsersAction) -> None:
    hist = sub.add_parser(
        "history",
        help="a cell's p50 across runs, with the steps where it changed",
        description="The p50 (with its 95%% CI) of every matching cell across the store's "
        "runs, oldest first, and the runs where its level stepped up or down.",
    )
    hist.add_argument(
        "filter",
        help="model=NAME,variant=NAME,runtime=NAME,device=NAME (any subset, values may be "
        "globs) or a glob on model/variant/runtime/device",
    )
    add_results_option(hist)
    hist.add_argument("--suite", default=None, help="only runs of this suite (by name)")
    hist.add_argument("--min-effect", default="5%", help="smallest step to report (default 5%%)")
    hist.add_argument(
        "--alpha", type=float, default=0.05, help="significance level of a step (default 0.05)"
    )
    hist.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    hist.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    hist.set_defaults(func=cmd_history)


def cmd_history(args: argparse.Namespace) -> int:
    """A cell's p50 across runs, with the steps where its level changed."""
    from harness.reports.compare import (
        render_history_json,
        render_history_markdown,
        render_history_rich,
    )
    from harness.results.history import history
    from harness.results.thresholds import COMMAND_LINE, parse_limit

    try:
        min_effect = parse_limit("latency", args.min_effect).limit
    except ValueError as exc:
        raise ConfigError(COMMAND_LINE, "--min-effect", str(exc), args.min_effect) from None
    if not 0 < args.alpha < 0.5:
        raise HarnessError(f"--alpha {args.alpha}: expected a level between 0 and 0.5")
    with open_store(args.results) as store:
        series = history(
            store, args.filter, suite=args.suite, min_effect=min_effect, alpha=args.alpha
        )
    if args.format == "table":
        write_rich(lambda console: render_history_rich(series, console), args.output)
        return EXIT_OK
    text = render_history_json(series) if args.format == "json" else render_history_markdown(series)
    write_text(text, args.output)
    return EXIT_OK
