"""Devices by profile kind, resolved lazily."""

from __future__ import annotations

from harness.devices.base import Device
from harness.devices.config import DeviceProfile
from harness.plugins import resolve

DEVICE_KINDS: dict[str, str] = {
    "local": "harness.devices.local:LocalDevice",
}


def open_device(profile: DeviceProfile) -> Device:
    return resolve(DEVICE_KINDS[profile.kind])(profile)
