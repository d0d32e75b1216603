"""``harness devices list|check|trust|setup``: the device profiles, and readying a board."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.arguments import locate_suite, search_dirs
from harness.commands.exits import EXIT_CELLS_FAILED, EXIT_OK
from harness.commands.output import terminal_console
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.devices.config import DeviceProfile


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("devices", help="device profiles (devices/*.toml)")
    group_sub = group.add_subparsers(dest="action", required=True)
    lister = group_sub.add_parser("list", help="list device profiles (devices/*.toml)")
    lister.add_argument("--dir", action="append", help="extra directory to search")
    lister.set_defaults(func=cmd_devices_list)
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
    trust.add_argument("--replace", action="store_true", help="replace a recorded key that changed")
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


def cmd_devices_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.devices.config import list_profiles

    table = Table(title="device profiles")
    for col in ("name", "kind", "arch", "cores", "description"):
        table.add_column(col, overflow="fold")
    for p in list_profiles(search_dirs("devices", args.dir)):
        target = p.target()
        table.add_row(p.name, p.kind, target.arch, str(target.cores), p.description)
    terminal_console().print(table)
    return EXIT_OK


def _device_profile(name: str, dirs: list[str] | None) -> DeviceProfile:
    from harness.builtin import not_found
    from harness.devices.config import find_profile, load_profile

    search = search_dirs("devices", dirs)
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
        suite_path = locate_suite(args.suite)
        runtimes = list(load_suite(suite_path).runtimes)  # validates device_dirs too
        extra = load_toml(suite_path).get("device_dirs", [])
        suite_dirs = [str(d) for d in default_dirs(suite_path.parent, "devices", extra)]
    profile = _device_profile(args.name, [*(args.dir or []), *suite_dirs])
    report = check_device(profile, runtimes)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console = terminal_console()
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
    console = terminal_console()
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
    from harness.devices.ssh_connect import fingerprint
    from harness.devices.ssh_trust import TrustDecision, decide_trust, read_host_key, trust_host_key

    profile = _device_profile(args.name, args.dir)
    target, presented = read_host_key(profile)
    console = terminal_console()
    console.print(
        f"{target.host_key_name} ({profile.name}) presents this {presented.key.get_name()} "
        f"host key:\n  [bold]{presented.fingerprint}[/]"
    )
    decision = decide_trust(
        presented, yes=args.yes, expected_fingerprint=args.fingerprint, replace=args.replace
    )
    if decision is TrustDecision.ALREADY_TRUSTED:
        console.print(f"already trusted in {target.known_hosts}; nothing to do")
        return EXIT_OK
    if presented.status == "changed":
        assert presented.recorded is not None
        console.print(
            f"[red bold]THE HOST KEY HAS CHANGED[/]: {target.known_hosts} has "
            f"{fingerprint(presented.recorded)}. Someone may be intercepting the connection, "
            "or the board was reinstalled."
        )
    if decision is TrustDecision.REFUSE_CHANGED:
        console.print("refusing; if you know the board was reinstalled, add --replace")
        return EXIT_CELLS_FAILED
    if decision is TrustDecision.REFUSE_FINGERPRINT:
        console.print(f"[red]refusing[/]: you expected {args.fingerprint}")
        return EXIT_CELLS_FAILED
    if decision is TrustDecision.CONFIRM:
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
    trust_host_key(target, presented)
    console.print(f"recorded in {target.known_hosts}")
    return EXIT_OK
