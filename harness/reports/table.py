"""The comparative table: one row per cell, grouped by model and device, with speed, size
and accuracy against the fp32 baseline (the variant with no recipes) of the same model,
runtime and device, each cell's verdict (ok, invalid with the validity reasons, failed
with its reason) and where its power figure came from."""

from __future__ import annotations

import csv
import io
from collections.abc import Collection
from dataclasses import dataclass

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from harness.reports.cells import (
    baseline_key,
    find_baselines,
    validity_reasons,
    verdict,
    vs_baseline,
)
from harness.reports.text import fmt_number, md_table
from harness.reports.widths import left_out_line, plan_layout
from harness.results.scoring import SNR_CAP_DB
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
    "acc Δ pt",
    "agreement",
    "SNR dB",
    "energy mJ",
    "power",
    "validity",
    "note",
)
GROUP_COLUMNS = ("model", "device")
_TEXT_COLUMNS = ("model", "device", "runtime", "variant", "status", "power", "validity", "note")
STATUS_TEXT = {"ok": "ok", "invalid": "INVALID", "failed": "FAILED"}
SLOW_RATIO = 2.0  # a variant this many times slower than its baseline gets a note
LEGEND = (
    "speedup (baseline p50 / p50) and size x (size / baseline size) are against the fp32 "
    "variant of the same model, runtime and device; acc Δ pt is the accuracy difference "
    "from it in percentage points. INVALID: measured, but the validity column says why "
    "the numbers are not to be trusted. FAILED: not measured, the note says why. "
    "agreement (top-1, %) and SNR dB (signal-to-noise ratio of the outputs, "
    f"{SNR_CAP_DB:.0f} = identical) are against the fp32 PyTorch model on the same inputs; "
    "the note flags an fp32 model whose outputs make agreement meaningless (degenerate), "
    "gives an embedding model's cosine to fp32 (it has no agreement) "
    f"and names what the exporter knows makes a variant over {SLOW_RATIO:.0f}x slower."
)


@dataclass(frozen=True)
class Row:
    values: tuple[str, ...]
    ok: bool  # the cell was measured (status ok), valid or not
    verdict: str = "ok"  # "ok" | "invalid" | "failed"

    def value(self, column: str) -> str:
        return self.values[COLUMNS.index(column)]

    @property
    def group(self) -> tuple[str, str]:
        return (self.value("model"), self.value("device"))

    @property
    def cell_id(self) -> str:
        """``model/variant/runtime/device``: the cell's stable name in every report."""
        return "/".join(self.value(c) for c in ("model", "variant", "runtime", "device"))


SPARSE_RECIPE = "prune-unstructured"
_FORMAT_NOISE = {"pt2e", "symmetric", "per-channel", "per-tensor"}


def _recipes(cell: CellRecord) -> list[str]:
    return [str(step.get("recipe")) for step in cell.result.lineage]


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
    for step in cell.result.transform_notes:
        if step.get("recipe") == SPARSE_RECIPE and step.get("achieved_sparsity") is not None:
            sparsity = float(step["achieved_sparsity"])
    text = f"sparse {sparsity * 100:.1f}%" if sparsity is not None else "sparse"
    gz = cell.result.export_notes.get("gzip_bytes")
    base_gz = base.result.export_notes.get("gzip_bytes") if base else None
    if gz and base_gz:
        text += f": gzip {gz / base_gz:.2f}x"
    elif gz:
        text += f": gzip {gz / 1024:.1f} KB"
    return text + "; dense kernels, no speedup expected"


def degenerate_note(cell: CellRecord) -> str:
    """ "degenerate fp32 (one class)" when the cell's reference cannot tell variants apart
    by agreement (see :func:`harness.results.scoring.degenerate_reasons`), else ""."""
    reasons = cell.result.baseline_degenerate
    if not reasons:
        return ""
    kinds = [str(r).split(":")[0] for r in reasons]
    varying = cell.result.snr_varying_db
    if "near-constant outputs" in kinds and varying is not None:
        advice = f"input-dependent SNR {varying:.1f} dB"
    else:
        advice = "agreement says nothing, read SNR"
    return f"degenerate fp32 ({', '.join(kinds)}): {advice}"


def embedding_note(cell: CellRecord) -> str:
    """ "embedding cosine 0.99987" for a model whose first output is an embedding: its
    largest coordinate is no class, so the agreement column stays empty and the cosine
    to the fp32 embedding (with SNR) is the fidelity to read."""
    if cell.result.output != "embedding":
        return ""
    cosine = cell.result.cosine
    return "embedding" + (f" cosine {cosine:.5f}" if cosine is not None else "")


