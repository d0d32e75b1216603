"""The ``harness`` command line: parses, calls the stages, prints.

Exit codes (also in the README):
  0  every cell succeeded (run) / the command did what was asked
  1  the run finished but some cells failed (each is recorded with its reason)
  2  bad input: a suite, preset or profile that does not validate, an unknown run
  130 interrupted with Ctrl-C (finished cells are kept; the next run resumes)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.devices.config import DeviceProfile

EXIT_OK = 0
EXIT_CELLS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

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
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker, WalkEvent

    console = _console()
    suite = load_suite(args.suite)
    walker = SuiteWalker(suite, args.results, fresh=args.fresh, new_run=args.new_run)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=args.quiet or not console.is_terminal,
    )
    task = progress.add_task("starting", total=None)

    def on_event(event: WalkEvent) -> None:
        if event.kind == "begin":
            progress.update(task, total=event.total)
            console.print(
                f"suite [bold]{suite.name}[/]: {event.total} cells, run {event.run_id}, "
                f"results in {Path(args.results) / 'harness.db'}"
            )
        elif event.kind == "cell_skipped":
            progress.advance(task)
        elif event.kind == "cell_start" and event.cell is not None:
            left = event.total - event.index
            progress.update(task, description=event.cell.label)
            if not args.quiet:
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
                if not args.quiet:
                    console.print(f"    ok: p50 {p50:.3f} ms{extra}")
            else:
                console.print(f"    [red]failed[/]: {rec.reason}")
        elif event.kind == "log" and not args.quiet:
            console.print(f"    {event.message}", style="dim")

    walker.on_event = on_event
    walker.pipeline.log = lambda msg: on_event(WalkEvent("log", message=msg))
    try:
        with progress:
            summary = walker.walk()
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: finished cells are stored; run the same command to resume"
        )
        walker.close()
        return EXIT_INTERRUPTED
    cells = walker.store.cells(summary.run_id)
    walker.close()
    baselines = {n for n, v in suite.variants.items() if v.is_baseline}
    render_rich(build_rows(cells, baselines), f"{suite.name} (run {summary.run_id})", console)
    for line in lineage_lines(cells):
        console.print(f"  {line}", style="dim", markup=False)
    console.print(
        f"{summary.ran} cells measured, {summary.skipped} already done, {summary.failed} failed"
    )
    return EXIT_CELLS_FAILED if any(c.status != "ok" for c in cells) else EXIT_OK


# --- report -----------------------------------------------------------------------


def _open_store(results: Path):
    from harness.results.store import ResultsStore

    db = Path(results) / "harness.db"
    if not db.is_file():
        raise HarnessError(f"{db}: no results store here (run 'harness run SUITE' first)")
    return ResultsStore(db)


def _resolve_run(store, spec: str | None) -> int:
    if spec in (None, "latest"):
        latest = store.latest_run()
        if latest is None:
            raise HarnessError(f"{store.path}: the store has no runs yet")
        return latest.id
    try:
        run_id = int(spec)
    except ValueError:
        raise HarnessError(f"run {spec!r}: expected a run id (an integer) or 'latest'") from None
    store.get_run(run_id)
    return run_id


def cmd_report(args: argparse.Namespace) -> int:
    from harness.reports.cells import cell_to_dict
    from harness.reports.table import (
        build_rows,
        lineage_lines,
        render_csv,
        render_markdown,
        render_rich,
    )

    with _open_store(args.results) as store:
        run_id = _resolve_run(store, args.run)
        run = store.get_run(run_id)
        cells = store.cells(run_id)
    if args.format == "json":
        text = json.dumps([cell_to_dict(c) for c in cells], indent=2)
    elif args.format == "markdown":
        text = render_markdown(build_rows(cells))
        text += "\nVariants:\n\n" + "".join(f"- {line}\n" for line in lineage_lines(cells))
    elif args.format == "csv":
        text = render_csv(build_rows(cells))
    else:
        console = (
            _console() if args.output is None else Console(file=open(args.output, "w"), width=200)
        )
        render_rich(build_rows(cells), f"{run.suite_name} (run {run.id}, {run.status})", console)
        for line in lineage_lines(cells):
            console.print(f"  {line}", markup=False)
        return EXIT_OK
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


# --- listings ---------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.models.zoo import list_models

    table = Table(title="model zoo")
    for col in ("name", "labels", "description", "params (defaults)"):
        table.add_column(col, overflow="fold")
    for m in list_models():
        params = ", ".join(f"{k}={v}" for k, v in m.get("params", {}).items())
        table.add_row(
            m["name"], "yes" if m.get("has_labels") else "no", m.get("description", ""), params
        )
    _console().print(table)
    _console().print(
        "User models: 'factory = \"package.module:function\"' (returns (module, example_input)) "
        "or 'file = \"model.onnx\"' / '.pte' (benchmark only) in a suite's [[models]]."
    )
    return EXIT_OK


def _search_dirs(kind: str, extra: list[str] | None) -> list[Path]:
    dirs = [Path(d) for d in (extra or [])]
    return [*dirs, Path.cwd() / kind]


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
    from harness.devices.config import find_profile, list_profiles, load_profile
    from harness.plugins import suggest

    search = _search_dirs("devices", dirs)
    path = find_profile(name, search)
    if path is None:
        known = [p.name for p in list_profiles(search)]
        where = ", ".join(str(d) for d in search)
        raise HarnessError(f"no device profile {name!r} in {where}: {suggest(name, known)}")
    return load_profile(path)


_MARK = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}


def cmd_devices_check(args: argparse.Namespace) -> int:
    from harness.devices.check import check_device

    profile = _device_profile(args.name, args.dir)
    runtimes = None
    if args.suite is not None:
        from harness.suite.config import load_suite

        runtimes = list(load_suite(args.suite).runtimes)
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


def cmd_devices_trust(args: argparse.Namespace) -> int:
    from harness.devices.ssh_connect import fetch_host_key, record_host_key, resolve_target

    profile = _device_profile(args.name, args.dir)
    if profile.kind != "ssh":
        raise HarnessError(
            f"device {profile.name} is {profile.kind!r}: only ssh devices have a host key"
        )
    target = resolve_target(profile)
    try:
        presented = fetch_host_key(target)
    except OSError as exc:
        raise HarnessError(
            f"cannot reach {target.host}:{target.port} to read its host key: {exc}"
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
    from harness.suite.config import load_suite
    from harness.suite.walk import expand

    suite = load_suite(args.suite)
    print(f"{suite.path}: valid, {len(expand(suite))} cells")
    return EXIT_OK


# --- parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Compress, export, deploy and benchmark PyTorch models on edge devices.",
        epilog="Exit codes: 0 ok, 1 some cells failed, 2 bad input, 130 interrupted.",
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
    run.add_argument("suite", type=Path, help="suite TOML file, e.g. suites/quickstart.toml")
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
    run.add_argument("-q", "--quiet", action="store_true", help="only the final table")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="print a run's results")
    report.add_argument("run", nargs="?", default=None, help="run id or 'latest' (default)")
    results_option(report)
    report.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    report.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    report.set_defaults(func=cmd_report)

    validate = sub.add_parser("validate", help="check a suite file without running it")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_third_party()
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
