"""What the walker and the interleave share to measure an artifact on a device: the
devices they open, each once, and the runner job for an artifact."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from harness.artifacts import Artifact
from harness.devices import abort_all, open_device
from harness.devices.base import Device
from harness.devices.config import DeviceProfile
from harness.export.precision import precision_of
from harness.export.registry import runtime_spec
from harness.models.inputs import InputSpec
from harness.runner.job import MeasureSettings, make_job


class OpenDevices:
    """Devices by profile name, each opened on first use and kept until :meth:`close`;
    lanes in threads share one."""

    def __init__(self) -> None:
        self._open: dict[str, Device] = {}
        self._lock = threading.Lock()

    def get(self, profile: DeviceProfile) -> Device:
        with self._lock:
            if profile.name not in self._open:
                self._open[profile.name] = open_device(profile)
            return self._open[profile.name]

    def abort(self) -> None:
        """Every open device stops its runner (:func:`harness.devices.abort_all`)."""
        with self._lock:
            devices = list(self._open.values())
        abort_all(devices)

    def close(self) -> None:
        for device in self._open.values():
            device.close()


def artifact_job(
    runtime: str,
    artifact: Artifact,
    inputs: Sequence[InputSpec],
    settings: MeasureSettings,
    profile: DeviceProfile,
    quant_mode: str | None = None,
) -> dict[str, Any]:
    """The runner job measuring ``artifact`` on the device of ``profile``: its power model
    goes along, and the artifact's precision (from its export notes, else the variant's
    ``quant_mode``), on which an emulated board's speed factor depends (int8 gains differ
    by CPU). The runtime's session settings for that mode go along too (OpenVINO's
    inference precision)."""
    power = profile.power
    return make_job(
        runtime,
        str(artifact.path),
        inputs,
        settings,
        power_model={"idle_w": power.idle_w, "max_w": power.max_w} if power else None,
        precision=precision_of(artifact.meta.get("export_notes"), quant_mode).to_job(),
        runtime_options=runtime_spec(runtime).runtime_options(quant_mode),
    )
