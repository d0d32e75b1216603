"""This machine as it is: the runner in a child process of the host's Python."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from harness.devices.base import Device, DeviceRun, job_for
from harness.devices.config import DeviceProfile
from harness.errors import RunnerError
from harness.runner import RUNNER_PATH
from harness.runner.job import check_result

_STDERR_TAIL = 4000


class RunnerProcesses:
    """The runner processes a device has running, so an interrupt can end them.

    Each runner leads a process group of its own (``start_new_session``): a SIGTERM sent
    to the harness alone, or an exception on another thread, would otherwise leave it
    measuring after the harness is gone, and :meth:`kill_all` ends it with whatever it
    started.
    """

    def __init__(self) -> None:
        self._running: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self.stopped = False

    def run(self, command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        with self._lock:
            if self.stopped:
                raise RunnerError("the run was interrupted", kind="interrupted")
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            self._running.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stdout, stderr = proc.communicate()
            raise subprocess.TimeoutExpired(command, timeout_s, stdout, stderr) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            with self._lock:
                self._running.discard(proc)
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    def kill_all(self) -> None:
        """End every runner now and start no more."""
        with self._lock:
            self.stopped = True
            running = list(self._running)
        for proc in running:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_runner_process(
    command_prefix: list[str],
    job: dict[str, Any],
    timeout_s: float,
    origin: str,
    processes: RunnerProcesses | None = None,
) -> DeviceRun:
    """Run ``command_prefix + [runner, job, result]`` and read the result back.

    Used by the local device and, with a wrapper prefix, by emulation. A child killed
    by SIGKILL without a result is reported as out of memory, the usual cause.
    """
    processes = processes or RunnerProcesses()
    with tempfile.TemporaryDirectory(prefix="harness-run-") as tmp:
        job = dict(job)
        outputs_path = Path(tmp) / "outputs.npy"
        if job.get("eval_inputs"):
            job["outputs_out"] = str(outputs_path)
        profile = job.get("profile") or {}
        if profile.get("enabled"):
            # Inside the temporary directory, so an ETDump the runner could not turn
            # into a table is still there for the host to read (see below).
            job["profile"] = {**profile, "dir": str(Path(tmp) / "profile")}
            (Path(tmp) / "profile").mkdir()
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        command = [*command_prefix, str(RUNNER_PATH), str(job_path), str(result_path)]
        try:
            proc = processes.run(command, timeout_s)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr or b""
            stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
            raise RunnerError(
                f"runner exceeded its {timeout_s:.0f} s time-out and was killed",
                kind="timeout",
                stderr=stderr[-_STDERR_TAIL:],
            ) from None
        stderr = proc.stderr[-_STDERR_TAIL:]
        result_text = result_path.read_text() if result_path.is_file() else None
        result = checked_runner_result(
            result_text, proc.returncode == -signal.SIGKILL, proc.returncode, stderr, origin
        )
        host_side_profile(result)
        outputs = np.load(outputs_path) if outputs_path.is_file() else None
        return DeviceRun(result=result, outputs=outputs)


def checked_runner_result(
    result_text: str | None, sigkilled: bool, returncode: int | None, stderr: str, origin: str
) -> dict[str, Any]:
    """The runner's checked result, or the :class:`RunnerError` its exit means.

    Shared by every device: a runner that wrote no result and was SIGKILLed is reported
    as out of memory (the usual cause), any other missing result as a crash.
    """
    if result_text is None:
        if sigkilled:
            raise RunnerError(
                "runner was killed by SIGKILL (out of memory?)",
                kind="out_of_memory",
                stderr=stderr,
            )
        raise RunnerError(
            f"runner exited with code {returncode} and wrote no result: "
            + (stderr.strip().splitlines() or ["(no stderr)"])[-1],
            kind="runner_crashed",
            stderr=stderr,
        )
    try:
        raw = json.loads(result_text)
    except ValueError as exc:
        raise RunnerError(f"{origin}: runner result is not JSON: {exc}", stderr=stderr) from None
    try:
        return check_result(raw, origin)
    except RunnerError as exc:
        exc.stderr = stderr
        raise


def host_side_profile(result: dict[str, Any]) -> None:
    """Build the per-op table from the runner's ETDump when the device could not.

    A runtime-only ExecuTorch install has no ``executorch.devtools``; the runner then
    leaves the ETDump file and the host, which has the full package, reads it.
    """
    profile = result.get("profile")
    if not isinstance(profile, dict) or profile.get("ops") is not None:
        return
    etdump = profile.get("etdump")
    if not etdump or not Path(etdump).is_file():
        return
    from harness.runner import bench_runner

    try:
        table = bench_runner.etdump_profile_table(etdump, int(profile.get("top", 10)))
    except Exception as exc:  # keep the timings; say why the profile is missing
        profile["error"] = f"{profile.get('error', '')}; host-side Inspector failed: {exc}"
        return
    result["profile"] = {**table, "tool": "etdump (read on the host)"}


class LocalDevice(Device):
    def __init__(self, profile: DeviceProfile):
        super().__init__(profile)
        self.processes = RunnerProcesses()

    def abort(self) -> None:
        self.processes.kill_all()

    def run(
        self,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
    ) -> DeviceRun:
        job = job_for(job, artifact, eval_inputs)
        return run_runner_process(
            [sys.executable], job, timeout_s, f"device {self.name}", self.processes
        )
