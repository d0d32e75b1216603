"""Hardware fit: which variants meet a device's budgets, and which one to ship there.

A *budget* (``[budgets.<device>]`` in a suite, or ``--budget KEY=VALUE`` on the command
line) holds limits on p90 latency, peak memory, energy per inference, accuracy, output
fidelity (``min_snr_db``: the SNR of a variant's outputs against the fp32 PyTorch model,
the budget for models without labels; see :func:`fidelity_snr`) and artifact size.
Each limit becomes a :class:`BudgetCheck` (metric, limit, direction); every cell of the
run on a budgeted device is checked against all of them:

* ``fits``: every limit is met;
* ``breaks``: at least one limit is broken (each broken one says by how much);
* ``unknown``: nothing is broken but a limited metric was not measured (no energy
  reading, no labelled accuracy): never counted as fitting;
* ``failed``: the cell failed; its reason is kept.

A budget for a board (``pi4``) also holds for the emulated profiles of that board
(``pi4-emulated``, ``board = "pi4"``) unless they have their own. Emulated results are
estimates; where the store also holds a real measurement of the same board and variant
(in this run or the latest run that has one), the report sets the two side by side.

``FitReport.to_dict()`` is what ``harness fit --format json`` prints and what the HTML
report renders. Its shape (keys are always present; ``null`` where not known)::

    {
      "run_id": 3, "suite_name": "quickstart",
      "accuracy_tolerance": 0.005,          # accuracies this close count as a tie
      "devices": [{
        "device": "pi4-emulated", "board": "pi4", "emulated": true,
        "label": "estimate: emulated on this machine with pi4's caps",
        "budget_from": "pi4",               # the budget table used (own name or board)
        "budget": {"p90_ms": 20.0, ...},    # only the limits that are set
        "variants": [{
          "model", "variant", "runtime", "run_id",
          "status": "ok" | "failed", "reason": str | null,
          "verdict": "fits" | "breaks" | "unknown" | "failed",
          "summary": "p90 31.2 ms > 20 ms budget (+11.2 ms, +56%)",  # or "fits: p90 ...", ...
          "estimate": bool, "estimate_caveats": ["speed cap not enforced", ...],
          "validity": "ok" | [reasons] | null,
          "untrusted": ["unstable: trial p50s 0.82, 1, 1.3 ms (CV 23%)", ...],  # [] if valid
          "metrics": {"p50_ms", "p90_ms", "peak_memory_mb", "energy_mj",
                      "accuracy", "agreement", "snr_db", "size_bytes"},
          "checks": [{"metric": "p90_ms", "label": "p90",
                      "direction": "higher_is_worse" | "lower_is_worse",  # ceiling | floor
                      "limit", "value", "status": "met" | "broken" | "unknown",
                      "excess": value - limit | null, "relative": excess / limit | null,
                      "text": str}],
        }],
        "recommendations": [{             # one per model on this device
          "model", "variant": str | null, "runtime": str | null,  # null: nothing fits
          "fitting": int, "reason": str,
          "passed_over": {"int8/onnxruntime": "accuracy 97% against ...'s 98.1%", ...},
        }],
      }],
      "devices_without_budget": ["local"],
      "emulation_vs_real": [{
        "board", "model", "variant", "runtime",
        "emulated_device", "emulated_run_id", "real_device", "real_run_id",
        "p50_ms": {"estimate", "measured", "ratio"},          # ratio = estimate / measured
        "peak_memory_mb": {"estimate", "measured", "ratio"},
      }],
      "emulation_trust": [{                # per emulated device and board, over the pairs
        "board", "emulated_device", "pairs",
        "p50_ratio_geomean", "p50_ratio_range": [min, max] | null,
        "peak_memory_ratio_geomean", "peak_memory_ratio_range": [min, max] | null,
      }],
    }
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from harness.configfile import load_toml, validate
from harness.errors import ConfigError
from harness.plugins import suggest
from harness.reports.cells import reasons_of
from harness.results.cell_result import Latency
from harness.results.store import CellRecord, ResultsStore
from harness.results.thresholds import Direction
from harness.suite.config import Budget, default_dirs

# Accuracies within half a percentage point are a tie: the held-out digits set has a
# few thousand images, so smaller differences are a handful of images either way.
DEFAULT_ACCURACY_TOLERANCE = 0.005
COMMAND_LINE = "<command line>"
EMULATED_SUFFIX = "-emulated"


# --- formatting of numbers in verdict texts ------------------------------------------


def _num(value: float) -> str:
    """A number with as many digits as a reader needs: 31.2, 4.05, 0.123, 20."""
    size = abs(value)
    if size >= 100:
        text = f"{value:.0f}"
    elif size >= 10:
        text = f"{value:.1f}"
    elif size >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _percent(fraction: float) -> str:
    digits = 0 if round(abs(fraction * 100), 1) >= 10 else 1
    return f"{fraction * 100:+.{digits}f}%"


def _bytes(value: float) -> str:
    if value >= 2**20:
        return f"{_num(value / 2**20)} MB"
    if value >= 2**10:
        return f"{_num(value / 2**10)} KB"
    return f"{_num(value)} B"


def _signed(show: Callable[[float], str]) -> Callable[[float], str]:
    return lambda delta: ("+" if delta >= 0 else "-") + show(abs(delta))


# --- budget checks --------------------------------------------------------------------


class CheckStatus(str, Enum):
    MET = "met"
    BROKEN = "broken"
    UNKNOWN = "unknown"


class Verdict(str, Enum):
    FITS = "fits"
    BREAKS = "breaks"
    UNKNOWN = "unknown"
    FAILED = "failed"


def fidelity_snr(cell: CellRecord) -> float | None:
    """The SNR a ``min_snr_db`` budget checks: the output SNR against the fp32 PyTorch
    model, or, where that model's outputs are near-constant (a bias that dominates every
    input counts as signal and would let any variant pass), the SNR of the part of the
    output that depends on the input (``snr_varying_db``)."""
    degenerate = cell.result.baseline_degenerate
    if any(str(r).startswith("near-constant") for r in degenerate):
        return cell.result.snr_varying_db
    return cell.result.snr_db


@dataclass(frozen=True)
class FitMetric:
    """One budgetable quantity: the ``Budget`` key it is limited by, which way is worse
    (the same :class:`Direction` compare's thresholds use: a budget on a
    higher-is-worse metric is a ceiling, on a lower-is-worse one a floor), where a cell
    holds it and how it reads in a sentence."""

    budget_key: str
    label: str
    direction: Direction
    example: str
    read: Callable[[CellRecord], float | None]
    show: Callable[[float], str]
    show_delta: Callable[[float], str]


FIT_METRICS: dict[str, FitMetric] = {
    m.budget_key: m
    for m in (
        FitMetric(
            "p90_ms",
            "p90",
            Direction.HIGHER_IS_WORSE,
            "p90_ms=20",
            lambda c: c.result.latency.stat("p90"),
            lambda v: f"{_num(v)} ms",
            _signed(lambda v: f"{_num(v)} ms"),
        ),
        FitMetric(
            "peak_memory_mb",
            "peak memory",
            Direction.HIGHER_IS_WORSE,
            "peak_memory_mb=300",
            lambda c: c.result.peak_memory_mb,
            lambda v: f"{_num(v)} MB",
            _signed(lambda v: f"{_num(v)} MB"),
        ),
        FitMetric(
            "energy_mj",
            "energy",
            Direction.HIGHER_IS_WORSE,
            "energy_mj=5",
            lambda c: c.result.energy_mj,
            lambda v: f"{_num(v)} mJ",
            _signed(lambda v: f"{_num(v)} mJ"),
        ),
        FitMetric(
            "min_accuracy",
            "accuracy",
            Direction.LOWER_IS_WORSE,
            "min_accuracy=0.95 (a fraction)",
            lambda c: c.result.accuracy,
            lambda v: f"{v * 100:.1f}%",
            lambda d: f"{d * 100:+.1f} pts",
        ),
        FitMetric(
            "min_snr_db",
            "SNR",
            Direction.LOWER_IS_WORSE,
            "min_snr_db=30 (dB against the fp32 PyTorch outputs)",
            fidelity_snr,
            lambda v: f"{_num(v)} dB",
            _signed(lambda v: f"{_num(v)} dB"),
        ),
        FitMetric(
            "max_size_bytes",
            "size",
            Direction.HIGHER_IS_WORSE,
            "max_size_bytes=2000000",
            lambda c: c.size_bytes,
            _bytes,
            _signed(_bytes),
        ),
    )
}


@dataclass(frozen=True)
class CheckResult:
    metric: str
    label: str
    direction: Direction
    limit: float
    value: float | None
    status: CheckStatus
    text: str

    @property
    def excess(self) -> float | None:
        """How far past the limit (value - limit; negative for a missed floor)."""
        return None if self.value is None else self.value - self.limit

    @property
    def relative(self) -> float | None:
        excess = self.excess
        return None if excess is None else excess / self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "label": self.label,
            "direction": self.direction.value,
            "limit": self.limit,
            "value": self.value,
            "status": self.status.value,
            "excess": self.excess,
            "relative": self.relative,
            "text": self.text,
        }


@dataclass(frozen=True)
class BudgetCheck:
    """One limit of a budget: ``metric`` must stay on ``direction``'s side of ``limit``."""

    metric: FitMetric
    limit: float

    @property
    def direction(self) -> Direction:
        return self.metric.direction

    @property
    def is_ceiling(self) -> bool:
        return self.direction is Direction.HIGHER_IS_WORSE

    def within(self, value: float) -> bool:
        """At the limit counts as within: a budget of 20 ms admits 20 ms."""
        return value <= self.limit if self.is_ceiling else value >= self.limit

    def evaluate(self, cell: CellRecord) -> CheckResult:
        m = self.metric
        value = m.read(cell)
        if value is None:
            status = CheckStatus.UNKNOWN
            text = f"{m.label} unknown (not measured; limit {m.show(self.limit)})"
        elif self.within(value):
            status = CheckStatus.MET
            sign = "<=" if self.is_ceiling else ">="
            text = f"{m.label} {m.show(value)} {sign} {m.show(self.limit)}"
        else:
            status = CheckStatus.BROKEN
            excess = value - self.limit
            if self.is_ceiling:
                head = f"{m.label} {m.show(value)} > {m.show(self.limit)} budget"
            else:
                head = f"{m.label} {m.show(value)} < {m.show(self.limit)} minimum"
            text = f"{head} ({m.show_delta(excess)}, {_percent(excess / self.limit)})"
        return CheckResult(m.budget_key, m.label, self.direction, self.limit, value, status, text)


