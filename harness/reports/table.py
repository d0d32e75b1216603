"""The comparative table: one row per cell, grouped by model and device, with speed and
size against the fp32 baseline (the variant with no recipes) of the same runtime."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from harness.results.store import CellRecord

COLUMNS = (
    "model",
    "device",
    "runtime",
    "variant",
    "status",
    "p50 ms",
    "p90 ms",
    "speedup",
    "size KB",
    "size x",
    "peak MB",
    "accuracy",
    "agreement",
    "note",
)


@dataclass(frozen=True)
class Row:
    values: tuple[str, ...]
    ok: bool


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _baselines(cells: list[CellRecord], baseline_variants: set[str]) -> dict[tuple, CellRecord]:
    """Per (model, runtime, device): the fp32 baseline cell, if it succeeded."""
    out = {}
    for c in cells:
        if c.status == "ok" and (c.variant in baseline_variants or not c.result.get("lineage")):
            out.setdefault((c.model, c.runtime, c.device), c)
    return out


def build_rows(cells: list[CellRecord], baseline_variants: set[str] | None = None) -> list[Row]:
    baselines = _baselines(cells, baseline_variants or set())
    ordered = sorted(
        range(len(cells)),
        key=lambda i: (cells[i].model, cells[i].device, cells[i].runtime, i),
    )
    rows = []
    for i in ordered:
        c = cells[i]
        base = baselines.get((c.model, c.runtime, c.device))
        if c.status != "ok":
            rows.append(
                Row(
                    (c.model, c.device, c.runtime, c.variant, "FAILED", *["-"] * 8, c.reason or ""),
                    False,
                )
            )
            continue
        lat = c.result["latency_ms"]
        speedup = size_x = None
        if base is not None:
            speedup = base.result["latency_ms"]["p50"] / lat["p50"] if lat["p50"] else None
            if base.size_bytes and c.size_bytes:
                size_x = c.size_bytes / base.size_bytes
        peak = (c.result.get("memory_mb") or {}).get("peak")
        acc, agree = c.result.get("accuracy"), c.result.get("agreement")
        note = "emulated" if c.emulated else ""
        rows.append(
            Row(
                (
                    c.model,
                    c.device,
                    c.runtime,
                    c.variant,
                    "ok",
                    _fmt(lat["p50"], ".3f"),
                    _fmt(lat["p90"], ".3f"),
                    _fmt(speedup, ".2f") + ("x" if speedup is not None else ""),
                    _fmt(c.size_bytes / 1024 if c.size_bytes else None, ".1f"),
                    _fmt(size_x, ".2f"),
                    _fmt(peak, ".0f"),
                    _fmt(acc * 100 if acc is not None else None, ".1f"),
                    _fmt(agree * 100 if agree is not None else None, ".1f"),
                    note,
                ),
                True,
            )
        )
    return rows


def render_rich(rows: list[Row], title: str, console: Console) -> None:
    table = Table(title=title, show_lines=False)
    for col in COLUMNS:
        justify = (
            "right"
            if col not in ("model", "device", "runtime", "variant", "status", "note")
            else "left"
        )
        table.add_column(col, justify=justify, overflow="fold")
    previous: tuple[str, str] | None = None
    for row in rows:
        group = (row.values[0], row.values[1])
        if previous is not None and group != previous:
            table.add_section()
        previous = group
        table.add_row(*row.values, style=None if row.ok else "red")
    console.print(table)


def render_markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in row.values) + " |")
    return "\n".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(row.values)
    return buf.getvalue()
