"""Faults of a board, on a real sshd: stalls, interrupts, a harness killed with -9,
retries on the next run, and failure kinds that say what happened.

A stalled board is the test's own sshd stopped with SIGSTOP (it and its session and
sftp-server processes; the runner it started goes on, as on a real board whose sshd
hangs): the TCP connection stays up and nothing answers, which is what a board that
stalls looks like from here.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from harness.devices.config import load_profile
from harness.devices.ssh import DeployStats, SshDevice
from harness.errors import RunnerError
from harness.results.store import ResultsStore
from harness.runner.job import make_job
from harness.suite.config import load_suite
from harness.suite.walk import SuiteWalker
from tests.cli_runner import cli, wait_until
from tests.onnx_models import matmul_model
from tests.ssh_boards import (
    BROKEN_FACTORY,
    QUICK,
    board,
    board_suite,
    group_members,
    runner_group,
    walk_suite,
)
from tests.sshd import TestSshd, sshd_missing
from tests.suite_files import FAST_MEASURE, REPO

pytestmark = pytest.mark.skipif(sshd_missing() is not None, reason=str(sshd_missing()))


def set_connection(tmp_path: Path, **values: object) -> Path:
    """Change keys of the test board's [connection] table (written by ``board``)."""
    path = tmp_path / "devices" / "board.toml"
    text = path.read_text()
    for key, value in values.items():
        line = f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}"
        line = line.replace("'", '"')
        if re.search(rf"^{key} = ", text, flags=re.M):
            text = re.sub(rf"^{key} = .*$", line, text, flags=re.M)
        else:
            text += line + "\n"
    path.write_text(text)
    load_profile(path)  # still valid
    return path


def sshd_family(sshd: TestSshd) -> list[psutil.Process]:
    """sshd, its sessions and their sftp-servers (not the programs the sessions run)."""
    assert sshd.proc is not None
    root = psutil.Process(sshd.proc.pid)
    return [root] + [
        p for p in root.children(recursive=True) if "sshd" in p.name() or "sftp" in p.name()
    ]


@contextmanager
def frozen_on_demand(sshd: TestSshd) -> Iterator[threading.Event]:
    """Set the event to stop the sshd (SIGSTOP); it is let go again (SIGCONT) on exit."""
    freeze = threading.Event()
    stopped: list[psutil.Process] = []
    done = threading.Event()

    def watch() -> None:
        freeze.wait()
        if done.is_set():
            return
        for proc in sshd_family(sshd):
            proc.send_signal(signal.SIGSTOP)
            stopped.append(proc)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield freeze
    finally:
        done.set()
        freeze.set()
        thread.join(10)
        for proc in stopped:
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass


def harness_process(*argv: str) -> subprocess.Popen[str]:
    """``harness ...`` in a process of its own, as a user starts it from a shell."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Started from a test runner that may ignore SIGINT: a shell's own default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


ONE_MODEL = """
runtimes = ["onnxruntime"]
devices = ["board"]

[[models]]
name = "tiny"
factory = "tinymodel:make"

