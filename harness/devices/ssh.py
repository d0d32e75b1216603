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
import os
import posixpath
import shlex
import socket
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
import psutil

from harness.devices.base import Device, DeviceRun, job_for
from harness.devices.config import Connection, DeviceProfile
from harness.devices.local import checked_runner_result, host_side_profile
from harness.devices.ssh_connect import (
    NOT_TRANSIENT,
    SshTarget,
    connect,
    resolve_target,
    with_retries,
)
from harness.devices.ssh_deadline import Deadline, stalled_error
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
# Lists a board's run dirs (argv[1]) as JSON for SshDevice._sweep_stale_runs: each one's
# owner (the harness process that made it), whether its process group is alive, and its
# age by the board's clock.
_LIST_RUNS_CODE = (
    "import errno,json,os,sys,time\n"
    "runs=sys.argv[1]\n"
    "out=[]\n"
    "for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:\n"
    "    d=os.path.join(runs,name)\n"
    "    e={'dir':d,'owner':None,'alive':False,'age_s':None}\n"
    "    try:\n"
    "        e['owner']=json.load(open(os.path.join(d,'owner.json')))\n"
    "    except Exception:\n"
    "        pass\n"
    "    try:\n"
    "        pgid=int(open(os.path.join(d,'pid')).read().strip() or 0)\n"
    "    except Exception:\n"
    "        pgid=0\n"
    "    if pgid>1:\n"
    "        try:\n"
    "            os.killpg(pgid,0)\n"
    "            e['alive']=True\n"
    "        except OSError as x:\n"
    "            e['alive']=x.errno==errno.EPERM\n"
    "    try:\n"
    "        e['age_s']=time.time()-os.stat(d).st_mtime\n"
    "    except OSError:\n"
    "        pass\n"
    "    out.append(e)\n"
    "print(json.dumps(out))\n"
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

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

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
        self._session_lock = threading.Lock()
        self._target: SshTarget | None = None
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()  # one run at a time on one board
        # Run dirs whose runner may still be going (a lost connection, a deadline, an
        # interrupt, a clean-up that failed); stopped before the next runner starts, and
        # by abort().
        self._unfinished: list[str] = []
        self._unfinished_lock = threading.Lock()
        self._aborted = False
        self._swept = False  # run dirs left by earlier runs looked at (once per process)

    # --- session --------------------------------------------------------------------

    @property
    def target(self) -> SshTarget:
        if self._target is None:
            try:
                self._target = resolve_target(self.profile)
            except HarnessError as exc:
                raise RunnerError(str(exc), kind="device_unavailable") from None
        return self._target

    @property
    def _connection(self) -> Connection:
        conn = self.profile.connection
        assert conn is not None
        return conn

    def _step(
        self, what: str, seconds: float, client: paramiko.SSHClient, stall: bool = False
    ) -> Deadline:
        """A deadline for one remote step: past it (or, with ``stall``, after
        connect_timeout_s without progress) the session is closed under the step, which
        then fails as ``device_unavailable: stalled``."""

        def close_session() -> None:
            with contextlib.suppress(Exception):
                client.close()

        stall_s = self.target.connect_timeout_s if stall else None
        return Deadline(self.name, what, seconds, close_session, stall_s=stall_s)

    def _transfer_seconds(self, size: int) -> float:
        """How long moving ``size`` bytes may take: at the profile's floor rate, plus
        the time a connection gets to answer at all."""
        return size / (self._connection.min_transfer_mb_s * 1e6) + self.target.connect_timeout_s

    def session(self) -> _Session:
        with self._session_lock:
            if self._session is not None and not self._session.alive:
                # Closed under a stalled step, or lost: start again.
                self._session.close()
                self._session = None
            if self._session is None:
                self._session = self._open_session()
            session = self._session
        if not self._swept:
            self._swept = True
            self._sweep_stale_runs(session)
        return session

    def _open_session(self) -> _Session:
        client = connect(self.target)
        try:
            with self._step(
                "opening SFTP and the work directory", 2 * self.target.connect_timeout_s, client
            ):
                sftp = client.open_sftp()
                workdir = self._absolute_workdir(sftp)
                for sub in ("cache", "runs"):
                    _makedirs(sftp, posixpath.join(workdir, sub))
        except BaseException:
            client.close()
            raise
        return _Session(client, sftp, workdir)

    def close(self) -> None:
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _absolute_workdir(self, sftp: paramiko.SFTPClient) -> str:
        """``~`` and relative workdirs resolved against the login's home directory
        (quoting a path would stop the remote shell from expanding ``~`` itself)."""
        workdir = self._connection.workdir
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

    def execute(
        self, command: str, timeout_s: float = _COMMAND_TIMEOUT_S, what: str = "a remote command"
    ) -> CommandResult:
        """Run one shell command (already quoted) and wait for it without polling.

        Past ``timeout_s`` it raises TimeoutError. A long command is watched: every
        connect_timeout_s the board must answer an SSH keepalive, or the command fails
        as stalled (a board that stops answering keeps the TCP connection up, so
        nothing else would end the wait before the time-out).
        """
        session = self.session()
        transport = session.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionResetError("ssh transport is closed")
        beat = self.target.connect_timeout_s
        with self._step(what, timeout_s + 2 * beat, session.client):
            channel = transport.open_session(timeout=beat)
            try:
                stdout = channel.makefile("rb")
                stderr = channel.makefile_stderr("rb")
                channel.exec_command(command)
                self._wait_for_exit(channel, transport, session, timeout_s, what)
                status = channel.recv_exit_status()
                # -1 is also what a signal death looks like (paramiko ignores
                # exit-signal). The transport thread records why it ended before it
                # wakes the channels and only later clears `active`, so look at both.
                if status == -1 and (
                    transport.saved_exception is not None or not transport.is_active()
                ):
                    # The connection died under the command: no exit status, but no
                    # error either. A fault to retry, not the command's result.
                    raise ConnectionResetError("ssh connection lost while the command ran")
                return CommandResult(
                    status,
                    stdout.read().decode(errors="replace"),
                    stderr.read().decode(errors="replace"),
                )
            finally:
                channel.close()

    def _wait_for_exit(
        self,
        channel: paramiko.Channel,
        transport: paramiko.Transport,
        session: _Session,
        timeout_s: float,
        what: str,
    ) -> None:
        beat = self.target.connect_timeout_s
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"remote command did not finish within {timeout_s:.0f} s")
            if channel.status_event.wait(min(left, beat)):
                return
            if not _answers(transport, beat):
                session.close()
                raise stalled_error(
                    self.name,
                    f"{what}:",
                    f"the board stopped answering (no reply to an SSH keepalive within "
                    f"{beat:.0f} s)",
                )

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
        """The file's path in the board's cache, sending it only when it is not there.

        The transfer may take its size at ``min_transfer_mb_s`` plus connect_timeout_s,
        and may go connect_timeout_s without moving a byte; past either it is stalled.
        """
        session = self.session()
        sha = self._sha256(local)
        name = sha + "".join(local.suffixes[-1:])
        final = posixpath.join(session.workdir, "cache", name)
        size = local.stat().st_size
        quick = 2 * self.target.connect_timeout_s
        with self._step(f"looking up {local.name} in the board's cache", quick, session.client):
            try:
                cached = session.sftp.stat(final).st_size == size
            except FileNotFoundError:
                cached = False
            if not cached:
                self._remove_stale_parts(session, name)
        if cached:
            stats.files_cached += 1
            return final
        part = f"{final}.part-{uuid.uuid4().hex}"
        seconds = self._transfer_seconds(size)
        what = f"sending {local.name} ({_megabytes(size)})"
        with self._step(what, seconds, session.client, stall=True) as step:

            def callback(sent: int, total: int) -> None:
                step.touch()
                if self.on_transfer is not None:
                    self.on_transfer(local.name, sent, total)

            session.sftp.put(str(local), part, callback=callback, confirm=True)
        check = self.execute(
            f"{q(self._python)} -c {q(_HASH_CODE)} {q(part)}",
            seconds,
            what=f"checking the sha256 of {local.name} on the board",
        )
        missing = self._python_missing(check)
        if missing is not None:
            raise missing
        remote_sha = check.stdout.strip()
        if check.exit_status != 0 or remote_sha != sha:
            _remove_quietly(session.sftp, part)
            why = f": {check.stderr.strip()}" if check.stderr.strip() else ""
            raise RunnerError(
                f"device {self.name}: {local.name} arrived damaged (sha256 "
                f"{remote_sha[:16] or '?'} on the board, {sha[:16]} here){why}",
                kind="transfer_failed",
            )
        with self._step(f"storing {local.name} in the board's cache", quick, session.client):
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
        return self._connection.python

    def _python_missing(self, outcome: CommandResult) -> RunnerError | None:
        """The shell's 127 (not found) or 126 (not executable) for the board's Python:
        a setting to fix, not a fault to retry."""
        if outcome.exit_status not in (126, 127):
            return None
        said = (outcome.stderr.strip().splitlines() or ["(no message)"])[-1]
        return RunnerError(
            f"python not found at {self._python!r} on {self.name} ({said}): set "
            "connection.python in its profile to the board's Python 3.8+ "
            "(`command -v python3` on the board)",
            kind="device_unavailable",
        )

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
            self._refuse_if_aborted()
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
            try:
                run = with_retries(self.target, attempt, on_retry)
            except RunnerError as exc:
                exc.deploy = self._deploy_record(stats)
                raise
            except NOT_TRANSIENT as exc:  # waiting does not fix these
                raise RunnerError(
                    f"device {self.name}: {type(exc).__name__}: {exc}",
                    kind="device_unavailable",
                    deploy=self._deploy_record(stats),
                ) from None
        run.result["deploy"] = self._deploy_record(stats)
        return run

    def _deploy_record(self, stats: DeployStats) -> dict[str, Any]:
        where = self._target.where if self._target is not None else self._connection.host
        return {**stats.to_dict(), "host": where}

    def _refuse_if_aborted(self) -> None:
        if self._aborted:
            raise RunnerError(f"device {self.name}: the run was interrupted", kind="interrupted")

    def abort(self) -> None:
        """Stop this board's runner now (Ctrl-C, SIGTERM): kill the process group of
        every run that may still be going and refuse new ones. Bounded: the stop
        command gets connect_timeout_s, a reconnect (if the session is gone) its own
        connect time-outs."""
        self._aborted = True
        with self._unfinished_lock:
            run_dirs = list(self._unfinished)
        if not run_dirs:
            return
        try:
            self.execute(
                "; ".join(_stop_command(d) for d in run_dirs),
                self.target.connect_timeout_s,
                what="stopping the runner",
            )
        except Exception as exc:  # the interrupt is the outcome; say what is left
            log.warning(
                "device %s: could not stop its runner (%s); the next run on it stops it",
                self.name,
                exc,
            )
            return
        with self._unfinished_lock:
            for run_dir in run_dirs:
                with contextlib.suppress(ValueError):
                    self._unfinished.remove(run_dir)

    def _stop_orphans(self) -> None:
        """Kill the runner of an earlier run or attempt that may still be going (its
        connection was lost, or it passed the host's deadline) and remove its run dir:
        two runs on one board must never overlap.

        The runner's process group id is in ``<run_dir>/pid`` (see
        :meth:`_execute_runner`); killing the group ends ``timeout``, the runner and
        anything it started, and nothing else. Matching command lines instead would
        miss them (only their cwd names the run) and hit this very shell.
        """
        while True:
            with self._unfinished_lock:
                if not self._unfinished:
                    return
                run_dir = self._unfinished[0]
            self.execute(_stop_command(run_dir), what="stopping an earlier runner")
            with self._unfinished_lock:
                with contextlib.suppress(ValueError):
                    self._unfinished.remove(run_dir)

    def _sweep_stale_runs(self, session: _Session) -> None:
        """Stop the runners and remove the run dirs that earlier harness processes left
        on the board (killed with -9, a lost connection they never came back to).

        A run dir is left alone when its owner may still be using it: a harness process
        alive on this host, or one on another host whose run is not yet past its time-out
        (by the board's clock).
        """
        runs = posixpath.join(session.workdir, "runs")
        listing = self.execute(
            f"{q(self._python)} -c {q(_LIST_RUNS_CODE)} {q(runs)}",
            what="looking for runners left by earlier runs",
        )
        missing = self._python_missing(listing)
        if missing is not None:
            raise missing
        if listing.exit_status != 0:
            log.warning("device %s: could not list old run dirs: %s", self.name, listing.stderr)
            return
        try:
            entries = json.loads(listing.stdout)
        except ValueError:
            log.warning("device %s: the run-dir listing is not JSON: %r", self.name, listing.stdout)
            return
        stale = [e for e in entries if _is_stale(e)]
        if not stale:
            return
        self.execute(
            "; ".join(_stop_command(e["dir"]) for e in stale),
            what="stopping runners left by earlier runs",
        )
        for entry in stale:
            owner = entry.get("owner") or {}
            log.warning(
                "device %s: removed %s left by an earlier run (harness pid %s on %s)%s",
                self.name,
                posixpath.basename(entry["dir"]),
                owner.get("pid", "?"),
                owner.get("host", "?"),
                ", and stopped its runner" if entry.get("alive") else "",
            )

    def _execute_runner(
        self,
        job: dict[str, Any],
        runner: str,
        eval_inputs: str | None,
        timeout_s: float,
    ) -> DeviceRun:
        session = self.session()
        run_dir = posixpath.join(session.workdir, "runs", uuid.uuid4().hex)
        job = dict(job)
        if eval_inputs:
            job["eval_inputs"] = eval_inputs
            job["outputs_out"] = posixpath.join(run_dir, "outputs.npy")
        profile = job.get("profile") or {}
        if profile.get("enabled"):
            job["profile"] = {**profile, "dir": posixpath.join(run_dir, "profile")}
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "deadline_s": timeout_s + _DEADLINE_GRACE_S,
        }
        quick = 2 * self.target.connect_timeout_s
        with self._step("writing the job", quick, session.client):
            session.sftp.mkdir(run_dir)
            with self._unfinished_lock:
                self._unfinished.append(run_dir)
            if job.get("profile", {}).get("dir"):
                session.sftp.mkdir(job["profile"]["dir"])
            for name, content in (("owner.json", owner), ("job.json", job)):
                with session.sftp.open(posixpath.join(run_dir, name), "w") as fh:
                    fh.write(json.dumps(content))
        # An abort between the check in run() and here has seen run_dir or sees it now.
        self._refuse_if_aborted()
        seconds = max(1, int(timeout_s + 0.999))
        command = _runner_command(run_dir, seconds, self._python, runner)
        begun = time.monotonic()
        try:
            outcome = self.execute(command, timeout_s + _DEADLINE_GRACE_S, what="the runner")
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
        # Any other way out of execute (a lost connection, a stall, Ctrl-C) leaves
        # run_dir in _unfinished: the retry, the next run or abort() stops its runner.
        elapsed = time.monotonic() - begun
        try:
            return self._collect(session, run_dir, outcome, elapsed, timeout_s)
        finally:
            # The runner has ended. Its outcome (its result, or the error reading it) is
            # what counts; a clean-up that fails (the connection went) must not replace
            # it. The dir stays in _unfinished, so the retry or the next run removes it.
            with contextlib.suppress(Exception):
                self.execute(f"rm -rf -- {q(run_dir)}", what="removing the run directory")
                with self._unfinished_lock:
                    self._unfinished.remove(run_dir)

    def _collect(
        self,
        session: _Session,
        run_dir: str,
        outcome: CommandResult,
        elapsed: float,
        timeout_s: float,
    ) -> DeviceRun:
        stderr = self._read_remote(session, posixpath.join(run_dir, "stderr.txt"))
        stderr = (stderr or outcome.stderr)[-_STDERR_TAIL:]
        status = outcome.exit_status
        missing = self._python_missing(CommandResult(status, outcome.stdout, stderr))
        if missing is not None:
            raise missing
        timed_out = status == _TIMEOUT_EXIT or (status == _KILLED_EXIT and elapsed >= timeout_s)
        result_text = self._read_remote(session, posixpath.join(run_dir, "result.json"))
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
            if self._fetch(session, posixpath.join(run_dir, "outputs.npy"), local_outputs):
                outputs = np.load(local_outputs)
            self._fetch_etdump(session, result, Path(tmp))
            host_side_profile(result)
        return DeviceRun(result=result, outputs=outputs)

    def _fetch_etdump(self, session: _Session, result: dict[str, Any], into: Path) -> None:
        """Bring an ETDump the board could not read home, so the host builds the table."""
        profile = result.get("profile")
        if not isinstance(profile, dict) or profile.get("ops") is not None:
            return
        remote = profile.get("etdump")
        if remote and self._fetch(session, remote, into / "etdump.etdp"):
            profile["etdump"] = str(into / "etdump.etdp")

    def _remote_size(self, session: _Session, path: str) -> int | None:
        """A remote file's size, None when it is not there."""
        quick = 2 * self.target.connect_timeout_s
        with self._step(f"looking up {posixpath.basename(path)}", quick, session.client):
            try:
                return session.sftp.stat(path).st_size or 0
            except FileNotFoundError:
                return None

    def _read_remote(self, session: _Session, path: str) -> str | None:
        """A text file of the run dir (None when it is not there), within its size's
        transfer time; a result holds every sample, so it can be megabytes."""
        size = self._remote_size(session, path)
        if size is None:
            return None
        what = f"reading {posixpath.basename(path)} ({_megabytes(size)})"
        chunks = []
        with self._step(what, self._transfer_seconds(size), session.client, stall=True) as step:
            with session.sftp.open(path, "r") as fh:
                fh.prefetch(size)
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    chunks.append(chunk)
                    step.touch()
        return b"".join(chunks).decode(errors="replace")

    def _fetch(self, session: _Session, remote: str, local: Path) -> bool:
        """Copy a file home, if it is there, within its size's transfer time."""
        size = self._remote_size(session, remote)
        if size is None:
            return False
        what = f"fetching {posixpath.basename(remote)} ({_megabytes(size)})"
        with self._step(what, self._transfer_seconds(size), session.client, stall=True) as step:
            session.sftp.get(remote, str(local), callback=lambda sent, total: step.touch())
        return True