def budget_checks(budget: Budget) -> tuple[BudgetCheck, ...]:
    """The budget's limits that are set, in the order of :data:`FIT_METRICS`."""
    limits = budget.model_dump()
    return tuple(
        BudgetCheck(metric, float(limits[key]))
        for key, metric in FIT_METRICS.items()
        if limits.get(key) is not None
    )


# --- inputs: budgets from a suite or the command line, boards from profiles -----------


def parse_budget_options(options: Iterable[str]) -> dict[str, float]:
    """``["p90_ms=20", "peak_memory_mb=300"]`` -> limits, validated like a suite's
    ``[budgets.<device>]`` table (a later repeat of a key wins)."""
    keys = list(Budget.model_fields)
    limits: dict[str, float] = {}
    for option in options:
        key, sep, text = option.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ConfigError(
                COMMAND_LINE, "--budget", "KEY=VALUE with KEY one of " + ", ".join(keys), option
            )
        if key not in Budget.model_fields:
            raise ConfigError(
                COMMAND_LINE, f"--budget {key}", "a budget key: " + suggest(key, keys)
            )
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        example = FIT_METRICS[key].example
        if not math.isfinite(value):
            raise ConfigError(
                COMMAND_LINE, f"--budget {key}", f"a finite number, e.g. {example}", text
            )
        try:
            validate(Budget, {key: value}, COMMAND_LINE)
        except ConfigError as exc:
            expected = f"{exc.expected}, e.g. {example}"
            raise ConfigError(COMMAND_LINE, f"--budget {key}", expected, text) from None
        limits[key] = value
    return limits


