"""The report's figures, drawn with matplotlib's Agg canvas into PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` directly (not pyplot), so no GUI
backend is picked and nothing global is touched. Failed cells have no numbers and are
not drawn (each figure's caption counts them; the HTML report's tables give their
reasons); invalid cells are drawn hollow and hatched, and kept off the Pareto front,
because their numbers are the ones not to trust.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from harness.reports.cells import verdict
from harness.results.store import CellRecord

RUNTIME_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
DPI = 100


@dataclass(frozen=True)
class Plot:
    """One figure: ``name`` is its file stem (``latency-vs-accuracy-local``), ``alt``
    says in words what it shows, ``caption`` what a reader should know about it."""

    name: str
    title: str
    alt: str
    caption: str
    png: bytes


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No "Software" stamp: the bytes then depend on the data alone.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)


def _first_seen(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _p50(cell: CellRecord) -> float:
    return float(cell.result["latency_ms"]["p50"])


def _runtime_color(runtimes: list[str]) -> Callable[[str], str]:
    return lambda r: RUNTIME_COLORS[runtimes.index(r) % len(RUNTIME_COLORS)]


def _not_drawn(cells: list[CellRecord]) -> str:
    failed = sum(1 for c in cells if c.status != "ok")
    return f" {failed} failed cell(s) have no numbers and are not drawn." if failed else ""


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: none is at least as fast and at least
    as accurate and better in one. Sorted by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_quality = float("-inf")
    for i in order:
        if points[i][1] > best_quality:
            front.append(i)
            best_quality = points[i][1]
    return front


def _plain_1_2_5(value: float, _position: int) -> str:
    """Log-axis tick labels as plain numbers, only at 1, 2 and 5 of each decade (the
    default labels every minor tick as 2x10^-2 and so on)."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (1, 2, 5) else ""


def _quality(cell: CellRecord, metric: str) -> float | None:
    value = cell.result.get(metric)
    return float(value) * 100 if value is not None else None


def latency_vs_accuracy(cells: list[CellRecord], device: str) -> Plot | None:
    """p50 against accuracy (agreement with fp32 where no model has labels) for every
    measured cell of one device, with the Pareto front of the valid ones marked."""
    on_device = [c for c in cells if c.device == device]
    measured = [c for c in on_device if c.status == "ok" and c.result.get("latency_ms")]
    metric = (
        "accuracy" if any(c.result.get("accuracy") is not None for c in measured) else ("agreement")
    )
    drawn = [c for c in measured if _quality(c, metric) is not None]
    if not drawn:
        return None
    runtimes = _first_seen([c.runtime for c in drawn])
    models = _first_seen([c.model for c in drawn])
    color = _runtime_color(runtimes)
    fig = Figure(figsize=(8, 5.2))
    ax = fig.add_subplot()
    for c in drawn:
        x, y = _p50(c), _quality(c, metric)
        marker = MODEL_MARKERS[models.index(c.model) % len(MODEL_MARKERS)]
        valid = verdict(c) == "ok"
        ax.scatter(
            [x],
            [y],
            marker=marker,
            s=60,
            facecolors=color(c.runtime) if valid else "none",
            edgecolors=color(c.runtime),
            linewidths=1.5,
            zorder=3,
        )
        ax.annotate(
            c.variant + ("" if valid else " (invalid)"),
            (x, y),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=7,
        )
    valid_cells = [c for c in drawn if verdict(c) == "ok"]
    points = [(_p50(c), _quality(c, metric) or 0.0) for c in valid_cells]
    front = [valid_cells[i] for i in pareto_front(points)]
    if front:
        xs = [_p50(c) for c in front]
        ys = [_quality(c, metric) for c in front]
        ax.step(xs, ys, where="post", color="#444", linestyle="--", linewidth=1, zorder=2)
        ax.scatter(xs, ys, s=220, facecolors="none", edgecolors="#d62728", linewidths=1.5,
                   zorder=4, label="Pareto front")  # fmt: skip
    for runtime in runtimes:
        ax.scatter([], [], color=color(runtime), marker="o", label=runtime)
    for model in models:
        marker = MODEL_MARKERS[models.index(model) % len(MODEL_MARKERS)]
        ax.scatter([], [], color="#777", marker=marker, label=model)
    latencies = [_p50(c) for c in drawn]
    if max(latencies) / max(min(latencies), 1e-12) > 5:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_1_2_5))
        ax.xaxis.set_minor_formatter(FuncFormatter(_plain_1_2_5))
    ax.set_xlabel("p50 latency (ms, lower is better)")
    ax.set_ylabel(f"{metric} (%, higher is better)")
    title = f"Latency vs {metric} on {device}"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    front_names = ", ".join(f"{c.model}/{c.variant}/{c.runtime}" for c in front)
    return Plot(
        name=f"latency-vs-{metric}-{_slug(device)}",
        title=title,
        alt=(
            f"Scatter plot of p50 latency against {metric} for {len(drawn)} cells on "
            f"{device}; Pareto front: {front_names or 'none'}"
        ),
        caption=(
            f"Each point is a model/variant/runtime on {device} (colour: runtime, marker: "
            f"model). Circled and joined: the Pareto front (no other valid cell is both "
            f"faster and more accurate): {front_names or 'none'}. Hollow points are invalid "
            f"measurements and are kept off the front." + _not_drawn(on_device)
        ),
        png=_png(fig),
    )


