"""The ``harness`` command line: parses, calls the stages, prints.

Exit codes (also in the README):
  0  every cell succeeded (run) / the command did what was asked
  1  the run finished but some cells failed (each is recorded with its reason)
     / compare: a cell regressed or newly fails
  2  bad input: a suite, preset or profile that does not validate, an unknown run,
     a damaged results store; run: the run is being run by another live process
  3  compare: nothing regressed among the cells judged, but some could not be judged
     (--interleave could not re-measure them); a regression elsewhere still exits 1
  130 interrupted with Ctrl-C (finished cells are kept; the next run resumes)
  143 stopped by SIGTERM (handled as Ctrl-C is)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.builtin import Kind
from harness.errors import ConfigError, HarnessError

if TYPE_CHECKING:
    from harness.devices.config import DeviceProfile

EXIT_OK = 0
EXIT_CELLS_FAILED = 1
EXIT_REGRESSED = 1  # compare: something regressed
EXIT_INCOMPLETE = 3  # compare: no regression, but some cells could not be judged
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it ended


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C: the walk stops
    every runner, marks the run interrupted and keeps what was measured."""


def _interrupt_exit(exc: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


DEFAULT_RESULTS = Path("results")


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped or logged output: rich would assume 80 columns and fold the table.
        console = Console(highlight=False, soft_wrap=False, width=200)
    return console


# --- run --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from harness.reports.table import build_rows, lineage_lines, render_rich
    from harness.runlog import StderrToLog, log_path
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker, WalkEvent

    console = _console()
    quiet = args.quiet
    suite = load_suite(_suite_path(args.suite))
    walker = SuiteWalker(
        suite,
        args.results,
        fresh=args.fresh,
        new_run=args.new_run,
        retry_failed=args.retry_failed,
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
                p50 = rec.result["latency_ms"]["p50"]
                acc = rec.result.get("accuracy")
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
        return _interrupt_exit(exc)
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
    retried = f" ({summary.retried_text()})" if summary.retried else ""
    console.print(
        f"{summary.ran} cells measured{retried}, {summary.skipped} already done, "
        f"{summary.failed} failed"
    )
    if summary.failed and summary.log_path is not None and summary.log_path.is_file():
        console.print(f"details of what failed: {summary.log_path}", style="dim")
    return EXIT_CELLS_FAILED if failed else EXIT_OK


# --- report -----------------------------------------------------------------------


def _open_store(results: Path):
    from harness.results.store import ResultsStore

    db = Path(results) / "harness.db"
    if not db.is_file():
        raise HarnessError(f"{db}: no results store here (run 'harness run SUITE' first)")
    return ResultsStore(db)


def _resolve_run(store, spec: str | None) -> int:
    """A run named as compare names one: an id, latest, latest~N or a git commit."""
    from harness.results.selection import resolve_run

    if spec is None or spec.strip() == "latest":
        latest = store.latest_run()
        if latest is None:
            raise HarnessError(f"{store.path}: the store has no runs yet")
        return latest.id
    return resolve_run(store, spec).id


REPORT_FORMATS = ("table", "markdown", "csv", "json", "html", "pytest-benchmark")


def _report_text(store, run, fmt: str) -> str:
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
        text = f"## {run.suite_name} (run {run.id}, {run.status})\n\n"
        text += render_markdown(build_rows(cells))
        return text + "\nVariants:\n\n" + "".join(f"- {line}\n" for line in lineage_lines(cells))
    return render_csv(build_rows(cells))


def cmd_report(args: argparse.Namespace) -> int:
    from harness.reports.table import build_rows, lineage_lines, render_rich

    with _open_store(args.results) as store:
        run_id = _resolve_run(store, args.run)
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
            text = _report_text(store, run, args.format)
            if args.output:
                Path(args.output).parent.mkdir(parents=True, exist_ok=True)
                Path(args.output).write_text(text)
            else:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
            return EXIT_OK
        cells = store.cells(run_id)
    title = f"{run.suite_name} (run {run.id}, {run.status})"

    def print_table(console: Console) -> None:
        render_rich(build_rows(cells), title, console)
        for line in lineage_lines(cells):
            console.print(f"  {line}", markup=False)

    if args.output is None:
        print_table(_console())
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w") as fh:
            print_table(Console(file=fh, width=200, highlight=False))
    return EXIT_OK


# --- fit --------------------------------------------------------------------------


def cmd_fit(args: argparse.Namespace) -> int:
    """Hardware fit of a run against per-device budgets (suite file, then --budget)."""
    from harness.reports.fit import (
        board_of,
        boards_from_profiles,
        device_selected,
        fit_report,
        load_suite_budgets,
        parse_budget_options,
        run_devices,
        with_overrides,
    )
    from harness.reports.fit_render import render_json, render_markdown, render_rich
    from harness.suite.config import Budget, default_dirs

    overrides = parse_budget_options(args.budget or [])
    with _open_store(args.results) as store:
        run_id = _resolve_run(store, args.run)
        run = store.get_run(run_id)
        suite_path = _suite_path(args.suite) if args.suite else None
        suite_path = suite_path or (Path(run.suite_path) if run.suite_path else None)
        suite = None
        if args.suite is not None or (suite_path is not None and suite_path.is_file()):
            suite = load_suite_budgets(suite_path)
        else:
            print(
                f"harness: note: the run's suite file {suite_path} is not there; "
                "budgets come from --budget only",
                file=sys.stderr,
            )
        boards = boards_from_profiles(
            suite.device_dirs if suite else default_dirs(None, "devices", [])
        )
        present = run_devices(store.cells(run_id))
        if not present:
            raise HarnessError(f"run {run_id} has no cells to check")
        wanted = args.device or None
        for name in wanted or []:
            if not any(device_selected(d, e, [name], boards) for d, e in present.items()):
                raise HarnessError(
                    f"--device {name}: run {run_id} has no cells on it or on a profile "
                    f"emulating it (its devices: {', '.join(present)})"
                )
        targets = (
            {name: board_of(name, present.get(name, False), boards) for name in wanted}
            if wanted
            else {d: board_of(d, e, boards) for d, e in present.items()}
        )
        budgets = with_overrides(suite.budgets if suite else {}, overrides, targets)
        report = fit_report(store, run_id, budgets, boards=boards, devices=wanted)
    if not report.devices:
        where = (
            f"the suite file {suite.path} has no [budgets.<device>] table for them"
            if suite
            else "no suite file to read budgets from"
        )
        raise HarnessError(
            f"run {run_id}: no budget to check ({', '.join(report.devices_without_budget)}): "
            f"{where}; add one or pass --budget KEY=VALUE (keys: {', '.join(Budget.model_fields)})"
        )
    if args.format == "html":
        from harness.reports.html import write_html_report

        with _open_store(args.results) as store:
            out = args.output or Path(args.results) / "reports" / f"run-{run_id}-fit.html"
            page = write_html_report(store, run_id, out, budgets=budgets, boards=boards)
        print(f"wrote {page.path}: the run's report with these budgets in its fit section")
        return EXIT_OK
    if args.format == "table":
        if args.output is None:
            render_rich(report, _console())
        else:
            with open(args.output, "w") as fh:
                render_rich(report, Console(file=fh, width=200, highlight=False))
        return EXIT_OK
    text = render_json(report) if args.format == "json" else render_markdown(report)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


# --- compare and history ----------------------------------------------------------


def _stderr_console(quiet: bool) -> Console:
    return Console(stderr=True, highlight=False, quiet=quiet)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two runs cell by cell; exit 1 when anything regressed, else 3 when a cell
    could not be judged (its interleaved re-measurement failed), else 0 (for CI)."""
    from harness.reports.compare import (
        render_comparison_json,
        render_comparison_markdown,
        render_comparison_rich,
    )
    from harness.results.compare import compare_runs, match_cells, paired_rounds
    from harness.results.selection import select_pair
    from harness.results.thresholds import resolve_thresholds
    from harness.runner.interleave import (
        InterleaveEvent,
        RoundsPlan,
        device_dirs_of,
        interleave_runs,
    )
    from harness.suite.config import CompareConfig, load_compare_config

    if args.alpha is not None and not 0 < args.alpha < 0.5:
        raise HarnessError(f"--alpha {args.alpha}: expected a level between 0 and 0.5")
    for name in ("rounds", "max_rounds"):
        value = getattr(args, name)
        if value is not None and value < 6:
            flag = "--" + name.replace("_", "-")
            raise HarnessError(f"{flag} {value}: expected at least 6 rounds")
    progress = _stderr_console(args.quiet or (args.format == "json" and args.output is None))
    with _open_store(args.results) as store:
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
            pairs = match_cells(store.cells(base.id), store.cells(new.id)).both_ok
            plan = RoundsPlan.for_limit(
                args.rounds or config.rounds,
                args.max_rounds or config.max_rounds,
                thresholds["latency_p50"].limit,
                alpha,
            )
            progress.print(
                f"interleaving runs {base.id} and {new.id}: {len(pairs)} cells, "
                f"{plan.min_rounds}-{plan.max_rounds} rounds each (base and new alternately, "
                "until the verdict is settled or the ratio is known to "
                f"+-{(plan.target_half_width or 0) * 100:g}%)"
            )

            def on_event(event: InterleaveEvent) -> None:
                if event.kind == "cell_done" and event.record is not None:
                    rec = event.record
                    rounds = paired_rounds(rec)
                    if rec.status == "ok":
                        stop = plan.stop_reason(rounds)
                        status = f"{len(rounds)} rounds ({stop.value if stop else 'stopped'})"
                    else:
                        status = f"not judged: {rec.reason}"
                    progress.print(
                        f"[{event.index}/{event.total}] {' / '.join(event.key)}: {status}",
                        markup=False,
                    )

            outcome = interleave_runs(
                store,
                args.results,
                base,
                new,
                pairs,
                plan=plan,
                device_dirs=device_dirs_of(new),
                on_event=on_event,
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
        if args.output is None:
            render_comparison_rich(comparison, _console())
        else:
            with open(args.output, "w") as fh:
                render_comparison_rich(comparison, Console(file=fh, width=200, highlight=False))
    else:
        text = (
            render_comparison_json(comparison)
            if args.format == "json"
            else render_comparison_markdown(comparison)
        )
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
    if comparison.regressed:
        return EXIT_REGRESSED
    return EXIT_INCOMPLETE if comparison.incomplete else EXIT_OK


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
    with _open_store(args.results) as store:
        series = history(
            store, args.filter, suite=args.suite, min_effect=min_effect, alpha=args.alpha
        )
    if args.format == "table":
        if args.output is None:
            render_history_rich(series, _console())
        else:
            with open(args.output, "w") as fh:
                render_history_rich(series, Console(file=fh, width=200, highlight=False))
        return EXIT_OK
    text = render_history_json(series) if args.format == "json" else render_history_markdown(series)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


# --- listings ---------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.models.zoo import list_models, suite_snippet

    console = _console()
    models = list_models()
    table = Table(title="model zoo")
    for col in ("name", "labels", "description", "params (defaults)"):
        table.add_column(col, overflow="fold")
    for m in models:
        params = ", ".join(f"{k}={v}" for k, v in m.get("params", {}).items())
        table.add_row(
            m["name"], "yes" if m.get("has_labels") else "no", m.get("description", ""), params
        )
    console.print(table)
    # Ready to paste into a suite: every parameter at its default, to edit or delete.
    console.print("\nTo use one, paste its table into a suite (parameters at their defaults):")
    for m in models:
        console.print("\n" + suite_snippet(m), markup=False, highlight=False, soft_wrap=True)
    console.print(
        "\nUser models: 'factory = \"package.module:function\"' (returns (module, example_input"
        "[, data]); the example a tensor, tuple or dict of tensors, integer ids allowed) "
        "or 'file = \"model.onnx\"' / '.pte' (benchmark only) in a suite's [[models]].",
        markup=False,
    )
    return EXIT_OK


def _suite_path(path: Path) -> Path:
    """``path`` itself, or the shipped suite of that name (``harness run quickstart``)
    when there is no such file: a file of the user's always wins."""
    from harness.builtin import builtin_suite

    if path.exists():
        return path
    return builtin_suite(str(path)) or path


def _search_dirs(kind: Kind, extra: list[str] | None) -> list[Path]:
    from harness.suite.config import default_dirs

    return [*(Path(d) for d in (extra or [])), *default_dirs(None, kind, [])]


def cmd_recipes_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.recipes import RECIPES
    from harness.recipes.config import list_presets

    console = _console()
    table = Table(title="recipe presets")
    for col in ("preset", "steps", "description", "file"):
        table.add_column(col, overflow="fold")
    for preset in list_presets(_search_dirs("recipes", args.dir)):
        steps = " -> ".join(s.recipe for s in preset.steps)
        table.add_row(preset.name, steps, preset.description, str(preset.path))
    console.print(table)
    console.print("recipes usable inline in a suite: " + ", ".join(sorted(RECIPES)))
    return EXIT_OK


def cmd_devices_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.devices.config import list_profiles

    table = Table(title="device profiles")
    for col in ("name", "kind", "arch", "cores", "description"):
        table.add_column(col, overflow="fold")
    for p in list_profiles(_search_dirs("devices", args.dir)):
        target = p.target()
        table.add_row(p.name, p.kind, target.arch, str(target.cores), p.description)
    _console().print(table)
    return EXIT_OK


def _device_profile(name: str, dirs: list[str] | None) -> DeviceProfile:
    from harness.builtin import not_found
    from harness.devices.config import find_profile, load_profile

    search = _search_dirs("devices", dirs)
    path = find_profile(name, search)
    if path is None:
        raise HarnessError("expected " + not_found("devices", name, search))
    return load_profile(path)


_MARK = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}


def cmd_devices_check(args: argparse.Namespace) -> int:
    from harness.devices.check import check_device

    runtimes = None
    suite_dirs: list[str] = []
    if args.suite is not None:
        from harness.configfile import load_toml
        from harness.suite.config import default_dirs, load_suite

        # The profile is looked up where `run` would look for it: beside the suite too.
        suite_path = _suite_path(args.suite)
        runtimes = list(load_suite(suite_path).runtimes)  # validates device_dirs too
        extra = load_toml(suite_path).get("device_dirs", [])
        suite_dirs = [str(d) for d in default_dirs(suite_path.parent, "devices", extra)]
    profile = _device_profile(args.name, [*(args.dir or []), *suite_dirs])
    report = check_device(profile, runtimes)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console = _console()
        console.print(f"device [bold]{profile.name}[/] ({profile.kind})")
        for finding in report.findings:
            console.print(f"  {_MARK[finding.level]} {finding.topic}: {finding.detail}")
            if finding.advice and finding.level != "ok":
                console.print(f"      → {finding.advice}")
        verdict = "can run" if report.can_run else "[red]cannot run[/]"
        console.print(f"{profile.name} {verdict} " + ("this suite" if runtimes else "benchmarks"))
    return EXIT_OK if report.can_run else EXIT_CELLS_FAILED


def cmd_devices_setup(args: argparse.Namespace) -> int:
    from harness.devices.qemu_root import setup_root

    profile = _device_profile(args.name, args.dir)
    console = _console()
    report = setup_root(
        profile,
        executorch=args.executorch,
        rebuild=args.rebuild,
        on_progress=lambda line: console.print(line, highlight=False, markup=False),
    )
    runtimes = ", ".join(f"{r} {v}" for r, v in report.runtimes.items())
    done = "built" if report.ran else "already set up"
    console.print(
        f"{profile.name}: {done} in {report.seconds:.0f} s; root {report.layout.root} "
        f"({report.size_mb:.0f} MB) with {runtimes}",
        highlight=False,
        markup=False,
    )
    return EXIT_OK


def cmd_devices_trust(args: argparse.Namespace) -> int:
    from harness.devices.ssh_connect import fetch_host_key, record_host_key, resolve_target

    profile = _device_profile(args.name, args.dir)
    if profile.kind != "ssh":
        raise HarnessError(
            f"device {profile.name} is {profile.kind!r}: only ssh devices have a host key"
        )
    import paramiko

    target = resolve_target(profile)
    try:
        presented = fetch_host_key(target)
    except OSError as exc:
        raise HarnessError(
            f"cannot reach {target.host}:{target.port} to read its host key: {exc}"
        ) from None
    except (paramiko.SSHException, EOFError) as exc:
        # Something answered but no key exchange happened: not an sshd on that port, or
        # one that closed on us (MaxStartups, a firewall, a banner it never sent).
        raise HarnessError(
            f"{target.host}:{target.port} did not complete an SSH key exchange, so there "
            f"is no host key to show ({type(exc).__name__}: {exc}); check connection.host "
            f"and connection.port in the profile of {profile.name} and that sshd runs there"
        ) from None
    console = _console()
    console.print(
        f"{target.host_key_name} ({profile.name}) presents this {presented.key.get_name()} "
        f"host key:\n  [bold]{presented.fingerprint}[/]"
    )
    if presented.status == "trusted":
        console.print(f"already trusted in {target.known_hosts}; nothing to do")
        return EXIT_OK
    if presented.status == "changed":
        assert presented.recorded is not None
        from harness.devices.ssh_connect import fingerprint

        console.print(
            f"[red bold]THE HOST KEY HAS CHANGED[/]: {target.known_hosts} has "
            f"{fingerprint(presented.recorded)}. Someone may be intercepting the connection, "
            "or the board was reinstalled."
        )
        if not args.replace:
            console.print("refusing; if you know the board was reinstalled, add --replace")
            return EXIT_CELLS_FAILED
    if args.fingerprint is not None and args.fingerprint != presented.fingerprint:
        console.print(f"[red]refusing[/]: you expected {args.fingerprint}")
        return EXIT_CELLS_FAILED
    if not (args.yes or args.fingerprint):
        if not sys.stdin.isatty():
            raise HarnessError(
                "not a terminal: compare the fingerprint with the board's "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it), then pass "
                "--fingerprint SHA256:... or --yes"
            )
        answer = input(
            "Compare it with the board's own (ssh-keygen -lf "
            "/etc/ssh/ssh_host_ed25519_key.pub). Trust it? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            console.print("not trusted")
            return EXIT_CELLS_FAILED
    record_host_key(target, presented.key, replace=presented.status == "changed")
    console.print(f"recorded in {target.known_hosts}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.suite.config import check_model_sources, load_suite
    from harness.suite.walk import expand

    suite = load_suite(_suite_path(args.suite))
    check_model_sources(suite)  # imports and calls factories, reads model files
    print(f"{suite.path}: valid, {len(expand(suite))} cells")
    return EXIT_OK


# --- parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Compress, export, deploy and benchmark PyTorch models on edge devices.",
        epilog="Exit codes: 0 ok, 1 some cells failed (compare: something regressed), 2 bad "
        "input, 3 compare incomplete (cells not judged), 130 interrupted (Ctrl-C), 143 "
        "stopped by SIGTERM.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def results_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--results",
            type=Path,
            default=DEFAULT_RESULTS,
            help="results directory holding harness.db, artifacts/ and cache/ (default: results)",
        )

    run = sub.add_parser("run", help="walk a suite's matrix and store the results")
    run.add_argument(
        "suite", type=Path, help="suite TOML file, or a shipped suite by name (quickstart)"
    )
    results_option(run)
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
    run.set_defaults(func=cmd_run)

    report = sub.add_parser(
        "report",
        help="a run's results: table, markdown, CSV, JSON, HTML with plots, pytest-benchmark",
    )
    report.add_argument("run", nargs="?", default=None, help="run id or 'latest' (default)")
    results_option(report)
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

    fit = sub.add_parser(
        "fit",
        help="which variants fit each device's budgets, and which one to ship",
        description="Check a run's variants against per-device budgets: the suite's "
        "[budgets.<device>] tables, with --budget limits laid over them. A budget for a board "
        "(pi4) also holds for its emulated profile (pi4-emulated). Exit 0 when the report "
        "was made, whether or not variants fit; 2 when there is no budget or bad input.",
    )
    fit.add_argument("run", nargs="?", default=None, help="run id or 'latest' (default)")
    results_option(fit)
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
    results_option(compare)
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
    results_option(hist)
    hist.add_argument("--suite", default=None, help="only runs of this suite (by name)")
    hist.add_argument("--min-effect", default="5%", help="smallest step to report (default 5%%)")
    hist.add_argument(
        "--alpha", type=float, default=0.05, help="significance level of a step (default 0.05)"
    )
    hist.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    hist.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    hist.set_defaults(func=cmd_history)

    validate = sub.add_parser(
        "validate",
        help="check a suite file without running it: its keys, presets and devices, and "
        "its model sources (imports and calls each factory, reads each .onnx/.pte)",
    )
    validate.add_argument("suite", type=Path)
    validate.set_defaults(func=cmd_validate)

    for name, func, helptext in (
        ("models", cmd_models_list, "the model zoo"),
        ("recipes", cmd_recipes_list, "recipe presets (recipes/*.toml)"),
        ("devices", cmd_devices_list, "device profiles (devices/*.toml)"),
    ):
        group = sub.add_parser(name, help=helptext)
        group_sub = group.add_subparsers(dest="action", required=True)
        lister = group_sub.add_parser("list", help=f"list {helptext}")
        if name != "models":
            lister.add_argument("--dir", action="append", help="extra directory to search")
        lister.set_defaults(func=func)
        if name == "devices":
            check = group_sub.add_parser(
                "check",
                help="can this device run benchmarks: reachability, login, Python, runtimes, "
                "disk, memory, governor, temperature (exit 1 when it cannot)",
            )
            check.add_argument("name", help="profile name, e.g. pi4")
            check.add_argument("--suite", type=Path, help="also require this suite's runtimes")
            check.add_argument("--format", choices=("text", "json"), default="text")
            check.add_argument("--dir", action="append", help="extra directory to search")
            check.set_defaults(func=cmd_devices_check)
            trust = group_sub.add_parser(
                "trust",
                help="show an SSH board's host key and record it in known_hosts once you "
                "confirm it (never automatic)",
            )
            trust.add_argument("name", help="profile name, e.g. pi4")
            trust.add_argument("--yes", action="store_true", help="trust without asking")
            trust.add_argument(
                "--fingerprint", help="trust only if the key has this SHA256:... fingerprint"
            )
            trust.add_argument(
                "--replace", action="store_true", help="replace a recorded key that changed"
            )
            trust.add_argument("--dir", action="append", help="extra directory to search")
            trust.set_defaults(func=cmd_devices_trust)
            setup = group_sub.add_parser(
                "setup",
                help="build an aarch64-qemu device's arm64 Debian root once (debootstrap, "
                "the runtimes' aarch64 wheels; cached and resumable; needs root)",
            )
            setup.add_argument("name", help="profile name, e.g. aarch64-qemu")
            setup.add_argument(
                "--executorch",
                action="store_true",
                help="also install ExecuTorch: executorch and PyPI's aarch64 torch, the CUDA "
                "build: about 2.7 GB of wheels and a 5.3 GB root (onnxruntime alone: 40 MB of "
                "wheels, a 0.4 GB root)",
            )
            setup.add_argument(
                "--rebuild", action="store_true", help="redo every step (downloads are kept)"
            )
            setup.add_argument("--dir", action="append", help="extra directory to search")
            setup.set_defaults(func=cmd_devices_setup)
    return parser


def _quiet_third_party() -> None:
    """torch, torchao and executorch warn about their own deprecations and missing
    optional extras (torchvision, triton) on every export; none of it is the user's to act
    on, and it buries the progress lines. HARNESS_SHOW_WARNINGS=1 keeps them."""
    if os.environ.get("HARNESS_SHOW_WARNINGS") == "1":
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*experimental.*")
    for name in ("torch", "torchao", "executorch", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Signals:
    """SIGINT and SIGTERM as exceptions in the main thread, the first one only: a
    second signal while the harness is stopping its runners (which takes bounded time)
    is noted and does not cut that short, so no runner is left measuring."""

    def __init__(self) -> None:
        self.stopping = False
        self._saved: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.stopping:
            from harness.runlog import StderrToLog

            # Past a run's capture of stderr: this one is for the user.
            StderrToLog.write_terminal("harness: still stopping the runners, a moment\n")
            return
        self.stopping = True
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # e.g. a background job of a shell script: leave it ignored
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_third_party()
    with _Signals():
        try:
            return int(args.func(args))
        except HarnessError as exc:
            print(f"harness: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            print("harness: interrupted", file=sys.stderr)
            return _interrupt_exit(exc)


if __name__ == "__main__":
    sys.exit(main())
