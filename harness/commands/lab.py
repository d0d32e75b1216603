"""``harness lab``: the device lab, a Ray cluster whose hosts offer the boards wired to
them. ``join`` puts this host in it with its boards; ``status`` lists what it offers."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess

from harness.commands.arguments import search_dirs
from harness.errors import HarnessError


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="the device lab: hosts offering their boards to Ray")
    actions = lab.add_subparsers(dest="lab_command", required=True)
    join = actions.add_parser(
        "join", help="join the lab's Ray cluster from this host, offering its boards"
    )
    join.add_argument(
        "--board",
        action="append",
        required=True,
        help="a board profile wired to this host (repeat for several)",
    )
    join.add_argument("--address", required=True, help="the Ray head's HOST:PORT")
    join.add_argument("--dir", action="append", help="extra directory to search for profiles")
    join.add_argument(
        "--dry-run", action="store_true", help="print the ray start command, do not run it"
    )
    join.set_defaults(func=cmd_join)
    status = actions.add_parser("status", help="which boards the lab's cluster offers")
    status.add_argument("--address", default=None, help="the Ray head's HOST:PORT")
    status.set_defaults(func=cmd_status)


def cmd_join(args: argparse.Namespace) -> int:
    from harness.devices.config import list_profiles
    from harness.suite.ray_executor import join_command

    known = {p.name: p for p in list_profiles(search_dirs("devices", args.dir))}
    boards = sorted(n for n, p in known.items() if p.is_remote_board)
    for name in args.board:
        if name not in known or not known[name].is_remote_board:
            raise HarnessError(
                f"--board {name}: no board profile of that name; known boards: "
                + (", ".join(boards) or "(none)")
            )
    command = join_command(list(dict.fromkeys(args.board)), args.address)
    if args.dry_run:
        print(command)
        return 0
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(shlex.split(command), env=env).returncode


def cmd_status(args: argparse.Namespace) -> int:
    from harness.suite.ray_executor import RayExecutor

    executor = RayExecutor(args.address)
    try:
        offered = sorted(executor.offered())
    finally:
        executor.close()
    if not offered:
        print("the cluster offers no boards (harness lab join --board NAME --address ADDR)")
    for name in offered:
        print(name)
    return 0
