"""One self-contained HTML page for a run: tables, plots, failures, fit and history.

Everything the page needs is inside the file: the CSS inline, every plot a PNG in a
``data:`` URI, no scripts or fonts fetched from anywhere. The PNGs are also written
beside it (``run-<id>/<plot>.png``) for slides and issues.

Stable hooks for tests and scripts: each cell's row in the results tables is
``<tr data-cell="model/variant/runtime/device" data-verdict="ok|invalid|failed">``, each
failed or invalid cell has a row ``data-problem-cell=...`` in the problems table with its
reason, each cell on a board a row ``data-deploy-cell=...`` in the deployments table
(what it sent and found cached), and each plot is ``<img data-plot="name" alt="...">``.
A latency plot (one per model, a panel per device) has an image map whose
``<area data-region="label|point" coords="x0,y0,x1,y1">`` are its numbers and points in
the PNG's pixels, its figure ``data-legend-boxes`` and ``data-panel-boxes``, and a
``<table data-plot-key="name">`` under it saying what each number is.
A small inline script writes every image's ``naturalWidth`` into ``data-natural-width``
(and where it is drawn, ``data-page-box``) once the page has loaded, so a headless
browser's DOM dump shows the images decoded.

Two sections are optional and clearly marked (``<section data-optional="fit">`` and
``data-optional="history"``): the hardware fit (:mod:`harness.reports.fit`) and the p50
history across runs (:mod:`harness.results.history`). Both are extras: when one has
nothing to say, or its suite file is broken, or it fails, the section says why instead
and the rest of the page stays.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.reports.cells import deploy_record, reasons_of, validity_reasons, verdict
from harness.reports.fit import fit_report, plan_fit
from harness.reports.ops import OPS_HEADING, comparison_rows, op_comparison, ops_legend
from harness.reports.plots import Plot, history_plots, make_plots
from harness.reports.table import COLUMNS, GROUP_COLUMNS, LEGEND, Row, build_rows, lineage_lines
from harness.reports.text import fmt_value, slug
from harness.results.store import CellRecord, ResultsStore, RunRecord
from harness.suite.config import Budget

log = logging.getLogger(__name__)

VALIDITY_MEANING = {
    "throttled": "the CPU was throttled (or began throttling) during the timed loop",
    "unstable": "the trials' medians (or one trial's samples) spread more than measure.max_cv",
    "too_few_samples": "the loop hit max_seconds before min_count samples",
    "cooldown_timeout": "the CPU did not cool below cooldown_c before the loop",
    "speed_cap_not_enforced": "an emulated run at this machine's full speed: no writable "
    "cgroup cpu controller for the board's speed cap",
    "host_loaded": "other tasks (or the hypervisor's steal) left an emulated run less CPU "
    "than its quota needs: it measured the host's load, not the board",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem;
       color: #1b1b1b; max-width: 1500px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ccc; } h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.8rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.15rem 0.35rem; vertical-align: top;
         white-space: nowrap; }
th { background: #f0f0f0; text-align: left; position: sticky; top: 0; white-space: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: normal; min-width: 14rem; }
.meta td { white-space: normal; }
tr.verdict-invalid td { background: #fff6d6; }
tr.verdict-failed td { background: #fde2e2; }
.meta td:first-child { font-weight: 600; white-space: nowrap; }
.legend, .note, figcaption { color: #555; font-size: 0.85rem; max-width: 1100px; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto;
         border: 1px solid #e0e0e0; display: block; }
table.plot-key { margin-top: 0.3rem; } table.plot-key td:first-child { font-weight: 600;
         text-align: right; }
.optional { border-left: 4px solid #9ab; padding-left: 1rem; }
code { font-size: 0.85rem; }
"""