def budget_for(
    device: str, board: str | None, budgets: Mapping[str, Budget]
) -> tuple[str, Budget] | None:
    """The budget that holds for ``device`` and the name it is kept under: its own,
    else its board's (an emulated profile inherits the real board's budget)."""
    if device in budgets:
        return device, budgets[device]
    if board is not None and board in budgets:
        return board, budgets[board]
    return None


def with_overrides(
    budgets: Mapping[str, Budget],
    overrides: Mapping[str, float],
    targets: Mapping[str, str | None],
) -> dict[str, Budget]:
    """``budgets`` with command-line limits laid over the budget each target device
    (name -> the board it emulates, or None) already has, its own or its board's: the
    command line wins key by key."""
    merged = dict(budgets)
    if not overrides:
        return merged
    for device, board in targets.items():
        found = budget_for(device, board, budgets)
        base = found[1].model_dump(exclude_none=True) if found else {}
        merged[device] = validate(Budget, {**base, **overrides}, COMMAND_LINE)
    return merged


@dataclass(frozen=True)
class SuiteBudgets:
    """What ``harness fit`` takes from a suite file: its budgets and where its device
    profiles are looked up (for the boards of emulated profiles)."""

    path: Path
    budgets: dict[str, Budget]
    device_dirs: tuple[Path, ...]