def latency_distribution(
    cells: list[CellRecord], samples_ms: dict[int, list[float]], model: str, device: str
) -> Plot | None:
    """Box plots of the raw samples of every measured cell of one model on one device."""
    group = [c for c in cells if c.model == model and c.device == device]
    drawn = [c for c in group if c.status == "ok" and samples_ms.get(c.id or -1)]
    if not drawn:
        return None
    runtimes = _first_seen([c.runtime for c in drawn])
    color = _runtime_color(runtimes)
    data = [samples_ms[c.id or -1] for c in drawn]
    labels = [
        f"{c.variant} / {c.runtime}" + ("" if verdict(c) == "ok" else " (invalid)") for c in drawn
    ]
    fig = Figure(figsize=(8, 0.45 * len(drawn) + 1.6))
    ax = fig.add_subplot()
    boxes = ax.boxplot(
        data,
        orientation="horizontal",
        tick_labels=labels,
        patch_artist=True,
        showfliers=True,
        flierprops={"markersize": 2, "alpha": 0.5},
        medianprops={"color": "black"},
    )
    for patch, c in zip(boxes["boxes"], drawn, strict=True):
        patch.set_facecolor(color(c.runtime))
        patch.set_alpha(0.55)
        if verdict(c) != "ok":
            patch.set_hatch("//")
    ax.invert_yaxis()  # the table's order, top to bottom
    everything = [v for values in data for v in values if v > 0]
    log_axis = bool(everything) and max(everything) > 20 * min(everything)
    if log_axis:
        # Preemption spikes 100x the median squash every box into one pixel on a linear
        # axis; on a log axis the boxes stay readable and the spikes stay visible.
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_1_2_5))
        ax.xaxis.set_minor_formatter(FuncFormatter(_plain_1_2_5))
    ax.set_xlabel(
        "latency per inference (ms"
        + (", log scale" if log_axis else "")
        + "), every raw sample of every trial"
    )
    title = f"Latency distributions: {model} on {device}"
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return Plot(
        name=f"latency-distribution-{_slug(model)}-{_slug(device)}",
        title=title,
        alt=f"Box plots of raw latency samples of {len(drawn)} variants of {model} on {device}",
        caption=(
            "Box: quartiles, line: median, whiskers: 1.5 IQR, dots: samples beyond (often "
            "preemption spikes on a shared machine). Hatched: invalid measurement."
            + _not_drawn(group)
        ),
        png=_png(fig),
    )


def _grouped_bars(
    ax: Axes,
    drawn: list[CellRecord],
    value: Callable[[CellRecord], float | None],
    runtimes: list[str],
) -> None:
    """Bars per model/variant (x), one per runtime side by side."""
    color = _runtime_color(runtimes)
    names = _first_seen([f"{c.model}/{c.variant}" for c in drawn])
    width = 0.8 / max(len(runtimes), 1)
    for r_index, runtime in enumerate(runtimes):
        for c in drawn:
            v = value(c)
            if c.runtime != runtime or v is None:
                continue
            x = names.index(f"{c.model}/{c.variant}") + (r_index - (len(runtimes) - 1) / 2) * width
            ax.bar(
                x,
                v,
                width,
                color=color(runtime) if verdict(c) == "ok" else "none",
                edgecolor=color(runtime),
                hatch=None if verdict(c) == "ok" else "//",
            )
    for runtime in runtimes:
        ax.bar([0], [0], 0, color=color(runtime), label=runtime)
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=25, ha="right")
    ax.grid(True, axis="y", alpha=0.3)


def size_and_memory(cells: list[CellRecord], device: str) -> Plot | None:
    """Artifact size and peak RSS during inference, per model/variant and runtime."""
    on_device = [c for c in cells if c.device == device]
    drawn = [c for c in on_device if c.status == "ok"]
    if not drawn:
        return None
    runtimes = _first_seen([c.runtime for c in drawn])
    fig = Figure(figsize=(9, 8))
    size_ax, memory_ax = fig.subplots(2, 1)
    _grouped_bars(size_ax, drawn, lambda c: c.size_bytes / 1024 if c.size_bytes else None, runtimes)
    size_ax.set_ylabel("artifact size (KB)")
    size_ax.set_title("Artifact size")
    size_ax.legend(fontsize=8)
    _grouped_bars(memory_ax, drawn, lambda c: (c.result.get("memory_mb") or {}).get("peak"),
                  runtimes)  # fmt: skip
    memory_ax.set_ylabel("peak RSS during inference (MB)")
    memory_ax.set_title("Peak memory")
    title = f"Size and peak memory on {device}"
    fig.suptitle(title)
    fig.tight_layout()
    return Plot(
        name=f"size-memory-{_slug(device)}",
        title=title,
        alt=f"Bar charts of artifact size and peak memory of {len(drawn)} cells on {device}",
        caption=(
            "Size: the exported artifact on disk. Peak memory: the runner process's RSS "
            "high-water mark during inference (it includes the runtime itself). Hatched: "
            "invalid measurement." + _not_drawn(on_device)
        ),
        png=_png(fig),
    )


