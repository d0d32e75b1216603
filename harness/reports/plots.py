"""The report's figures, drawn with matplotlib's Agg canvas into PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` directly (not pyplot), so no GUI
backend is picked and nothing global is touched. Failed cells have no numbers and are
not drawn (each figure's caption counts them; the HTML report's tables give their
reasons); invalid cells are drawn hollow and hatched, and kept off the Pareto front,
because their numbers are the ones not to trust.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox

from harness.reports.cells import verdict
from harness.reports.fit import fidelity_snr
from harness.reports.text import slug
from harness.results.store import CellRecord

RUNTIME_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
DPI = 100
POINT_SIZE = 60  # scatter sizes in points squared
RING_SIZE = 220
LABEL_FONTSIZE = 8


@dataclass(frozen=True)
class Region:
    """A rectangle of a plot's PNG in its pixels (origin top left, as an HTML image map
    counts): a point's ``label``, a ``point``, the ``legend`` or a ``panel`` (axes), with
    the words a tooltip shows for it."""

    kind: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    text: str


@dataclass(frozen=True)
class Plot:
    """One figure: ``name`` is its file stem (``latency-vs-accuracy-mlp``), ``alt``
    says in words what it shows, ``caption`` what a reader should know about it.
    ``key_header``/``key_rows`` are the table printed under it (what each numbered point
    is), ``regions`` where its labels, points, legend and panels are in the PNG."""

    name: str
    title: str
    alt: str
    caption: str
    png: bytes
    key_header: tuple[str, ...] = ()
    key_rows: tuple[tuple[str, ...], ...] = ()
    regions: tuple[Region, ...] = ()
    size: tuple[int, int] = (0, 0)  # width, height in pixels


def _png(fig: Figure) -> bytes:
    if not isinstance(fig.canvas, FigureCanvasAgg):  # keep one a caller drew on
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No "Software" stamp: the bytes then depend on the data alone.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _first_seen(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


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


@dataclass(frozen=True)
class QualityAxis:
    """What a model's latency plot puts on its y axis: the task metric where the model
    has labels, else agreement with fp32, else (agreement meaningless: a degenerate fp32
    reference, or an embedding) the output SNR."""

    name: str
    unit: str
    read: Callable[[CellRecord], float | None]

    def show(self, value: float) -> str:
        return f"{value:.1f}{'%' if self.unit == '%' else ' dB'}"


def _percent(read: Callable[[CellRecord], float | None]) -> Callable[[CellRecord], float | None]:
    def percent(cell: CellRecord) -> float | None:
        value = read(cell)
        return float(value) * 100 if value is not None else None

    return percent


def _fidelity_snr(cell: CellRecord) -> float | None:
    # The SNR a min_snr_db budget checks, as a float for the axis (a stored one may be an int).
    value = fidelity_snr(cell)
    return float(value) if value is not None else None


def quality_axis(cells: list[CellRecord]) -> QualityAxis | None:
    """The y axis for one model's measured cells, or None when they have no quality."""
    if any(c.result.accuracy is not None for c in cells):
        return QualityAxis("accuracy", "%", _percent(lambda c: c.result.accuracy))
    degenerate = any(c.result.baseline_degenerate for c in cells)
    if not degenerate and any(c.result.agreement is not None for c in cells):
        return QualityAxis("agreement", "%", _percent(lambda c: c.result.agreement))
    if any(_fidelity_snr(c) is not None for c in cells):
        return QualityAxis("SNR", "dB", _fidelity_snr)
    return None


