"""Running the harness as a user does: ``harness ARGS`` in this process or as a real
subprocess, and waiting on what a harness process does meanwhile."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from harness.cli import main
from tests.suite_files import REPO


def harness(
    *args: str, cwd: Path = REPO, timeout: float = 600, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """``harness ARGS`` as a subprocess (``python -m harness.cli``), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def cli(*argv: str) -> tuple[int, str]:
    """``harness ARGV`` in this process: its exit code and what it printed on stdout."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def wait_until(check: Callable[[], Any], timeout_s: float) -> Any:
    """``check()`` polled until it is truthy or the time is up; its last value."""
    deadline = time.monotonic() + timeout_s
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = check()
    return value