[variants]
fp32 = []
"""


def long_measure(seconds: float) -> str:
    """A measure table under which each trial samples for ``seconds``."""
    return (
        FAST_MEASURE.replace("min_seconds = 0.02", f"min_seconds = {seconds}").replace(
            "max_seconds = 5", f"max_seconds = {seconds + 30}"
        )
        + "trials = 1\n"
    )


# --- a board that stops answering -----------------------------------------------------


@pytest.mark.slow
def test_a_board_that_stops_mid_transfer_fails_as_stalled_within_its_deadline(
    tmp_path: Path, sshd: TestSshd
) -> None:
    board(tmp_path, sshd)
    set_connection(tmp_path, connect_timeout_s=3)
    big = tmp_path / "big-model.onnx"
    with big.open("wb") as fh:
        for _ in range(256):
            fh.write(os.urandom(1 << 20))
    device = SshDevice(load_profile(tmp_path / "devices" / "board.toml"))
    with frozen_on_demand(sshd) as freeze:
        device.on_transfer = lambda name, sent, total: sent > 32 << 20 and freeze.set()
        started = time.monotonic()
        with pytest.raises(RunnerError) as info:
            device.push(big, DeployStats())
        elapsed = time.monotonic() - started
    device.close()
    assert freeze.is_set(), "the transfer ended before sshd could be stopped"
    assert info.value.kind == "device_unavailable"
    message = str(info.value)
    assert message.startswith("stalled: board: sending big-model.onnx (268.4 MB)"), message
    assert "made no progress for 3 s" in message
    # Stalled after 3 s without a byte moved, not after the 536 s the size allows.
    assert elapsed < 40, elapsed
    cached = [p.name for p in (tmp_path / "work" / "cache").iterdir()]
    assert not any(name.endswith(".onnx") for name in cached), cached


@pytest.mark.slow
def test_a_board_that_stops_while_measuring_ends_its_lane_and_the_next_run_retries(
    tmp_path: Path, sshd: TestSshd
) -> None:
    board(tmp_path, sshd)
    set_connection(tmp_path, connect_timeout_s=3, retries=1)
    suite_path = board_suite(
        tmp_path,
        'name = "stall"\n'
        + ONE_MODEL.replace("fp32 = []", 'fp32 = []\nint8 = ["int8-static"]')
        + long_measure(6),
    )
    results = tmp_path / "results"
    work = tmp_path / "work"
    with frozen_on_demand(sshd) as freeze:
        threading.Thread(
            target=lambda: (runner_group(work, 120), freeze.set()), daemon=True
        ).start()
        started = time.monotonic()
        summary, _, status = walk_suite(suite_path, results)
        elapsed = time.monotonic() - started
    assert freeze.is_set()
    assert status == "complete" and summary.failed == 2
    first, second = sorted(summary.failures, key=lambda c: c.variant)
    assert first.variant == "fp32" and first.reason.startswith("device_unavailable: stalled:")
    assert "stopped answering" in first.reason, first.reason
    assert first.result["deploy"]["files_sent"] >= 2  # what reached the board is kept
    assert second.reason.startswith(
        "device_unavailable: not attempted: board became unavailable earlier in this run"
    ), second.reason
    assert second.result["wall_seconds"] < 1
    # The fp32 build and the int8 build and 6 s of measuring, then about 3 s to notice.
    assert elapsed < 150, elapsed

    # sshd answers again: the next run measures both again, and nothing else.
    summary, _, status = walk_suite(suite_path, results)
    assert status == "complete" and summary.failed == 0, [c.reason for c in summary.failures]
    assert dict(summary.retried) == {"device_unavailable": 2}
    assert summary.ran == 2


# --- interrupts --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupt_while_a_board_measures_stops_its_runner_and_marks_the_run(
    tmp_path: Path, sshd: TestSshd, signum: int, code: int
) -> None:
    board(tmp_path, sshd)
    suite_path = board_suite(tmp_path, 'name = "interrupt"\n' + ONE_MODEL + long_measure(120))
    results = tmp_path / "results"
    proc = harness_process("run", str(suite_path), "--results", str(results))
    try:
        pgid = runner_group(tmp_path / "work", 180)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out + err
    assert "every runner was stopped" in out
    assert took < 30, took
    # Not left measuring on the board after the harness is gone.
    assert wait_until(lambda: not group_members(pgid), 5), group_members(pgid)
    with ResultsStore(results / "harness.db") as store:
        [run] = store.runs()
        assert run.status == "interrupted"
    assert "Traceback" not in out + err


@pytest.mark.slow
def test_after_kill_9_the_next_run_marks_the_run_interrupted_and_stops_the_orphan(
    tmp_path: Path, sshd: TestSshd
) -> None:
    board(tmp_path, sshd)
    suite_path = board_suite(tmp_path, 'name = "killed"\n' + ONE_MODEL + long_measure(120))
    results = tmp_path / "results"
    proc = harness_process("run", str(suite_path), "--results", str(results))
    try:
        pgid = runner_group(tmp_path / "work", 180)
        proc.kill()  # SIGKILL: no handler runs, the run stays "running"
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert group_members(pgid), "the orphan runner should still be measuring on the board"
    with ResultsStore(results / "harness.db") as store:
        assert [r.status for r in store.runs()] == ["running"]
    # The same suite, measured briefly this time (the orphan would sample for 2 min).
    again = suite_path.with_name("again.toml")
    again.write_text(suite_path.read_text().replace(long_measure(120), long_measure(0.5)))
    code, out = cli("run", str(again), "--results", str(results))
    assert code == 0, out
    assert re.search(r"run 1 \(killed\) was left running by harness pid \d+ on this host", out)
    assert "marked interrupted" in out
    assert re.search(
        r"removed \w+ left by an earlier run \(harness pid \d+ on \S+\), and stopped its runner",
        out,
    ), out
    assert not group_members(pgid)
    with ResultsStore(results / "harness.db") as store:
        [run] = store.runs()
        assert run.status == "complete" and len(store.cells(run.id)) == 1
    assert list((tmp_path / "work" / "runs").iterdir()) == []


# --- what a continued run measures again --------------------------------------------


@pytest.mark.slow
def test_a_continued_run_retries_transient_failures_only_and_retry_failed_the_rest(
    tmp_path: Path, sshd: TestSshd
) -> None:
    board(tmp_path, sshd)
    set_connection(tmp_path, retries=0)
    (tmp_path / "brokenmodel.py").write_text(BROKEN_FACTORY)
    suite_path = board_suite(
        tmp_path,
        """
        name = "retry"
        runtimes = ["onnxruntime"]
        devices = ["local", "board"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [[models]]
        name = "broken"
        factory = "brokenmodel:make"

        [variants]
        fp32 = []
        """
        + FAST_MEASURE,
    )
    results = tmp_path / "results"
    sshd.kill()
    summary, cells, _ = walk_suite(suite_path, results)
    assert cells[("tiny", "local")].status == "ok"
    assert cells[("tiny", "board")].reason.startswith("device_unavailable: unreachable:")
    assert cells[("broken", "local")].result["failure_kind"] == "model_error"
    # The board's lane stopped at its first unavailable cell.
    assert "not attempted" in cells[("broken", "board")].reason
    local_id = cells[("tiny", "local")].id

    sshd.start()
    code, out = cli("run", str(suite_path), "--results", str(results))
    assert code == 1  # the broken model still fails
    assert "2 cells measured (2 retried (device_unavailable 2)), 2 already done" in out, out
    with ResultsStore(results / "harness.db") as store:
        [run] = store.runs()
        now = {(c.model, c.device): c for c in store.cells(run.id)}
    assert now[("tiny", "board")].status == "ok"
    assert now[("tiny", "local")].id == local_id  # not measured again
    assert now[("broken", "board")].result["failure_kind"] == "model_error"

    walker = SuiteWalker(load_suite(suite_path), results, retry_failed=True)
    try:
        summary = walker.walk()
    finally:
        walker.close()
    assert dict(summary.retried) == {"model_error": 2} and summary.skipped == 2


# --- failure kinds that say what happened --------------------------------------------


def silent_server() -> tuple[socket.socket, list[socket.socket]]:
    """A port that accepts connections and never says anything (a hung service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, held


@pytest.mark.slow
def test_a_port_that_never_speaks_ssh_is_no_banner_and_paramiko_stays_off_the_terminal(
    tmp_path: Path, sshd: TestSshd
) -> None:
    board(tmp_path, sshd)
    server, held = silent_server()
    port = server.getsockname()[1]
    set_connection(tmp_path, port=port, connect_timeout_s=2, retries=1, retry_backoff_s=0.5)
    suite_path = board_suite(tmp_path, 'name = "banner"\n' + ONE_MODEL + FAST_MEASURE)
    results = tmp_path / "results"
    try:
        proc = harness_process("run", str(suite_path), "--results", str(results))
        out, err = proc.communicate(timeout=300)
        # On the device alone (no model to build first): two attempts of 2 s and a 0.5 s
        # back-off, then the cell fails.
        artifact = tmp_path / "m.onnx"
        job = make_job("onnxruntime", str(artifact), matmul_model(artifact, 16, 1), QUICK)
        device = SshDevice(load_profile(tmp_path / "devices" / "board.toml"))
        started = time.monotonic()
        with pytest.raises(RunnerError, match="no SSH banner"):
            device.run(job, artifact, None, 30)
        took = time.monotonic() - started
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in out + err and "paramiko" not in out + err, err
    with ResultsStore(results / "harness.db") as store:
        [run] = store.runs()
        [cell] = store.cells(run.id)
    assert cell.reason.startswith(
        f"device_unavailable: no SSH banner from 127.0.0.1:{port} within 2 s"
    ), cell.reason
    assert "2 attempts" in cell.reason
    assert took < 2 * 2 + 0.5 + 2, took
    log = (results / "logs" / f"run-{run.id}.log").read_text()
    assert "paramiko" in log and "banner" in log


def test_a_missing_board_python_is_named_and_not_retried(tmp_path: Path, sshd: TestSshd) -> None:
    board(tmp_path, sshd)
    set_connection(tmp_path, python="/opt/no-such/python3", retries=3, retry_backoff_s=2)
    suite_path = board_suite(tmp_path, 'name = "nopython"\n' + ONE_MODEL + FAST_MEASURE)
    _, cells, _ = walk_suite(suite_path, tmp_path / "results")
    cell = cells[("tiny", "board")]
    assert cell.reason.startswith(
        "device_unavailable: python not found at '/opt/no-such/python3' on board"
    ), cell.reason
    assert "connection.python" in cell.result["error"]
    assert "damaged" not in cell.reason
    # Retried, it would take 2 + 4 + 8 s of back-off.
    assert cell.result["wall_seconds"] < 10


def test_a_passphrase_protected_key_says_so_and_how_to_use_an_agent(
    tmp_path: Path, sshd: TestSshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    locked = tmp_path / "locked_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(locked)], check=True
    )
    (sshd.dir / "authorized_keys").write_text(Path(str(locked) + ".pub").read_text())
    board(tmp_path, sshd, key_file=locked)
    suite_path = board_suite(tmp_path, 'name = "passphrase"\n' + ONE_MODEL + FAST_MEASURE)
    _, cells, _ = walk_suite(suite_path, tmp_path / "results")
    cell = cells[("tiny", "board")]
    assert cell.result["failure_kind"] == "auth_failed", cell.reason
    assert "protected by a passphrase" in cell.reason
    assert "ssh-add" in cell.result["error"] and "connection.agent = true" in cell.result["error"]
