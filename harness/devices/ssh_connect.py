"""Opening an SSH session to a board: where it is, who it is, and that it is who it says.

* Where: the profile's ``[connection]`` table, with ``~/.ssh/config`` (or the file the
  profile names) filling what the table leaves out, so a ``Host`` alias works.
* Who it is: the host key must already be in known_hosts. An unknown key is refused with
  its fingerprint and the command that records it (``harness devices trust NAME``); a
  key that differs from the recorded one is refused loudly. Nothing is ever accepted
  automatically.
* Transient faults (connection refused or reset while sshd restarts, a dropped
  transport) are retried with back-off by :func:`with_retries`; authentication and host
  key problems are not, because waiting does not fix them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paramiko

from harness.devices.config import DeviceProfile
from harness.errors import HarnessError, RunnerError

log = logging.getLogger(__name__)

# paramiko logs every failed handshake with its traceback at ERROR. Those are faults the
# harness reports in its own words; paramiko's lines go to the run log (see
# harness.runlog) and never to the terminal.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.propagate = False
if not _paramiko_log.handlers:
    _paramiko_log.addHandler(logging.NullHandler())


class NoBanner(ConnectionError):
    """Something accepted the TCP connection but sent no SSH banner in time: an sshd
    that is stopped or swamped, or another service on that port. Retried: a board
    that is booting looks like this too."""


T = TypeVar("T")


@dataclass(frozen=True)
class SshTarget:
    """A board's resolved address and credentials."""

    device: str
    alias: str  # the profile's ``host`` (maybe an ssh_config alias)
    host: str
    port: int
    user: str
    key_files: tuple[str, ...]
    agent: bool
    known_hosts: Path
    connect_timeout_s: float
    retries: int
    retry_backoff_s: float

    @property
    def host_key_name(self) -> str:
        """The name known_hosts files this host under (OpenSSH's convention)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def _expand(path: str) -> Path:
    return Path(path).expanduser()


def resolve_target(profile: DeviceProfile) -> SshTarget:
    """The profile's connection with its ssh_config ``Host`` entry filled in."""
    conn = profile.connection
    if conn is None:
        raise HarnessError(f"device {profile.name} has no [connection] table")
    entry: dict[str, object] = {}
    config_path = _expand(conn.ssh_config)
    if config_path.is_file():
        entry = dict(paramiko.SSHConfig.from_path(str(config_path)).lookup(conn.host))
    host = conn.host if "hostname" not in entry else str(entry["hostname"])
    port = conn.port
    if "port" not in conn.model_fields_set and "port" in entry:
        port = int(str(entry["port"]))
    user = conn.user or (str(entry["user"]) if "user" in entry else None)
    if user is None:
        raise HarnessError(
            f"device {profile.name}: no user to log in as: set connection.user in its "
            f"profile or `User` for Host {conn.host} in {config_path}"
        )
    keys: list[str] = []
    if conn.key_file:
        keys.append(str(_expand(conn.key_file)))
    identities = entry.get("identityfile")
    for identity in identities if isinstance(identities, list) else []:
        keys.append(str(_expand(str(identity))))
    return SshTarget(
        device=profile.name,
        alias=conn.host,
        host=host,
        port=port,
        user=user,
        key_files=tuple(dict.fromkeys(keys)),
        agent=conn.agent,
        known_hosts=_expand(conn.known_hosts),
        connect_timeout_s=conn.connect_timeout_s,
        retries=conn.retries,
        retry_backoff_s=conn.retry_backoff_s,
    )


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _trust_hint(target: SshTarget) -> str:
    return (
        f"if this is your board, check the fingerprint on it (`ssh-keygen -lf "
        f"/etc/ssh/ssh_host_ed25519_key.pub`) and run `harness devices trust {target.device}`"
    )


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    def __init__(self, target: SshTarget):
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        raise RunnerError(
            f"device {self.target.device}: {self.target.host_key_name} presented an unknown "
            f"{key.get_name()} host key {fingerprint(key)} (not in {self.target.known_hosts}); "
            f"refusing to connect. {_trust_hint(self.target)}",
            kind="host_key_unknown",
        )


