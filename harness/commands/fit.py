"""``harness fit [RUN]``: which variants of a run fit each device's budgets, and which
one to ship."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import add_results_option, locate_suite, open_store, resolve_run
from harness.commands.exits import EXIT_OK
from harness.commands.output import write_rich, write_text
from harness.errors import HarnessError


def register(sub: argparse._SubParsersAction) -> None:
    fit = sub.add_parser(
        "fit",
        help="which variants fit each device's budgets, and which one to ship",
        description="Check a run's variants against per-device budgets: the suite's "
        "[budgets.<device>] tables, with --budget limits laid over them. A budget for a board "
        "(pi4) also holds for its emulated profile (pi4-emulated). Exit 0 when the report "
        "was made, whether or not variants fit; 2 when there is no budget or bad input.",
    )
    fit.add_argument("run", nargs="?", default=None, help="run id or 'latest' (default)")
    add_results_option(fit)
    fit.add_argument(
        "--suite",
        type=Path,
        help="read budgets from this suite file (default: the run's own suite file)",
    )
    fit.add_argument(
        "--budget",
        action="append",
        metavar="KEY=VALUE",
        help="a limit, repeatable: p90_ms, peak_memory_mb, energy_mj, min_accuracy (0-1), "
        "min_snr_db (output SNR against fp32, for models without labels), max_size_bytes; "
        "applies to the --device devices, else to every device of the run",
    )
    fit.add_argument(
        "--device",
        action="append",
        metavar="NAME",
        help="only this device (a board name also selects its emulated profiles); repeatable",
    )
    fit.add_argument("--format", choices=("table", "markdown", "json", "html"), default="table")
    fit.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    fit.set_defaults(func=cmd_fit)


def cmd_fit(args: argparse.Namespace) -> int:
    """Hardware fit of a run against per-device budgets (suite file, then --budget)."""
    from harness.reports.fit import fit_report, parse_budget_options, plan_fit
    from harness.reports.fit.render import render_json, render_markdown, render_rich
    from harness.suite.config import Budget

    overrides = parse_budget_options(args.budget or [])
    with open_store(args.results) as store:
        run_id = resolve_run(store, args.run)
        suite_path = locate_suite(args.suite) if args.suite else None
        plan = plan_fit(store, store.get_run(run_id), suite_path, overrides, args.device)
        for note in plan.notes:
            print(f"harness: note: {note}; budgets come from --budget only", file=sys.stderr)
        if not plan.present:
            raise HarnessError(f"run {run_id} has no cells to check")
        if plan.unknown_devices:
            raise HarnessError(
                f"--device {plan.unknown_devices[0]}: run {run_id} has no cells on it or on a "
                f"profile emulating it (its devices: {', '.join(plan.present)})"
            )
        report = fit_report(store, run_id, plan.budgets, boards=plan.boards, devices=plan.devices)
    if not report.devices:
        where = (
            f"the suite file {plan.suite.path} has no [budgets.<device>] table for them"
            if plan.suite
            else "no suite file to read budgets from"
        )
        raise HarnessError(
            f"run {run_id}: no budget to check ({', '.join(report.devices_without_budget)}): "
            f"{where}; add one or pass --budget KEY=VALUE (keys: {', '.join(Budget.model_fields)})"
        )
    if args.format == "html":
        from harness.reports.html import write_html_report

        with open_store(args.results) as store:
            out = args.output or Path(args.results) / "reports" / f"run-{run_id}-fit.html"
            page = write_html_report(store, run_id, out, budgets=plan.budgets, boards=plan.boards)
        print(f"wrote {page.path}: the run's report with these budgets in its fit section")
        return EXIT_OK
    if args.format == "table":
        write_rich(lambda console: render_rich(report, console), args.output)
        return EXIT_OK
    text = render_json(report) if args.format == "json" else render_markdown(report)
    write_text(text, args.output)
    return EXIT_OK