def energy_per_inference(cells: list[CellRecord], device: str) -> Plot | None:
    """Energy per inference (idle power subtracted), with where the power came from."""
    on_device = [c for c in cells if c.device == device]
    drawn = [c for c in on_device if c.status == "ok" and c.result.get("energy_mj") is not None]
    if not drawn:
        return None
    runtimes = _first_seen([c.runtime for c in drawn])
    sources = sorted({str(c.result.get("power_source")) for c in drawn})
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    _grouped_bars(ax, drawn, lambda c: c.result.get("energy_mj"), runtimes)
    ax.set_ylabel("energy per inference (mJ, idle subtracted)")
    title = f"Energy per inference on {device} ({', '.join(sources)})"
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    modelled = "modelled" in sources
    return Plot(
        name=f"energy-{_slug(device)}",
        title=title,
        alt=f"Bar chart of energy per inference of {len(drawn)} cells on {device}",
        caption=(
            f"Power source: {', '.join(sources)}."
            + (
                " Modelled figures are the device profile's idle-to-full-load watts scaled "
                "by measured CPU use: an estimate, not a reading."
                if modelled
                else ""
            )
            + _not_drawn(on_device)
        ),
        png=_png(fig),
    )


def make_plots(cells: list[CellRecord], samples_ms: dict[int, list[float]]) -> list[Plot]:
    """Every figure of the report: per device latency vs accuracy, size and memory, and
    energy; per model and device the latency distributions."""
    devices = _first_seen([c.device for c in cells])
    models = _first_seen([c.model for c in cells])
    plots: list[Plot | None] = []
    for device in devices:
        plots.append(latency_vs_accuracy(cells, device))
    for model in models:
        for device in devices:
            plots.append(latency_distribution(cells, samples_ms, model, device))
    for device in devices:
        plots.append(size_and_memory(cells, device))
    for device in devices:
        plots.append(energy_per_inference(cells, device))
    return [p for p in plots if p is not None]


def history_plots(series: list[dict[str, Any]]) -> list[Plot]:
    """p50 across runs per model and device, one line per variant and runtime, from
    :meth:`harness.results.history.HistorySeries.to_dict` data; detected level changes
    are marked with their size."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in series:
        if any(p.get("p50_ms") is not None for p in s["points"]):  # never measured: no line
            groups.setdefault((s["model"], s["device"]), []).append(s)
    plots = []
    for (model, device), group in groups.items():
        runs: dict[int, str | None] = {}
        for s in group:
            for p in s["points"]:
                runs.setdefault(p["run_id"], p.get("git_commit"))
        order = sorted(runs)
        if len(order) < 2:
            continue
        fig = Figure(figsize=(10.5, 4.8))
        ax = fig.add_subplot()
        colors = [f"C{i % 10}" for i in range(len(group))]
        step_texts = []
        for s, color in zip(group, colors, strict=True):
            points = [p for p in s["points"] if p.get("p50_ms") is not None]
            xs = [order.index(p["run_id"]) for p in points]
            ys = [p["p50_ms"] for p in points]
            ax.plot(xs, ys, marker="o", color=color, label=f"{s['variant']} / {s['runtime']}")
            for step in s.get("steps", []):
                x = order.index(step["run_id"])
                ax.scatter([x], [step["after_ms"]], marker="^", s=90, color="#d62728", zorder=4)
                ax.annotate(
                    f"{step['change'] * 100:+.0f}%",
                    (x, step["after_ms"]),
                    textcoords="offset points",
                    xytext=(6, 4),
                    fontsize=7,
                    color="#d62728",
                )
                step_texts.append(
                    f"{s['variant']}/{s['runtime']} {step['change'] * 100:+.0f}% at run "
                    f"{step['run_id']}"
                )
        labels = [f"run {r}\n{(runs[r] or '-')[:7]}" for r in order]
        ax.set_xticks(range(len(order)), labels, fontsize=8)
        ax.set_ylabel("p50 latency (ms)")
        title = f"History: {model} on {device}"
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        plots.append(
            Plot(
                name=f"history-{_slug(model)}-{_slug(device)}",
                title=title,
                alt=(
                    f"Line chart of p50 across runs {order[0]}-{order[-1]} for {len(group)} "
                    f"variants of {model} on {device}; level changes: "
                    + ("; ".join(step_texts) or "none")
                ),
                caption=(
                    "Each line is one variant and runtime across runs (x: run and commit). "
                    "Red triangles: the first run at a new level, with the change against "
                    "the level before. Missing points: the cell failed in that run."
                ),
                png=_png(fig),
            )
        )
    return plots
