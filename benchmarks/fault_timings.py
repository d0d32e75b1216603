"""Every board fault the harness is meant to survive, tried on a real sshd: what the
harness says and how long it takes to say it.

Each fault is made for real against an OpenSSH sshd on 127.0.0.1 (tests/sshd.py): a
closed port, a port that accepts and says nothing, an sshd stopped with SIGSTOP before
a connection, during a 256 MB transfer and while the runner measures, an sshd killed
mid-transfer, keys that do not match, a passphrase-protected key, a missing board
Python, a runner past its time-out, and SIGTERM / SIGINT / kill -9 of `harness run`
while a board measures. Device-level faults go through ``SshDevice.run`` with a small
ONNX model (no model to build, so the time is the fault's); the interrupts go through
the command line.

For a dead board the bound is the one the profile promises: connect_timeout_s x
(retries + 1) plus the back-off between attempts, which a silent port takes in full
(each attempt waits out its time-out); half a second is allowed on top for starting
threads. The board profile here uses connect_timeout_s = 2, retries = 2,
retry_backoff_s = 0.5: 2 x 3 + 0.5 + 1 = 7.5 s, bound 8.0 s.

    .venv/bin/python benchmarks/fault_timings.py [--markdown]

Prints one row per fault; exits 1 when a fault took longer than its bound or was not
named as expected. Needs sshd (Debian package openssh-server).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from harness.devices.config import load_profile  # noqa: E402
from harness.devices.ssh import DeployStats, SshDevice  # noqa: E402
from harness.errors import RunnerError  # noqa: E402
from harness.results.store import ResultsStore  # noqa: E402
from harness.runner.job import MeasureSettings, make_job  # noqa: E402
from tests.onnx_models import big_model, matmul_model  # noqa: E402
from tests.sshd import TestSshd, sshd_missing  # noqa: E402
from tests.suite_files import FAST_MEASURE, write_suite  # noqa: E402

CONNECT_TIMEOUT_S = 2.0
RETRIES = 2
BACKOFF_S = 0.5
# What the settings themselves take (each attempt waits its connect time-out, then the
# back-off doubles), plus half a second for starting threads and processes.
SETTLE_S = 0.5
DEAD_BOARD_BOUND_S = CONNECT_TIMEOUT_S * (RETRIES + 1) + BACKOFF_S * (2**RETRIES - 1) + SETTLE_S
QUICK = MeasureSettings(warmup_count=2, warmup_seconds=0.0, min_count=10, min_seconds=0.02)
LONG = MeasureSettings(warmup_count=2, warmup_seconds=0.0, min_count=10, min_seconds=60.0)


@dataclass
class Outcome:
    fault: str
    said: str
    seconds: float
    bound_s: float | None
    expected: str  # a regular expression the message must match

    @property
    def ok(self) -> bool:
        in_time = self.bound_s is None or self.seconds <= self.bound_s
        return in_time and re.search(self.expected, self.said) is not None


class Lab:
    """A test sshd, a board profile for it and a small model, in one directory."""

    def __init__(self, root: Path):
        self.root = root
        self.sshd = TestSshd(root / "sshd")
        self.sshd.start()
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(self.sshd.known_hosts_line())
        self.artifact = root / "m.onnx"
        self.shape = matmul_model(self.artifact, 64, 2)
        self.devices = root / "devices"
        self.devices.mkdir()
        self.write_profile()

    def write_profile(self, **overrides: object) -> Path:
        text = self.sshd.profile_toml(self.known_hosts, self.root / "work")
        values: dict[str, object] = {
            "connect_timeout_s": CONNECT_TIMEOUT_S,
            "retries": RETRIES,
            "retry_backoff_s": BACKOFF_S,
            **overrides,
        }
        for key, value in values.items():
            line = f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}"
            if re.search(rf"^{key} = ", text, flags=re.M):
                text = re.sub(rf"^{key} = .*$", line, text, flags=re.M)
            else:
                text += line + "\n"
        path = self.devices / "board.toml"
        path.write_text(text)
        return path

    def device(self, **overrides: object) -> SshDevice:
        return SshDevice(load_profile(self.write_profile(**overrides)))

    def job(self, settings: MeasureSettings = QUICK) -> dict:
        return make_job("onnxruntime", str(self.artifact), self.shape, settings)

    def family(self) -> list[psutil.Process]:
        assert self.sshd.proc is not None
        root = psutil.Process(self.sshd.proc.pid)
        kids = [
            p for p in root.children(recursive=True) if "sshd" in p.name() or "sftp" in p.name()
        ]
        return [root, *kids]

    def freeze(self) -> list[psutil.Process]:
        procs = self.family()
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        return procs

    @staticmethod
    def thaw(procs: list[psutil.Process]) -> None:
        for proc in procs:
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass

    def close(self) -> None:
        self.sshd.kill()


def timed_run(device: SshDevice, call: Callable[[], object]) -> tuple[str, float]:
    started = time.monotonic()
    try:
        call()
        said = "ok"
    except RunnerError as exc:
        said = f"{exc.kind}: {exc}"
    finally:
        device.close()
    return said, time.monotonic() - started


def run_job(lab: Lab, device: SshDevice, settings: MeasureSettings = QUICK, timeout_s: float = 60):
    return lambda: device.run(lab.job(settings), lab.artifact, None, timeout_s)


def device_faults(lab: Lab) -> list[Outcome]:
    out: list[Outcome] = []

    # Nothing listens on the port.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    device = lab.device(port=port)
    said, took = timed_run(device, run_job(lab, device))
    out.append(
        Outcome(
            "port closed (board off, sshd down)",
            said,
            took,
            DEAD_BOARD_BOUND_S,
            r"^device_unavailable: unreachable",
        )
    )

    # Something accepts and never speaks.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    held: list[socket.socket] = []
    threading.Thread(
        target=lambda: [held.append(silent.accept()[0]) for _ in range(10)], daemon=True
    ).start()
    device = lab.device(port=silent.getsockname()[1])
    said, took = timed_run(device, run_job(lab, device))
    silent.close()
    for conn in held:
        conn.close()
    out.append(
        Outcome(
            "port accepts, sends no SSH banner",
            said,
            took,
            DEAD_BOARD_BOUND_S,
            r"^device_unavailable: no SSH banner",
        )
    )

    # sshd stopped before we connect.
    stopped = lab.freeze()
    device = lab.device()
    said, took = timed_run(device, run_job(lab, device))
    lab.thaw(stopped)
    out.append(
        Outcome(
            "sshd stopped (SIGSTOP) before connecting",
            said,
            took,
            DEAD_BOARD_BOUND_S,
            r"^device_unavailable: no SSH banner",
        )
    )

    # sshd stopped in the middle of a 256 MB transfer.
    big = lab.root / "big.onnx"
    big_shape = big_model(big, 256)
    device = lab.device()
    frozen: list[psutil.Process] = []

    def stop_at_32_mb(name: str, sent: int, total: int) -> None:
        if sent > 32 << 20 and not frozen:
            frozen.extend(lab.freeze())

    device.on_transfer = stop_at_32_mb
    said, took = timed_run(device, lambda: device.push(big, DeployStats()))
    lab.thaw(frozen)
    out.append(
        Outcome(
            "sshd stopped during a 256 MB push",
            said,
            took,
            CONNECT_TIMEOUT_S + 3,
            r"^device_unavailable: stalled: .*no progress",
        )
    )

    # sshd stopped while the runner measures: timed from the stop.
    device = lab.device()
    frozen = []
    frozen_at: list[float] = []

    def stop_when_measuring() -> None:
        if _runner_group(lab.root / "work", 60) is not None:
            frozen.extend(lab.freeze())
            frozen_at.append(time.monotonic())

    threading.Thread(target=stop_when_measuring, daemon=True).start()
    said, _ = timed_run(device, run_job(lab, device, LONG, 120))
    took = time.monotonic() - frozen_at[0] if frozen_at else float("nan")
    lab.thaw(frozen)
    out.append(
        Outcome(
            "sshd stopped while the runner measures",
            said,
            took,
            2 * CONNECT_TIMEOUT_S + 2,
            r"^device_unavailable: stalled: .*stopped answering",
        )
    )

    # sshd killed mid-transfer, back 0.3 s later: retried, succeeds.
    device = lab.device()
    killed: list[bool] = []

    def kill_at_32_mb(name: str, sent: int, total: int) -> None:
        if sent > 32 << 20 and not killed:
            killed.append(True)
            lab.sshd.kill()
            threading.Timer(0.3, lab.sshd.start).start()

    device.on_transfer = kill_at_32_mb
    big_job = make_job("onnxruntime", str(big), big_shape, QUICK)
    said, took = timed_run(device, lambda: device.run(big_job, big, None, 120))
    out.append(Outcome("sshd killed during a push, back after 0.3 s", said, took, None, r"^ok$"))
    big.unlink()

    # Keys.
    (lab.root / "empty_known_hosts").write_text("")
    device = lab.device(known_hosts=str(lab.root / "empty_known_hosts"))
    said, took = timed_run(device, run_job(lab, device))
    out.append(Outcome("unknown host key", said, took, 3.0, r"^host_key_unknown: .*SHA256:"))

    other = TestSshd(lab.root / "other-sshd")
    (lab.root / "wrong_known_hosts").write_text(
        other.known_hosts_line().replace(str(other.port), str(lab.sshd.port))
    )
    device = lab.device(known_hosts=str(lab.root / "wrong_known_hosts"))
    said, took = timed_run(device, run_job(lab, device))
    out.append(Outcome("changed host key", said, took, 3.0, r"^host_key_changed: .*HAS CHANGED"))

    device = lab.device(key_file=str(other.user_key))
    said, took = timed_run(device, run_job(lab, device))
    out.append(
        Outcome(
            "key not authorized on the board", said, took, 3.0, r"^auth_failed: .*refused our key"
        )
    )

    locked = lab.root / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(locked)], check=True)
    device = lab.device(key_file=str(locked))
    said, took = timed_run(device, run_job(lab, device))
    out.append(
        Outcome(
            "passphrase-protected key, no agent",
            said,
            took,
            3.0,
            r"^auth_failed: .*passphrase.*ssh-add",
        )
    )

    # The board's Python.
    device = lab.device(python="/opt/no-such/python3")
    said, took = timed_run(device, run_job(lab, device))
    out.append(
        Outcome(
            "board python missing", said, took, 3.0, r"^device_unavailable: python not found at"
        )
    )

    # A runner past its time-out.
    device = lab.device()
    said, took = timed_run(device, run_job(lab, device, LONG, 3.0))
    out.append(
        Outcome(
            "runner past its 3 s time-out",
            said,
            took,
            3.0 + 5 + 3,
            r"^timeout: runner exceeded its 3 s",
        )
    )
    return out


def interrupt_faults(lab: Lab) -> list[Outcome]:
    """SIGTERM, SIGINT and kill -9 of `harness run` while the board measures."""
    out: list[Outcome] = []
    suite_dir = lab.root / "suite"
    suite_dir.mkdir()
    lab.write_profile()
    path = write_suite(
        suite_dir,
        f"""
        name = "faults"
        runtimes = ["onnxruntime"]
        devices = ["board"]
        device_dirs = ["{lab.devices}"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        """
        + FAST_MEASURE.replace("min_seconds = 0.02", "min_seconds = 120").replace(
            "max_seconds = 5", "max_seconds = 200"
        ),
    )
    text = path.read_text()
    # write_suite puts the repo's device_dirs first; the board is in lab.devices.
    path.write_text(re.sub(r'^device_dirs = \["[^"]*"\]\n', "", text, count=1, flags=re.M))
    for name, signum, code in (("SIGTERM", signal.SIGTERM, 143), ("SIGINT", signal.SIGINT, 130)):
        results = lab.root / f"results-{name}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "run", str(path), "--results", str(results)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pgid = _runner_group(lab.root / "work")
        sent = time.monotonic()
        proc.send_signal(signum)
        proc.communicate(timeout=120)
        took = time.monotonic() - sent
        alive = bool(pgid and _group_alive(pgid))
        with ResultsStore(results / "harness.db") as store:
            status = store.runs()[-1].status
        said = (
            f"exit {proc.returncode}, run {status}, remote runner "
            f"{'STILL RUNNING' if alive else 'stopped'}"
        )
        out.append(
            Outcome(
                f"{name} to `harness run` while the board measures",
                said,
                took,
                3 * CONNECT_TIMEOUT_S + 5,
                rf"^exit {code}, run interrupted, remote runner stopped$",
            )
        )
    return out


def _runner_group(work: Path, timeout_s: float = 180) -> int | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid_file in (work / "runs").glob("*/pid"):
            try:
                pgid = int(pid_file.read_text())
            except (OSError, ValueError):
                continue
            if _group_alive(pgid):
                time.sleep(1.0)
                return pgid
        time.sleep(0.1)
    return None


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            pass
    return False


def _cli(*argv: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    said = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
    return proc.returncode, said


def local_faults(root: Path) -> list[Outcome]:
    """Damaged inputs on this machine: the user's errors, named."""
    out: list[Outcome] = []
    work = root / "local"
    work.mkdir()
    results = work / "results"
    results.mkdir()
    (results / "harness.db").write_bytes(os.urandom(64 << 10))
    started = time.monotonic()
    code, said = _cli("report", "--results", str(results))
    out.append(
        Outcome(
            "harness.db is random bytes (`harness report`)",
            f"exit {code}: {said}",
            time.monotonic() - started,
            30.0,
            r"^exit 2: harness: error: .*not a harness results store",
        )
    )

    model = work / "model.onnx"
    matmul_model(model, 32, 2)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # cut short
    suite = work / "ready.toml"
    suite.write_text(
        'name = "ready"\nruntimes = ["onnxruntime"]\ndevices = ["local"]\n'
        f'device_dirs = ["{REPO / "devices"}"]\n'
        '[[models]]\nname = "cut"\nfile = "model.onnx"\n[variants]\nfp32 = []\n'
    )
    started = time.monotonic()
    code, said = _cli("validate", str(suite))
    out.append(
        Outcome(
            "a .onnx cut in half (`harness validate`)",
            f"exit {code}: {said}",
            time.monotonic() - started,
            60.0,
            r"^exit 2: .*models\[0\]\.file.*not a valid ONNX file",
        )
    )

    (work / "typo.py").write_text("def make(:\n    pass\n")
    factory_suite = work / "typo.toml"
    factory_suite.write_text(
        'name = "typo"\nruntimes = ["onnxruntime"]\ndevices = ["local"]\n'
        f'device_dirs = ["{REPO / "devices"}"]\n'
        '[[models]]\nname = "typo"\nfactory = "typo:make"\n[variants]\nfp32 = []\n'
    )
    started = time.monotonic()
    code, said = _cli("run", str(factory_suite), "--results", str(work / "typo-results"))
    with ResultsStore(work / "typo-results" / "harness.db") as store:
        [cell] = store.cells(store.runs()[-1].id)
    out.append(
        Outcome(
            "a factory module with a SyntaxError (`harness run`)",
            f"exit {code}: {cell.reason}",
            time.monotonic() - started,
            120.0,
            r"^exit 1: model_error: .*models\[0\]\.factory.*SyntaxError",
        )
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    missing = sshd_missing()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="harness-faults-") as tmp:
        lab = Lab(Path(tmp))
        try:
            outcomes = device_faults(lab) + interrupt_faults(lab) + local_faults(Path(tmp))
        finally:
            lab.close()
    if args.markdown:
        print("| fault | what the harness says | seconds | bound |")
        print("|---|---|---|---|")
    for o in outcomes:
        bound = f"{o.bound_s:.1f}" if o.bound_s is not None else "-"
        said = o.said.replace("|", "/")
        said = said if len(said) <= 160 else said[:157] + "..."
        if args.markdown:
            print(f"| {o.fault} | `{said}` | {o.seconds:.1f} | {bound} |")
        else:
            mark = "ok  " if o.ok else "FAIL"
            print(f"{mark} {o.seconds:6.1f} s (bound {bound:>5}) {o.fault}: {said}")
    failed = [o for o in outcomes if not o.ok]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} faults named and bounded")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