# Lets a headless browser's DOM dump show that every image decoded (see the module doc).
_IMAGE_CHECK_JS = """
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) {
    images[i].setAttribute("data-natural-width", String(images[i].naturalWidth));
    // Where the image sits on the page and how wide it is drawn (CSS pixels): tests
    // crop a screenshot to it and check its image map is not scaled away.
    var image = images[i], box = image.getBoundingClientRect();
    image.setAttribute("data-page-box", [
      Math.round(box.left + window.scrollX + image.clientLeft),
      Math.round(box.top + window.scrollY + image.clientTop),
      image.clientWidth, image.clientHeight].join(","));  // inside the border
    if (images[i].complete && images[i].naturalWidth > 0) { decoded++; }
  }
  document.body.setAttribute("data-images-decoded", decoded + "/" + images.length);
});
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def cell_id(cell: CellRecord) -> str:
    return f"{cell.model}/{cell.variant}/{cell.runtime}/{cell.device}"


@dataclass(frozen=True)
class OptionalSection:
    """A section from another module: its data (a ``to_dict()``), or why there is none."""

    data: Any = None
    note: str = ""


@dataclass
class HtmlReport:
    path: Path
    image_dir: Path
    images: list[Path] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)  # optional sections rendered


# --- optional sections -------------------------------------------------------------------


def fit_section(
    store: ResultsStore,
    run: RunRecord,
    budgets: Mapping[str, Budget] | None,
    boards: Mapping[str, str] | None = None,
) -> OptionalSection:
    """The fit report's dict, with budgets given (and the boards their emulated
    profiles stand for) or read from the run's suite file."""
    if budgets is None:
        try:
            plan = plan_fit(store, run)
        except Exception as exc:  # a broken suite must not cost the rest of the page
            return OptionalSection(note=f"budgets could not be read from {run.suite_path}: {exc}")
        budgets, boards = plan.budgets, plan.boards
        if plan.suite is None:
            where = "; ".join(plan.notes)
        else:
            where = f"{plan.suite.path} has no [budgets.<device>] tables"
    else:
        where = "no budgets were given"
    try:
        report = fit_report(store, run.id, budgets, boards=boards or {})
    except Exception as exc:  # the fit is extra; report why and keep the page
        log.warning("fit section skipped: %s", exc)
        return OptionalSection(note=f"the fit report failed: {type(exc).__name__}: {exc}")
    data = report.to_dict()
    note = "" if data.get("devices") else f"No budgets to check: {where}."
    return OptionalSection(data=data, note=note)


def history_section(store: ResultsStore, run: RunRecord) -> OptionalSection:
    """Every cell of the run's suite across the runs up to this one, with steps."""
    earlier = [r for r in store.runs() if r.suite_name == run.suite_name and r.id <= run.id]
    if len(earlier) < 2:
        return OptionalSection(note=f"Run {run.id} is the first run of {run.suite_name}.")
    # Imported here: its statistics pull in scipy.stats (0.8 s), which a page of a
    # suite's first run does not need.
    from harness.results.history import history as history_of
    from harness.results.history import series_of

    try:
        series = history_of(store, "*", suite=run.suite_name)
        out = []
        for s in series:
            if any(p.run_id > run.id for p in s.points):
                # Later runs are not this report's business: steps only up to this run.
                kept = [p for p in s.points if p.run_id <= run.id]
                s = series_of(s.key, kept, min_effect=s.min_effect, alpha=s.alpha)
            if s.points:
                out.append(s.to_dict())
    except Exception as exc:  # extra, as the fit
        log.warning("history section skipped: %s", exc)
        return OptionalSection(note=f"the history failed: {type(exc).__name__}: {exc}")
    return OptionalSection(data=out)


# --- page parts --------------------------------------------------------------------------


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    size = f' width="{plot.size[0]}" height="{plot.size[1]}"' if plot.size[0] else ""
    areas = [r for r in plot.regions if r.kind in ("label", "point")]
    # Hovering a point or its number shows the cell it is (an image map, in the PNG's
    # pixels); the regions are also the geometry the tests check labels against.
    usemap = f' usemap="#map-{_e(plot.name)}"' if areas else ""
    image_map = "".join(
        f'<area shape="rect" coords="{",".join(str(v) for v in r.box)}" '
        f'data-region="{_e(r.kind)}" title="{_e(r.text)}" alt="{_e(r.text)}">'
        for r in areas
    )

    def boxes(kind: str) -> str:
        return ";".join(",".join(str(v) for v in r.box) for r in plot.regions if r.kind == kind)

    geometry = "".join(
        f' data-{kind}-boxes="{boxes(kind)}"' for kind in ("legend", "panel") if boxes(kind)
    )
    parts = [
        f'<figure id="plot-{_e(plot.name)}" data-figure="{_e(plot.name)}"{geometry}>'
        f'<img src="data:image/png;base64,{data}"{size}{usemap} '
        f'alt="{_e(plot.alt)}" data-plot="{_e(plot.name)}" title="{_e(plot.title)}">'
    ]
    if areas:
        parts.append(f'<map name="map-{_e(plot.name)}">{image_map}</map>')
    if plot.key_rows:
        head = "".join(f"<th>{_e(h)}</th>" for h in plot.key_header)
        rows = "".join(
            f'<tr data-key="{_e(row[0])}">' + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
            for row in plot.key_rows
        )
        parts.append(
            f'<table class="plot-key" data-plot-key="{_e(plot.name)}"><thead><tr>{head}</tr>'
            f"</thead><tbody>{rows}</tbody></table>"
        )
    parts.append(f"<figcaption>{_e(plot.caption)}</figcaption></figure>")
    return "".join(parts)


