"""Whether to record an SSH board's host key: reading the key it presents and deciding
from what known_hosts says and what the user asked. Nothing here asks the user; the
command does, when :func:`decide_trust` says a person must confirm."""

from __future__ import annotations

import enum

import paramiko

from harness.devices.config import DeviceProfile, SshProfile
from harness.devices.ssh_connect import (
    PresentedKey,
    SshTarget,
    fetch_host_key,
    record_host_key,
    resolve_target,
)
from harness.errors import HarnessError


class TrustDecision(enum.Enum):
    ALREADY_TRUSTED = "already_trusted"
    REFUSE_CHANGED = "refuse_changed"  # the key changed and --replace was not given
    REFUSE_FINGERPRINT = "refuse_fingerprint"  # not the fingerprint the user expected
    CONFIRM = "confirm"  # a person must compare the fingerprint and say yes
    RECORD = "record"


def read_host_key(profile: DeviceProfile) -> tuple[SshTarget, PresentedKey]:
    """The board's address and the key it presents, with every way of not getting one
    as a :class:`HarnessError` that says where to look."""
    if not isinstance(profile, SshProfile):
        raise HarnessError(
            f"device {profile.name} is {profile.kind!r}: only ssh devices have a host key"
        )
    target = resolve_target(profile)
    try:
        presented = fetch_host_key(target)
    except OSError as exc:
        raise HarnessError(
            f"cannot reach {target.host}:{target.port} to read its host key: {exc}"
        ) from None
    except (paramiko.SSHException, EOFError) as exc:
        # Something answered but no key exchange happened: not an sshd on that port, or
        # one that closed on us (MaxStartups, a firewall, a banner it never sent).
        raise HarnessError(
            f"{target.host}:{target.port} did not complete an SSH key exchange, so there "
            f"is no host key to show ({type(exc).__name__}: {exc}); check connection.host "
            f"and connection.port in the profile of {profile.name} and that sshd runs there"
        ) from None
    return target, presented


def decide_trust(
    presented: PresentedKey, *, yes: bool, expected_fingerprint: str | None, replace: bool
) -> TrustDecision:
    """What to do with ``presented``. A changed key needs ``replace``; an expected
    fingerprint must match; without ``yes`` or a fingerprint a person confirms."""
    if presented.status == "trusted":
        return TrustDecision.ALREADY_TRUSTED
    if presented.status == "changed" and not replace:
        return TrustDecision.REFUSE_CHANGED
    if expected_fingerprint is not None and expected_fingerprint != presented.fingerprint:
        return TrustDecision.REFUSE_FINGERPRINT
    if not (yes or expected_fingerprint):
        return TrustDecision.CONFIRM
    return TrustDecision.RECORD


def trust_host_key(target: SshTarget, presented: PresentedKey) -> None:
    """Record ``presented`` in known_hosts, in place of the old key when it changed."""
    record_host_key(target, presented.key, replace=presented.status == "changed")
