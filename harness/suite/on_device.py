"""What the walker and the interleave share to measure an artifact on a device: the
devices they open, each once, the runner job for an artifact, and the executor that runs
a job's trials (in this process, or on a device lab's node: harness/suite/ray_executor.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from harness.artifacts import Artifact
from harness.devices import abort_all, open_device
from harness.devices.base import Device
from harness.devices.config import DeviceProfile
from harness.errors import RunnerError
from harness.export.precision import precision_of
from harness.export.registry import runtime_spec
from harness.models.inputs import InputSpec
from harness.runner.job import MeasureSettings, make_job
from harness.runner.trials import TrialsRun, run_trials


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


class Executor(Protocol):
    """Runs the trials of one job on a device; the walker is given one. Build, scoring
    and the store stay with the walker, on the submitting host."""

    kind: str

    def run_trials(
        self,
        profile: DeviceProfile,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
        trials: int,
    ) -> Executed: ...

    def abort(self) -> None:
        """Stop every runner going now (Ctrl-C, SIGTERM)."""

    def close(self) -> None: ...


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


@dataclass(frozen=True)
class Executed:
    """The trials of one job, and where and when they ran (the cell's ``executor``)."""

    run: TrialsRun
    executor: dict[str, Any]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class InProcessExecutor:
    """Runs a job's trials from this process: the devices open here (a board over SSH
    from this host). What every walk did before there were other executors."""

    kind = "inprocess"

    def __init__(self) -> None:
        self.devices = OpenDevices()

    def run_trials(
        self,
        profile: DeviceProfile,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
        trials: int,
    ) -> Executed:
        started = utc_now()
        try:
            run = run_trials(
                self.devices.get(profile), job, artifact, eval_inputs, timeout_s, trials
            )
        except RunnerError as exc:
            exc.executor = self._record(started)
            raise
        return Executed(run, self._record(started))

    def _record(self, started: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "host": socket.gethostname(),
            "started_at": started,
            "ended_at": utc_now(),
        }

    def abort(self) -> None:
        self.devices.abort()

    def close(self) -> None:
        self.devices.close()
