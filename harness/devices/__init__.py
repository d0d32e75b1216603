"""Devices by profile kind, resolved lazily."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from harness.devices.base import Device
from harness.devices.config import DeviceProfile
from harness.errors import HarnessError
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
    """Which runs must not overlap: everything on this machine (local and emulated
    devices share its cores, so running them side by side would disturb both) is one
    lane; each SSH board is its own."""
    if profile.kind == "ssh" and profile.connection is not None:
        conn = profile.connection
        host, port = conn.host, conn.port
        try:
            # Through ~/.ssh/config: two profiles naming one board by an alias and by its
            # address are one lane, so their runs never overlap.
            from harness.devices.ssh_connect import resolve_target

            target = resolve_target(profile)
            host, port = target.host, target.port
        except HarnessError:
            pass  # no user to log in as: the cell fails on that; the lane is as written
        return f"ssh:{host}:{port}"
    return "this-machine"


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
