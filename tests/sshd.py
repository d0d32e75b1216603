"""A real OpenSSH sshd on 127.0.0.1 for the SSH device tests.

Each :class:`TestSshd` has its own host key, user key, authorized_keys and config in a
temporary directory and listens on a free port. It can be killed (with every session
process it forked, as a crashing or restarting sshd would) and started again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def sshd_missing() -> str | None:
    """Why the tests cannot start sshd here, or None."""
    if not Path(SSHD).is_file():
        return "OpenSSH sshd is not installed (Debian package openssh-server; .ci/run installs it)"
    if not Path(SFTP_SERVER).is_file():
        return f"{SFTP_SERVER} is missing"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed"
    return None


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "harness-test", "-f", str(path)],
        check=True,
    )
    return path


def _toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestSshd:
    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.host_key = keygen(directory / "host_ed25519")
        self.user_key = keygen(directory / "user_ed25519")
        (directory / "authorized_keys").write_text(Path(str(self.user_key) + ".pub").read_text())
        self.config = directory / "sshd_config"
        self.log = directory / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def user(self) -> str:
        import getpass

        return getpass.getuser()

    def _write_config(self) -> None:
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "MaxStartups 100",
                    "LogLevel VERBOSE",
                    f"Subsystem sftp {SFTP_SERVER}",
                    "",
                ]
            )
        )

    def start(self, wait_s: float = 10.0) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)  # sshd is still binding its port
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL sshd and every session process it started (a crash, not a shutdown)."""
        if self.proc is None:
            return
        try:
            family = [*psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        self.proc.send_signal(signal.SIGKILL)
        for child in family:
            try:
                # The runner started in a session is not sshd's to kill.
                if "sshd" in child.name() or "sftp" in child.name():
                    child.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.proc.wait()
        self.proc = None

    def new_host_key(self) -> None:
        """Replace the host key (the board was reinstalled, or someone is in between)."""
        for suffix in ("", ".pub"):
            Path(str(self.host_key) + suffix).unlink()
        keygen(self.host_key)

    def known_hosts_line(self) -> str:
        kind, body = Path(str(self.host_key) + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {body}\n"

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.host_key) + ".pub"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()[1]

    def profile_toml(
        self,
        known_hosts: Path,
        workdir: Path | str,
        key_file: Path | None = None,
        extra: str = "",
    ) -> str:
        """A device profile for this sshd; the board's Python is this one."""
        import platform

        return (
            'kind = "ssh"\n'
            'description = "a test sshd on 127.0.0.1"\n'
            "[hardware]\n"
            f'arch = "{platform.machine()}"\n'
            f"cores = {len(os.sched_getaffinity(0))}\n"
            "[connection]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'user = "{self.user}"\n'
            f"key_file = {_toml_str(key_file or self.user_key)}\n"
            f"known_hosts = {_toml_str(known_hosts)}\n"
            f"ssh_config = {_toml_str(self.dir / 'no-ssh-config')}\n"
            f"python = {_toml_str(sys.executable)}\n"
            f"workdir = {_toml_str(workdir)}\n"
            "connect_timeout_s = 5\n"
            "retry_backoff_s = 0.2\n" + extra
        )

    def __enter__(self) -> TestSshd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
