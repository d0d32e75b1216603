"""What one cell reports: its JSON shape (``harness report --format json``), its verdict
and how it stands against its baseline.

Fields named by the foundation issue are always present (null where not measured);
later features add fields, never remove these. The baseline of a cell is the fp32
variant (no recipes) of the same model, runtime and device: the one its speedup, size
ratio and accuracy delta are taken against.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from harness.results.store import CellRecord

_MEMORY_KEYS = ("baseline", "after_load", "peak")
_LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "cv", "ci95")
# Added by the measurement issue: how the CI was built and the per-trial medians.
_LATENCY_EXTRA = ("ci_basis", "trials", "trial_p50s", "cv_robust")

BaselineKey = tuple[str, str, str]  # (model, runtime, device)


def baseline_key(cell: CellRecord) -> BaselineKey:
    return (cell.model, cell.runtime, cell.device)


def is_baseline(cell: CellRecord, baseline_variants: Collection[str] = ()) -> bool:
    """A variant with no recipes (empty lineage), or one named as a baseline (the
    suite's :attr:`~harness.suite.config.Variant.is_baseline` variants)."""
    return cell.variant in baseline_variants or not cell.result.lineage


def find_baselines(
    cells: Iterable[CellRecord], baseline_variants: Collection[str] = ()
) -> dict[BaselineKey, CellRecord]:
    """Per (model, runtime, device): the first baseline cell that succeeded."""
    out: dict[BaselineKey, CellRecord] = {}
    for c in cells:
        if c.status == "ok" and is_baseline(c, baseline_variants):
            out.setdefault(baseline_key(c), c)
    return out


def validity_reasons(cell: CellRecord) -> list[str]:
    """Why a measured cell's numbers are not to be trusted (empty: they are)."""
    return reasons_of(cell.result.validity)


def reasons_of(validity: Any) -> list[str]:
    """A stored validity ("ok", a list of reasons, one reason, or None) as its reasons."""
    if isinstance(validity, list):
        return [str(v) for v in validity]
    if validity in (None, "ok"):
        return []
    return [str(validity)]


def verdict(cell: CellRecord) -> str:
    """``failed`` (no numbers), ``invalid`` (numbers with reasons not to trust them) or
    ``ok``."""
    if cell.status != "ok":
        return "failed"
    return "invalid" if validity_reasons(cell) else "ok"


@dataclass(frozen=True)
class VsBaseline:
    """A measured cell against its baseline: ``speedup`` is baseline p50 / cell p50
    (above 1 is faster), ``size_ratio`` cell size / baseline size (below 1 is smaller),
    ``accuracy_delta_points`` the accuracy difference in percentage points."""

    variant: str
    speedup: float | None
    size_ratio: float | None
    accuracy_delta_points: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vs_baseline(cell: CellRecord, base: CellRecord | None) -> VsBaseline | None:
    """None when the cell failed or its model/runtime/device has no measured baseline."""
    if cell.status != "ok" or base is None:
        return None
    p50, base_p50 = cell.result.latency.p50_ms, base.result.latency.p50_ms
    speedup = base_p50 / p50 if p50 and base_p50 is not None else None
    size_ratio = cell.size_bytes / base.size_bytes if cell.size_bytes and base.size_bytes else None
    acc, base_acc = cell.result.accuracy, base.result.accuracy
    delta = (acc - base_acc) * 100 if acc is not None and base_acc is not None else None
    return VsBaseline(base.variant, speedup, size_ratio, delta)


_DEPLOY_KEYS = ("host", "files_sent", "bytes_sent", "files_cached", "sent")


def deploy_record(cell: CellRecord) -> dict[str, Any] | None:
    """The cell's deploy record with every key (None when its device is this machine)."""
    deploy = cell.result.deploy
    if not isinstance(deploy, dict):
        return None
    record = {k: deploy.get(k) for k in _DEPLOY_KEYS}
    record["sent"] = list(record["sent"] or [])
    return record


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
        "quality": {
            k: r.get(k)
            for k in ("max_abs_error", "mean_abs_error", "cosine", "snr_db", "snr_varying_db")
        },
        # Added by the user-models issue: fidelity against the fp32 PyTorch model, why
        # that reference cannot rank variants by agreement (if so), and the inputs the
        # cell was measured with (name, shape, dtype, id range of each).
        "snr_db": r.get("snr_db"),
        "cosine": r.get("cosine"),
        "baseline_degenerate": r.get("baseline_degenerate"),
        "inputs": r.get("inputs"),
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
        # A device whose timings are not the board's says so (aarch64-qemu: "not
        # meaningful under qemu"); null elsewhere.
        "timing": r.get("timing"),
        "profile": r.get("profile"),
        # Added by the reports issue: the verdict (ok / invalid / failed).
        "verdict": verdict(cell),
        # What an SSH device sent over all trials (files_sent, bytes_sent, files_cached,
        # sent, host), failed cells too; null on devices of this machine.
        "deploy": deploy_record(cell),
    }


def cells_to_dicts(
    cells: list[CellRecord], baseline_variants: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Every cell's JSON with ``vs_baseline`` added: against the fp32 baseline of the
    same model, runtime and device (null when failed or there is none)."""
    baselines = find_baselines(cells, baseline_variants)
    out = []
    for c in cells:
        d = cell_to_dict(c)
        comparison = vs_baseline(c, baselines.get(baseline_key(c)))
        d["vs_baseline"] = comparison.to_dict() if comparison is not None else None
        out.append(d)
    return out