def slowdown_note(cell: CellRecord, speedup: float | None) -> str:
    """For a variant more than :data:`SLOW_RATIO` times slower than its baseline: by how
    much, and the causes its exporter recorded (``export_notes.speed_hints``)."""
    if speedup is None or speedup <= 0 or 1 / speedup <= SLOW_RATIO:
        return ""
    hints = cell.result.export_notes.get("speed_hints") or []
    cause = "; ".join(str(h) for h in hints) if hints else "cause not known to the exporter"
    return f"{1 / speedup:.1f}x slower than baseline: {cause}"


def _emulated_note(cell: CellRecord) -> str:
    """An emulated cell's note: the speed factor it ran at and for which precision."""
    caps = cell.result.emulation.get("caps") or {}
    factor, precision = caps.get("speed_factor"), caps.get("precision")
    if factor is None or "precision" not in caps:  # no speed cap, or an older record
        return "emulated"
    return f"emulated x{factor:g} ({precision or 'fp32, precision unknown'})"


def _note(cell: CellRecord, base: CellRecord | None, speedup: float | None = None) -> str:
    parts = [_emulated_note(cell)] if cell.emulated else []
    slow = slowdown_note(cell, speedup)
    if slow:
        parts.append(slow)
    embedding = embedding_note(cell)
    if embedding:
        parts.append(embedding)
    degenerate = degenerate_note(cell)
    if degenerate:
        parts.append(degenerate)
    if SPARSE_RECIPE in _recipes(cell):
        parts.append(_sparsity_note(cell, base))
    fmt = _short_format(cell.result.export_notes.get("quant_format"))
    if fmt:
        parts.append(fmt)
    return "; ".join(parts)


def _first_seen(values: list[str]) -> dict[str, int]:
    order: dict[str, int] = {}
    for v in values:
        order.setdefault(v, len(order))
    return order


def _validity_text(cell: CellRecord, reasons: list[str]) -> str:
    """The reasons not to trust a cell, "ok", or "-" for a cell from before validity was
    recorded (not checked, so not called ok). A reason's numbers (``host_loaded: 1.5
    other runnable tasks ...``) stay in the JSON and HTML: the table names the reason."""
    if reasons:
        return ", ".join(r.split(":", 1)[0] for r in reasons)
    return "-" if cell.result.validity is None else "ok"


def _energy(cell: CellRecord) -> float | None:
    return cell.result.energy_mj


def build_rows(
    cells: list[CellRecord], baseline_variants: Collection[str] | None = None
) -> list[Row]:
    """One row per cell, grouped by model then device (in the order the run met them),
    then runtime; speedup, size and accuracy against the fp32 baseline of the same model,
    runtime and device.

    The note column says what a number cannot: an emulated device, a variant over
    :data:`SLOW_RATIO` times slower than its baseline and the cause its exporter knows, a
    degenerate fp32 reference, an embedding's cosine to fp32, the int8 format the
    exporter chose, and for unstructured sparsity its compressed size and that dense
    kernels gain no speed from it. A failed cell's note is its reason.
    """
    baselines = find_baselines(cells, baseline_variants or ())
    models = _first_seen([c.model for c in cells])
    devices = _first_seen([c.device for c in cells])
    runtimes = _first_seen([c.runtime for c in cells])
    ordered = sorted(
        range(len(cells)),
        key=lambda i: (
            models[cells[i].model],
            devices[cells[i].device],
            runtimes[cells[i].runtime],
            i,
        ),
    )
    rows = []
    for i in ordered:
        c = cells[i]
        status = verdict(c)
        head = (c.model, c.device, c.runtime, c.variant, STATUS_TEXT[status])
        if status == "failed":
            blanks = ["-"] * (len(COLUMNS) - len(head) - 1)
            rows.append(Row((*head, *blanks, c.reason or ""), False, status))
            continue
        base = baselines.get(baseline_key(c))
        versus = vs_baseline(c, base)
        lat = c.result.latency
        peak = c.result.peak_memory_mb
        acc, agree = c.result.accuracy, c.result.agreement
        speedup = versus.speedup if versus else None
        reasons = validity_reasons(c)
        rows.append(
            Row(
                (
                    *head,
                    fmt_number(lat.p50_ms, ".3f"),
                    fmt_number(lat.stat("p90"), ".3f"),
                    fmt_number(speedup, ".2f") + ("x" if speedup is not None else ""),
                    fmt_number(c.size_bytes / 1024 if c.size_bytes else None, ".1f"),
                    fmt_number(versus.size_ratio if versus else None, ".2f"),
                    fmt_number(peak, ".0f"),
                    fmt_number(acc, ".1f", 100),
                    fmt_number(versus.accuracy_delta_points if versus else None, "+.1f"),
                    fmt_number(agree, ".1f", 100),
                    fmt_number(c.result.snr_db, ".1f"),
                    fmt_number(_energy(c), ".3f"),
                    c.result.power_source or "-",
                    _validity_text(c, reasons),
                    _note(c, base, speedup),
                ),
                True,
                status,
            )
        )
    return rows


