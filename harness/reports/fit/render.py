"""The hardware-fit report as a terminal table (rich), markdown or JSON.

Every format shows the same things: per device its label (measured, or an emulated
estimate), its budget, every variant with its verdict and what it breaks, the
recommended variant per model with the reason, and emulated estimates against real
measurements of the same board. The JSON is :meth:`FitReport.to_dict` (shape in
:mod:`harness.reports.fit`).
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from harness.reports.fit import (
    FIT_METRICS,
    DeviceFit,
    EmulationComparison,
    EmulationTrust,
    FitReport,
    Recommendation,
    VariantFit,
    Verdict,
)
from harness.reports.text import fmt_number, md_table
from harness.reports.widths import left_out_line, plan_layout
from harness.results.thresholds import Direction
from harness.suite.config import Budget

VARIANT_COLUMNS = (
    "model",
    "variant",
    "runtime",
    "verdict",
    "p90 ms",
    "peak MB",
    "accuracy",
    "SNR dB",
    "energy mJ",
    "size KB",
    "why",
)
EMULATION_COLUMNS = (
    "board",
    "model",
    "variant",
    "runtime",
    "p50 est ms",
    "p50 real ms",
    "p50 est/real",
    "peak est MB",
    "peak real MB",
    "peak est/real",
    "runs (est, real)",
)
_VERDICT_STYLE = {
    Verdict.FITS: "green",
    Verdict.BREAKS: "red",
    Verdict.UNKNOWN: "yellow",
    Verdict.FAILED: "red",
}


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def budget_text(budget: Budget) -> str:
    """``p90 <= 20 ms, accuracy >= 95.0%``: the limits that are set."""
    limits = budget.model_dump()
    parts = []
    for key, metric in FIT_METRICS.items():
        if limits.get(key) is None:
            continue
        sign = "<=" if metric.direction is Direction.HIGHER_IS_WORSE else ">="
        parts.append(f"{metric.label} {sign} {metric.show(float(limits[key]))}")
    return ", ".join(parts)


def device_heading(device: DeviceFit) -> str:
    return f"{device.device} ({device.label})"


def _budget_line(device: DeviceFit) -> str:
    source = "" if device.budget_from == device.device else f" (from {device.budget_from})"
    return f"budget{source}: {budget_text(device.budget)}"


def _recommendation(variant: VariantFit, device: DeviceFit) -> Recommendation | None:
    """The recommendation of the variant's model on this device."""
    return next((r for r in device.recommendations if r.model == variant.model), None)


def _emulation_of(
    variant: VariantFit, device: DeviceFit, report: FitReport | None
) -> EmulationComparison | None:
    if report is None or not variant.estimate:
        return None
    return next(
        (
            c
            for c in report.emulation_vs_real
            if (c.emulated_device, c.model, c.variant, c.runtime)
            == (device.device, variant.model, variant.variant, variant.runtime)
        ),
        None,
    )


def details_text(variant: VariantFit, device: DeviceFit, report: FitReport | None = None) -> str:
    """Why the row has its verdict, in the variant's own numbers: the margins it fits
    with and why it was or was not the pick, what it breaks and by how much, what was not
    measured, why its measurement is not trusted, what its estimate stands on."""
    rec = _recommendation(variant, device)
    parts: list[str] = []
    if variant.verdict is Verdict.FITS:
        parts.append(", ".join(c.text for c in variant.checks))
        if rec is not None and (rec.variant, rec.runtime) == (variant.variant, variant.runtime):
            parts.append(f"recommended: {rec.reason}")
        elif rec is not None:
            why = dict(rec.passed_over).get(variant.name)
            if why:
                parts.append(f"not picked: {why}")
    else:
        parts.append(variant.summary)
    if variant.untrusted:
        parts.append("measurement not trusted: " + ", ".join(variant.untrusted))
    if variant.estimate:
        estimate = "estimate (emulated)"
        comparison = _emulation_of(variant, device, report)
        if comparison is not None and comparison.p50_ms.ratio is not None:
            estimate += (
                f"; {comparison.real_device} measured p50 {comparison.p50_ms.measured:.3f} ms "
                f"(run {comparison.real_run_id}), estimate/real {comparison.p50_ms.ratio:.2f}x"
            )
        parts.append(estimate)
    parts.extend(variant.estimate_caveats)
    return "; ".join(parts)


