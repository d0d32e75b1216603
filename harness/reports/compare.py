"""Regression tracking for people and machines: ``harness compare`` and ``harness
history`` as a rich table, markdown or JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from harness.reports.text import md_table
from harness.results.compare import (
    CellComparison,
    Comparison,
    FailureChange,
    MetricDelta,
    Verdict,
)
from harness.results.history import HistorySeries

COMPARE_COLUMNS = (
    "model",
    "variant",
    "runtime",
    "device",
    "verdict",
    "base p50 ms",
    "new p50 ms",
    "latency",
    "p",
    "basis",
    "peak memory",
    "size",
    "accuracy",
    "notes",
)
_STYLE = {
    Verdict.REGRESSED: "bold red",
    Verdict.IMPROVED: "green",
    Verdict.NOISE: "yellow",
    Verdict.UNCHANGED: None,
    Verdict.INCONCLUSIVE: "bold yellow",
    Verdict.NOT_JUDGED: "magenta",
}
# "inconclusive?" reads at a glance as "not a pass": the change may be real.
_VERDICT_WORDS = {Verdict.NOT_JUDGED: "not judged", Verdict.INCONCLUSIVE: "inconclusive?"}
_FAILURE_WORDS = {
    FailureChange.NEWLY_FAILED: "newly failing",
    FailureChange.STILL_FAILING: "still failing",
    FailureChange.FIXED: "fixed",
}
_FLAG = {Verdict.REGRESSED: " !", Verdict.IMPROVED: " +", Verdict.INCONCLUSIVE: " ?"}

# What every verdict and marker of the table means, printed under it: a reader should not
# need the README to tell "unchanged" (tested, under the limit) from "inconclusive?".
LEGEND = (
    "verdicts: regressed = a metric got worse by at least its limit (latency: also "
    "significant at alpha); improved = better by at least its limit; noise = significant "
    "but under the latency limit; unchanged = not significant and under every limit; "
    "inconclusive? = not significant, yet the latency change reaches the limit: too few "
    "trials (or too much spread) to tell it from noise, so no verdict (not counted as a "
    "regression; re-check with --interleave or more trials); not judged = --interleave "
    "could not re-measure the cell",
    "markers: ! after a change = regressed, + = improved, ? = inconclusive; [low, high] = "
    "the 95% interval of the latency change (interleaved); - = not measured on a side; "
    "latency = new p50 / base p50 - 1; p = the test's p-value; basis = what the test ran "
    "over, with the count per side (base/new): trials (one per runner process), samples "
    "(raw samples of a single trial) or interleaved (paired rounds)",
)


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


def _delta_text(delta: MetricDelta) -> str:
    if delta.change is None:
        return "-"
    return delta.threshold.format_change(delta.change) + _FLAG.get(delta.verdict, "")


def _cell_values(cell: CellComparison) -> tuple[str, ...]:
    lat = cell.latency
    if lat is None:
        latency = ("-", "-", "-", "-", "-")
    else:
        change = lat.threshold.format_change(lat.change) + _FLAG.get(lat.verdict, "")
        if lat.ratio_ci95:
            low, high = lat.ratio_ci95
            change += f" [{(low - 1) * 100:+.1f}, {(high - 1) * 100:+.1f}]"
        latency = (
            f"{lat.base_p50:.4g}",
            f"{lat.new_p50:.4g}",
            change,
            _p(lat.p_value),
            f"{lat.basis.value} ({lat.n_base}/{lat.n_new})",
        )
    notes = list(cell.notes)
    if cell.same_artifact:
        notes.insert(0, "same artifact")
    if cell.not_judged:
        notes.insert(0, f"not judged: {cell.not_judged}")
    return (
        *cell.key,
        _VERDICT_WORDS.get(cell.verdict, cell.verdict.value),
        *latency,
        *(_delta_text(d) for d in cell.deltas),
        "; ".join(notes),
    )


def _title(comparison: Comparison) -> str:
    def run_text(run) -> str:
        commit = f" @ {run.git_commit[:12]}" if run.git_commit else ""
        return f"run {run.id}{commit}"

    mode = f", interleaved #{comparison.interleave_id}" if comparison.interleave_id else ""
    return f"{run_text(comparison.base)} -> {run_text(comparison.new)}{mode}"


def summary_line(comparison: Comparison) -> str:
    counts = comparison.counts()
    shown = (Verdict.NOT_JUDGED, Verdict.INCONCLUSIVE)
    parts = [f"{counts[v.value]} {v.value}" for v in Verdict if v not in shown]
    if counts[Verdict.INCONCLUSIVE.value]:
        parts.append(f"{counts[Verdict.INCONCLUSIVE.value]} inconclusive")
    if counts[Verdict.NOT_JUDGED.value]:
        parts.append(f"{counts[Verdict.NOT_JUDGED.value]} not judged")
    for change, words in _FAILURE_WORDS.items():
        if counts[change.value]:
            parts.append(f"{counts[change.value]} {words}")
    for side in ("only_in_base", "only_in_new"):
        if counts[side]:
            parts.append(f"{counts[side]} {side.replace('_', ' ')}")
    limits = ", ".join(f"{t.metric} {t.text}" for t in comparison.thresholds)
    if comparison.regressed:
        outcome = "REGRESSED"
    elif comparison.incomplete:
        outcome = "INCOMPLETE: no regression among the cells judged"
    elif comparison.inconclusive:
        outcome = (
            f"no regression found, but {comparison.inconclusive} cell(s) inconclusive: "
            "their latency change could not be told from noise"
        )
    else:
        outcome = "no regression"
    return ", ".join(parts) + f" (alpha {comparison.alpha:g}; limits {limits}; {outcome})"


def _other_lines(comparison: Comparison) -> list[str]:
    lines = []
    for f in comparison.failed:
        where = " / ".join(f.key)
        if f.change is FailureChange.NEWLY_FAILED:
            lines.append(f"NEWLY FAILING: {where}: {f.new_reason} (ok in the base run)")
        elif f.change is FailureChange.FIXED:
            lines.append(f"fixed: {where}: ok now (the base run failed: {f.base_reason})")
        elif f.base_reason == f.new_reason:
            lines.append(f"still failing: {where}: {f.new_reason}")
        else:
            lines.append(f"still failing: {where}: {f.new_reason} (base run: {f.base_reason})")
    for side, cells in (("base", comparison.only_in_base), ("new", comparison.only_in_new)):
        for u in cells:
            reason = f" ({u.reason})" if u.reason else ""
            lines.append(f"only in the {side} run: {' / '.join(u.key)}: {u.status}{reason}")
    return lines


def render_comparison_rich(comparison: Comparison, console: Console) -> None:
    table = Table(title=_title(comparison))
    for col in COMPARE_COLUMNS:
        left = col in ("model", "variant", "runtime", "device", "verdict", "basis", "notes")
        table.add_column(col, justify="left" if left else "right", overflow="fold")
    for cell in comparison.cells:
        table.add_row(*_cell_values(cell), style=_STYLE[cell.verdict])
    console.print(table)
    for line in _other_lines(comparison):
        console.print(line, style="red" if line.startswith("NEWLY") else None, markup=False)
    for warning in comparison.warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False)
    if comparison.regressed:
        style = "bold red"
    elif comparison.incomplete:
        style = "magenta"
    else:
        style = "yellow" if comparison.inconclusive else None
    console.print(summary_line(comparison), style=style, markup=False)
    for line in LEGEND:
        console.print(line, style="dim", markup=False)


def render_comparison_markdown(comparison: Comparison) -> str:
    lines = [f"## {_title(comparison)}", ""]
    lines += md_table(COMPARE_COLUMNS, [_cell_values(c) for c in comparison.cells])
    other = _other_lines(comparison)
    if other:
        lines += ["", *(f"- {line}" for line in other)]
    if comparison.warnings:
        lines += ["", *(f"> warning: {w}" for w in comparison.warnings)]
    lines += ["", summary_line(comparison), "", *(f"- {line}" for line in LEGEND)]
    return "\n".join(lines) + "\n"


def _json_safe(value: object) -> object:
    """JSON has no infinity: a relative change from zero (an empty file) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def render_comparison_json(comparison: Comparison) -> str:
    return json.dumps(_json_safe(comparison.to_dict()), indent=2, allow_nan=False) + "\n"