def _header(run: RunRecord, cells: list[CellRecord], image_dir: str) -> str:
    counts = {v: sum(1 for c in cells if verdict(c) == v) for v in ("ok", "invalid", "failed")}
    m = run.machine
    machine = (
        f"{m.get('hostname')} · {m.get('cpu_model')} · {m.get('cpu_count')} CPUs · "
        f"{m.get('mem_total_mb')} MB · {m.get('arch')} · kernel {m.get('kernel')}"
    )
    versions = ", ".join(f"{k} {v}" for k, v in sorted(run.runtime_versions.items()))
    rows = [
        ("suite", f"{run.suite_name} ({run.suite_path})"),
        ("run", f"{run.id}, {run.status}"),
        ("started / finished", f"{run.started_at} / {run.finished_at or '-'}"),
        ("git commit", run.git_commit or "-"),
        ("machine", machine),
        ("machine fingerprint", run.machine_fingerprint),
        ("versions", versions),
        (
            "cells",
            f"{len(cells)}: {counts['ok']} ok, {counts['invalid']} invalid, "
            f"{counts['failed']} failed",
        ),
        ("plots as PNG", image_dir),
    ]
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="meta" id="run-info">{body}</table>'


def _results_tables(rows: list[Row]) -> str:
    inner = [c for c in COLUMNS if c not in GROUP_COLUMNS]
    keep = [COLUMNS.index(c) for c in inner]
    numeric = {c for c in inner if c not in ("runtime", "variant", "status", "power",
                                             "validity", "note")}  # fmt: skip
    head = "".join(f"<th>{_e(c)}</th>" for c in inner)
    parts = [f'<p class="legend">{_e(LEGEND)}</p>']
    group: tuple[str, str] | None = None
    for row in rows:
        if row.group != group:
            if group is not None:
                parts.append("</tbody></table>")
            group = row.group
            model, device = group
            parts.append(
                f'<h3 id="group-{_e(slug(model))}-{_e(slug(device))}">{_e(model)} on '
                f'{_e(device)}</h3><table class="results" data-model="{_e(model)}" '
                f'data-device="{_e(device)}"><thead><tr>{head}</tr></thead><tbody>'
            )
        cells = "".join(
            f'<td class="num">{_e(row.values[i])}</td>'
            if COLUMNS[i] in numeric
            else f'<td class="text">{_e(row.values[i])}</td>'
            if COLUMNS[i] == "note"
            else f"<td>{_e(row.values[i])}</td>"
            for i in keep
        )
        parts.append(
            f'<tr id="cell-{_e(slug(row.cell_id))}" class="verdict-{row.verdict}" '
            f'data-cell="{_e(row.cell_id)}" data-verdict="{row.verdict}">{cells}</tr>'
        )
    if group is not None:
        parts.append("</tbody></table>")
    return "".join(parts)