# Where a point's number may go, tried in this order: right, above, left, below, the
# diagonals, then the eight directions between; each at growing distances (a leader line
# joins far ones to their point). Forty rings of 5 px reach 200 px: a dense cluster's
# numbers end up around it rather than on each other.
_DIRECTIONS = tuple(
    (math.cos(math.radians(a)), math.sin(math.radians(a)))
    for a in (0, 90, 180, 270, 45, 135, 225, 315, 22.5, 67.5, 112.5, 157.5, 202.5, 247.5,
              292.5, 337.5)
)  # fmt: skip
_STEP_PX = 5.0
_RINGS = 40


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(
    ax: Axes,
    points: list[tuple[float, float, float, str]],
    renderer: RendererBase,
    taken: list[Bbox],
) -> list[Text]:
    """Put each point's text (x, y, marker radius in px, text) beside it where it covers
    no other label, no marker and stays inside the axes: a greedy search over
    :data:`_DIRECTIONS` at growing distances. ``taken`` (display boxes) grows with each
    label. Returns the texts, kept out of the layout so placing them moves nothing."""
    inside = ax.get_window_extent(renderer).padded(-2)
    centres = [ax.transData.transform((x, y)) for x, y, _, _ in points]
    markers = [
        Bbox.from_extents(cx - r, cy - r, cx + r, cy + r)
        for (cx, cy), (_, _, r, _) in zip(centres, points, strict=True)
    ]
    texts = []
    for (cx, cy), (x, y, radius, label) in sorted(
        zip(centres, points, strict=True), key=lambda p: (p[0][0], -p[0][1])
    ):
        probe = ax.text(0, 0, label, fontsize=LABEL_FONTSIZE, fontweight="bold")
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width + 2, extent.height + 1  # a pixel of air around the digits
        best: tuple[float, float, float, Bbox] | None = None
        for ring in range(_RINGS):
            gap = radius + 1 + ring * _STEP_PX
            for ux, uy in _DIRECTIONS:
                dx, dy = ux * (gap + w / 2), uy * (gap + h / 2)
                box = Bbox.from_extents(
                    cx + dx - w / 2, cy + dy - h / 2, cx + dx + w / 2, cy + dy + h / 2
                )
                cost = sum(_overlap(box, other) for other in [*taken, *markers])
                if not inside.contains(box.x0, box.y0) or not inside.contains(box.x1, box.y1):
                    cost += w * h  # outside the axes: clipped or over the frame
                if best is None or cost < best[0]:
                    best = (cost, dx, dy, box)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        _, dx, dy, box = best
        far = math.hypot(dx, dy) > radius + max(w, h) + 2
        text = ax.annotate(
            label,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset pixels",
            ha="center",
            va="center",
            fontsize=LABEL_FONTSIZE,
            fontweight="bold",
            color="#111",
            zorder=6,
            path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
            arrowprops=(
                {
                    "arrowstyle": "-",
                    "color": "#888",
                    "linewidth": 0.6,
                    "shrinkA": 1,
                    "shrinkB": radius * 72 / DPI,  # points, not pixels
                }
                if far
                else None
            ),
        )
        text.set_in_layout(False)
        taken.append(box)
        texts.append(text)
    return texts


def _step_boxes(ax: Axes, front: list[tuple[float, float]]) -> list[Bbox]:
    """Thin display boxes along the front's dashed staircase (``where="post"``: across
    at a point's quality to the next point's latency, then up), so that numbers are put
    beside the line rather than on it."""
    corners = [ax.transData.transform(p) for p in front]
    boxes = []
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        across = Bbox.from_extents(min(x0, x1), y0 - 1.5, max(x0, x1), y0 + 1.5)
        up = Bbox.from_extents(x1 - 1.5, min(y0, y1), x1 + 1.5, max(y0, y1))
        boxes += [across, up]
    return boxes


def _image_box(box: Bbox, height: float) -> tuple[int, int, int, int]:
    """A display box (origin bottom left) as PNG pixels (origin top left)."""
    return (
        math.floor(box.x0),
        math.floor(height - box.y1),
        math.ceil(box.x1),
        math.ceil(height - box.y0),
    )


def _marker_radius_px(size_points2: float) -> float:
    return math.sqrt(size_points2) / 2 * DPI / 72


