"""The JSON shape of one cell, as ``harness report --format json`` prints it.

Fields named by the foundation issue are always present (null where not measured);
later features add fields, never remove these.
"""

from __future__ import annotations

from typing import Any

from harness.results.store import CellRecord

_MEMORY_KEYS = ("baseline", "after_load", "peak")
_LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "cv", "ci95")
# Added by the measurement issue: how the CI was built and the per-trial medians.
_LATENCY_EXTRA = ("ci_basis", "trials", "trial_p50s", "cv_robust")


def cell_to_dict(cell: CellRecord) -> dict[str, Any]:
    r = cell.result
    latency = r.get("latency_ms") or {}
    memory = r.get("memory_mb") or {}
    return {
        "model": cell.model,
        "variant": cell.variant,
        "runtime": cell.runtime,
        "device": cell.device,
        "status": cell.status,
        "reason": cell.reason,
        "latency_ms": (
            {k: latency.get(k) for k in _LATENCY_KEYS + _LATENCY_EXTRA} if latency else None
        ),
        "samples": r.get("samples", 0),
        "memory_mb": {k: memory.get(k) for k in _MEMORY_KEYS} if memory else None,
        "size_bytes": cell.size_bytes,
        "accuracy": r.get("accuracy"),
        "agreement": r.get("agreement"),
        "emulated": cell.emulated,
        "emulation": r.get("emulation"),
        "load_ms": r.get("load_ms"),
        "first_inference_ms": r.get("first_inference_ms"),
        "throughput_ips": r.get("throughput_ips"),
        "quality": {k: r.get(k) for k in ("max_abs_error", "mean_abs_error", "cosine")},
        "lineage": r.get("lineage", []),
        "transform_notes": r.get("transform_notes", []),
        "export_notes": r.get("export_notes", {}),
        "model_info": r.get("model_info", {}),
        "artifact_hash": cell.artifact_hash,
        "failure_kind": r.get("failure_kind"),
        # Trials, power, thermals, validity and the per-op profile (null when the cell
        # predates them or failed).
        "trials": r.get("trials"),
        "ci_basis": r.get("ci_basis"),
        "import_ms": r.get("import_ms"),
        "power_w": r.get("power_w"),
        "idle_w": r.get("idle_w"),
        "energy_mj": r.get("energy_mj"),
        "power_source": r.get("power_source"),
        "temps_c": r.get("temps_c"),
        "freq_mhz": r.get("freq_mhz"),
        "throttled": r.get("throttled"),
        "cooldown": r.get("cooldown"),
        "validity": r.get("validity"),
        "profile": r.get("profile"),
    }