def variant_row(
    variant: VariantFit, device: DeviceFit, report: FitReport | None = None
) -> tuple[str, ...]:
    m = variant.metrics
    size = m["size_bytes"]
    return (
        variant.model,
        variant.variant,
        variant.runtime,
        variant.verdict.value,
        fmt_number(m["p90_ms"], ".3f"),
        fmt_number(m["peak_memory_mb"], ".0f"),
        fmt_number(m["accuracy"], ".1f", 100) + ("%" if m["accuracy"] is not None else ""),
        fmt_number(m.get("snr_db"), ".1f"),
        fmt_number(m["energy_mj"], ".3g"),
        fmt_number(size / 1024 if size is not None else None, ".1f"),
        details_text(variant, device, report),
    )


def recommendation_line(rec: Recommendation) -> str:
    if rec.variant is None:
        return f"{rec.model}: nothing to recommend: {rec.reason}"
    return f"{rec.model}: {rec.variant}/{rec.runtime}: {rec.reason}"


def emulation_row(c: EmulationComparison) -> tuple[str, ...]:
    return (
        c.board,
        c.model,
        c.variant,
        c.runtime,
        fmt_number(c.p50_ms.estimate, ".3f"),
        fmt_number(c.p50_ms.measured, ".3f"),
        _ratio(c.p50_ms.ratio),
        fmt_number(c.peak_memory_mb.estimate, ".0f"),
        fmt_number(c.peak_memory_mb.measured, ".0f"),
        _ratio(c.peak_memory_mb.ratio),
        f"{c.emulated_run_id}, {c.real_run_id}",
    )


def trust_line(t: EmulationTrust) -> str:
    """How far to trust one emulated profile, in a sentence."""
    pairs = f"{t.pairs} variant" + ("s" if t.pairs != 1 else "")

    def spread(mean: float | None, bounds: tuple[float, float] | None) -> str:
        if bounds is None or t.pairs < 2:
            return _ratio(mean)
        return f"{_ratio(mean)} ({_ratio(bounds[0])} to {_ratio(bounds[1])})"

    p50 = spread(t.p50_ratio_geomean, t.p50_ratio_range)
    peak = spread(t.peak_memory_ratio_geomean, t.peak_memory_ratio_range)
    return (
        f"{t.emulated_device} against {t.board} over {pairs}: p50 estimate/measured {p50}, "
        f"peak memory {peak}; geometric means, 1.00x is exact, above 1 the emulation "
        "overestimates"
    )


def _without_budget_line(report: FitReport) -> str:
    names = ", ".join(report.devices_without_budget)
    return (
        f"not checked (no budget): {names}; add [budgets.<device>] to the suite or pass "
        "--budget KEY=VALUE --device NAME"
    )


def _title(report: FitReport) -> str:
    return f"Hardware fit: {report.suite_name} (run {report.run_id})"


# --- formats ----------------------------------------------------------------------------