def latency_vs_quality(cells: list[CellRecord], model: str) -> Plot | None:
    """One model's p50 against its quality (see :func:`quality_axis`), one panel per
    device, each with the Pareto front of its valid cells. Points are numbered (the same
    number for a variant and runtime on every device); the table under the plot
    (``key_rows``) says what each number is."""
    of_model = [c for c in cells if c.model == model]
    measured = [c for c in of_model if c.status == "ok" and c.result.latency]
    axis = quality_axis(measured)
    if axis is None:
        return None
    drawn = [c for c in measured if axis.read(c) is not None]
    if not drawn:
        return None
    devices = _first_seen([c.device for c in drawn])
    runtimes = _first_seen([c.runtime for c in drawn])
    color = _runtime_color(runtimes)
    keys = _first_seen([(c.variant, c.runtime) for c in drawn])
    number = {k: str(i + 1) for i, k in enumerate(keys)}
    columns = min(len(devices), 3)
    rows = math.ceil(len(devices) / columns)
    fig = Figure(
        figsize=(4.0 * columns if columns > 1 else 7.0, 3.5 * rows + 1.0),
        dpi=DPI,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    grid = fig.subplots(rows, columns, sharey=True, squeeze=False)
    panels = [ax for row in grid for ax in row]
    for ax in panels[len(devices) :]:
        ax.remove()
    fronts: dict[str, list[CellRecord]] = {}
    placed: list[tuple[Axes, list[tuple[float, float, float, str]]]] = []
    for ax, device in zip(panels, devices, strict=False):
        on_device = [c for c in drawn if c.device == device]
        marks = []
        for c in on_device:
            x, y = float(c.result.latency.p50_ms), axis.read(c) or 0.0
            valid = verdict(c) == "ok"
            ax.scatter(
                [x],
                [y],
                marker="o",
                s=POINT_SIZE,
                facecolors=color(c.runtime) if valid else "none",
                edgecolors=color(c.runtime),
                linewidths=1.5,
                zorder=3,
            )
            marks.append((x, y, _marker_radius_px(POINT_SIZE), c))
        valid_cells = [c for c in on_device if verdict(c) == "ok"]
        front = [
            valid_cells[i]
            for i in pareto_front(
                [(float(c.result.latency.p50_ms), axis.read(c) or 0.0) for c in valid_cells]
            )
        ]
        fronts[device] = front
        if front:
            xs = [float(c.result.latency.p50_ms) for c in front]
            ys = [axis.read(c) or 0.0 for c in front]
            ax.step(xs, ys, where="post", color="#444", linestyle="--", linewidth=1, zorder=2)
            ax.scatter(
                xs,
                ys,
                s=RING_SIZE,
                facecolors="none",
                edgecolors="#d62728",
                linewidths=1.5,
                zorder=4,
            )
        ring = _marker_radius_px(RING_SIZE) + 1
        placed.append(
            (
                ax,
                [
                    (x, y, ring if c in front else r + 1, number[(c.variant, c.runtime)])
                    for x, y, r, c in marks
                ],
            )
        )
        latencies = [float(c.result.latency.p50_ms) for c in on_device]
        if max(latencies) / max(min(latencies), 1e-12) > 5:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(_plain_1_2_5))
            ax.xaxis.set_minor_formatter(FuncFormatter(_plain_1_2_5))
        # Room inside the frame for the numbers of the points at its edges.
        ax.margins(x=0.18, y=0.16)
        emulated = any(c.emulated for c in on_device)
        ax.set_title(f"on {device}" + (" (emulated)" if emulated else ""), fontsize=10)
        ax.set_xlabel("p50 latency (ms, lower is better)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for row in grid:
        row[0].set_ylabel(f"{axis.name} ({axis.unit}, higher is better)", fontsize=9)
    title = f"{model}: latency vs {axis.name}"
    fig.suptitle(title)
    handles = [
        Line2D([], [], linestyle="", marker="o", markersize=7, color=color(r), label=r)
        for r in runtimes
    ]
    if any(verdict(c) != "ok" for c in drawn):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                markersize=7,
                markerfacecolor="none",
                color="#555",
                label="hollow: invalid, kept off the front",
            )
        )
    handles.append(
        Line2D(
            [],
            [],
            linestyle="--",
            color="#444",
            marker="o",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor="#d62728",
            label="Pareto front of the device",
        )
    )
    # Outside the panels, below them: a legend there covers no point.
    legend = fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 4),
        fontsize=8,
        frameon=False,
    )
    fig.canvas.draw()  # the constrained layout settles; the labels are placed in it
    renderer = fig.canvas.get_renderer()
    texts = []
    for (ax, points), device in zip(placed, devices, strict=True):
        front_line = [(float(c.result.latency.p50_ms), axis.read(c) or 0.0) for c in fronts[device]]
        texts.append((ax, _place_labels(ax, points, renderer, _step_boxes(ax, front_line))))
    png = _png(fig)  # draws again: the labels are out of the layout, so nothing moves
    height = fig.bbox.height
    by_key = {(c.variant, c.runtime, c.device): c for c in drawn}
    regions = [Region("legend", _image_box(legend.get_window_extent(renderer), height), "legend")]
    for (ax, points), (_, labels), device in zip(placed, texts, devices, strict=True):
        regions.append(
            Region("panel", _image_box(ax.get_window_extent(renderer), height), f"on {device}")
        )
        for x, y, radius, label in points:
            cx, cy = ax.transData.transform((x, y))
            box = Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius)
            c = by_key[(*keys[int(label) - 1], device)]
            regions.append(Region("point", _image_box(box, height), _describe(c, axis, number)))
        for label in labels:
            variant, runtime = keys[int(label.get_text()) - 1]
            c = by_key[(variant, runtime, device)]
            regions.append(
                Region(
                    "label",
                    # The text's own box: an Annotation's includes its leader line.
                    _image_box(Text.get_window_extent(label, renderer), height),
                    _describe(c, axis, number),
                )
            )
    key_rows = []
    for variant, runtime in keys:
        row = [number[(variant, runtime)], variant, runtime]
        for device in devices:
            c = by_key.get((variant, runtime, device))
            if c is None:
                row.append("-")
                continue
            marks = (", on the front" if c in fronts[device] else "") + (
                "" if verdict(c) == "ok" else " (invalid)"
            )
            p50 = float(c.result.latency.p50_ms)
            row.append(f"{p50:.3g} ms, {axis.show(axis.read(c) or 0.0)}{marks}")
        key_rows.append(tuple(row))
    front_names = "; ".join(
        f"{device}: " + (", ".join(f"{c.variant}/{c.runtime}" for c in front) or "none")
        for device, front in fronts.items()
    )
    return Plot(
        name=f"latency-vs-{slug(axis.name.lower())}-{slug(model)}",
        title=title,
        alt=(
            f"Scatter plots of p50 latency against {axis.name} for {len(drawn)} cells of "
            f"{model}, one panel per device; Pareto fronts: {front_names}"
        ),
        caption=(
            f"Each point is a variant and runtime of {model} on the device of its panel "
            "(colour: runtime; number: the row of the table below, the same on every "
            "device). Ringed and joined: that device's Pareto front (no other valid cell "
            f"of {model} on it is both faster and better): {front_names}. Hollow points "
            "are invalid measurements and are kept off the front." + _not_drawn(of_model)
        ),
        png=png,
        key_header=("#", "variant", "runtime", *(f"on {d}: p50, {axis.name}" for d in devices)),
        key_rows=tuple(key_rows),
        regions=tuple(regions),
        size=(round(fig.bbox.width), round(height)),
    )


