"""``harness lab``: the device lab, a Ray cluster whose hosts offer the boards wired to
them. ``join`` puts this host in it with its boards; ``status`` lists what it offers."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

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
    join.add_argument(
        "ray_args",
        nargs=argparse.REMAINDER,
        help="after --: options passed on to ray start (e.g. --num-cpus=1)",
    )
    join.set_defaults(func=cmd_join)
    status = actions.add_parser("status", help="which boards the lab's cluster offers")
    status.add_argument("--address", default=None, help="the Ray head's HOST:PORT")
    status.set_defaults(func=cmd_status)


def cmd_join(args: argparse.Namespace) -> int:
    from harness.devices.config import list_profiles
    from harness.suite.ray_executor import LAB_INSTALL, join_command

    known = {p.name: p for p in list_profiles(search_dirs("devices", args.dir))}
    boards = sorted(n for n, p in known.items() if p.is_remote_board)
    for name in args.board:
        if name not in known or not known[name].is_remote_board:
            raise HarnessError(
                f"--board {name}: no board profile of that name; known boards: "
                + (", ".join(boards) or "(none)")
            )
    extra = [a for a in args.ray_args if a != "--"] if args.ray_args else []
    command = join_command(list(dict.fromkeys(args.board)), args.address)
    if extra:
        command += " " + shlex.join(extra)
    if args.dry_run:
        print(command)
        return 0
    argv = shlex.split(command)
    # The ray of this harness's environment (a venv's is not on PATH unless activated).
    beside = Path(sys.executable).with_name("ray")
    if beside.is_file():
        argv[0] = str(beside)
    elif shutil.which("ray") is None:
        raise HarnessError("harness lab join needs Ray's ray command: " + LAB_INSTALL)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(argv, env=env).returncode


def cmd_status(args: argparse.Namespace) -> int:
    from harness.suite.ray_executor import RayExecutor

    executor = RayExecutor(args.address)
    try:
        boards = executor.boards()
    finally:
        executor.close()
    if not boards:
        print("the cluster offers no boards (harness lab join --board NAME --address ADDR)")
        return 0
    width = max(5, *(len(b.name) for b in boards))
    print(f"{'board':<{width}}  {'state':<5}  host")
    for b in boards:
        print(f"{b.name:<{width}}  {'busy' if b.busy else 'free':<5}  {b.host}")
    return 0