def load_suite_budgets(path: Path) -> SuiteBudgets:
    """Read only the ``budgets`` and ``device_dirs`` of a suite: a report on an old run
    must not depend on the suite's models still importing."""
    data = load_toml(path)
    tables = data.get("budgets", {})
    if not isinstance(tables, dict):
        raise ConfigError(path, "budgets", "a table of [budgets.<device>] tables", tables)
    budgets = {
        name: validate(Budget, table, path, key_prefix=f"budgets.{name}")
        for name, table in tables.items()
    }
    extra = data.get("device_dirs", [])
    if not isinstance(extra, list) or not all(isinstance(d, str) for d in extra):
        raise ConfigError(path, "device_dirs", "a list of directory names", extra)
    return SuiteBudgets(path, budgets, tuple(default_dirs(path.parent, "devices", extra)))


def boards_from_profiles(dirs: Iterable[Path]) -> dict[str, str]:
    """Emulated profile name -> its board, from the profiles in ``dirs`` (first wins).
    A profile that does not load is skipped: it cannot stop a report on stored data."""
    from harness.devices.config import load_profile

    boards: dict[str, str] = {}
    seen: set[str] = set()
    for directory in dirs:
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                profile = load_profile(path)
            except ConfigError:
                continue
            if profile.emulated and profile.board:
                boards[profile.name] = profile.board
    return boards


def board_of(device: str, emulated: bool, boards: Mapping[str, str]) -> str | None:
    """The real board an emulated device stands for. The store does not record it, so it
    comes from the profiles; a profile no longer around falls back to the naming
    convention of the shipped profiles (``pi4-emulated`` emulates ``pi4``)."""
    if not emulated:
        return None
    if device in boards:
        return boards[device]
    if device.endswith(EMULATED_SUFFIX) and len(device) > len(EMULATED_SUFFIX):
        return device[: -len(EMULATED_SUFFIX)]
    return None


# --- the report -----------------------------------------------------------------------


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


@dataclass(frozen=True)
class Recommendation:
    model: str
    variant: str | None
    runtime: str | None
    fitting: int
    reason: str
    # Every other variant that fits, by name ("int8/onnxruntime"), with why it was not
    # the pick in the numbers of both ("accuracy 97% against fp32/onnxruntime's 98.1%").
    passed_over: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "runtime": self.runtime,
            "fitting": self.fitting,
            "reason": self.reason,
            "passed_over": dict(self.passed_over),
        }


@dataclass(frozen=True)
class DeviceFit:
    device: str
    board: str | None
    emulated: bool
    budget_from: str
    budget: Budget
    variants: tuple[VariantFit, ...]
    recommendations: tuple[Recommendation, ...]

    @property
    def label(self) -> str:
        if not self.emulated:
            return "measured"
        caps = f"{self.board}'s caps" if self.board else "its profile's caps"
        return f"estimate: emulated on this machine with {caps}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "board": self.board,
            "emulated": self.emulated,
            "label": self.label,
            "budget_from": self.budget_from,
            "budget": self.budget.model_dump(exclude_none=True),
            "variants": [v.to_dict() for v in self.variants],
            "recommendations": [r.to_dict() for r in self.recommendations],
        }


@dataclass(frozen=True)
class EstimateVsMeasured:
    estimate: float | None
    measured: float | None

    @property
    def ratio(self) -> float | None:
        if self.estimate is None or not self.measured:
            return None
        return self.estimate / self.measured

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "measured": self.measured, "ratio": self.ratio}