def _describe(cell: CellRecord, axis: QualityAxis, number: dict[tuple[str, str], str]) -> str:
    value = axis.read(cell)
    return (
        f"{number[(cell.variant, cell.runtime)]}: {cell.variant} / {cell.runtime} on "
        f"{cell.device}: p50 {float(cell.result.latency.p50_ms):.3g} ms, {axis.name} "
        f"{axis.show(value) if value is not None else '-'}"
        + ("" if verdict(cell) == "ok" else " (invalid)")
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
        name=f"latency-distribution-{slug(model)}-{slug(device)}",
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
    # Beside the bars, not over them: a legend inside may hide the tallest.
    size_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _grouped_bars(memory_ax, drawn, lambda c: c.result.peak_memory_mb,
                  runtimes)  # fmt: skip
    memory_ax.set_ylabel("peak RSS during inference (MB)")
    memory_ax.set_title("Peak memory")
    title = f"Size and peak memory on {device}"
    fig.suptitle(title)
    fig.tight_layout()
    return Plot(
        name=f"size-memory-{slug(device)}",
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
    drawn = [c for c in on_device if c.status == "ok" and c.result.energy_mj is not None]
    if not drawn:
        return None
    runtimes = _first_seen([c.runtime for c in drawn])
    sources = sorted({str(c.result.power_source) for c in drawn})
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    _grouped_bars(ax, drawn, lambda c: c.result.energy_mj, runtimes)
    ax.set_ylabel("energy per inference (mJ, idle subtracted)")
    title = f"Energy per inference on {device} ({', '.join(sources)})"
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    modelled = "modelled" in sources
    return Plot(
        name=f"energy-{slug(device)}",
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


GAP_FONTSIZE = 7
VALUE_FONTSIZE = 7
_BAR_INCHES = 0.24  # per bar: wide enough for a number written up the bar
_LOG_RATIO = 30.0  # p50s further apart than this get a log axis


def fidelity_axis(cells: list[CellRecord]) -> QualityAxis | None:
    """What the runtimes view shows under the latency bars: the output SNR against fp32
    where the cells have it (the same on every runtime, unlike agreement, which a
    degenerate fp32 makes meaningless), else agreement with fp32, else accuracy."""
    if any(_fidelity_snr(c) is not None for c in cells):
        return QualityAxis("SNR vs fp32", "dB", _fidelity_snr)
    degenerate = any(c.result.baseline_degenerate for c in cells)
    if not degenerate and any(c.result.agreement is not None for c in cells):
        return QualityAxis("agreement with fp32", "%", _percent(lambda c: c.result.agreement))
    if any(c.result.accuracy is not None for c in cells):
        return QualityAxis("accuracy", "%", _percent(lambda c: c.result.accuracy))
    return None


def gap_word(cell: CellRecord | None) -> str:
    """The small label of a bar that is not there: the first word of the cell's reason
    ("unsupported"), "failed" without one, "not run" when the run has no such cell."""
    if cell is None:
        return "not run"
    text = (cell.reason or cell.result.failure_kind or "").strip()
    word = re.split(r"[^\w-]", text, maxsplit=1)[0] if text else ""
    return word or "failed"


def _p50(cell: CellRecord) -> float | None:
    p50 = cell.result.latency.p50_ms if cell.status == "ok" else None
    return float(p50) if p50 is not None else None


def _fit_labels(ax: Axes, bars: list[tuple[float, Text]], renderer: RendererBase) -> bool:
    """Widen the y limits so every value label (written beyond its bar's end, value
    ``v``) stays inside the axes; True when the limits changed."""
    if not bars:
        return False
    log = ax.get_yscale() == "log"

    def fwd(v: float) -> float:
        return math.log10(v) if log else v

    def back(v: float) -> float:
        return 10**v if log else v

    bottom, top = (fwd(v) for v in ax.get_ylim())
    height = ax.get_window_extent(renderer).height
    new_bottom, new_top = bottom, top
    for value, text in bars:
        room = height - text.get_window_extent(renderer).height - 8  # offset and air
        if room <= 0:
            continue
        v = fwd(value)
        if value >= 0 or log:
            new_top = max(new_top, bottom + (v - bottom) * height / room)
        else:
            new_bottom = min(new_bottom, top - (top - v) * height / room)
    if new_top - top < 1e-9 * max(abs(top), 1) and bottom - new_bottom < 1e-9 * max(abs(bottom), 1):
        return False
    ax.set_ylim(back(new_bottom), back(new_top))
    return True


def runtimes_side_by_side(cells: list[CellRecord], model: str) -> Plot | None:
    """One model's variants on every runtime: a panel per device, a group of bars per
    variant (in run order) with one bar per runtime, its p50 written on it; under it the
    same bars' fidelity (:func:`fidelity_axis`). A cell with no numbers leaves its bar
    out and says why in a word (:func:`gap_word`). None when nothing of the model was
    measured."""
    of_model = [c for c in cells if c.model == model]
    measured = [c for c in of_model if _p50(c) is not None]
    if not measured:
        return None
    devices = _first_seen([c.device for c in of_model])
    variants = _first_seen([c.variant for c in of_model])
    # The measured runtimes first, in the order the other plots colour them.
    runtimes = _first_seen([c.runtime for c in measured] + [c.runtime for c in of_model])
    color = _runtime_color(runtimes)
    fidelity = fidelity_axis(measured)
    by_key: dict[tuple[str, str, str], CellRecord] = {}
    for c in of_model:
        by_key.setdefault((c.variant, c.runtime, c.device), c)
    columns = min(len(devices), 3)
    device_rows = math.ceil(len(devices) / columns)
    rows_per_device = 2 if fidelity else 1
    bars_per_panel = len(variants) * len(runtimes)
    panel_width = max(3.2, _BAR_INCHES * bars_per_panel + 1.1)
    # Wide enough for a legend row of a few runtimes under the panels.
    fig_width = max(panel_width * columns, 4.5)
    fig = Figure(
        figsize=(fig_width, (3.2 + (2.3 if fidelity else 0)) * device_rows + 1.3),
        dpi=DPI,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    grid = fig.subplots(
        device_rows * rows_per_device,
        columns,
        squeeze=False,
        height_ratios=[3.2, 2.3] * device_rows if fidelity else None,
    )
    width = 0.8 / len(runtimes)
    panels: list[tuple[Axes, str]] = []  # every axes, with what its tooltip says
    points: list[tuple[Any, str]] = []  # bar patches
    value_labels: list[tuple[Axes, float, Text, str]] = []
    gap_labels: list[tuple[Text, str]] = []
    used = set()
    for index, device in enumerate(devices):
        row, column = divmod(index, columns)
        lat_ax = grid[row * rows_per_device][column]
        fid_ax = grid[row * rows_per_device + 1][column] if fidelity else None
        used.add((row * rows_per_device, column))
        if fid_ax is not None:
            used.add((row * rows_per_device + 1, column))
            fid_ax.sharex(lat_ax)
        on_device = [c for c in measured if c.device == device]
        p50s = [_p50(c) or 0.0 for c in on_device]
        log = bool(p50s) and min(p50s) > 0 and max(p50s) / min(p50s) > _LOG_RATIO
        floor = min(p50s) / 3 if log else 0.0
        if log:
            lat_ax.set_yscale("log")
            lat_ax.yaxis.set_major_formatter(FuncFormatter(_plain_1_2_5))
            lat_ax.yaxis.set_minor_formatter(FuncFormatter(_plain_1_2_5))
        for v_index, variant in enumerate(variants):
            for r_index, runtime in enumerate(runtimes):
                x = v_index + (r_index - (len(runtimes) - 1) / 2) * width
                cell = by_key.get((variant, runtime, device))
                name = f"{variant} / {runtime} on {device}"
                p50 = _p50(cell) if cell is not None else None
                if cell is None or p50 is None:
                    word = gap_word(cell)
                    gap = lat_ax.annotate(
                        word,
                        (x, 0),
                        xycoords=("data", "axes fraction"),
                        xytext=(0, 3),
                        textcoords="offset points",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=GAP_FONTSIZE,
                        fontstyle="italic",
                        color="#666",
                    )
                    gap.set_in_layout(False)
                    gap_labels.append((gap, f"{name}: {cell.reason if cell else word}"))
                    continue
                valid = verdict(cell) == "ok"
                style = {
                    "color": color(runtime) if valid else "none",
                    "edgecolor": color(runtime),
                    "hatch": None if valid else "//",
                    "linewidth": 1.0,
                }
                quality = fidelity.read(cell) if fidelity else None
                say = (
                    f"{name}: p50 {p50:.3g} ms"
                    + (
                        f", {fidelity.name} {fidelity.show(quality)}"
                        if fidelity and quality is not None
                        else ""
                    )
                    + ("" if valid else " (invalid)")
                )
                (bar,) = lat_ax.bar(x, p50 - floor, width, bottom=floor, **style)
                points.append((bar, say))
                value_labels.append((lat_ax, p50, _bar_label(lat_ax, x, p50, f"{p50:.3g}"), say))
                if fid_ax is None or fidelity is None:
                    continue
                if quality is None:
                    gap = fid_ax.annotate(
                        "n/a",
                        (x, 0),
                        xycoords=("data", "axes fraction"),
                        xytext=(0, 3),
                        textcoords="offset points",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=GAP_FONTSIZE,
                        fontstyle="italic",
                        color="#666",
                    )
                    gap.set_in_layout(False)
                    gap_labels.append((gap, f"{name}: no {fidelity.name}"))
                    continue
                (bar,) = fid_ax.bar(x, quality, width, **style)
                points.append((bar, say))
                text = _bar_label(fid_ax, x, quality, f"{quality:.1f}")
                value_labels.append((fid_ax, quality, text, say))
        emulated = any(c.emulated for c in on_device)
        lat_ax.set_title(f"on {device}" + (" (emulated)" if emulated else ""), fontsize=10)
        lat_ax.set_xlim(-0.5, len(variants) - 0.5)
        if not log:
            lat_ax.set_ylim(0, max(p50s, default=1.0) * 1.05 or 1.0)
        else:
            lat_ax.set_ylim(floor, max(p50s) * 1.5)
        bottom_ax = fid_ax if fid_ax is not None else lat_ax
        bottom_ax.set_xticks(range(len(variants)), variants, fontsize=8, rotation=25, ha="right")
        if fid_ax is not None:
            lat_ax.tick_params(labelbottom=False)
            values = [v for a, v, _, _ in value_labels if a is fid_ax]
            low = min([0.0, *values])
            high = max([0.0, *values])
            fid_ax.set_ylim(low * 1.05, high * 1.05 or 1.0)
            fid_ax.axhline(0, color="#444", linewidth=0.6)
        for ax in (lat_ax, fid_ax):
            if ax is None:
                continue
            ax.tick_params(which="both", labelsize=8)  # a log axis labels minor ticks too
            ax.grid(True, axis="y", alpha=0.3)
            for boundary in range(1, len(variants)):
                ax.axvline(boundary - 0.5, color="#ddd", linewidth=0.8, zorder=0)
        panels.append((lat_ax, f"on {device}: p50"))
        if fid_ax is not None and fidelity is not None:
            panels.append((fid_ax, f"on {device}: {fidelity.name}"))
        if column == 0:
            lat_ax.set_ylabel("p50 latency (ms, lower is better)", fontsize=9)
            if fid_ax is not None and fidelity is not None:
                fid_ax.set_ylabel(
                    f"{fidelity.name}\n({fidelity.unit}, higher is better)", fontsize=9
                )
    for r, row_axes in enumerate(grid):
        for c, ax in enumerate(row_axes):
            if (r, c) not in used:
                ax.remove()
    title = f"{model}: variants on each runtime"
    fig.suptitle(title)
    handles: list[Any] = [Patch(facecolor=color(r), edgecolor=color(r), label=r) for r in runtimes]
    if any(verdict(c) == "invalid" for c in measured):
        handles.append(Patch(facecolor="none", edgecolor="#555", hatch="//", label="invalid"))
    legend = fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=max(1, min(len(handles), 5, int(fig_width / 1.4))),
        fontsize=8,
        frameon=False,
    )
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # The labels are out of the layout; the limits grow until each fits above its bar
    # (a few rounds: the layout may narrow an axes when its tick labels change).
    for _ in range(4):
        changed = False
        for ax, _name in panels:
            mine = [(v, t) for a, v, t, _ in value_labels if a is ax]
            changed = _fit_labels(ax, mine, renderer) or changed
        if not changed:
            break
        fig.canvas.draw()
    png = _png(fig)
    height = fig.bbox.height
    regions = [Region("legend", _image_box(legend.get_window_extent(renderer), height), "legend")]
    regions += [
        Region("panel", _image_box(ax.get_window_extent(renderer), height), say)
        for ax, say in panels
    ]
    regions += [
        Region("point", _image_box(bar.get_window_extent(renderer), height), say)
        for bar, say in points
    ]
    regions += [
        Region("label", _image_box(text.get_window_extent(renderer), height), say)
        for _, _, text, say in value_labels
    ]
    regions += [
        Region("label", _image_box(text.get_window_extent(renderer), height), say)
        for text, say in gap_labels
    ]
    key_rows = []
    for variant in variants:
        for runtime in runtimes:
            row = [variant, runtime]
            for device in devices:
                cell = by_key.get((variant, runtime, device))
                p50 = _p50(cell) if cell is not None else None
                if cell is None or p50 is None:
                    row.append(gap_word(cell) if cell is None else f"failed: {gap_word(cell)}")
                    continue
                quality = fidelity.read(cell) if fidelity else None
                text = f"{p50:.3g} ms"
                if fidelity is not None:
                    text += f", {fidelity.show(quality) if quality is not None else '-'}"
                row.append(text + ("" if verdict(cell) == "ok" else " (invalid)"))
            key_rows.append(tuple(row))
    shown = f" and its {fidelity.name} under it" if fidelity else ""
    below = f"; below, the same cells' {fidelity.name}" if fidelity else ""
    return Plot(
        name=f"runtimes-{slug(model)}",
        title=title,
        alt=(
            f"Bar charts of the p50 latency{shown} of {len(variants)} variants of {model} "
            f"on {len(runtimes)} runtimes ({', '.join(runtimes)}), one panel per device"
        ),
        caption=(
            f"Each group of bars is a variant of {model}, each bar a runtime (colour), its "
            f"p50 written on it{below}. "
            "A missing bar is a cell with no numbers, labelled with the first word of "
            'its reason ("not run": the run has no such cell). Hollow, hatched bars are '
            "invalid measurements." + _not_drawn(of_model)
        ),
        png=png,
        key_header=("variant", "runtime", *(f"on {d}" for d in devices)),
        key_rows=tuple(key_rows),
        regions=tuple(regions),
        size=(round(fig.bbox.width), round(height)),
    )


def _bar_label(ax: Axes, x: float, value: float, text: str) -> Text:
    """``text`` written up from the end of a bar of height ``value`` (below it when the
    value is negative), kept out of the layout."""
    label = ax.annotate(
        text,
        (x, value),
        xytext=(0, 3 if value >= 0 else -3),
        textcoords="offset points",
        rotation=90,
        ha="center",
        va="bottom" if value >= 0 else "top",
        fontsize=VALUE_FONTSIZE,
        color="#111",
        zorder=6,
    )
    label.set_in_layout(False)
    return label


def measured_runtimes(cells: list[CellRecord], model: str) -> list[str]:
    """The runtimes with at least one measured cell of ``model``."""
    return _first_seen([c.runtime for c in cells if c.model == model and _p50(c) is not None])


def make_plots(cells: list[CellRecord], samples_ms: dict[int, list[float]]) -> list[Plot]:
    """Every figure of the report: per model latency vs quality (a panel per device),
    per model measured on two or more runtimes its variants on each runtime side by side,
    per model and device the latency distributions, per device size and memory, and
    energy."""
    devices = _first_seen([c.device for c in cells])
    models = _first_seen([c.model for c in cells])
    plots: list[Plot | None] = []
    for model in models:
        plots.append(latency_vs_quality(cells, model))
    for model in models:
        # The cross-runtime view says nothing with one runtime.
        if len(measured_runtimes(cells, model)) >= 2:
            plots.append(runtimes_side_by_side(cells, model))
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
                name=f"history-{slug(model)}-{slug(device)}",
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
