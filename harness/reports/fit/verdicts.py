"""One cell's verdict against a budget: fits, breaks, unknown or failed, with what it
breaks, what its estimate stands on and why its measurement is not trusted."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from harness.reports.cells import reasons_of
from harness.reports.fit.budgets import BudgetCheck, CheckResult, CheckStatus, fidelity_snr
from harness.reports.fit.figures import number
from harness.results.cell_result import Latency
from harness.results.store import CellRecord


class Verdict(str, Enum):
    FITS = "fits"
    BREAKS = "breaks"
    UNKNOWN = "unknown"
    FAILED = "failed"


@dataclass(frozen=True)
class VariantFit:
    model: str
    variant: str
    runtime: str
    run_id: int | None
    status: str
    reason: str | None
    verdict: Verdict
    checks: tuple[CheckResult, ...]
    estimate: bool
    estimate_caveats: tuple[str, ...]
    validity: Any
    metrics: dict[str, float | None]
    # The validity reasons with the cell's own numbers where it has them
    # ("unstable: trial p50s 0.82, 1, 1.3 ms (CV 23%)"); empty for a valid measurement.
    untrusted: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.variant}/{self.runtime}"

    @property
    def summary(self) -> str:
        if self.verdict is Verdict.FAILED:
            return f"failed: {self.reason or 'no reason recorded'}"
        if self.verdict is Verdict.FITS:
            # The margins it fits with, in its own numbers: "fits: p90 0.81 ms <= 1 ms".
            return "fits: " + "; ".join(c.text for c in self.checks)
        broken = [c.text for c in self.checks if c.status is CheckStatus.BROKEN]
        unknown = [c.text for c in self.checks if c.status is CheckStatus.UNKNOWN]
        return "; ".join(broken + unknown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "runtime": self.runtime,
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
            "verdict": self.verdict.value,
            "summary": self.summary,
            "estimate": self.estimate,
            "estimate_caveats": list(self.estimate_caveats),
            "validity": self.validity,
            "untrusted": list(self.untrusted),
            "metrics": dict(self.metrics),
            "checks": [c.to_dict() for c in self.checks],
        }


def _caveats(cell: CellRecord) -> tuple[str, ...]:
    """The caps an emulated run could not enforce ("speed cap not enforced"): such an
    estimate is off by far more than the emulation's usual error."""
    record = cell.result.emulation
    caveats = []
    for note in record.get("not_enforced") or []:
        cap = str(note).split(":", 1)[0].strip()
        caveats.append(f"{cap} cap not enforced")
    return tuple(caveats)


def _unstable_text(latency: Latency, max_cv: float | None) -> str:
    """``unstable`` in numbers. It has two sources: the trials' medians spread more than
    ``max_cv`` between processes, or one trial's samples did (the runner's own check);
    the text says which, with the figures that show it."""
    trial_p50s = list(latency.trial_p50s_ms)
    shown = ", ".join(number(v) for v in trial_p50s)
    trial_cv = None
    if len(trial_p50s) >= 2:
        mean = sum(trial_p50s) / len(trial_p50s)
        var = sum((v - mean) ** 2 for v in trial_p50s) / (len(trial_p50s) - 1)
        trial_cv = math.sqrt(var) / mean if mean > 0 else None
    if trial_cv is not None and (max_cv is None or trial_cv > max_cv):
        return f"unstable: trial p50s {shown} ms (CV {trial_cv * 100:.0f}%)"
    parts = []
    if max_cv is not None:
        parts.append(f"a trial's samples spread more than the {max_cv * 100:.0f}% CV limit")
    cv = latency.stat("cv")
    if cv is not None:
        parts.append(f"CV {float(cv) * 100:.0f}% over all samples")
    if shown:
        parts.append(f"trial p50s {shown} ms")
    return "unstable: " + "; ".join(parts) if parts else "unstable"


def _untrusted(cell: CellRecord) -> tuple[str, ...]:
    """The cell's validity reasons, each with the numbers behind it where the result has
    them, so a row says why its measurement is not to be trusted, not just that."""
    latency = cell.result.latency
    max_cv = cell.result.measure.get("max_cv")
    timed = latency.stat("count")
    out = []
    for reason in reasons_of(cell.result.validity):
        if reason == "unstable":
            reason = _unstable_text(latency, None if max_cv is None else float(max_cv))
        elif reason == "too_few_samples" and timed:
            reason = f"too_few_samples: {timed} timed"
        out.append(reason)
    return tuple(out)


def assess_cell(cell: CellRecord, checks: Iterable[BudgetCheck]) -> VariantFit:
    """One cell's verdict against a budget's checks."""
    metrics = {
        "p50_ms": cell.result.latency.stat("p50"),
        "p90_ms": cell.result.latency.stat("p90"),
        "peak_memory_mb": cell.result.peak_memory_mb,
        "energy_mj": cell.result.energy_mj,
        "accuracy": cell.result.accuracy,
        "agreement": cell.result.agreement,
        "snr_db": fidelity_snr(cell),
        "size_bytes": cell.size_bytes,
    }
    if cell.status != "ok":
        results: tuple[CheckResult, ...] = ()
        verdict = Verdict.FAILED
    else:
        results = tuple(check.evaluate(cell) for check in checks)
        statuses = {r.status for r in results}
        if CheckStatus.BROKEN in statuses:
            verdict = Verdict.BREAKS
        elif CheckStatus.UNKNOWN in statuses:
            verdict = Verdict.UNKNOWN
        else:
            verdict = Verdict.FITS
    return VariantFit(
        model=cell.model,
        variant=cell.variant,
        runtime=cell.runtime,
        run_id=cell.run_id,
        status=cell.status,
        reason=cell.reason,
        verdict=verdict,
        checks=results,
        estimate=cell.emulated,
        estimate_caveats=_caveats(cell) if cell.emulated else (),
        validity=cell.result.validity,
        metrics=metrics,
        untrusted=_untrusted(cell) if cell.status == "ok" else (),
    )