def _problems(cells: list[CellRecord]) -> str:
    problems = [c for c in cells if verdict(c) != "ok"]
    if not problems:
        return '<p class="note" id="no-problems">Every cell was measured and is valid.</p>'
    rows = []
    for c in problems:
        if c.status != "ok":
            kind = c.result.failure_kind or (c.reason or "").split(":")[0]
            reason = c.reason or "(no reason recorded)"
        else:
            reasons = validity_reasons(c)
            kind = "invalid: " + ", ".join(r.split(":", 1)[0] for r in reasons)
            reason = "; ".join(
                f"{r}: {VALIDITY_MEANING.get(r.split(':', 1)[0], 'see the cell JSON')}"
                for r in reasons
            )
        rows.append(
            f'<tr class="verdict-{verdict(c)}" data-problem-cell="{_e(cell_id(c))}">'
            f"<td>{_e(cell_id(c))}</td><td>{_e(verdict(c))}</td><td>{_e(kind)}</td>"
            f'<td class="text">{_e(reason)}</td></tr>'
        )
    return (
        '<table id="problems"><thead><tr><th>cell</th><th>verdict</th><th>kind</th>'
        f"<th>reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _degenerate(cells: list[CellRecord]) -> str:
    """Models whose fp32 reference cannot rank variants by top-1 agreement, and why."""
    seen: dict[str, list[str]] = {}
    for c in cells:
        reasons = c.result.baseline_degenerate
        if reasons and c.model not in seen:
            seen[c.model] = [str(r) for r in reasons]
    if not seen:
        return ""
    items = "".join(
        f'<li data-degenerate-model="{_e(model)}"><b>{_e(model)}</b>: {_e("; ".join(reasons))}</li>'
        for model, reasons in seen.items()
    )
    return (
        '<h2 id="degenerate">Degenerate fp32 baselines</h2><p class="note">For these models '
        "the fp32 PyTorch outputs make top-1 agreement meaningless: compare variants by SNR "
        "(by the input-dependent SNR, snr_varying_db in the cell JSON, where the outputs are "
        f"near-constant).</p><ul>{items}</ul>"
    )


def _emulation(cells: list[CellRecord]) -> str:
    """What each emulated device enforced, from its first measured cell."""
    seen: dict[str, dict[str, Any]] = {}
    for c in cells:
        record = c.result.emulation
        if c.emulated and record and c.device not in seen:
            seen[c.device] = record
    if not seen:
        return ""
    rows = []
    for device, r in seen.items():
        missing = "; ".join(r.get("not_enforced") or []) or "-"
        warnings = "; ".join(r.get("warnings") or []) or "-"
        estimate = (r.get("estimate") or {}).get("how") or "-"
        rows.append(
            f'<tr data-emulated-device="{_e(device)}"><td>{_e(device)}</td>'
            f"<td>{_e(r.get('method'))}</td><td>{_e(r.get('cores'))}</td>"
            f"<td>{_e(r.get('speed'))}</td><td>{_e(r.get('memory'))}</td>"
            f'<td class="text">{_e(estimate)}</td>'
            f'<td class="text">{_e(missing)}</td><td class="text">{_e(warnings)}</td></tr>'
        )
    return (
        '<h2 id="emulation">Emulated devices</h2><p class="note">Emulated results are '
        "estimates: this machine held to a board's caps. What was enforced (from each "
        "device's first cell; each cell's speed factor, per precision, is in its JSON):</p>"
        "<table><thead><tr><th>device</th><th>method</th><th>cores</th><th>speed</th>"
        "<th>memory</th><th>estimate</th><th>not enforced</th><th>warnings</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _deployments(cells: list[CellRecord]) -> str:
    """What each cell on a board sent and found already there (failed cells too); cells
    on this machine have no deploy record and no row."""
    rows = []
    for c in cells:
        deploy = deploy_record(c)
        if deploy is None:
            continue
        sent = ", ".join(str(name) for name in deploy["sent"]) or "-"
        rows.append(
            f'<tr class="verdict-{verdict(c)}" data-deploy-cell="{_e(cell_id(c))}">'
            f"<td>{_e(cell_id(c))}</td><td>{_e(verdict(c))}</td>"
            f"<td>{_e(deploy['host'] or '-')}</td>"
            f'<td class="num">{_e(fmt_value(deploy["files_sent"], ","))}</td>'
            f'<td class="num">{_e(fmt_value(deploy["bytes_sent"], ","))}</td>'
            f'<td class="num">{_e(fmt_value(deploy["files_cached"], ","))}</td>'
            f'<td class="text">{_e(sent)}</td></tr>'
        )
    if not rows:
        return ""
    return (
        '<h2 id="deploy">Deployed to boards</h2><p class="note">What each cell on a board '
        "sent over SFTP and found already in its cache (by sha256), over all its trials. "
        "Cells on this machine deploy nothing and are not listed.</p>"
        '<table id="deployments"><thead><tr><th>cell</th><th>verdict</th><th>host</th>'
        "<th>files sent</th><th>bytes sent</th><th>files cached</th><th>sent</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _ops_html(cells: list[CellRecord]) -> str:
    """A table per (model, variant, device) profiled on two or more runtimes, by op
    category (:mod:`harness.reports.ops`)."""
    comparisons = op_comparison(cells)
    parts = [f'<h2 id="ops">{_e(OPS_HEADING)}</h2>']
    if not comparisons:
        parts.append(
            '<p class="note" id="no-ops">No variant was profiled on two runtimes '
            "(<code>[measure] profile = true</code> profiles every cell).</p>"
        )
        return "".join(parts)
    parts.append(f'<p class="legend">{_e(ops_legend(comparisons))}</p>')
    for comparison in comparisons:
        columns, rows = comparison_rows(comparison)
        head = "".join(f"<th>{_e(c)}</th>" for c in columns)
        body = "".join(
            f'<tr data-op-category="{_e(row[0])}">'
            + f"<td>{_e(row[0])}</td>"
            + "".join(
                f'<td class="{"text" if columns[i].endswith(" ops") else "num"}">{_e(v)}</td>'
                for i, v in enumerate(row)
                if i
            )
            + "</tr>"
            for row in rows
        )
        key = f"{comparison.model}/{comparison.variant}/{comparison.device}"
        parts.append(
            f'<h3 id="ops-{_e(slug(key))}">{_e(comparison.title)}</h3>'
            f'<table class="ops" data-ops="{_e(key)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
    return "".join(parts)


def _validity_cell(validity: Any) -> str:
    """ "-" for a variant that was not measured (validity None), else its reasons or ok."""
    return "-" if validity is None else ", ".join(reasons_of(validity)) or "ok"


def _fit_html(section: OptionalSection) -> str:
    parts = [
        "<!-- optional section: hardware fit, from harness.reports.fit -->",
        '<section id="fit" class="optional" data-optional="fit">',
        "<h2>Hardware fit</h2>",
    ]
    if section.note:
        parts.append(f'<p class="note">{_e(section.note)}</p>')
    data = section.data or {}
    for device in data.get("devices", []):
        budget = ", ".join(f"{k} {v}" for k, v in (device.get("budget") or {}).items())
        parts.append(
            f'<h3 data-fit-device="{_e(device.get("device"))}">{_e(device.get("device"))} '
            f'({_e(device.get("label"))})</h3><p class="note">budget (from '
            f"{_e(device.get('budget_from'))}): {_e(budget)}</p>"
        )
        rows = "".join(
            f'<tr class="verdict-{"ok" if v.get("verdict") == "fits" else "failed"}" '
            f'data-fit-cell="{_e(v.get("model"))}/{_e(v.get("variant"))}/'
            f'{_e(v.get("runtime"))}/{_e(device.get("device"))}">'
            f"<td>{_e(v.get('model'))}</td><td>{_e(v.get('variant'))}</td>"
            f"<td>{_e(v.get('runtime'))}</td><td>{_e(v.get('verdict'))}</td>"
            f'<td class="text">{_e(v.get("summary"))}</td>'
            f"<td>{_e(_validity_cell(v.get('validity')))}</td></tr>"
            for v in device.get("variants", [])
        )
        parts.append(
            "<table><thead><tr><th>model</th><th>variant</th><th>runtime</th>"
            "<th>verdict</th><th>why</th><th>validity</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
        recs = "".join(
            f"<li><b>{_e(r.get('model'))}</b>: "
            f"{_e(r.get('variant') or 'nothing fits')}"
            f"{' on ' + _e(r.get('runtime')) if r.get('runtime') else ''} "
            f"({_e(r.get('reason'))})</li>"
            for r in device.get("recommendations", [])
        )
        if recs:
            parts.append(f"<p>Recommended:</p><ul>{recs}</ul>")
    pairs = data.get("emulation_vs_real") or []
    if pairs:
        rows = "".join(
            f"<tr><td>{_e(p.get('board'))}</td><td>{_e(p.get('model'))}/"
            f"{_e(p.get('variant'))}/{_e(p.get('runtime'))}</td>"
            f'<td class="num">{fmt_value(p["p50_ms"].get("estimate"))}</td>'
            f'<td class="num">{fmt_value(p["p50_ms"].get("measured"))}</td>'
            f'<td class="num">{fmt_value(p["p50_ms"].get("ratio"), ".2f")}</td>'
            f'<td class="num">{fmt_value(p["peak_memory_mb"].get("ratio"), ".2f")}</td></tr>'
            for p in pairs
        )
        parts.append(
            "<h3>Emulated estimate against the real board</h3>"
            '<table id="emulation-vs-real"><thead><tr><th>board</th><th>cell</th>'
            "<th>p50 estimate ms</th><th>p50 measured ms</th><th>p50 ratio</th>"
            f"<th>peak memory ratio</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    for t in data.get("emulation_trust") or []:
        parts.append(
            f'<p class="note">{_e(t.get("emulated_device"))} against {_e(t.get("board"))}: '
            f"p50 estimate / measurement {fmt_value(t.get('p50_ratio_geomean'), '.2f')} "
            f"(geometric mean over {_e(t.get('pairs'))} pairs)</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _history_html(section: OptionalSection, plots: list[Plot]) -> str:
    parts = [
        "<!-- optional section: p50 history across runs, from harness.results.history -->",
        '<section id="history" class="optional" data-optional="history">',
        "<h2>History</h2>",
    ]
    if section.note:
        parts.append(f'<p class="note">{_e(section.note)}</p>')
    series = section.data or []
    steps = [(s, step) for s in series for step in s.get("steps", [])]
    if series:
        parts.append(
            f'<p class="note">{len(series)} cells across runs; {len(steps)} level change(s) '
            "found (rank-based step detection; a step needs significance and a minimum "
            "effect).</p>"
        )
    if steps:
        rows = "".join(
            f'<tr data-history-step="{_e(s.get("label"))}"><td>{_e(s.get("label"))}</td>'
            f"<td>{_e(step.get('run_id'))}</td><td><code>{_e((step.get('git_commit') or '-')[:12])}"
            f'</code></td><td class="num">{fmt_value(step.get("before_ms"))}</td>'
            f'<td class="num">{fmt_value(step.get("after_ms"))}</td>'
            f'<td class="num">{fmt_value((step.get("change") or 0) * 100, "+.1f")}%</td>'
            f'<td class="num">{fmt_value(step.get("p_value"), ".3f")}</td></tr>'
            for s, step in steps
        )
        parts.append(
            '<table id="history-steps"><thead><tr><th>cell</th><th>from run</th>'
            "<th>commit</th><th>p50 before ms</th><th>p50 after ms</th><th>change</th>"
            f"<th>p</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    parts += [_img(p) for p in plots]
    parts.append("</section>")
    return "".join(parts)


def render_html(
    run: RunRecord,
    cells: list[CellRecord],
    plots: list[Plot],
    *,
    fit: OptionalSection | None = None,
    history: OptionalSection | None = None,
    history_figures: list[Plot] | None = None,
    image_dir: str = "",
) -> str:
    """The page as a string (no file access: everything it shows is passed in)."""
    title = f"{run.suite_name}: run {run.id}"
    body = [
        f"<h1>{_e(title)}</h1>",
        _header(run, cells, image_dir),
        '<h2 id="results">Results by model and device</h2>',
        _results_tables(build_rows(cells)),
        '<h2 id="failed-invalid">Failed and invalid cells</h2>',
        _problems(cells),
        _degenerate(cells),
        _emulation(cells),
        _deployments(cells),
        '<h2 id="plots">Plots</h2>',
        *[_img(p) for p in plots],
        _ops_html(cells),
        _fit_html(fit or OptionalSection(note="not computed")),
        _history_html(history or OptionalSection(note="not computed"), history_figures or []),
        '<h2 id="variants">Variants</h2><ul id="lineage">',
        *[f"<li><code>{_e(line)}</code></li>" for line in lineage_lines(cells)],
        "</ul>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f"<body>{''.join(body)}<script>{_IMAGE_CHECK_JS}</script></body></html>\n"
    )


def write_html_report(
    store: ResultsStore,
    run_id: int,
    out: Path,
    *,
    budgets: Mapping[str, Budget] | None = None,
    boards: Mapping[str, str] | None = None,
    with_history: bool = True,
) -> HtmlReport:
    """Write the page to ``out`` and every plot as a PNG in ``out``'s stem directory
    (``run-4.html`` -> ``run-4/``). ``budgets`` (device -> Budget) override the run's
    suite file for the fit section; ``boards`` (emulated profile -> board) go with them."""
    out = Path(out)
    run = store.get_run(run_id)
    cells = store.cells(run_id)
    samples = {c.id: store.samples(c.id) for c in cells if c.id is not None}
    image_dir = out.with_suffix("") if out.suffix else out.with_name(out.name + "-plots")
    plots = make_plots(cells, samples)
    fit = fit_section(store, run, budgets, boards)
    history = history_section(store, run) if with_history else OptionalSection(note="off")
    history_figures = history_plots(history.data or [])
    report = HtmlReport(path=out, image_dir=image_dir)
    if fit.data is not None:
        report.sections.append("fit")
    if history.data:
        report.sections.append("history")
    page = render_html(
        run,
        cells,
        plots,
        fit=fit,
        history=history,
        history_figures=history_figures,
        image_dir=str(image_dir),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    for plot in [*plots, *history_figures]:
        path = image_dir / f"{plot.name}.png"
        path.write_bytes(plot.png)
        report.images.append(path)
    out.write_text(page, encoding="utf-8")
    return report