@dataclass(frozen=True)
class EmulationComparison:
    """One variant measured on a real board and estimated on its emulated profile."""

    board: str
    model: str
    variant: str
    runtime: str
    emulated_device: str
    emulated_run_id: int | None
    real_device: str
    real_run_id: int | None
    p50_ms: EstimateVsMeasured
    peak_memory_mb: EstimateVsMeasured

    def to_dict(self) -> dict[str, Any]:
        return {
            "board": self.board,
            "model": self.model,
            "variant": self.variant,
            "runtime": self.runtime,
            "emulated_device": self.emulated_device,
            "emulated_run_id": self.emulated_run_id,
            "real_device": self.real_device,
            "real_run_id": self.real_run_id,
            "p50_ms": self.p50_ms.to_dict(),
            "peak_memory_mb": self.peak_memory_mb.to_dict(),
        }


@dataclass(frozen=True)
class EmulationTrust:
    """How far one emulated profile's estimates were from its board, over all pairs."""

    board: str
    emulated_device: str
    pairs: int
    p50_ratio_geomean: float | None
    p50_ratio_range: tuple[float, float] | None
    peak_memory_ratio_geomean: float | None
    peak_memory_ratio_range: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "board": self.board,
            "emulated_device": self.emulated_device,
            "pairs": self.pairs,
            "p50_ratio_geomean": self.p50_ratio_geomean,
            "p50_ratio_range": list(self.p50_ratio_range) if self.p50_ratio_range else None,
            "peak_memory_ratio_geomean": self.peak_memory_ratio_geomean,
            "peak_memory_ratio_range": (
                list(self.peak_memory_ratio_range) if self.peak_memory_ratio_range else None
            ),
        }


@dataclass(frozen=True)
class FitReport:
    run_id: int
    suite_name: str
    accuracy_tolerance: float
    devices: tuple[DeviceFit, ...]
    devices_without_budget: tuple[str, ...]
    emulation_vs_real: tuple[EmulationComparison, ...]
    emulation_trust: tuple[EmulationTrust, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "suite_name": self.suite_name,
            "accuracy_tolerance": self.accuracy_tolerance,
            "devices": [d.to_dict() for d in self.devices],
            "devices_without_budget": list(self.devices_without_budget),
            "emulation_vs_real": [c.to_dict() for c in self.emulation_vs_real],
            "emulation_trust": [t.to_dict() for t in self.emulation_trust],
        }


# --- verdicts -------------------------------------------------------------------------


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
    shown = ", ".join(_num(v) for v in trial_p50s)
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
    out = []
    for reason in reasons_of(cell.result.validity):
        if reason == "unstable":
            reason = _unstable_text(latency, None if max_cv is None else float(max_cv))
        elif reason == "too_few_samples" and latency.get("count"):
            reason = f"too_few_samples: {latency['count']} timed"
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


def _p90_key(fit: VariantFit) -> float:
    p90 = fit.metrics["p90_ms"]
    return math.inf if p90 is None else p90


def _quality_basis(fits: list[VariantFit]) -> str | None:
    """Rank by accuracy when every candidate has one, else by agreement with fp32 when
    every candidate has that; mixing the two would compare different things."""
    for key in ("accuracy", "agreement"):
        if all(f.metrics[key] is not None for f in fits):
            return key
    return None


def _no_fit_reason(model: str, variants: list[VariantFit]) -> str:
    counts = {v: sum(1 for f in variants if f.verdict is v) for v in Verdict}
    parts = []
    if counts[Verdict.UNKNOWN]:
        missing = sorted(
            {
                c.label
                for f in variants
                if f.verdict is Verdict.UNKNOWN
                for c in f.checks
                if c.status is CheckStatus.UNKNOWN
            }
        )
        parts.append(
            f"{counts[Verdict.UNKNOWN]} meet every measured limit but have no "
            + " or ".join(missing)
            + " measurement"
        )
    breaking = [f for f in variants if f.verdict is Verdict.BREAKS]
    if breaking:
        # The closest miss: the smallest worst overshoot, so the user knows how far off.
        def worst(fit: VariantFit) -> float:
            return max(abs(c.relative or 0.0) for c in fit.checks if c.status is CheckStatus.BROKEN)

        closest = min(breaking, key=lambda f: (worst(f), _p90_key(f)))
        broken = ", ".join(c.text for c in closest.checks if c.status is CheckStatus.BROKEN)
        parts.append(f"{len(breaking)} break a budget (closest: {closest.name}, {broken})")
    if counts[Verdict.FAILED]:
        names = ", ".join(f.name for f in variants if f.verdict is Verdict.FAILED)
        parts.append(f"{counts[Verdict.FAILED]} failed ({names})")
    return "no variant fits: " + "; ".join(parts)


