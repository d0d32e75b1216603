"""Devices by profile kind, resolved lazily."""

from __future__ import annotations

from harness.devices.base import Device
from harness.devices.config import DeviceProfile
from harness.plugins import resolve

DEVICE_KINDS: dict[str, str] = {
    "local": "harness.devices.local:LocalDevice",
    "emulated": "harness.devices.emulated:EmulatedDevice",
    "ssh": "harness.devices.ssh:SshDevice",
}


def open_device(profile: DeviceProfile) -> Device:
    return resolve(DEVICE_KINDS[profile.kind])(profile)


def lane(profile: DeviceProfile) -> str:
    """Which runs must not overlap: everything on this machine (local and emulated
    devices share its cores, so running them side by side would disturb both) is one
    lane; each SSH board is its own."""
    if profile.kind == "ssh" and profile.connection is not None:
        conn = profile.connection
        return f"ssh:{conn.host}:{conn.port}"
    return "this-machine"
