"""The host machine's identity, stored with every run so comparisons can warn when two
runs come from different machines."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from harness.artifacts import digest
from harness.target import read_cpu_features


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() in ("model name", "Model", "Hardware"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_features": sorted(read_cpu_features()),
        "mem_total_mb": _mem_total_mb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def machine_fingerprint(info: dict[str, Any]) -> str:
    """Stable across reboots and Python upgrades: the hardware, not the software."""
    keys = ("hostname", "arch", "cpu_model", "cpu_count", "mem_total_mb")
    return digest({k: info.get(k) for k in keys})[:16]


def git_commit(directory: Path) -> str | None:
    """The commit of the harness checkout (``+dirty`` with local changes), if it is one."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")
