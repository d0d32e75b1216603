"""Devices by profile kind, resolved lazily."""

from __future__ import annotations

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
