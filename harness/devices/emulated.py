"""This machine held to a board's caps: the local runner inside a cgroup sandbox.

The runner is the same file, run by the same interpreter as on the local device
(:func:`harness.devices.local.run_runner_process`), only started through a wrapper that
puts it into the run's cgroups (see :mod:`harness.devices.cgroups`), so emulated and
local numbers differ by the caps alone. What was enforced, and how, is recorded in the
result under ``emulation`` (and in ``env.emulation``, which the combined cell keeps).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from harness.devices import cgroups
from harness.devices.base import Device, DeviceRun, job_for
from harness.devices.config import DeviceProfile, EmulationCaps
from harness.devices.local import RunnerProcesses, run_runner_process
from harness.errors import RunnerError

log = logging.getLogger(__name__)

# What an allocation failure looks like when RLIMIT_AS refuses memory: Python's own
# MemoryError, C++ std::bad_alloc, ONNX Runtime's and glibc's messages.
_ALLOC_FAILURE = re.compile(
    r"MemoryError|bad_alloc|[Ff]ailed to allocate|Cannot allocate memory|"
    r"[Oo]ut of memory|ENOMEM|cannot allocate memory",
)


class EmulatedDevice(Device):
    """Runs the runner here, held to the profile's ``[emulation]`` caps.

    ``cgroup_root`` overrides the profile's (tests point it at an empty or read-only
    directory to take the fallback path).
    """

    def __init__(self, profile: DeviceProfile, cgroup_root: Path | str | None = None):
        super().__init__(profile)
        self.processes = RunnerProcesses()
        self.caps_config = profile.emulation or EmulationCaps()
        self.cgroup_root = Path(cgroup_root or self.caps_config.cgroup_root)

    def caps(self, threads: int) -> cgroups.Caps:
        """The caps for a run with ``threads`` compute threads.

        ``speed_factor`` is the board's *single-core* speed, and a CFS quota is shared
        by the whole group: the quota is speed x the cores the run can keep busy
        (``min(cores, threads)``), so a 1-thread run on a 4-core board gets a quarter
        of one core at speed 0.25, not a whole core.
        """
        conf = self.caps_config
        hw = self.profile.hardware
        cores = conf.cores or hw.cores
        memory = conf.memory_mb or hw.ram_mb
        fraction = None
        if conf.speed_factor is not None:
            # Cores beyond this machine's are capped away (with a warning, see
            # cgroups.sandbox), so they cannot be kept busy here either.
            here = len(os.sched_getaffinity(0))
            busy = min(cores or here, here, max(threads, 1))
            fraction = conf.speed_factor * busy
        return cgroups.Caps(
            cores=cores, cpu_fraction=fraction, period_us=conf.period_us, memory_mb=memory
        )

    def abort(self) -> None:
        self.processes.kill_all()

    def run(
        self,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
    ) -> DeviceRun:
        job = job_for(job, artifact, eval_inputs)
        threads = int(job.get("threads") or 1)
        caps = self.caps(threads)
        origin = f"device {self.name}"
        with cgroups.sandbox(self.name, caps, self.cgroup_root) as box:
            record = box.record
            record["caps"] = {
                "cores": caps.cores,
                "speed_factor": self.caps_config.speed_factor,
                "memory_mb": caps.memory_mb,
                "threads": threads,
            }
            if caps.cores is not None and threads > caps.cores:
                record["warnings"].append(
                    f"threads ({threads}) > emulated cores ({caps.cores}): oversubscribed"
                )
            try:
                run = run_runner_process(box.prefix, job, timeout_s, origin, self.processes)
            except RunnerError as exc:
                stats = box.stats()
                record["cgroup"] = stats
                self._raise_if_memory(box, stats, exc)
                raise
            stats = box.stats()
        record["cgroup"] = stats
        result = run.result
        self._check_period(result, caps, record)
        self._board_power(result, record)
        result["emulation"] = record
        return DeviceRun(result=result, outputs=run.outputs)

    def _raise_if_memory(
        self, box: cgroups.Sandbox, stats: dict[str, Any], exc: RunnerError
    ) -> None:
        """Turn a run the memory cap ended into ``does_not_fit: memory``."""
        cap = box.record["caps"]["memory_mb"]
        sigkilled = exc.kind == "out_of_memory"
        if box.killed_by_memory_cap(stats, sigkilled):
            peak = stats.get("memory_peak_mb")
            raise RunnerError(
                f"memory: the runner needed more than the {cap} MB of {self.name} "
                f"(killed by the memory cgroup's OOM killer; peak {peak} MB, "
                f"{stats.get('oom_kills')} OOM kill(s))",
                kind="does_not_fit",
                stderr=exc.stderr,
            ) from None
        if box.memory_fallback and (
            _ALLOC_FAILURE.search(str(exc)) or _ALLOC_FAILURE.search(exc.stderr or "")
        ):
            raise RunnerError(
                f"memory: an allocation failed under the {cap} MB address-space limit "
                f"(RLIMIT_AS fallback) of {self.name}: {str(exc).splitlines()[0][:200]}",
                kind="does_not_fit",
                stderr=exc.stderr,
            ) from None

    @staticmethod
    def _check_period(result: dict[str, Any], caps: cgroups.Caps, record: dict[str, Any]) -> None:
        """Warn when inferences are shorter than the quota period: throttling then falls
        between samples and the p50 understates the cap (the mean does not)."""
        if caps.cpu_fraction is None or record.get("speed") is None:
            return
        _, period = cgroups.quota_us(caps.cpu_fraction, caps.period_us)
        p50 = (result.get("within_trial") or {}).get("p50")
        samples = result.get("samples_ms") or []
        if p50 is not None and samples and p50 < 2 * period / 1000:
            mean = sum(samples) / len(samples)
            record["warnings"].append(
                f"speed: p50 {p50:.3g} ms is shorter than two quota periods ({period} us): "
                f"whole inferences fit between throttles, so the cap shows in the mean "
                f"({mean:.3g} ms) more than in the p50; a lower emulation.period_us helps "
                "down to about 2 ms (the kernel enforces quotas at scheduler ticks)"
            )

    def _board_power(self, result: dict[str, Any], record: dict[str, Any]) -> None:
        """Power from the board's model, not this machine's sensors.

        A RAPL reading here is the host's package power, not the board's. The runner's
        CPU use is measured under the speed cap (0.25 of a core when the board would be
        fully busy), so it is divided by the speed factor before the model is applied.
        """
        power = result.get("power")
        model = self.profile.power
        if not isinstance(power, dict):
            return
        if model is None:
            if str(power.get("source", "")).startswith("measured"):
                power["note"] = (
                    f"emulated: {power['source']} is this machine's sensor, not the "
                    f"board's; give {self.name} a [power] model to get the board's"
                )
            return
        util = power.get("cpu_util")
        if util is None:
            return
        speed = self.caps_config.speed_factor if record.get("speed") else None
        board_util = min(util / speed, 1.0) if speed else util
        host = None
        if str(power.get("source", "")).startswith("measured"):
            host = {k: power.get(k) for k in ("source", "power_w", "idle_w")}
        p50 = (result.get("within_trial") or {}).get("p50")
        power_w = model.idle_w + (model.max_w - model.idle_w) * board_util
        active = power_w - model.idle_w
        result["power"] = {
            **{k: v for k, v in power.items() if k in ("cpu_util", "readings")},
            "source": "modelled",
            "power_w": power_w,
            "idle_w": model.idle_w,
            "idle_source": "model",
            "active_w": active,
            "energy_mj": max(active, 0.0) * p50 if p50 is not None else None,
            "note": (
                f"emulated: {self.name}'s power model at a board CPU use of {board_util:.2f}"
                + (f" (measured {util:.2f} under a {speed:g} speed cap)" if speed else "")
                + (f"; this machine's own reading was {host}" if host else "")
            ),
        }