def render_json(report: FitReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def render_markdown(report: FitReport) -> str:
    lines = [f"# {_title(report)}", ""]
    for device in report.devices:
        lines += [f"## {device_heading(device)}", "", _budget_line(device), ""]
        rows = [variant_row(v, device, report) for v in device.variants]
        lines += md_table(VARIANT_COLUMNS, rows)
        lines += ["", "Recommended:", ""]
        lines += [f"- {recommendation_line(r)}" for r in device.recommendations]
        lines.append("")
    if report.emulation_vs_real:
        lines += ["## Emulated estimates against real measurements", ""]
        lines += md_table(EMULATION_COLUMNS, [emulation_row(c) for c in report.emulation_vs_real])
        lines.append("")
        lines += [f"- {trust_line(t)}" for t in report.emulation_trust]
        lines.append("")
    if report.devices_without_budget:
        lines += [_without_budget_line(report), ""]
    return "\n".join(lines)


# The order fit's columns are kept in when the terminal is too narrow (see
# harness.reports.widths): the variant and its verdict always, then the figures some
# device's budget limits (a verdict is about those; :func:`_variant_priority`), then the
# rest in this order, which puts first what most budgets set (p90, accuracy, peak
# memory); the why column goes under the table. For the emulation table: the row's name and
# the estimate/measured ratios first (what the table is for), then the figures behind
# them, then which runs they came from.
VARIANT_PRIORITY = (
    "model",
    "variant",
    "runtime",
    "verdict",
    "p90 ms",
    "accuracy",
    "peak MB",
    "size KB",
    "energy mJ",
    "SNR dB",
)
EMULATION_PRIORITY = (
    "board",
    "model",
    "variant",
    "runtime",
    "p50 est/real",
    "peak est/real",
    "p50 est ms",
    "p50 real ms",
    "peak est MB",
    "peak real MB",
    "runs (est, real)",
)
REQUIRED = 4  # model, variant, runtime, verdict
EMULATION_REQUIRED = 4  # board, model, variant, runtime
WIDER = "harness fit --format markdown (or json)"


# Which budget key limits the figure in a column (min_snr_db and min_accuracy included).
_BUDGET_KEY = {
    "p90 ms": "p90_ms",
    "peak MB": "peak_memory_mb",
    "accuracy": "min_accuracy",
    "SNR dB": "min_snr_db",
    "energy mJ": "energy_mj",
    "size KB": "max_size_bytes",
}


def _variant_priority(report: FitReport) -> tuple[str, ...]:
    """:data:`VARIANT_PRIORITY` with the columns some device's budget limits moved up,
    right after the required ones."""
    limited = {k for d in report.devices for k, v in d.budget.model_dump().items() if v is not None}
    rest = VARIANT_PRIORITY[REQUIRED:]
    budgeted = tuple(c for c in rest if _BUDGET_KEY.get(c) in limited)
    return VARIANT_PRIORITY[:REQUIRED] + budgeted + tuple(c for c in rest if c not in budgeted)


def _variant_numeric(col: str) -> bool:
    return col.endswith(("ms", "MB", "mJ", "KB", "dB")) or col == "accuracy"


def _emulation_numeric(col: str) -> bool:
    return col.endswith(("ms", "MB", "real")) or "/" in col


def render_rich(report: FitReport, console: Console) -> None:
    """The fit tables; where the terminal is too narrow for every column, the whys go
    under each table and the columns last in :func:`_variant_priority` (or
    :data:`EMULATION_PRIORITY`) are left out and named in a footer line. Numbers never
    wrap, so a number is never cut."""
    console.print(f"[bold]{_title(report)}[/]")
    all_rows = [variant_row(v, d, report) for d in report.devices for v in d.variants]
    priority = _variant_priority(report)
    layout = plan_layout(VARIANT_COLUMNS, all_rows, console.width, priority, REQUIRED, note="why")
    shown = [VARIANT_COLUMNS.index(c) for c in layout.columns]
    left_out: list[str] = list(layout.left_out)
    for device in report.devices:
        table = Table(
            title=device_heading(device),
            caption=_budget_line(device),
            caption_justify="left",
            title_justify="left",
        )
        for col in layout.columns:
            # Only the why column wraps: rich then narrows it, never a name or a number.
            justify = "right" if _variant_numeric(col) else "left"
            table.add_column(col, justify=justify, no_wrap=col != "why", overflow="fold")
        rows = [(v, variant_row(v, device, report)) for v in device.variants]
        for v, row in rows:
            table.add_row(*(row[i] for i in shown), style=_VERDICT_STYLE[v.verdict])
        console.print(table)
        if not layout.note_inline:
            for v, row in rows:
                if row[-1]:
                    line = f"{v.model} {v.variant} {v.runtime}: {row[-1]}"
                    text = Text(line, style=_VERDICT_STYLE[v.verdict])
                    console.print(Padding(text, (0, 0, 0, 2)))
        for rec in device.recommendations:
            style = "bold" if rec.variant is not None else "yellow"
            console.print(f"  {recommendation_line(rec)}", style=style, markup=False)
    if report.emulation_vs_real:
        emulation_rows = [emulation_row(c) for c in report.emulation_vs_real]
        emulation = plan_layout(
            EMULATION_COLUMNS, emulation_rows, console.width, EMULATION_PRIORITY, EMULATION_REQUIRED
        )
        left_out += [c for c in emulation.left_out if c not in left_out]
        shown = [EMULATION_COLUMNS.index(c) for c in emulation.columns]
        table = Table(title="emulated estimates against real measurements", title_justify="left")
        for col in emulation.columns:
            justify = "right" if _emulation_numeric(col) else "left"
            table.add_column(col, justify=justify, no_wrap=True, overflow="fold")
        for row in emulation_rows:
            table.add_row(*(row[i] for i in shown))
        console.print(table)
        for t in report.emulation_trust:
            console.print(f"  {trust_line(t)}", markup=False)
    if report.devices_without_budget:
        console.print(_without_budget_line(report), style="dim", markup=False)
    if left_out:
        console.print(
            left_out_line(left_out, console.width, WIDER),
            markup=False,
            highlight=False,
        )