def _show_quality(basis: str, value: float) -> str:
    return f"{basis} {value * 100:.1f}%"


def recommend(model: str, variants: list[VariantFit], tolerance: float) -> Recommendation:
    """The variant to ship: the best accuracy among those that fit; accuracies within
    ``tolerance`` of the best are a tie, which the lowest p90 latency breaks. Variants
    whose measurement is not valid (throttled, unstable, ...) still get their verdict,
    but a valid one that fits is preferred, and a pick from invalid ones says so."""
    fitting = [f for f in variants if f.verdict is Verdict.FITS]
    if not fitting:
        return Recommendation(model, None, None, 0, _no_fit_reason(model, variants))
    valid = [f for f in fitting if not reasons_of(f.validity)]
    set_aside = [f for f in fitting if reasons_of(f.validity)]
    fits = valid or fitting
    pick, reason = _rank(fits, tolerance, "validly measured " if set_aside and valid else "")
    if valid and set_aside:
        names = ", ".join(f"{f.name} ({', '.join(reasons_of(f.validity))})" for f in set_aside)
        reason += f"; set aside as not validly measured: {names}"
    elif not valid:
        reasons = sorted({r for f in fitting for r in reasons_of(f.validity)})
        reason += (
            f"; but no variant that fits has a valid measurement ({', '.join(reasons)}): "
            "measure again before shipping on this number"
        )
    others = tuple(
        (f.name, _passed_over(f, pick, fits, tolerance, bool(valid)))
        for f in fitting
        if f is not pick
    )
    return Recommendation(model, pick.variant, pick.runtime, len(fitting), reason, others)


def _passed_over(
    fit: VariantFit, pick: VariantFit, fits: list[VariantFit], tolerance: float, valid: bool
) -> str:
    """Why ``fit`` (which fits too) is not the pick, in the numbers of both; ``fits`` are
    the candidates the pick was ranked among (the valid ones when there are any)."""
    reasons = reasons_of(fit.validity)
    if valid and reasons:
        return f"not validly measured ({', '.join(fit.untrusted or reasons)})"
    p90, pick_p90 = _num(_p90_key(fit)), _num(_p90_key(pick))
    basis = _quality_basis(fits)
    if basis is None:
        return f"p90 {p90} ms against {pick.name}'s {pick_p90} ms"
    quality, pick_quality = fit.metrics[basis], pick.metrics[basis]
    assert quality is not None and pick_quality is not None
    shown, pick_shown = f"{_num(quality * 100)}%", f"{_num(pick_quality * 100)}%"
    best = max(f.metrics[basis] or 0.0 for f in fits)
    if quality < best - tolerance - 1e-12:
        return f"{basis} {shown} against {pick.name}'s {pick_shown}"
    if _p90_key(fit) > _p90_key(pick):
        return (
            f"{basis} {shown} is within {_num(tolerance * 100)} pts of {pick.name}'s "
            f"{pick_shown}, but its p90 is higher ({p90} ms against {pick_p90} ms)"
        )
    if quality == pick_quality:
        return f"ties with {pick.name} on {basis} ({shown}) and p90 ({p90} ms); the name decides"
    return f"the same p90 as {pick.name} ({p90} ms), {basis} {shown} against its {pick_shown}"


