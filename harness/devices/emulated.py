"""This machine held to a board's caps: the local runner inside a cgroup sandbox.

The runner is the same file, run by the same interpreter as on the local device
(:func:`harness.devices.local.run_runner_process`), only started through a wrapper that
puts it into the run's cgroups (see :mod:`harness.devices.cgroups`), so emulated and
local numbers differ by the caps alone. What was enforced, and how, is recorded in the
result under ``emulation`` (and in ``env.emulation``, which the combined cell keeps).

Under a speed cap the runner samples in blocks of whole quota periods (a CFS quota
throttles per period, so an inference shorter than the period would otherwise run at
full speed: bench_runner.run_blocks), and the record says how the estimate was made
(``estimate``). Where the cap cannot bind, the result's validity says why: the cap was
not enforced (``speed_cap_not_enforced``) or the host was too loaded (``host_loaded:
...``, with the numbers).
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


# A sample under a speed cap is the mean of the inferences in a block of this many
# quota periods (bench_runner.run_blocks): a block starts and ends at an arbitrary phase
# of the period, so it holds N or N+1 throttles; at 10 that is within about 10% per
# block, and the median over blocks is closer still.
BLOCK_PERIODS = 10
# A cap binds only when the runner could get its quota: with more runnable tasks than
# that, it waits its turn beyond the quota and the estimate is the host's load, not the
# board. The runner's fair share of a core, 1 / (1 + other runnable tasks per CPU), must
# be at least this multiple of its quota per core; a share between 1x and 2x the quota
# delivers the quota only when the scheduler's slices fall right within each period.
FAIR_SHARE_MARGIN = 2.0
# Time the hypervisor takes from the vCPUs (steal) above this share makes the run that
# much slower than the quota alone.
MAX_STEAL = 0.05


def host_loaded(load: dict[str, Any], quota_per_core: float) -> str | None:
    """Why the host was too loaded for a quota of ``quota_per_core`` (a fraction of one
    core per busy thread) to bind, with the numbers; None when it was not.

    ``load`` is the runner's ``host_load`` (bench_runner.host_load): runnable tasks
    besides the runner per online CPU (the smaller of the counts at the loop's two ends)
    and the share of the runner's CPUs' time stolen by the hypervisor.
    """
    others = load.get("others_runnable_per_cpu")
    steal = load.get("steal_fraction")
    problems = []
    if others is not None:
        share = 1.0 / (1.0 + others)
        # A fair share is at most a whole core: a quota above half a core per thread
        # (Pi 5, Orin Nano) must not make an idle host look loaded.
        if share < min(FAIR_SHARE_MARGIN * quota_per_core, 1.0):
            problems.append(
                f"{others:.1f} other runnable tasks per CPU (procs_running "
                f"{load.get('procs_running')} on {load.get('online_cpus')} CPUs): a fair share "
                f"of {share:.2f} of a core, under {FAIR_SHARE_MARGIN:g}x the quota's "
                f"{quota_per_core:.2f}"
            )
    if steal is not None and steal >= MAX_STEAL:
        problems.append(f"steal {steal:.1%} of the runner's CPUs' time (limit {MAX_STEAL:.0%})")
    return "; ".join(problems) or None


def _job_precision(job: dict[str, Any]) -> dict[str, Any]:
    """The job's host-only ``precision`` (harness.runner.job.make_job), or an empty one."""
    given = job.get("precision")
    return dict(given) if isinstance(given, dict) else {"name": None, "from": "not given"}


def _estimate(
    result: dict[str, Any], record: dict[str, Any], caps: cgroups.Caps, block_s: float | None
) -> dict[str, Any]:
    """How the cell's latency estimates the board's, and which quantiles mean what."""
    sampling = result.get("sampling") or {}
    if block_s is not None and sampling.get("estimate") == "block_mean":
        per_block = sampling.get("inferences_per_block") or {}
        median = per_block.get("median") or 0
        if median > 1:
            quantiles = (
                "p50 and mean estimate one inference under the cap; p90, p99 and the CIs "
                "are of block means (their spread between blocks), not of single inferences"
            )
        else:
            quantiles = (
                "inferences are as long as a block or longer, so each sample is one "
                "inference (throttles included): every quantile is per inference"
            )
        return {
            "method": "block_mean",
            "how": (
                f"each sample is the mean time of the back-to-back inferences in a block of "
                f"{BLOCK_PERIODS} quota periods ({block_s * 1e3:g} ms, blocks contiguous, so "
                "every throttle falls inside a timed block)"
            ),
            "block_ms": block_s * 1e3,
            "blocks": sampling.get("blocks"),
            "inferences_per_block": per_block,
            "quantiles": quantiles,
        }
    cap = record.get("speed_cap")
    if cap == "not_needed":
        how = "per inference: the board is not slower than the cores it gets here, no quota"
    elif cap == "not_enforced":
        how = (
            "per inference at this machine's full speed: the speed cap could not be "
            "enforced (see not_enforced), so this is not the board's latency"
        )
    elif caps.cpu_fraction is None:
        how = "per inference: the profile asks for no speed cap (no speed_factor)"
    else:  # pragma: no cover - an enforced cap always gets blocks
        how = "per inference"
    return {"method": "per_inference", "how": how, "quantiles": "every quantile per inference"}


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

    def caps(self, threads: int, precision: str | None = None) -> cgroups.Caps:
        """The caps for a run with ``threads`` compute threads of a variant of
        ``precision`` (its own speed factor when the profile has one, see
        :meth:`EmulationCaps.speed_for`).

        The speed factor is the board's *single-core* speed, and a CFS quota is shared
        by the whole group: the quota is speed x the cores the run can keep busy
        (``min(cores, threads)``), so a 1-thread run on a 4-core board gets a quarter
        of one core at speed 0.25, not a whole core.
        """
        conf = self.caps_config
        hw = self.profile.hardware
        cores = conf.cores or hw.cores
        memory = conf.memory_mb or hw.ram_mb
        fraction = None
        speed = conf.speed_for(precision).factor
        if speed is not None:
            busy = self._busy_cores(cores, threads)
            fraction = speed * busy
        return cgroups.Caps(
            cores=cores, cpu_fraction=fraction, period_us=conf.period_us, memory_mb=memory
        )

    @staticmethod
    def _busy_cores(cores: int | None, threads: int) -> int:
        # Cores beyond this machine's are capped away (with a warning, see
        # cgroups.sandbox), so they cannot be kept busy here either.
        here = len(os.sched_getaffinity(0))
        return min(cores or here, here, max(threads, 1))

    def abort(self) -> None:
        self.processes.kill_all()

    def run(
        self,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
    ) -> DeviceRun:
        precision = _job_precision(job)
        choice = self.caps_config.speed_for(precision.get("name"))
        job = job_for(job, artifact, eval_inputs)
        threads = int(job.get("threads") or 1)
        caps = self.caps(threads, precision.get("name"))
        origin = f"device {self.name}"
        block_s = None
        with cgroups.sandbox(self.name, caps, self.cgroup_root) as box:
            record = box.record
            record["caps"] = {
                "cores": caps.cores,
                "speed_factor": choice.factor,
                "memory_mb": caps.memory_mb,
                "threads": threads,
                "precision": precision.get("name"),
                "precision_from": precision.get("from"),
                "speed_factor_basis": choice.basis,
                "speed_source": choice.source or None,
            }
            if caps.cores is not None and threads > caps.cores:
                record["warnings"].append(
                    f"threads ({threads}) > emulated cores ({caps.cores}): oversubscribed"
                )
            if record["speed_cap"] == "enforced" and caps.cpu_fraction is not None:
                # Time whole quota periods: see bench_runner.run_blocks.
                _, period = cgroups.quota_us(caps.cpu_fraction, caps.period_us)
                block_s = BLOCK_PERIODS * period / 1e6
                job["measure"] = {**(job.get("measure") or {}), "block_seconds": block_s}
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
        record["estimate"] = _estimate(result, record, caps, block_s)
        reasons = self._validity_reasons(result, record, caps, threads)
        if reasons:
            verdict = result.get("validity")
            result["validity"] = [*(verdict if isinstance(verdict, list) else []), *reasons]
        self._board_power(result, record, choice.factor)
        result["emulation"] = record
        return DeviceRun(result=result, outputs=run.outputs)

    def _validity_reasons(
        self, result: dict[str, Any], record: dict[str, Any], caps: cgroups.Caps, threads: int
    ) -> list[str]:
        """Why this run is not an estimate of the board: the speed cap was asked for
        but could not be enforced, or the host was too loaded for it to bind."""
        if record.get("speed_cap") == "not_enforced":
            return ["speed_cap_not_enforced"]
        if record.get("speed_cap") != "enforced" or caps.cpu_fraction is None:
            return []
        load = result.get("host_load")
        record["host_load"] = load
        if not isinstance(load, dict):
            record["warnings"].append(
                "host load not measured (no readable proc/stat under the job's sysfs_root): "
                "a starved run would look like a slow board"
            )
            return []
        busy = self._busy_cores(caps.cores, threads)
        loaded = host_loaded(load, min(caps.cpu_fraction / busy, 1.0))
        return [f"host_loaded: {loaded}"] if loaded else []

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

    def _board_power(
        self, result: dict[str, Any], record: dict[str, Any], speed_factor: float | None
    ) -> None:
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
        speed = speed_factor if record.get("speed") else None
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
