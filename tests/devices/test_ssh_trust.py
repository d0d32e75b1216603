"""The host-key trust decision (harness.devices.ssh_trust), on real paramiko keys; the
exchange with a real sshd is in test_ssh.py."""

from __future__ import annotations

import paramiko
import pytest

from harness.devices.ssh_connect import PresentedKey
from harness.devices.ssh_trust import TrustDecision, decide_trust

KEY = paramiko.RSAKey.generate(1024)
OTHER = paramiko.RSAKey.generate(1024)

UNKNOWN = PresentedKey(key=KEY, recorded=None)
TRUSTED = PresentedKey(key=KEY, recorded=KEY)
CHANGED = PresentedKey(key=KEY, recorded=OTHER)
RIGHT = UNKNOWN.fingerprint


@pytest.mark.parametrize(
    ("presented", "yes", "expected", "replace", "decision"),
    [
        (TRUSTED, False, None, False, TrustDecision.ALREADY_TRUSTED),
        (TRUSTED, False, "SHA256:wrong", False, TrustDecision.ALREADY_TRUSTED),
        (UNKNOWN, False, None, False, TrustDecision.CONFIRM),
        (UNKNOWN, True, None, False, TrustDecision.RECORD),
        (UNKNOWN, False, RIGHT, False, TrustDecision.RECORD),
        (UNKNOWN, True, "SHA256:wrong", False, TrustDecision.REFUSE_FINGERPRINT),
        (UNKNOWN, False, "", False, TrustDecision.REFUSE_FINGERPRINT),
        (CHANGED, True, RIGHT, False, TrustDecision.REFUSE_CHANGED),
        (CHANGED, False, None, True, TrustDecision.CONFIRM),
        (CHANGED, True, None, True, TrustDecision.RECORD),
        (CHANGED, False, "SHA256:wrong", True, TrustDecision.REFUSE_FINGERPRINT),
    ],
)
def test_decide_trust(presented, yes, expected, replace, decision) -> None:
    got = decide_trust(presented, yes=yes, expected_fingerprint=expected, replace=replace)
    assert got is decision
