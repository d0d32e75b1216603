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


SPARSE_RECIPE = "prune-unstructured"
_FORMAT_NOISE = {"pt2e", "symmetric", "per-channel", "per-tensor"}


def _recipes(cell: CellRecord) -> list[str]:
    return [str(step.get("recipe")) for step in cell.result.get("lineage") or []]


def _short_format(quant_format: str | None) -> str:
    """The exporter's int8/fp16 format in a few words: "QDQ U8S8", "XNNPACK QAT int8".

    The full text (granularity, what the dtypes are) stays in the export notes; the table
    only needs to tell variants apart. fp32 says nothing.
    """
    if not quant_format or quant_format == "fp32":
        return ""
    if quant_format.startswith("fp16"):
        return "fp16"
    head = quant_format.split("(")[0]
    return " ".join(w for w in head.split() if w not in _FORMAT_NOISE)


def _sparsity_note(cell: CellRecord, base: CellRecord | None) -> str:
    """What unstructured sparsity buys: exact sparsity and the gzip size against the
    baseline, and plainly that dense runtimes do not run it faster."""
    sparsity = None
    for step in cell.result.get("transform_notes") or []:
        if step.get("recipe") == SPARSE_RECIPE and step.get("achieved_sparsity") is not None:
            sparsity = float(step["achieved_sparsity"])
    text = f"sparse {sparsity * 100:.1f}%" if sparsity is not None else "sparse"
    gz = (cell.result.get("export_notes") or {}).get("gzip_bytes")
    base_gz = (base.result.get("export_notes") or {}).get("gzip_bytes") if base else None
    if gz and base_gz:
        text += f": gzip {gz / base_gz:.2f}x"
    elif gz:
        text += f": gzip {gz / 1024:.1f} KB"
    return text + "; dense kernels, no speedup expected"


def _note(cell: CellRecord, base: CellRecord | None) -> str:
    parts = ["emulated"] if cell.emulated else []
    if SPARSE_RECIPE in _recipes(cell):
        parts.append(_sparsity_note(cell, base))
    fmt = _short_format((cell.result.get("export_notes") or {}).get("quant_format"))
    if fmt:
        parts.append(fmt)
    return "; ".join(parts)


def build_rows(cells: list[CellRecord], baseline_variants: set[str] | None = None) -> list[Row]:
    """One row per cell; speedup and size against the same runtime's fp32 baseline.

    The note column says what a number cannot: an emulated device, the int8 format the
    exporter chose, and for unstructured sparsity its compressed size and that dense
    kernels gain no speed from it.
    """
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
        note = _note(c, base)
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


def _step_text(step: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in step.get("params", {}).items())
    return f"{step['recipe']}({params})"


def lineage_lines(cells: list[CellRecord]) -> list[str]:
    """One line per variant: its chain of recipes with every parameter, in order."""
    seen: dict[str, str] = {}
    for c in cells:
        if c.variant in seen:
            continue
        steps = c.result.get("lineage") or []
        seen[c.variant] = " -> ".join(_step_text(s) for s in steps) if steps else "fp32 baseline"
    return [f"{name}: {chain}" for name, chain in seen.items()]