_ROW_STYLE = {"ok": None, "invalid": "yellow", "failed": "red"}


def _groups(rows: list[Row]) -> list[tuple[tuple[str, str], list[Row]]]:
    """Consecutive rows of the same model and device (build_rows keeps them together)."""
    groups: list[tuple[tuple[str, str], list[Row]]] = []
    for row in rows:
        if not groups or groups[-1][0] != row.group:
            groups.append((row.group, []))
        groups[-1][1].append(row)
    return groups


# The order columns are kept in when the terminal is too narrow for all of them (see
# harness.reports.widths): the row's name and status and its p50 always, then what a
# compression trade-off is read by (speed and size against the baseline, the accuracy
# change, agreement with fp32, why a measurement is not trusted), then the absolute
# figures, and last where the power figure came from. The note goes under the table.
PRIORITY = (
    "runtime",
    "variant",
    "status",
    "p50 ms",
    "speedup",
    "size x",
    "acc Δ pt",
    "agreement",
    "validity",
    "accuracy",
    "p90 ms",
    "size KB",
    "peak MB",
    "SNR dB",
    "energy mJ",
    "power",
)
REQUIRED = 4  # runtime, variant, status, p50 ms
WIDER = "harness report --format markdown (or csv, json)"


def render_rich(rows: list[Row], title: str, console: Console) -> None:
    """One table per model and device under the run's title. Every column but the note
    keeps its values on one line; the note (a failure's reason) wraps. All tables share
    one layout (:func:`harness.reports.widths.plan_layout`): where the terminal is too
    narrow for every column, the notes are printed under each table and the columns last
    in :data:`PRIORITY` are left out, named in a footer line; a number is never cut."""
    inner = [c for c in COLUMNS if c not in GROUP_COLUMNS]
    keep = [COLUMNS.index(c) for c in inner]
    cells = [[row.values[i] for i in keep] for row in rows]
    layout = plan_layout(inner, cells, console.width, PRIORITY, REQUIRED, note="note")
    shown = [COLUMNS.index(c) for c in layout.columns]
    console.print(title, style="bold", markup=False, highlight=False)
    for (model, device), group_rows in _groups(rows):
        table = Table(title=f"{model} on {device}", title_justify="left", title_style="bold")
        for col in layout.columns:
            justify = "left" if col in _TEXT_COLUMNS else "right"
            table.add_column(col, justify=justify, no_wrap=col != "note", overflow="fold")
        for row in group_rows:
            table.add_row(*(row.values[i] for i in shown), style=_ROW_STYLE[row.verdict])
        console.print(table)
        if not layout.note_inline:
            for row in group_rows:
                if row.value("note"):
                    text = f"{row.value('runtime')} {row.value('variant')}: {row.value('note')}"
                    line = Text(text, style=_ROW_STYLE[row.verdict] or "")
                    console.print(Padding(line, (0, 0, 0, 2)))
    if layout.left_out:
        footer = left_out_line(layout.left_out, console.width, WIDER)
        console.print(footer, markup=False, highlight=False)
    if rows:
        console.print(LEGEND, style="dim", markup=False, highlight=False)


def render_markdown(rows: list[Row]) -> str:
    """One table per model and device, under a heading naming both."""
    inner = [c for c in COLUMNS if c not in GROUP_COLUMNS]
    keep = [COLUMNS.index(c) for c in inner]
    lines = [LEGEND]
    for (model, device), group_rows in _groups(rows):
        lines += ["", f"### {model} on {device}", ""]
        lines += md_table(inner, [[row.values[i] for i in keep] for row in group_rows])
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
        steps = c.result.lineage
        seen[c.variant] = " -> ".join(_step_text(s) for s in steps) if steps else "fp32 baseline"
    return [f"{name}: {chain}" for name, chain in seen.items()]