def _rank(fits: list[VariantFit], tolerance: float, qualifier: str = "") -> tuple[VariantFit, str]:
    """The best of ``fits`` (not empty) by quality with the latency tie-break, and why;
    ``qualifier`` narrows what the reason calls them ("validly measured ")."""
    basis = _quality_basis(fits)
    if basis is None:
        pick = min(fits, key=_p90_key)
        reason = (
            f"the lowest p90 ({_num(_p90_key(pick))} ms) of the {len(fits)} "
            f"{qualifier}variants that fit; "
            "not every one has an accuracy or agreement to rank by"
        )
        return pick, reason

    def quality(fit: VariantFit) -> float:
        value = fit.metrics[basis]
        assert value is not None
        return value

    if len(fits) == 1:
        [pick] = fits
        shown = _show_quality(basis, quality(pick))
        reason = f"the only {qualifier}variant that fits every budget ({shown})"
        return pick, reason
    best = max(quality(f) for f in fits)
    # A small epsilon: 0.985 - 0.005 must tie with 0.98 despite binary floats.
    tied = [f for f in fits if quality(f) >= best - tolerance - 1e-12]
    pick = min(tied, key=lambda f: (_p90_key(f), -quality(f), f.variant, f.runtime))
    pct = {id(f): f"{_num(quality(f) * 100)}%" for f in fits}
    tie = f"within {_num(tolerance * 100)} pts"
    if len(tied) == 1:
        runner_up = max((f for f in fits if f is not pick), key=quality)
        reason = (
            f"the best {basis} ({pct[id(pick)]}) of the {len(fits)} {qualifier}variants "
            "that fit; "
            f"next: {runner_up.name} at {pct[id(runner_up)]}"
        )
    elif quality(pick) >= best - 1e-12:
        slower = min((f for f in tied if f is not pick), key=_p90_key)
        reason = (
            f"the best {basis} ({pct[id(pick)]}) of the {len(fits)} {qualifier}variants "
            "that fit; "
            f"{slower.name} is {tie} ({pct[id(slower)]}) but slower "
            f"(p90 {_num(_p90_key(pick))} ms against {_num(_p90_key(slower))} ms)"
        )
    else:
        most = max(tied, key=lambda f: (quality(f), -_p90_key(f)))
        reason = (
            f"{basis} {pct[id(pick)]} is {tie} of the best of the {len(fits)} "
            f"{qualifier}variants that fit ({most.name}, {pct[id(most)]}) and its p90 is lower "
            f"({_num(_p90_key(pick))} ms against {_num(_p90_key(most))} ms)"
        )
    return pick, reason


def assess_device(
    device: str,
    cells: list[CellRecord],
    budget_from: str,
    budget: Budget,
    board: str | None,
    tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
) -> DeviceFit:
    """Every cell of one device against its budget, and a recommendation per model."""
    checks = budget_checks(budget)
    variants = tuple(assess_cell(c, checks) for c in cells)
    models = list(dict.fromkeys(c.model for c in cells))
    recommendations = tuple(
        recommend(m, [v for v in variants if v.model == m], tolerance) for m in models
    )
    return DeviceFit(
        device=device,
        board=board,
        emulated=any(c.emulated for c in cells),
        budget_from=budget_from,
        budget=budget,
        variants=variants,
        recommendations=recommendations,
    )


# --- emulation against the real board ---------------------------------------------------


def _geomean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and v > 0]
    if not present:
        return None
    return math.exp(sum(math.log(v) for v in present) / len(present))


def _range(values: list[float | None]) -> tuple[float, float] | None:
    present = [v for v in values if v is not None]
    return (min(present), max(present)) if present else None


def compare_emulation(
    store: ResultsStore,
    run_id: int,
    devices: Collection[str],
    boards: Mapping[str, str],
) -> tuple[EmulationComparison, ...]:
    """Estimate against measurement for every variant of ``devices`` in the run that the
    store also holds on the other side (an emulated device's board, or a real board's
    emulated profile). The other side comes from this run when it has it, else from the
    latest run that does; only successful cells count."""
    runs = [run_id, *sorted((r.id for r in store.runs() if r.id != run_id), reverse=True)]
    # (device, model, variant, runtime) -> the newest successful cell, this run first.
    newest: dict[tuple[str, str, str, str], CellRecord] = {}
    reported: list[CellRecord] = []
    for rid in runs:
        for cell in store.cells(rid):
            if cell.status != "ok":
                continue
            newest.setdefault((cell.device, cell.model, cell.variant, cell.runtime), cell)
            if rid == run_id and cell.device in devices:
                reported.append(cell)
    emulated_by_board: dict[str, list[str]] = {}
    for (device, *_), cell in newest.items():
        board = board_of(device, cell.emulated, boards)
        if board is not None and device not in emulated_by_board.get(board, []):
            emulated_by_board.setdefault(board, []).append(device)

    pairs: list[tuple[CellRecord, CellRecord]] = []  # (emulated, real)
    for cell in reported:
        rest = (cell.model, cell.variant, cell.runtime)
        board = board_of(cell.device, cell.emulated, boards)
        if board is not None:
            real = newest.get((board, *rest))
            if real is not None and not real.emulated:
                pairs.append((cell, real))
        elif not cell.emulated:
            for emulated_device in emulated_by_board.get(cell.device, []):
                estimate = newest.get((emulated_device, *rest))
                if estimate is not None:
                    pairs.append((estimate, cell))
    unique: dict[tuple[Any, ...], EmulationComparison] = {}
    for estimate, real in pairs:
        key = (estimate.device, real.device, estimate.model, estimate.variant, estimate.runtime)
        unique.setdefault(
            key,
            EmulationComparison(
                board=real.device,
                model=real.model,
                variant=real.variant,
                runtime=real.runtime,
                emulated_device=estimate.device,
                emulated_run_id=estimate.run_id,
                real_device=real.device,
                real_run_id=real.run_id,
                p50_ms=EstimateVsMeasured(
                    estimate.result.latency.stat("p50"), real.result.latency.stat("p50")
                ),
                peak_memory_mb=EstimateVsMeasured(
                    estimate.result.peak_memory_mb, real.result.peak_memory_mb
                ),
            ),
        )
    return tuple(unique.values())


