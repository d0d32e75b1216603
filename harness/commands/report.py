"""``harness report [RUN]``: a run's results as a table, markdown, CSV, JSON, HTML or
pytest-benchmark JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from harness.commands.arguments import add_results_option, open_store, resolve_run
from harness.commands.exits import EXIT_OK
from harness.commands.output import write_rich, write_text

if TYPE_CHECKING:
    from harness.results.store import ResultsStore, RunRecord

REPORT_FORMATS = ("table", "markdown", "csv", "json", "html", "pytest-benchmark")


def _report_text(store: ResultsStore, run: RunRecord, fmt: str) -> str:
    """A run's report in a text format (everything but the terminal table and HTML)."""
    from harness.reports.cells import cells_to_dicts
    from harness.reports.table import build_rows, lineage_lines, render_csv, render_markdown

    cells = store.cells(run.id)
    if fmt == "json":
        return json.dumps(cells_to_dicts(cells), indent=2)
    if fmt == "pytest-benchmark":
        from harness.reports.pytest_benchmark import to_pytest_benchmark

        samples = {c.id: store.samples(c.id) for c in cells if c.id is not None}
        return json.dumps(to_pytest_benchmark(run, cells, samples), indent=2)
    if fmt == "markdown":
        from harness.reports.ops import op_comparison, render_ops_markdown

        text = f"## {run.suite_name} (run {run.id}, {run.status})\n\n"
        text += render_markdown(build_rows(cells))
        text += "\nVariants:\n\n" + "".join(f"- {line}\n" for line in lineage_lines(cells))
        # Only where two runtimes profiled the same variant: other reports stay as they were.
        ops = render_ops_markdown(op_comparison(cells))
        return text + ("\n" + ops if ops else "")
    return render_csv(build_rows(cells))


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="a run's results: table, markdown, CSV, JSON, HTML with plots, pytest-benchmark",
    )
    report.add_argument("run", nargs="?", default=None, help="run id or 'latest' (default)")
    add_results_option(report)
    report.add_argument(
        "--format",
        choices=REPORT_FORMATS,
        default="table",
        help="html: one self-contained file, default RESULTS/reports/run-ID.html, with the "
        "plots also as PNGs in RESULTS/reports/run-ID/; pytest-benchmark: the JSON of "
        "pytest --benchmark-json",
    )
    report.add_argument(
        "-o", "--output", type=Path, help="write to this file instead of stdout (or the default)"
    )
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.reports.ops import op_comparison, render_ops_rich
    from harness.reports.table import build_rows, lineage_lines, render_rich

    with open_store(args.results) as store:
        run_id = resolve_run(store, args.run)
        run = store.get_run(run_id)
        if args.format == "html":
            from harness.reports.html import write_html_report

            out = args.output or Path(args.results) / "reports" / f"run-{run_id}.html"
            report = write_html_report(store, run_id, out)
            print(
                f"wrote {report.path} ({len(report.images)} plots, also as PNGs in "
                f"{report.image_dir})"
            )
            return EXIT_OK
        if args.format != "table":
            write_text(_report_text(store, run, args.format), args.output)
            return EXIT_OK
        cells = store.cells(run_id)
    title = f"{run.suite_name} (run {run.id}, {run.status})"

    def print_table(console: Console) -> None:
        render_rich(build_rows(cells), title, console)
        for line in lineage_lines(cells):
            console.print(f"  {line}", markup=False)
        render_ops_rich(op_comparison(cells), console)

    write_rich(print_table, args.output)
    return EXIT_OK
