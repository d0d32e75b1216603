"""What ``harness tune`` prints: a line per measured chain as it comes, then the table of
every chain measured, the Pareto front, the pick with its lineage and why the search
stopped; all within 80 columns. And the same as JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.reports.fit.budgets import CheckStatus, budget_checks
from harness.reports.fit.figures import byte_size, number
from harness.suite.config import Budget
from harness.tune.driver import Trial, TuneOutcome
from harness.tune.search import pareto_front

CHAIN_WIDTH = 22
VERDICT_WIDTH = 26


def budget_text(budget: Budget) -> str:
    parts = []
    for check in budget_checks(budget):
        sign = "<=" if check.is_ceiling else ">="
        parts.append(f"{check.metric.label} {sign} {check.metric.show(check.limit)}")
    return "budget " + ", ".join(parts)


def verdict(trial: Trial, budget: Budget) -> str:
    """``fits``, or the first limit the cell broke, short: ``p90 9.81 ms > 5 ms``."""
    cell = trial.cell
    if cell.status != "ok":
        return f"failed: {cell.reason or ''}"
    for check in budget_checks(budget):
        result = check.evaluate(cell)
        show = check.metric.show
        if result.status is CheckStatus.BROKEN:
            sign = ">" if check.is_ceiling else "<"
            return f"{check.metric.label} {show(result.value)} {sign} {show(check.limit)}"
        if result.status is CheckStatus.UNKNOWN:
            return f"{check.metric.label} not measured"
    return "fits"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _accuracy(trial: Trial) -> str:
    accuracy = trial.cell.result.accuracy
    if accuracy is not None:
        return f"{accuracy * 100:.1f}%"
    snr = trial.cell.result.snr_db
    return f"{number(snr)} dB" if snr is not None else "-"


def _p90(trial: Trial) -> str:
    p90 = trial.measured.p90_ms
    return f"{p90:.3f}" if p90 is not None else "-"


def trial_line(trial: Trial) -> str:
    """The progress line of a measured chain."""
    predicted = (
        f" (predicted {trial.predicted_p90_ms:.3f})" if trial.predicted_p90_ms is not None else ""
    )
    reused = ", measured before" if trial.reused else ""
    text = f"[{trial.index}] {trial.name}: p90 {_p90(trial)} ms{predicted}, {_accuracy(trial)}"
    return _fit(text + reused, 80)


def render_outcome(outcome: TuneOutcome) -> str:
    budget = outcome.request.budget
    front = {id(m) for m in pareto_front(outcome.search.measured)}
    pick = outcome.pick
    header = (
        f"{'#':>2}  {'chain':<{CHAIN_WIDTH}}  {'p90 ms':>8}  {'accuracy':>8}  {'size':>8}  verdict"
    )
    lines = [header]
    for t in outcome.trials:
        mark = "*" if id(t.measured) in front else " "
        size = byte_size(t.cell.size_bytes) if t.cell.size_bytes else "-"
        lines.append(
            f"{t.index:>2}  {_fit(t.name, CHAIN_WIDTH - 1) + mark:<{CHAIN_WIDTH}}  "
            f"{_p90(t):>8}  {_accuracy(t):>8}  {size:>8}  "
            f"{_fit(verdict(t, budget), VERDICT_WIDTH)}"
        )
    lines.append("* on the Pareto front of p90 and accuracy (SNR where there are no labels)")
    if pick is None:
        lines.append("pick: none of the measured chains meets the budget")
    else:
        lines.append(
            f"pick: {pick.name}, p90 {_p90(pick)} ms, {_accuracy(pick)} "
            f"(suite {outcome.request.suite_name}, variant {pick.name})"
        )
        for step in pick.cell.result.lineage or []:
            params = ", ".join(f"{k}={v}" for k, v in step["params"].items() if v is not None)
            lines.append(_fit(f"  {step['recipe']}: {params}", 80))
        if not pick.cell.result.lineage:
            lines.append("  (no compression: the model as trained)")
    measured = len(outcome.trials)
    total = len(outcome.request.space.points())
    lines.append(_fit(f"stopped: {outcome.stopped}", 80))
    lines.append(f"{measured} of {total} chains measured (cell budget {outcome.request.max_cells})")
    tried = {t.knobs for t in outcome.trials}
    reasons = Counter(
        why.rule
        for k in outcome.request.space.points()
        if k not in tried and (why := outcome.search.ruled_out(k)) is not None
    )
    for rule, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        lines.append(_fit(f"  not measured, {rule}: {count}", 80))
    left = total - measured - sum(reasons.values())
    if left:
        lines.append(f"  not measured, the cell budget ran out first: {left}")
    return "\n".join(lines)


def outcome_json(outcome: TuneOutcome) -> dict[str, Any]:
    pick = outcome.pick
    front = pareto_front(outcome.search.measured)
    return {
        "suite": outcome.request.suite_name,
        "run_id": outcome.run_id,
        "model": outcome.request.model.name,
        "runtime": outcome.request.runtime,
        "device": outcome.request.device.name,
        "budget": outcome.request.budget.model_dump(exclude_none=True),
        "space": outcome.request.space.describe(),
        "max_cells": outcome.request.max_cells,
        "stopped": outcome.stopped,
        "trials": [
            {
                "chain": t.name,
                "p90_ms": t.measured.p90_ms,
                "predicted_p90_ms": t.predicted_p90_ms,
                "accuracy": t.cell.result.accuracy,
                "snr_db": t.cell.result.snr_db,
                "size_bytes": t.cell.size_bytes,
                "status": t.cell.status,
                "verdict": verdict(t, outcome.request.budget),
                "pareto": any(m is t.measured for m in front),
                "reused": t.reused,
                "lineage": t.cell.result.lineage,
            }
            for t in outcome.trials
        ],
        "pick": None if pick is None else pick.name,
    }
