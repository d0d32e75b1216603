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
from rich.table import Table

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


def _fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


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
        _fmt(m["p90_ms"], ".3f"),
        _fmt(m["peak_memory_mb"], ".0f"),
        _fmt(m["accuracy"], ".1f", 100) + ("%" if m["accuracy"] is not None else ""),
        _fmt(m.get("snr_db"), ".1f"),
        _fmt(m["energy_mj"], ".3g"),
        _fmt(size / 1024 if size is not None else None, ".1f"),
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
        _fmt(c.p50_ms.estimate, ".3f"),
        _fmt(c.p50_ms.measured, ".3f"),
        _ratio(c.p50_ms.ratio),
        _fmt(c.peak_memory_mb.estimate, ".0f"),
        _fmt(c.peak_memory_mb.measured, ".0f"),
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


def _md_row(values: tuple[str, ...]) -> str:
    return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"


def _md_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return [_md_row(columns), "|" + "---|" * len(columns), *(_md_row(r) for r in rows)]


def render_markdown(report: FitReport) -> str:
    lines = [f"# {_title(report)}", ""]
    for device in report.devices:
        lines += [f"## {device_heading(device)}", "", _budget_line(device), ""]
        rows = [variant_row(v, device, report) for v in device.variants]
        lines += _md_table(VARIANT_COLUMNS, rows)
        lines += ["", "Recommended:", ""]
        lines += [f"- {recommendation_line(r)}" for r in device.recommendations]
        lines.append("")
    if report.emulation_vs_real:
        lines += ["## Emulated estimates against real measurements", ""]
        lines += _md_table(EMULATION_COLUMNS, [emulation_row(c) for c in report.emulation_vs_real])
        lines.append("")
        lines += [f"- {trust_line(t)}" for t in report.emulation_trust]
        lines.append("")
    if report.devices_without_budget:
        lines += [_without_budget_line(report), ""]
    return "\n".join(lines)


def render_rich(report: FitReport, console: Console) -> None:
    console.print(f"[bold]{_title(report)}[/]")
    for device in report.devices:
        table = Table(
            title=device_heading(device),
            caption=_budget_line(device),
            caption_justify="left",
            title_justify="left",
        )
        for col in VARIANT_COLUMNS:
            numeric = col.endswith(("ms", "MB", "mJ", "KB", "dB")) or col == "accuracy"
            table.add_column(col, justify="right" if numeric else "left", overflow="fold")
        for v in device.variants:
            table.add_row(*variant_row(v, device, report), style=_VERDICT_STYLE[v.verdict])
        console.print(table)
        for rec in device.recommendations:
            style = "bold" if rec.variant is not None else "yellow"
            console.print(f"  {recommendation_line(rec)}", style=style, markup=False)
    if report.emulation_vs_real:
        table = Table(title="emulated estimates against real measurements", title_justify="left")
        for col in EMULATION_COLUMNS:
            numeric = col.endswith(("ms", "MB", "real")) or "/" in col
            table.add_column(col, justify="right" if numeric else "left", overflow="fold")
        for c in report.emulation_vs_real:
            table.add_row(*emulation_row(c))
        console.print(table)
        for t in report.emulation_trust:
            console.print(f"  {trust_line(t)}", markup=False)
    if report.devices_without_budget:
        console.print(_without_budget_line(report), style="dim", markup=False)
