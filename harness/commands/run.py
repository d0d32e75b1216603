"""``harness run SUITE``: walk a suite's matrix, showing progress, then its table."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.commands.arguments import add_results_option, locate_suite
from harness.commands.exits import EXIT_CELLS_FAILED, EXIT_OK, interrupt_exit
from harness.commands.output import terminal_console
from harness.errors import HarnessError


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="walk a suite's matrix and store the results")
    run.add_argument(
        "suite", type=Path, help="suite TOML file, or a shipped suite by name (quickstart)"
    )
    add_results_option(run)
    run.add_argument(
        "--new-run",
        action="store_true",
        help="start a new run (re-measure every cell, reuse built artifacts)",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start a new run and rebuild every model, variant and artifact",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="measure again every failed cell of the run it continues (by default only "
        "those that failed for a reason that may pass: device_unavailable, runner_crashed, "
        "a time-out on a board)",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the final table (no progress, cell lines or summary; the exit "
        "code says whether cells failed)",
    )
    run.add_argument(
        "--executor",
        choices=("inprocess", "ray"),
        default="inprocess",
        help="what runs each cell's trials: this process (default), or, for a board, the "
        "Ray node it hangs off (a device lab: see `harness lab join`)",
    )
    run.add_argument(
        "--address",
        default=None,
        help="with --executor ray: the Ray cluster's address, HOST:PORT (default: the "
        "cluster this host belongs to, RAY_ADDRESS, or `ray start`'s)",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.reports.ops import op_comparison, render_ops_rich
    from harness.reports.table import build_rows, lineage_lines, render_rich
    from harness.runlog import StderrToLog, log_path
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker, WalkEvent

    console = terminal_console()
    quiet = args.quiet
    suite = load_suite(locate_suite(args.suite))
    if args.address is not None and args.executor != "ray":
        raise HarnessError("--address names a Ray cluster: it goes with --executor ray")
    executor = None
    if args.executor == "ray":
        from harness.suite.ray_executor import RayExecutor

        executor = RayExecutor(args.address)
    walker = SuiteWalker(
        suite,
        args.results,
        fresh=args.fresh,
        new_run=args.new_run,
        retry_failed=args.retry_failed,
        executor=executor,
    )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
        # Stderr is not the display's to show: it goes to the run log (StderrToLog).
        redirect_stderr=False,
    )
    task = progress.add_task("starting", total=None)
    stderr_capture = StderrToLog()

    def on_event(event: WalkEvent) -> None:
        if event.kind == "begin":
            if event.run_id is not None:
                stderr_capture.to_log(log_path(args.results, event.run_id))
            progress.update(task, total=event.total)
            if not quiet:
                console.print(
                    f"suite [bold]{suite.name}[/]: {event.total} cells, run {event.run_id}, "
                    f"results in {Path(args.results) / 'harness.db'}"
                )
        elif event.kind == "cell_skipped":
            progress.advance(task)
        elif event.kind == "cell_start" and event.cell is not None:
            left = event.total - event.index
            progress.update(task, description=event.cell.label)
            if not quiet:
                console.print(
                    f"[{event.index}/{event.total}] {event.cell.label} ({left} left after this)"
                )
        elif event.kind == "cell_done" and event.record is not None:
            progress.advance(task)
            rec = event.record
            if rec.status == "ok":
                p50 = rec.result.latency.p50_ms
                acc = rec.result.accuracy
                extra = f", accuracy {acc * 100:.1f}%" if acc is not None else ""
                if not quiet:
                    console.print(f"    ok: p50 {p50:.3f} ms{extra}")
            elif not quiet:  # -q: the table shows the failure and its reason
                console.print(f"    [red]failed[/]: {rec.reason}", highlight=False)
        elif event.kind == "log" and not quiet:
            console.print(f"    {event.message}", style="dim", markup=False)

    walker.on_event = on_event
    walker.pipeline.log = lambda msg: on_event(WalkEvent("log", message=msg))
    try:
        with stderr_capture, progress:
            summary = walker.walk()
    except KeyboardInterrupt as exc:
        console.print(
            "[yellow]interrupted[/]: every runner was stopped and finished cells are stored; "
            "run the same command to resume"
        )
        walker.close()
        return interrupt_exit(exc)
    except BaseException:
        walker.close()
        raise
    cells = walker.store.cells(summary.run_id)
    walker.close()
    baselines = {n for n, v in suite.variants.items() if v.is_baseline}
    render_rich(build_rows(cells, baselines), f"{suite.name} (run {summary.run_id})", console)
    for line in lineage_lines(cells):
        console.print(f"  {line}", style="dim", markup=False)
    failed = any(c.status != "ok" for c in cells)
    if quiet:  # only the table (and its variant lines); the exit code says the rest
        return EXIT_CELLS_FAILED if failed else EXIT_OK
    render_ops_rich(op_comparison(cells), console)
    retried = f" ({summary.retried_text()})" if summary.retried else ""
    console.print(
        f"{summary.ran} cells measured{retried}, {summary.skipped} already done, "
        f"{summary.failed} failed"
    )
    if summary.failed and summary.log_path is not None and summary.log_path.is_file():
        console.print(f"details of what failed: {summary.log_path}", style="dim")
    return EXIT_CELLS_FAILED if failed else EXIT_OK