def _changed_key_error(target: SshTarget, exc: paramiko.BadHostKeyException) -> RunnerError:
    return RunnerError(
        f"device {target.device}: THE HOST KEY OF {target.host_key_name} HAS CHANGED. "
        f"known_hosts ({target.known_hosts}) has {exc.expected_key.get_name()} "
        f"{fingerprint(exc.expected_key)}, the host presented {exc.key.get_name()} "
        f"{fingerprint(exc.key)}. Someone may be intercepting the connection, or the board "
        f"was reinstalled; refusing to connect. If you know it was reinstalled, run "
        f"`harness devices trust {target.device} --replace`",
        kind="host_key_changed",
    )


# What a board that is restarting, rebooting or briefly off the network looks like.
TRANSIENT = (
    ConnectionError,
    socket.timeout,
    EOFError,
    paramiko.ssh_exception.NoValidConnectionsError,
    paramiko.SSHException,
    OSError,
)


# Remote file errors that waiting does not fix.
NOT_TRANSIENT = (
    PermissionError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return False
    if isinstance(exc, RunnerError):
        return exc.kind == "transfer_failed"
    if isinstance(exc, NOT_TRANSIENT):
        return False
    return isinstance(exc, TRANSIENT)


def connect(target: SshTarget) -> paramiko.SSHClient:
    """One authenticated session, with the host key checked against known_hosts."""
    client = paramiko.SSHClient()
    if target.known_hosts.is_file():
        client.load_host_keys(str(target.known_hosts))
    client.set_missing_host_key_policy(_RefuseUnknownHost(target))
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            key_filename=list(target.key_files) or None,
            allow_agent=target.agent,
            look_for_keys=False,
            timeout=target.connect_timeout_s,
            banner_timeout=target.connect_timeout_s,
            auth_timeout=target.connect_timeout_s,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise _changed_key_error(target, exc) from None
    except paramiko.PasswordRequiredException as exc:
        client.close()
        raise RunnerError(
            f"device {target.device}: a key file is protected by a passphrase ({exc}; keys: "
            f"{', '.join(target.key_files) or 'none'}), and the harness never asks for one: "
            "load it into an agent (`eval $(ssh-agent)` then `ssh-add KEYFILE`) and set "
            "connection.agent = true in its profile",
            kind="auth_failed",
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        keys = ", ".join(target.key_files) or "none"
        raise RunnerError(
            f"device {target.device}: {target.where} refused our key ({exc}); keys tried: "
            f"{keys}{', and the ssh agent' if target.agent else ''}. Check connection.key_file "
            f"in its profile, and that the public key is in ~{target.user}/.ssh/"
            f"authorized_keys on the board (`ssh-copy-id -p {target.port} {target.user}@"
            f"{target.host}`)",
            kind="auth_failed",
        ) from None
    except FileNotFoundError as exc:
        client.close()
        raise RunnerError(
            f"device {target.device}: key file {exc.filename} does not exist "
            "(connection.key_file in its profile)",
            kind="auth_failed",
        ) from None
    except paramiko.SSHException as exc:
        # Which stage the handshake reached tells what went wrong, not the message:
        # paramiko's own wait for the banner and ours race, and the loser's error is a
        # bare "No existing session" raised by the authentication that came next.
        transport = client.get_transport()
        banner = transport is not None and bool(transport.remote_version)
        keys_exchanged = transport is not None and transport.host_key is not None
        authenticating = (
            keys_exchanged
            and transport is not None
            and transport.is_active()
            and not transport.is_authenticated()
        )
        client.close()
        if not banner:
            raise NoBanner(
                f"no SSH banner from {target.host}:{target.port} within "
                f"{target.connect_timeout_s:.0f} s: something accepted the connection but did "
                "not speak SSH (a stopped or overloaded sshd, or another service on that port)"
            ) from None
        if authenticating:
            # The host key checked out and the link is up, yet no login happened: paramiko
            # says so with a bare SSHException ("No authentication methods available")
            # when it had no key to offer. Waiting does not fix that, so it is not retried.
            raise _no_login_error(target, exc) from None
        raise
    except BaseException:
        client.close()
        raise
    return client


def _agent_state() -> str:
    """What the SSH agent offers, in words for an error message."""
    sock = os.environ.get("SSH_AUTH_SOCK")
    if not sock:
        return "no SSH agent is running (SSH_AUTH_SOCK is not set)"
    try:
        count = len(paramiko.Agent().get_keys())
    except Exception as exc:  # an agent that cannot be reached is as good as none
        return f"the SSH agent at {sock} cannot be used ({exc})"
    return f"the SSH agent at {sock} holds {count} key{'s' if count != 1 else ''}"


def _no_login_error(target: SshTarget, exc: BaseException) -> RunnerError:
    keys = ", ".join(target.key_files) or "none"
    agent = _agent_state() if target.agent else "connection.agent is false"
    return RunnerError(
        f"device {target.device}: could not log in to {target.where} ({exc}): key files: "
        f"{keys}; {agent}. Set connection.key_file in its profile "
        f'(e.g. "~/.ssh/id_ed25519"), or start an agent and add your key '
        f"(`eval $(ssh-agent)` then `ssh-add`)",
        kind="auth_failed",
    )


def with_retries(
    target: SshTarget,
    attempt: Callable[[], T],
    on_retry: Callable[[BaseException], None] = lambda exc: None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``attempt()``, retried after transient faults with doubling back-off.

    What still fails after the last retry becomes ``device_unavailable`` with the
    underlying error; non-transient errors pass straight through.
    """
    delay = target.retry_backoff_s
    begun = time.monotonic()
    for number in range(target.retries + 1):
        try:
            return attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if number == target.retries:
                raise RunnerError(
                    f"{_describe(exc, target)} (device {target.device}, {target.where}: "
                    f"{target.retries + 1} attempts in {time.monotonic() - begun:.0f} s)",
                    kind="device_unavailable",
                ) from None
            log.warning(
                "device %s: %s: %s; retrying in %.1f s",
                target.device,
                type(exc).__name__,
                exc,
                delay,
            )
            on_retry(exc)
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _describe(exc: BaseException, target: SshTarget) -> str:
    """A transient fault in words: the harness's own message where it wrote one."""
    if isinstance(exc, NoBanner):
        return str(exc)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        causes = {type(e) for e in exc.errors.values()}
        if causes <= {ConnectionRefusedError}:
            return (
                f"unreachable: {target.host}:{target.port} refused the connection (the board "
                "is off or booting, or sshd is not running on that port)"
            )
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"unreachable: {target.host}:{target.port} did not answer ({exc})"
    return f"unreachable: {type(exc).__name__}: {exc}"


# --- trusting a host key --------------------------------------------------------------


@dataclass(frozen=True)
class PresentedKey:
    """The key a host presents, and what known_hosts already says about that host."""

    key: paramiko.PKey
    recorded: paramiko.PKey | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    @property
    def status(self) -> str:
        if self.recorded is None:
            return "unknown"
        return "trusted" if self.recorded == self.key else "changed"


def fetch_host_key(target: SshTarget) -> PresentedKey:
    """The host's key, read from the key exchange alone (no authentication)."""
    sock = socket.create_connection((target.host, target.port), timeout=target.connect_timeout_s)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=target.connect_timeout_s)
        key = transport.get_remote_server_key()
    finally:
        transport.close()
    recorded = None
    if target.known_hosts.is_file():
        keys = paramiko.HostKeys(str(target.known_hosts))
        entry = keys.lookup(target.host_key_name) or {}
        recorded = entry.get(key.get_name())
    return PresentedKey(key=key, recorded=recorded)


def _line_names_host(line: str, name: str) -> bool:
    """Whether a known_hosts line is about ``name`` (plain or hashed entry)."""
    fields = line.split()
    if not fields or line.lstrip().startswith("#"):
        return False
    for pattern in fields[0].split(","):
        if pattern.startswith("|1|"):
            _, _, salt, hashed = pattern.split("|", 3)
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            if hmac.compare_digest(base64.b64encode(mac).decode(), hashed):
                return True
        elif pattern == name:
            return True
    return False


def record_host_key(target: SshTarget, key: paramiko.PKey, replace: bool = False) -> None:
    """Append the host's key to known_hosts; with ``replace``, drop its old lines first.

    Lines about other hosts (and comments) are kept as they are.
    """
    path = target.known_hosts
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    if replace:
        lines = [line for line in lines if not _line_names_host(line, target.host_key_name)]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines.append(f"{target.host_key_name} {key.get_name()} {key.get_base64()}\n")
    tmp = path.with_name(path.name + ".harness-tmp")
    tmp.write_text("".join(lines))
    tmp.chmod(0o600)
    tmp.replace(path)
