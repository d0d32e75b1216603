"""A real Ray cluster on this machine for the device lab tests: a head, and worker
nodes offering board resources, each started as its own process group so a test can
kill one node (a host of the lab dying) and teardown stops exactly what it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.suite_files import REPO

RAY = Path(sys.executable).with_name("ray")


def ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install -c constraints.txt -e '.[lab]')"
    if not RAY.is_file():
        return f"no ray command beside {sys.executable}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    def __init__(self, lab_cache: Path) -> None:
        # Short: Ray's unix sockets live under it, and a socket path is at most 107 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="hray", dir="/tmp"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.lab_cache = lab_cache
        self._groups: list[int] = []
        self.workers: list[int] = []

    def node_env(self) -> dict[str, str]:
        """What a node of this cluster runs with."""
        return {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            # The node's worker processes import this tree's harness.
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "HARNESS_LAB_CACHE": str(self.lab_cache),
        }

    # What every node of the test cluster is started with beside its role.
    NODE_OPTIONS = (
        "--num-cpus=1",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
    )

    def track(self, pgid: int) -> None:
        """A process group started elsewhere (``harness lab join``) that teardown stops."""
        self._groups.append(pgid)

    def _start(self, args: list[str]) -> int:
        env = self.node_env()
        proc = subprocess.Popen(
            [
                str(RAY),
                "start",
                *args,
                *self.NODE_OPTIONS,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group: the node's daemons stay in it after `ray start` exits.
            start_new_session=True,
        )
        self._groups.append(proc.pid)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        return proc.pid

    def start_head(self) -> None:
        self._start(
            [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp}",
            ]
        )

    def add_worker(self, boards: list[str]) -> int:
        resources = json.dumps({f"board:{b}": 1 for b in boards})
        pgid = self._start([f"--address={self.address}", f"--resources={resources}"])
        self.workers.append(pgid)
        return pgid

    def kill_group(self, pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait_boards(self, boards: set[str], present: bool, timeout_s: float = 60) -> None:
        """Until the cluster offers (or stops offering) these boards, as the driver sees."""
        import ray

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            offered = {
                k.removeprefix("board:")
                for k, v in ray.cluster_resources().items()
                if k.startswith("board:") and v >= 1
            }
            if (boards <= offered) == present:
                return
            time.sleep(0.5)
        raise AssertionError(f"boards {boards} still {'absent' if present else 'offered'}")

    def stop(self) -> None:
        for pgid in reversed(self._groups):
            self.kill_group(pgid)
        shutil.rmtree(self.temp, ignore_errors=True)
