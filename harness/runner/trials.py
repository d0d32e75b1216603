"""Several runner processes (trials) per cell, combined into the cell's result.

Why trials: the median of one process's samples is precise about *that process*, but
back-to-back processes on the reference 2-core machine differ by 8% (1 thread) to 27%
(2 threads) in p50: memory layout, frequency and co-tenants are drawn once per process.
So each cell runs the runner ``trials`` times and its reported CI is built over the
trials' medians (:func:`harness.results.stats.summarize_trials`). Accuracy outputs and
the per-op profile come from the first trial only: they do not depend on timing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import RunnerError
from harness.results.stats import summarize_trials
from harness.runner.job import MeasureSettings

if TYPE_CHECKING:  # devices import the runner; the runner only names their type
    from harness.devices.base import Device

VALIDITY_ORDER = (
    "throttled",
    "unstable",
    "too_few_samples",
    "cooldown_timeout",
    "speed_cap_not_enforced",
    "host_loaded",
)


@dataclass(frozen=True)
class TrialsRun:
    """Every trial's checked runner result, and the first trial's eval outputs."""

    results: list[dict[str, Any]]
    outputs: np.ndarray | None


def run_trials(
    device: Device,
    job: dict[str, Any],
    artifact: Path,
    eval_inputs: Path | None,
    timeout_s: float,
    trials: int,
) -> TrialsRun:
    """Run the same job ``trials`` times, each as its own runner process.

    A failing trial fails the cell (its :class:`~harness.errors.RunnerError` propagates):
    a cell that only sometimes runs is not a measurement to average.
    """
    results: list[dict[str, Any]] = []
    outputs = None
    profile = job.get("profile") or {}
    for index in range(trials):
        trial_job = {
            **job,
            "profile": {**profile, "enabled": bool(profile.get("enabled")) and index == 0},
        }
        try:
            run = device.run(trial_job, artifact, eval_inputs if index == 0 else None, timeout_s)
        except RunnerError as exc:
            # The failed cell keeps what every trial so far sent to the board.
            exc.deploy = _deploy([*results, {"deploy": exc.deploy}])
            raise
        results.append(run.result)
        if index == 0:
            outputs = run.outputs
    return TrialsRun(results=results, outputs=outputs)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _memory(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Median of each RSS figure over trials, except the peak: the worst one seen."""
    memories = [r.get("memory_mb") or {} for r in results]
    if not any(memories):
        return None
    out: dict[str, Any] = {}
    for key in ("before_import", "baseline", "after_load"):
        out[key] = _median([m.get(key) for m in memories])
    peaks = [m.get("peak") for m in memories if m.get("peak") is not None]
    out["peak"] = max(peaks) if peaks else None
    out["peak_includes_load"] = any(m.get("peak_includes_load") for m in memories)
    return out


def _power(results: list[dict[str, Any]], p50_ms: float) -> dict[str, Any]:
    """Trial-averaged power; energy per inference from it and the pooled p50."""
    powers = [r.get("power") or {} for r in results]
    first = powers[0]
    power_w = _mean([p.get("power_w") for p in powers])
    idle_w = _mean([p.get("idle_w") for p in powers])
    energy = None
    if power_w is not None and idle_w is not None:
        energy = max(power_w - idle_w, 0.0) * p50_ms  # W x ms = mJ
    out = {
        "power_w": power_w,
        "idle_w": idle_w,
        "energy_mj": energy,
        "power_source": first.get("source", "none"),
        "cpu_util": _mean([p.get("cpu_util") for p in powers]),
    }
    detail = {
        k: v
        for k, v in first.items()
        if k in ("rails", "domains", "layout", "board_input", "idle_source", "note")
    }
    if detail:
        out["power_detail"] = detail
    return out