def emulation_trust(comparisons: Iterable[EmulationComparison]) -> tuple[EmulationTrust, ...]:
    groups: dict[tuple[str, str], list[EmulationComparison]] = {}
    for c in comparisons:
        groups.setdefault((c.board, c.emulated_device), []).append(c)
    return tuple(
        EmulationTrust(
            board=board,
            emulated_device=device,
            pairs=len(items),
            p50_ratio_geomean=_geomean([c.p50_ms.ratio for c in items]),
            p50_ratio_range=_range([c.p50_ms.ratio for c in items]),
            peak_memory_ratio_geomean=_geomean([c.peak_memory_mb.ratio for c in items]),
            peak_memory_ratio_range=_range([c.peak_memory_mb.ratio for c in items]),
        )
        for (board, device), items in groups.items()
    )


# --- entry point ------------------------------------------------------------------------


def device_selected(
    device: str, emulated: bool, wanted: Collection[str] | None, boards: Mapping[str, str]
) -> bool:
    """Whether ``--device`` names this device or the board it emulates."""
    if wanted is None:
        return True
    return device in wanted or board_of(device, emulated, boards) in wanted


def run_devices(cells: Iterable[CellRecord]) -> dict[str, bool]:
    """The run's devices in the order the matrix met them, and whether each is emulated."""
    devices: dict[str, bool] = {}
    for cell in cells:
        devices[cell.device] = devices.get(cell.device, False) or cell.emulated
    return devices


def fit_report(
    store: ResultsStore,
    run_id: int,
    budgets: Mapping[str, Budget],
    *,
    boards: Mapping[str, str] | None = None,
    devices: Collection[str] | None = None,
    accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
) -> FitReport:
    """The fit report of one run.

    ``budgets`` maps device or board names to budgets (lay command-line limits over them
    first with :func:`with_overrides`); ``boards`` maps emulated profile names to their board
    (:func:`boards_from_profiles`); ``devices`` limits the report to these devices and
    the emulated profiles of these boards. A budget with no limit set counts as none.
    """
    boards = boards or {}
    run = store.get_run(run_id)
    cells = store.cells(run_id)
    present = run_devices(cells)
    selected = [d for d, emu in present.items() if device_selected(d, emu, devices, boards)]
    fits: list[DeviceFit] = []
    without: list[str] = []
    for device in selected:
        board = board_of(device, present[device], boards)
        found = budget_for(device, board, budgets)
        if found is None or not budget_checks(found[1]):
            without.append(device)
            continue
        device_cells = [c for c in cells if c.device == device]
        fits.append(
            assess_device(device, device_cells, found[0], found[1], board, accuracy_tolerance)
        )
    comparisons = compare_emulation(store, run_id, selected, boards)
    return FitReport(
        run_id=run_id,
        suite_name=run.suite_name,
        accuracy_tolerance=accuracy_tolerance,
        devices=tuple(fits),
        devices_without_budget=tuple(without),
        emulation_vs_real=comparisons,
        emulation_trust=emulation_trust(comparisons),
    )
