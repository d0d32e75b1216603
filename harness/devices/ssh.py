"""A real board over SSH: push the runner and the artifact, run, fetch the result.

Remote layout, all under the profile's ``workdir``::

    cache/<sha256><suffix>   the runner, artifacts and eval inputs, by content
    runs/<uuid>/             one runner process: job.json, result.json, stderr.txt,
                             pid (its process group, so an orphan can be stopped) ...

A file reaches ``cache/`` only through a temporary ``.part-<uuid>`` name that is renamed
after the board's own sha256 of it matches ours, so a cut transfer never leaves a file
under a name that looks complete, and a file already there is not sent again.

Every command the board's shell sees is built with :func:`shlex.quote` around each path
and argument (a ``workdir`` with spaces or ``;`` runs nothing). The runner runs under
the board's ``timeout`` (and a host-side deadline); a run past it is killed and reported
as ``timeout``. Connection faults are retried with back-off
(:func:`harness.devices.ssh_connect.with_retries`); what still fails is a failed cell
with the reason. The runner runs in a process group of its own, whose id it leaves in
its run directory: a run whose connection was lost (or that passed the host's deadline)
is stopped by killing that group before anything else runs on the board, so two runs
on one board never overlap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
import shlex
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paramiko

from harness.devices.base import Device, DeviceRun, job_for
from harness.devices.config import DeviceProfile
from harness.devices.local import checked_runner_result, host_side_profile
from harness.devices.ssh_connect import SshTarget, connect, resolve_target, with_retries
from harness.errors import HarnessError, RunnerError
from harness.runner import RUNNER_PATH

log = logging.getLogger(__name__)

_STDERR_TAIL = 4000
# Seconds the host waits past the runner's own time-out before it kills the run itself
# (the board's `timeout` should have ended it; this covers a board without one).
_DEADLINE_GRACE_S = 15.0
_COMMAND_TIMEOUT_S = 60.0
_HASH_CODE = (
    "import hashlib,sys\n"
    "h=hashlib.sha256()\n"
    "with open(sys.argv[1],'rb') as f:\n"
    "    for b in iter(lambda:f.read(1<<20),b''): h.update(b)\n"
    "print(h.hexdigest())\n"
)
# Run before the runner (see _runner_command): lead a process group of its own, leave
# its id in ./pid, become argv[1:]. A session leader (what sshd usually starts) already
# leads its group, and then setpgid fails; any other failure leaves a group shared with
# something else, which a stop must not kill, so the run refuses to start.
_LAUNCHER = (
    "import os,sys\n"
    "try:\n"
    "    os.setpgid(0,0)\n"
    "except OSError:\n"
    "    pass\n"
    "if os.getpgid(0)!=os.getpid():\n"
    "    sys.exit('cannot put the runner in a process group of its own')\n"
    "with open('pid','w') as f:\n"
    "    f.write(str(os.getpid()))\n"
    "os.execvp(sys.argv[1],sys.argv[1:])\n"
)
# `timeout` exits 124 when its TERM ended the command; 137 when KILL did (-k).
_TIMEOUT_EXIT = 124
_KILLED_EXIT = 137

TransferProgress = Callable[[str, int, int], None]


def q(value: str) -> str:
    return shlex.quote(value)


@dataclass
class DeployStats:
    """What one run sent to the board and what it found already there."""

    files_sent: int = 0
    bytes_sent: int = 0
    files_cached: int = 0
    sent: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_sent": self.files_sent,
            "bytes_sent": self.bytes_sent,
            "files_cached": self.files_cached,
            "sent": list(self.sent),
        }


@dataclass
class _Session:
    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient
    workdir: str  # absolute

    def close(self) -> None:
        for closable in (self.sftp, self.client):
            try:
                closable.close()
            except Exception:  # closing a dead connection: nothing left to do
                pass


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


class SshDevice(Device):
    """A board reached over SSH. One session is kept open across runs and reopened
    after a fault. ``on_transfer`` is called as bytes go out (name, sent, total)."""

    def __init__(self, profile: DeviceProfile, on_transfer: TransferProgress | None = None):
        super().__init__(profile)
        self.on_transfer = on_transfer
        self._session: _Session | None = None
        self._target: SshTarget | None = None
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()  # one run at a time on one board
        # Run dirs whose runner may still be going (a lost connection, a deadline, a
        # clean-up that failed); stopped before the next runner starts.
        self._unfinished: list[str] = []

    # --- session --------------------------------------------------------------------

    @property
    def target(self) -> SshTarget:
        if self._target is None:
            try:
                self._target = resolve_target(self.profile)
            except HarnessError as exc:
                raise RunnerError(str(exc), kind="device_unavailable") from None
        return self._target

    def session(self) -> _Session:
        if self._session is None:
            client = connect(self.target)
            try:
                sftp = client.open_sftp()
                workdir = self._absolute_workdir(sftp)
                for sub in ("cache", "runs"):
                    _makedirs(sftp, posixpath.join(workdir, sub))
            except BaseException:
                client.close()
                raise
            self._session = _Session(client, sftp, workdir)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _absolute_workdir(self, sftp: paramiko.SFTPClient) -> str:
        """``~`` and relative workdirs resolved against the login's home directory
        (quoting a path would stop the remote shell from expanding ``~`` itself)."""
        conn = self.profile.connection
        assert conn is not None
        workdir = conn.workdir
        home = sftp.normalize(".")
        if workdir == "~":
            return home
        if workdir.startswith("~/"):
            return posixpath.join(home, workdir[2:])
        if workdir.startswith("~"):
            raise RunnerError(
                f"device {self.name}: connection.workdir {workdir!r}: only '~/' (this "
                "login's home) is expanded; give an absolute path",
                kind="device_unavailable",
            )
        return posixpath.normpath(posixpath.join(home, workdir))

    def execute(self, command: str, timeout_s: float = _COMMAND_TIMEOUT_S) -> CommandResult:
        """Run one shell command (already quoted) and wait for it without polling."""
        transport = self.session().client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionResetError("ssh transport is closed")
        channel = transport.open_session(timeout=self.target.connect_timeout_s)
        try:
            stdout = channel.makefile("rb")
            stderr = channel.makefile_stderr("rb")
            channel.exec_command(command)
            if not channel.status_event.wait(timeout_s):
                raise TimeoutError(f"remote command did not finish within {timeout_s:.0f} s")
            status = channel.recv_exit_status()
            # -1 is also what a signal death looks like (paramiko ignores exit-signal).
            # The transport thread records why it ended before it wakes the channels and
            # only later clears `active`, so look at both.
            if status == -1 and (
                transport.saved_exception is not None or not transport.is_active()
            ):
                # The connection died under the command: no exit status, but no error
                # either. A fault to retry, not the command's result.
                raise ConnectionResetError("ssh connection lost while the command ran")
            return CommandResult(
                status,
                stdout.read().decode(errors="replace"),
                stderr.read().decode(errors="replace"),
            )
        finally:
            channel.close()

    # --- push -----------------------------------------------------------------------

    def _sha256(self, path: Path) -> str:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self._hashes[key] = h.hexdigest()
        return self._hashes[key]

    def push(self, local: Path, stats: DeployStats) -> str:
        """The file's path in the board's cache, sending it only when it is not there."""
        session = self.session()
        sha = self._sha256(local)
        name = sha + "".join(local.suffixes[-1:])
        final = posixpath.join(session.workdir, "cache", name)
        size = local.stat().st_size
        try:
            if session.sftp.stat(final).st_size == size:
                stats.files_cached += 1
                return final
        except FileNotFoundError:
            pass
        self._remove_stale_parts(session, name)
        part = f"{final}.part-{uuid.uuid4().hex}"
        callback = None
        if self.on_transfer is not None:
            on_transfer = self.on_transfer

            def callback(sent: int, total: int) -> None:
                on_transfer(local.name, sent, total)

        session.sftp.put(str(local), part, callback=callback, confirm=True)
        check = self.execute(f"{q(self._python)} -c {q(_HASH_CODE)} {q(part)}", _COMMAND_TIMEOUT_S)
        remote_sha = check.stdout.strip()
        if check.exit_status != 0 or remote_sha != sha:
            _remove_quietly(session.sftp, part)
            why = f": {check.stderr.strip()}" if check.stderr.strip() else ""
            raise RunnerError(
                f"device {self.name}: {local.name} arrived damaged (sha256 "
                f"{remote_sha[:16] or '?'} on the board, {sha[:16]} here){why}",
                kind="transfer_failed",
            )
        session.sftp.posix_rename(part, final)
        stats.files_sent += 1
        stats.bytes_sent += size
        stats.sent.append(local.name)
        return final

    @staticmethod
    def _remove_stale_parts(session: _Session, name: str) -> None:
        """Partial uploads of this file left by a cut transfer."""
        cache = posixpath.join(session.workdir, "cache")
        for entry in session.sftp.listdir(cache):
            if entry.startswith(name + ".part-"):
                _remove_quietly(session.sftp, posixpath.join(cache, entry))

    @property
    def _python(self) -> str:
        conn = self.profile.connection
        assert conn is not None
        return conn.python

    # --- run ------------------------------------------------------------------------

    def run(
        self,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
    ) -> DeviceRun:
        stats = DeployStats()

        def attempt() -> DeviceRun:
            self._stop_orphans()
            runner = self.push(RUNNER_PATH, stats)
            remote_artifact = self.push(artifact, stats)
            remote_inputs = self.push(eval_inputs, stats) if eval_inputs else None
            return self._execute_runner(
                job_for(job, remote_artifact, None), runner, remote_inputs, timeout_s
            )

        def on_retry(exc: BaseException) -> None:
            self.close()

        with self._lock:
            run = with_retries(self.target, attempt, on_retry)
        run.result["deploy"] = {**stats.to_dict(), "host": self.target.where}
        return run

    def _stop_orphans(self) -> None:
        """Kill the runner of an earlier run or attempt that may still be going (its
        connection was lost, or it passed the host's deadline) and remove its run dir:
        two runs on one board must never overlap.

        The runner's process group id is in ``<run_dir>/pid`` (see
        :meth:`_execute_runner`); killing the group ends ``timeout``, the runner and
        anything it started, and nothing else. Matching command lines instead would
        miss them (only their cwd names the run) and hit this very shell.
        """
        while self._unfinished:
            run_dir = self._unfinished[0]
            self.execute(_stop_command(run_dir))
            self._unfinished.pop(0)

    def _execute_runner(
        self,
        job: dict[str, Any],
        runner: str,
        eval_inputs: str | None,
        timeout_s: float,
    ) -> DeviceRun:
        session = self.session()
        run_dir = posixpath.join(session.workdir, "runs", uuid.uuid4().hex)
        session.sftp.mkdir(run_dir)
        self._unfinished.append(run_dir)
        job = dict(job)
        if eval_inputs:
            job["eval_inputs"] = eval_inputs
            job["outputs_out"] = posixpath.join(run_dir, "outputs.npy")
        profile = job.get("profile") or {}
        if profile.get("enabled"):
            job["profile"] = {**profile, "dir": posixpath.join(run_dir, "profile")}
            session.sftp.mkdir(job["profile"]["dir"])
        with session.sftp.open(posixpath.join(run_dir, "job.json"), "w") as fh:
            fh.write(json.dumps(job))
        seconds = max(1, int(timeout_s + 0.999))
        command = _runner_command(run_dir, seconds, self._python, runner)
        begun = time.monotonic()
        try:
            outcome = self.execute(command, timeout_s + _DEADLINE_GRACE_S)
        except TimeoutError:
            timed_out = RunnerError(
                f"runner exceeded its {timeout_s:.0f} s time-out on {self.name} and was killed "
                "(by the host: the board's `timeout` did not end it)",
                kind="timeout",
            )
            try:
                self._stop_orphans()
            except Exception as exc:  # the time-out is the outcome; do not replace it
                # Still in _unfinished: the next run on this board stops it first.
                log.warning("device %s: could not stop the timed-out runner: %s", self.name, exc)
            raise timed_out from None
        elapsed = time.monotonic() - begun
        try:
            return self._collect(session, run_dir, outcome, elapsed, timeout_s)
        finally:
            # The run's own outcome (its result, or the error reading it) is what counts;
            # a clean-up that fails (the connection went) must not replace it. The dir
            # stays in _unfinished, so the retry or the next run removes it.
            with contextlib.suppress(Exception):
                self.execute(f"rm -rf -- {q(run_dir)}")
                self._unfinished.remove(run_dir)

    def _collect(
        self,
        session: _Session,
        run_dir: str,
        outcome: CommandResult,
        elapsed: float,
        timeout_s: float,
    ) -> DeviceRun:
        sftp = session.sftp
        stderr = _read_remote(sftp, posixpath.join(run_dir, "stderr.txt")) or outcome.stderr
        stderr = stderr[-_STDERR_TAIL:]
        status = outcome.exit_status
        timed_out = status == _TIMEOUT_EXIT or (status == _KILLED_EXIT and elapsed >= timeout_s)
        result_text = _read_remote(sftp, posixpath.join(run_dir, "result.json"))
        if timed_out and result_text is None:
            raise RunnerError(
                f"runner exceeded its {timeout_s:.0f} s time-out on {self.name} and was killed",
                kind="timeout",
                stderr=stderr,
            )
        origin = f"device {self.name}"
        result = checked_runner_result(
            result_text, status in (_KILLED_EXIT, -1), status, stderr, origin
        )
        with tempfile.TemporaryDirectory(prefix="harness-ssh-") as tmp:
            outputs = None
            local_outputs = Path(tmp) / "outputs.npy"
            if _fetch(sftp, posixpath.join(run_dir, "outputs.npy"), local_outputs):
                outputs = np.load(local_outputs)
            self._fetch_etdump(sftp, result, Path(tmp))
            host_side_profile(result)
        return DeviceRun(result=result, outputs=outputs)

    @staticmethod
    def _fetch_etdump(sftp: paramiko.SFTPClient, result: dict[str, Any], into: Path) -> None:
        """Bring an ETDump the board could not read home, so the host builds the table."""
        profile = result.get("profile")
        if not isinstance(profile, dict) or profile.get("ops") is not None:
            return
        remote = profile.get("etdump")
        if remote and _fetch(sftp, remote, into / "etdump.etdp"):
            profile["etdump"] = str(into / "etdump.etdp")


def _runner_command(run_dir: str, seconds: int, python: str, runner: str) -> str:
    """The shell command that runs the runner in ``run_dir`` under ``timeout``.

    The board's Python first makes the process its own process group and writes that
    group's id to ``pid``, then ``exec``s ``timeout`` and so the runner, keeping its pid:
    the group is exactly this run (timeout, the runner, whatever the runner starts) and
    :func:`_stop_command` can kill it. Python rather than ``setsid -w``, which is not on
    every board and turns a signal death (how ``timeout`` ends when the runner is
    OOM-killed) into an ordinary exit code. When the pid file cannot be written (a stop
    already removed the run dir) the runner does not start.
    """
    return (
        f"cd {q(run_dir)} && exec {q(python)} -c {q(_LAUNCHER)} "
        f"timeout -k 5 {seconds} {q(python)} {q(runner)} job.json result.json "
        ">stdout.txt 2>stderr.txt"
    )


def _stop_command(run_dir: str) -> str:
    """Kill the process group named in ``run_dir/pid`` (if any), then remove the dir.

    Only a plain number above 1 is used: ``kill -- -1`` would signal every process of
    this user, and an empty pid file (the runner never got that far) leaves nothing to
    kill. ``kill`` fails harmlessly when the group has already ended.
    """
    pid_file = q(posixpath.join(run_dir, "pid"))
    return (
        f"pgid=$(cat -- {pid_file} 2>/dev/null); "
        'case "$pgid" in ""|*[!0-9]*) ;; *) [ "$pgid" -gt 1 ] && '
        'kill -KILL -- "-$pgid" 2>/dev/null ;; esac; '
        f"rm -rf -- {q(run_dir)}"
    )


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    parts = []
    while path not in ("", "/"):
        try:
            sftp.stat(path)
            break
        except FileNotFoundError:
            parts.append(path)
            path = posixpath.dirname(path)
    for missing in reversed(parts):
        sftp.mkdir(missing)


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except OSError:  # already gone, or the connection with it: the next push cleans up
        pass


def _read_remote(sftp: paramiko.SFTPClient, path: str) -> str | None:
    try:
        with sftp.open(path, "r") as fh:
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return None


def _fetch(sftp: paramiko.SFTPClient, remote: str, local: Path) -> bool:
    try:
        sftp.get(remote, str(local))
    except FileNotFoundError:
        return False
    return True
