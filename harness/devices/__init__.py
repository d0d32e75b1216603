"""Devices by profile kind, resolved lazily.

A kind is a profile class in :data:`harness.devices.config.PROFILE_KINDS` and a device
class here, under the same name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from harness.devices.base import Device
from harness.devices.config import DeviceProfile
from harness.plugins import resolve

DEVICE_KINDS: dict[str, str] = {
    "local": "harness.devices.local:LocalDevice",
    "emulated": "harness.devices.emulated:EmulatedDevice",
    "ssh": "harness.devices.ssh:SshDevice",
    "aarch64-qemu": "harness.devices.qemu:QemuDevice",
}


def open_device(profile: DeviceProfile) -> Device:
    return resolve(DEVICE_KINDS[profile.kind])(profile)


def lane(profile: DeviceProfile) -> str:
    """Which runs must not overlap (:meth:`DeviceProfile.lane`): everything on this
    machine is one lane; each SSH board is its own."""
    return profile.lane()


# How long devices get to stop their runners after an interrupt, at least; a board gets
# its connect time-out about three times over on top (a reconnect, then the stop).
ABORT_GRACE_S = 5.0


def abort_all(devices: Iterable[Device]) -> None:
    """Every device stops its runner (:meth:`Device.abort`), side by side, and this
    returns within a bounded time whether or not they managed."""
    devices = list(devices)
    if not devices:
        return
    budget = ABORT_GRACE_S
    for device in devices:
        conn = device.profile.connection
        if conn is not None:
            budget = max(budget, 3 * conn.connect_timeout_s + ABORT_GRACE_S)
    threads = [
        threading.Thread(target=device.abort, name=f"abort {device.name}", daemon=True)
        for device in devices
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