# --- history ----------------------------------------------------------------------------

HISTORY_COLUMNS = ("run", "commit", "started", "status", "p50 ms", "95% CI", "trials", "step")


def _history_rows(series: HistorySeries) -> list[tuple[str, ...]]:
    steps = {s.index: s for s in series.steps}
    rows = []
    for i, p in enumerate(series.points):
        step = steps.get(i)
        marker = ""
        if step is not None:
            arrow = "up" if step.change > 0 else "down"
            marker = f"{arrow} {step.change * 100:+.1f}% (p {_p(step.p_value)})"
        rows.append(
            (
                str(p.run_id),
                (p.git_commit or "-")[:12],
                p.started_at[:19],
                p.status if p.status == "ok" else f"{p.status}: {p.reason or ''}",
                f"{p.p50:.4g}" if p.p50 is not None else "-",
                f"{p.ci95[0]:.4g}-{p.ci95[1]:.4g}" if p.ci95 else "-",
                str(p.trials) if p.trials is not None else "-",
                marker,
            )
        )
    return rows


def _steps_line(series: HistorySeries) -> str:
    if not series.steps:
        text = (
            f"no step of {series.min_effect * 100:g}% or more "
            f"(alpha {series.alpha:g}) over {len(series.points)} runs"
        )
        if not series.steps_detectable:
            text += (
                f"; {series.measured} measured runs are too few for any step to be "
                "significant (about 8 are needed at alpha 0.05)"
            )
        return text
    return "steps: " + "; ".join(
        f"run {s.run_id}"
        + (f" ({s.git_commit[:12]})" if s.git_commit else "")
        + f": {s.before_ms:.4g} -> {s.after_ms:.4g} ms ({s.change * 100:+.1f}%)"
        for s in series.steps
    )


def render_history_rich(series_list: Sequence[HistorySeries], console: Console) -> None:
    for series in series_list:
        table = Table(title=series.label)
        for col in HISTORY_COLUMNS:
            table.add_column(col, overflow="fold")
        for row in _history_rows(series):
            table.add_row(*row, style="bold" if row[-1] else None)
        console.print(table)
        console.print(_steps_line(series), markup=False)


def render_history_markdown(series_list: Sequence[HistorySeries]) -> str:
    lines = []
    for series in series_list:
        lines += [f"## {series.label}", ""]
        lines += md_table(HISTORY_COLUMNS, _history_rows(series))
        lines += ["", _steps_line(series), ""]
    return "\n".join(lines)


def render_history_json(series_list: Sequence[HistorySeries]) -> str:
    return json.dumps(_json_safe([s.to_dict() for s in series_list]), indent=2) + "\n"
