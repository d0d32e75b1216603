"""Boards on the test sshd (tests/sshd.py) for the SSH device tests: their profile and
suites, a walk over them, and the runner processes a walk starts there."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from harness.devices.config import DeviceProfile, load_profile
from harness.runner.job import MeasureSettings
from harness.suite.config import load_suite
from harness.suite.walk import SuiteWalker
from tests.cli_runner import wait_until
from tests.sshd import TestSshd
from tests.suite_files import REPO, write_suite

QUICK = MeasureSettings(warmup_count=2, warmup_seconds=0.0, min_count=10, min_seconds=0.02)
BROKEN_FACTORY = "def make():\n    raise RuntimeError('factory boom')\n"


def board(
    tmp_path: Path,
    sshd: TestSshd,
    *,
    trusted: bool = True,
    workdir: Path | None = None,
    key_file: Path | None = None,
    extra: str = "",
) -> DeviceProfile:
    """Write ``devices/board.toml`` for the test sshd and load it."""
    known_hosts = tmp_path / "known_hosts"
    if trusted:
        known_hosts.write_text(sshd.known_hosts_line())
    devices = tmp_path / "devices"
    devices.mkdir(exist_ok=True)
    (devices / "board.toml").write_text(
        sshd.profile_toml(known_hosts, workdir or tmp_path / "work", key_file, extra)
    )
    return load_profile(devices / "board.toml")


def board_suite(tmp_path: Path, body: str) -> Path:
    """A suite that finds the boards in ``tmp_path/devices`` besides the repo's."""
    path = write_suite(tmp_path, body)
    repo_devices = f'device_dirs = ["{REPO / "devices"}"]'
    text = path.read_text()
    assert repo_devices in text
    path.write_text(
        text.replace(
            repo_devices, f'device_dirs = ["{tmp_path / "devices"}", "{REPO / "devices"}"]'
        )
    )
    return path


def walk_suite(
    suite_path: Path, results: Path, prepare: Callable[[SuiteWalker], None] = lambda w: None
) -> tuple[Any, dict[tuple[str, str], Any], str]:
    """Walk once: the summary, the cells by (model, device) and the run's status."""
    walker = SuiteWalker(load_suite(suite_path), results)
    prepare(walker)
    try:
        summary = walker.walk()
        cells = {(c.model, c.device): c for c in walker.store.cells(summary.run_id)}
        status = walker.store.get_run(summary.run_id).status
    finally:
        walker.close()
    return summary, cells, status


def group_members(pgid: int) -> list[list[str]]:
    """Command lines of the live (not zombie) processes in process group ``pgid``."""
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.info["cmdline"] or [])
        except (ProcessLookupError, PermissionError):
            pass
    return out


def runner_group(work: Path, timeout_s: float = 20.0) -> int:
    """The process group of a runner started under ``work``: read from its run dir's
    ``pid`` once ``timeout`` or the runner (not only the launcher before them, whose
    command line is ``python -c ...``) is in the group."""

    def found() -> int | None:
        for pid_file in (work / "runs").glob("*/pid"):
            try:
                pgid = int(pid_file.read_text())
            except (OSError, ValueError):  # being written
                continue
            if any("job.json" in cmd and "-c" not in cmd for cmd in group_members(pgid)):
                return pgid
        return None

    pgid = wait_until(found, timeout_s)
    assert pgid, f"no runner started under {work}"
    return pgid