def _validity(results: list[dict[str, Any]], trial_p50s: list[float], max_cv: float) -> Any:
    """Union of the trials' reasons, plus ``unstable`` when the trials' medians spread
    more than ``max_cv`` (relative standard deviation) between processes.

    A reason may carry its numbers (``host_loaded: 2.5 other runnable tasks ...``): one
    entry per reason is kept, the first trial's numbers, with how many trials had it."""
    details: dict[str, str] = {}
    counts: dict[str, int] = {}
    for r in results:
        verdict = r.get("validity", "ok")
        if not isinstance(verdict, list):
            continue
        for reason in dict.fromkeys(str(v) for v in verdict):
            token = reason.split(":", 1)[0].strip()
            details.setdefault(token, reason)
            counts[token] = counts.get(token, 0) + 1
    if len(trial_p50s) >= 2:
        mean = sum(trial_p50s) / len(trial_p50s)
        if mean > 0 and statistics.stdev(trial_p50s) / mean > max_cv:
            details.setdefault("unstable", "unstable")
    for token, reason in details.items():
        if reason != token and counts.get(token, 0) < len(results):
            details[token] = f"{reason} ({counts[token]} of {len(results)} trials)"
    ordered = [details[r] for r in VALIDITY_ORDER if r in details]
    ordered += [details[r] for r in sorted(set(details) - set(VALIDITY_ORDER))]
    return ordered or "ok"


def _thermal(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Temperatures and clocks before the first trial's loop and after the last's."""
    first = (results[0].get("thermal") or {}).get("before") or {}
    last = (results[-1].get("thermal") or {}).get("after") or {}
    return {
        "temps_c": {"before": first.get("temps_c", {}), "after": last.get("temps_c", {})},
        "freq_mhz": {"before": first.get("freq_mhz", {}), "after": last.get("freq_mhz", {})},
        "throttled": {"before": first.get("throttled"), "after": last.get("throttled")},
    }


def _deploy(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What an SSH device sent over all trials (None for devices on this machine)."""
    deploys = [r["deploy"] for r in results if r.get("deploy")]
    if not deploys:
        return None
    return {
        "host": deploys[0].get("host"),
        "files_sent": sum(d.get("files_sent", 0) for d in deploys),
        "bytes_sent": sum(d.get("bytes_sent", 0) for d in deploys),
        "files_cached": sum(d.get("files_cached", 0) for d in deploys),
        "sent": [name for d in deploys for name in d.get("sent", [])],
    }


def combine_trials(
    results: list[dict[str, Any]], settings: MeasureSettings
) -> tuple[dict[str, Any], list[float]]:
    """The cell's result fields from its trials, and all raw samples concatenated
    (trial after trial, for the store)."""
    trial_samples = [[float(s) for s in r["samples_ms"]] for r in results]
    stats = summarize_trials(trial_samples)
    samples = [s for t in trial_samples for s in t]
    p50s = list(stats.trial_p50s)
    fields: dict[str, Any] = {
        "latency_ms": stats.to_dict(),
        "samples": len(samples),
        "trials": len(results),
        "ci_basis": stats.ci_basis,
        "batch": settings.batch,
        "throughput_ips": settings.batch * 1e3 / stats.p50 if stats.p50 > 0 else None,
        "import_ms": _median([r.get("import_ms") for r in results]),
        "load_ms": _median([r.get("load_ms") for r in results]),
        "first_inference_ms": _median([r.get("first_inference_ms") for r in results]),
        "memory_mb": _memory(results),
        "runtime_version": results[0].get("runtime_version"),
        "env": results[0].get("env"),
        # What an emulated device enforced (the same for every trial).
        "emulation": results[0].get("emulation"),
        # A device whose timings are not the board's says so (aarch64-qemu); a session
        # with settings of its own says what it ran with (OpenVINO's precision).
        **{
            key: results[0][key]
            for key in ("timing", "qemu", "runtime_settings")
            if key in results[0]
        },
        "validity": _validity(results, p50s, settings.max_cv),
        "deploy": _deploy(results),
        "profile": results[0].get("profile"),
        **_power(results, stats.p50),
        **_thermal(results),
        "cooldown": [r.get("cooldown") for r in results]
        if any(r.get("cooldown") for r in results)
        else None,
        "trial_results": [
            {
                "p50": p50,
                "count": len(t),
                "stop_reason": r.get("stop_reason"),
                "within_ci95": (r.get("within_trial") or {}).get("ci95"),
                "cv_robust": (r.get("within_trial") or {}).get("cv_robust"),
                "load_ms": r.get("load_ms"),
                "first_inference_ms": r.get("first_inference_ms"),
                "power_w": (r.get("power") or {}).get("power_w"),
                "validity": r.get("validity"),
            }
            for r, t, p50 in zip(results, trial_samples, p50s, strict=True)
        ],
    }
    return fields, samples