def _answers(transport: paramiko.Transport, timeout_s: float) -> bool:
    """Whether the peer answers an SSH keepalive (a global request it must reply to,
    if only to refuse it) within ``timeout_s``. paramiko's own wait has no limit, so
    it runs on a thread of its own, which ends when the reply comes or the transport
    is closed."""
    replied = threading.Event()

    def ask() -> None:
        with contextlib.suppress(Exception):
            transport.global_request("keepalive@openssh.com", wait=True)
        replied.set()

    threading.Thread(target=ask, name="ssh keepalive", daemon=True).start()
    return replied.wait(timeout_s) and transport.is_active()


def _is_stale(entry: dict[str, Any]) -> bool:
    """Whether a run dir found on the board (see _LIST_RUNS_CODE) is nobody's any more."""
    owner = entry.get("owner")
    if not isinstance(owner, dict):
        return True  # written before owners were recorded, or never finished writing
    pid, host = owner.get("pid"), owner.get("host")
    if host == socket.gethostname():
        return not (isinstance(pid, int) and pid != os.getpid() and psutil.pid_exists(pid))
    age, deadline = entry.get("age_s"), owner.get("deadline_s")
    if not entry.get("alive"):
        return True
    # Another host's harness may still be measuring here: only past its time-out is its
    # runner certainly an orphan.
    return isinstance(age, (int, float)) and isinstance(deadline, (int, float)) and age > deadline


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


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
