"""Devices by profile kind, resolved lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.devices.base import Device, DeviceRun
from harness.devices.config import DeviceProfile
from harness.errors import RunnerError
from harness.plugins import resolve

DEVICE_KINDS: dict[str, str] = {
    "local": "harness.devices.local:LocalDevice",
    "emulated": "harness.devices.emulated:EmulatedDevice",
    "ssh": "harness.devices:PendingSshDevice",
}


class PendingSshDevice(Device):
    """Stands in for the SSH device until it exists: every cell on it fails with a
    clear reason instead of stopping the walk."""

    def run(
        self,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
    ) -> DeviceRun:
        conn = self.profile.connection
        where = f" ({conn.user}@{conn.host}:{conn.port})" if conn else ""
        raise RunnerError(
            f"ssh devices are not implemented yet: cannot run on {self.name}{where}; "
            f"use {self.name}-emulated to run here under its caps",
            kind="device_unavailable",
        )


def open_device(profile: DeviceProfile) -> Device:
    return resolve(DEVICE_KINDS[profile.kind])(profile)
