"""The board's own build run before the board: the runner under qemu-aarch64.

The artifact is exported for the board's CPU (its profile's target: S8S8 QDQ for
onnxruntime on ARM, XNNPACK's NEON kernels for ExecuTorch), and the same runner file runs
in an arm64 Debian root (:mod:`harness.devices.qemu_root`) with the runtimes' aarch64
wheels, the runner started the way the local device starts it
(:func:`harness.devices.local.run_runner_process`) with the root's Python under qemu as
its prefix. So the outputs are the board build's outputs, and accuracy, agreement and
the other fidelity scores are real; the timings are qemu's translation of the code on
this machine, so every cell says ``timing: not meaningful under qemu`` and its validity
carries ``qemu_timing`` (reports then do not present the latency as a board's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.devices.base import Device, DeviceRun, job_for
from harness.devices.config import DeviceProfile
from harness.devices.local import RunnerProcesses, run_runner_process
from harness.devices.qemu_root import (
    EXECUTORCH_SIZE_NOTE,
    TIMING_NOTE,
    SetupError,
    find_qemu,
    root_status,
    runner_prefix,
    settings_of,
)
from harness.errors import RunnerError

QEMU_VALIDITY = "qemu_timing"


class QemuDevice(Device):
    def __init__(self, profile: DeviceProfile):
        super().__init__(profile)
        self.processes = RunnerProcesses()

    def abort(self) -> None:
        self.processes.kill_all()

    def run(
        self,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
    ) -> DeviceRun:
        qemu = find_qemu()
        setup = f"harness devices setup {self.name}"
        if qemu is None:
            raise RunnerError(
                "no qemu-aarch64-static on PATH: apt-get install qemu-user-static, then " + setup,
                kind="device_unavailable",
            )
        status = root_status(self.profile)
        if not status.ready:
            raise RunnerError(f"{status.problem}: run `{setup}`", kind="device_unavailable")
        runtime = str(job.get("runtime"))
        if runtime not in status.runtimes:
            have = ", ".join(f"{r} {v}" for r, v in status.runtimes.items()) or "no runtime"
            extra = f" (`{setup} --executorch` adds it: {EXECUTORCH_SIZE_NOTE})"
            raise RunnerError(
                f"the arm64 root of {self.name} has {have}, not {runtime}"
                + (extra if runtime == "executorch" else ""),
                kind="unsupported",
            )
        try:
            prefix = runner_prefix(self.profile, qemu)
        except SetupError as exc:
            raise RunnerError(str(exc), kind="device_unavailable") from None
        job = job_for(job, artifact, eval_inputs)
        run = run_runner_process(prefix, job, timeout_s, f"device {self.name}", self.processes)
        result = run.result
        validity = result.get("validity")
        reasons = list(validity) if isinstance(validity, list) else []
        result["validity"] = [*reasons, QEMU_VALIDITY]
        result["timing"] = TIMING_NOTE
        power = result.get("power") or {}
        # No energy figure: the CPU use a model would scale is qemu's, on this machine.
        result["power"] = {
            "source": "none",
            "power_w": None,
            "idle_w": None,
            "cpu_util": power.get("cpu_util"),
            "note": f"power {TIMING_NOTE}",
        }
        result["qemu"] = {
            "cpu": settings_of(self.profile).cpu,
            "root": str(status.layout.root),
            "runtime_version": status.runtimes.get(runtime),
            "note": (
                "the board's build (aarch64 wheels, artifact for the board's CPU) run under "
                "qemu-user on this machine: outputs and scores are real; latency, "
                "throughput, CPU use, power and memory are qemu's, not the board's"
            ),
        }
        return DeviceRun(result=result, outputs=run.outputs)
