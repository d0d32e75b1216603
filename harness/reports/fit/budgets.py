"""Budgets: the limits a device's variants are checked against, and how each one
reads a cell (:data:`FIT_METRICS`, :class:`BudgetCheck`), from a suite's
``[budgets.<device>]`` tables or ``--budget KEY=VALUE`` (:func:`parse_budget_options`),
with command-line limits laid over a device's or its board's budget (:func:`with_overrides`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from harness.configfile import validate
from harness.errors import ConfigError
from harness.plugins import suggest
from harness.reports.fit.figures import byte_size, number, percent, signed
from harness.results.store import CellRecord
from harness.results.thresholds import Direction
from harness.suite.config import Budget

COMMAND_LINE = "<command line>"


class CheckStatus(str, Enum):
    MET = "met"
    BROKEN = "broken"
    UNKNOWN = "unknown"


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
            lambda v: f"{number(v)} ms",
            signed(lambda v: f"{number(v)} ms"),
        ),
        FitMetric(
            "peak_memory_mb",
            "peak memory",
            Direction.HIGHER_IS_WORSE,
            "peak_memory_mb=300",
            lambda c: c.result.peak_memory_mb,
            lambda v: f"{number(v)} MB",
            signed(lambda v: f"{number(v)} MB"),
        ),
        FitMetric(
            "energy_mj",
            "energy",
            Direction.HIGHER_IS_WORSE,
            "energy_mj=5",
            lambda c: c.result.energy_mj,
            lambda v: f"{number(v)} mJ",
            signed(lambda v: f"{number(v)} mJ"),
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
            lambda v: f"{number(v)} dB",
            signed(lambda v: f"{number(v)} dB"),
        ),
        FitMetric(
            "max_size_bytes",
            "size",
            Direction.HIGHER_IS_WORSE,
            "max_size_bytes=2000000",
            lambda c: c.size_bytes,
            byte_size,
            signed(byte_size),
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
            text = f"{head} ({m.show_delta(excess)}, {percent(excess / self.limit)})"
        return CheckResult(m.budget_key, m.label, self.direction, self.limit, value, status, text)


def budget_checks(budget: Budget) -> tuple[BudgetCheck, ...]:
    """The budget's limits that are set, in the order of :data:`FIT_METRICS`."""
    limits = budget.model_dump()
    return tuple(
        BudgetCheck(metric, float(limits[key]))
        for key, metric in FIT_METRICS.items()
        if limits.get(key) is not None
    )


# --- budgets from the command line, and the budget that holds for a device ------------


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
