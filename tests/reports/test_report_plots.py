"""The report's latency plots: one per model with a panel and a Pareto front per device,
numbers beside the points that overlap nothing, a legend outside the panels, and a table
of what each number is; checked on the figures' geometry, on their pixels and in a real
headless Chromium (a DOM dump, then a screenshot cropped to each plot).

The screenshot crops stay in the test's ``tmp_path`` (``plots/``); the test prints where.
"""

from __future__ import annotations

import io
import itertools
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.reports.cells import verdict
from harness.reports.plots import Plot, Region, latency_vs_quality, make_plots, pareto_front
from harness.results.store import CellRecord, ResultsStore
from tests.chromium import CHROMIUM_FLAGS, chromium_or_skip
from tests.golden.build_golden_db import MODEL_VARIANTS, RUNTIMES, golden_copy

RUN = 4
WINDOW_WIDTH = 1280

Box = tuple[int, int, int, int]


def _intersect(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _boxes(plot: Plot, kind: str) -> list[Region]:
    return [r for r in plot.regions if r.kind == kind]


def assert_nothing_overlaps(
    name: str,
    labels: list[Box],
    points: list[Box],
    legends: list[Box],
    panels: list[Box],
    size: tuple[int, int],
) -> None:
    """No label on a label, a point or the legend; the legend on no panel; every label
    inside a panel; everything inside the image."""
    assert labels and points and legends and panels, name
    for a, b in itertools.combinations(labels, 2):
        assert not _intersect(a, b), f"{name}: labels {a} and {b} overlap"
    for label in labels:
        assert any(
            p[0] <= label[0] and p[1] <= label[1] and label[2] <= p[2] and label[3] <= p[3]
            for p in panels
        ), f"{name}: label {label} is not inside a panel"
        for point in points:
            # A label's own point is beside it, never under it: no point may be.
            assert not _intersect(label, point), f"{name}: label {label} covers point {point}"
    for legend in legends:
        for other in [*labels, *points, *panels]:
            assert not _intersect(legend, other), f"{name}: the legend covers {other}"
    for box in [*labels, *points, *legends, *panels]:
        assert 0 <= box[0] < box[2] <= size[0] and 0 <= box[1] < box[3] <= size[1], (name, box)


def assert_plot_overlaps_nothing(plot: Plot) -> None:
    """:func:`assert_nothing_overlaps` on the boxes the plot says it drew."""
    assert_nothing_overlaps(
        plot.name,
        [r.box for r in _boxes(plot, "label")],
        [r.box for r in _boxes(plot, "point")],
        [r.box for r in _boxes(plot, "legend")],
        [r.box for r in _boxes(plot, "panel")],
        plot.size,
    )


@pytest.fixture(scope="module")
def golden_cells(tmp_path_factory: pytest.TempPathFactory) -> list[CellRecord]:
    directory = tmp_path_factory.mktemp("plots-golden")
    golden_copy(directory)
    with ResultsStore(directory / "harness.db") as store:
        return store.cells(RUN)


def _latency_plots(plots: list[Plot]) -> dict[str, Plot]:
    return {p.name: p for p in plots if p.name.startswith("latency-vs-")}


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_one_latency_plot_per_model_with_a_front_per_device(golden_cells: list[CellRecord]):
    plots = _latency_plots(make_plots(golden_cells, {}))
    assert set(plots) == {f"latency-vs-accuracy-{m}" for m in MODEL_VARIANTS}
    for model in MODEL_VARIANTS:
        plot = plots[f"latency-vs-accuracy-{model}"]
        drawn = [c for c in golden_cells if c.model == model and c.status == "ok"]
        devices = list(dict.fromkeys(c.device for c in drawn))
        assert plot.key_header[:3] == ("#", "variant", "runtime")
        assert [h.split(":")[0] for h in plot.key_header[3:]] == [f"on {d}" for d in devices]
        # Every measured variant and runtime has its number; fp16 failed and has none.
        keyed = {(row[1], row[2]) for row in plot.key_rows}
        assert keyed == {(c.variant, c.runtime) for c in drawn}
        assert {r for _, r in keyed} == set(RUNTIMES)
        assert [row[0] for row in plot.key_rows] == [str(i + 1) for i in range(len(keyed))]
        assert len(_boxes(plot, "point")) == len(_boxes(plot, "label")) == len(drawn)
        assert len(_boxes(plot, "panel")) == len(devices)
        for column, device in enumerate(devices, start=3):
            on_device = [c for c in drawn if c.device == device and verdict(c) == "ok"]
            points = [(c.result["latency_ms"]["p50"], c.result["accuracy"]) for c in on_device]
            expected = {(on_device[i].variant, on_device[i].runtime) for i in pareto_front(points)}
            marked = {(row[1], row[2]) for row in plot.key_rows if "on the front" in row[column]}
            assert marked == expected and expected, (model, device)
        # Invalid cells are drawn, marked, and kept off the front.
        assert all(
            "invalid" not in row[c] or "on the front" not in row[c]
            for row in plot.key_rows
            for c in range(3, len(row))
        )
    throttled = [
        r for r in plots["latency-vs-accuracy-mlp"].key_rows if r[1:3] == ("int8", "onnxruntime")
    ]
    assert throttled and throttled[0][-1].endswith("(invalid)")  # run 4's hot board cell
    assert "4 failed cell(s)" in plots["latency-vs-accuracy-digits-cnn"].caption


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_golden_labels_overlap_nothing_and_are_drawn_where_their_boxes_are(
    golden_cells: list[CellRecord],
):
    for plot in _latency_plots(make_plots(golden_cells, {})).values():
        assert_plot_overlaps_nothing(plot)
        image = np.asarray(Image.open(io.BytesIO(plot.png)).convert("L"))
        assert image.shape == (plot.size[1], plot.size[0])
        for label in _boxes(plot, "label"):
            x0, y0, x1, y1 = label.box
            # The number's digits are dark ink inside its box (the box is where it is).
            assert image[y0:y1, x0:x1].min() < 80, (plot.name, label)


def _cell(variant: str, runtime: str, device: str, p50: float, accuracy: float) -> CellRecord:
    return CellRecord(
        "crowded",
        variant,
        runtime,
        device,
        "cfg",
        "ok",
        result={"latency_ms": {"p50": p50}, "accuracy": accuracy, "validity": "ok"},
    )


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_a_crowded_cluster_still_gets_labels_that_overlap_nothing():
    """Sixteen variants on three runtimes packed into a few percent of latency and half a
    point of accuracy, plus far outliers that stretch the axes: the greedy placement
    must still find a free place for every number."""
    rng = np.random.default_rng(3)
    cells = []
    for i, runtime in itertools.product(range(16), ("onnxruntime", "executorch", "torch")):
        for device in ("local", "pi4"):
            scale = 4.0 if device == "pi4" else 1.0
            cells.append(
                _cell(
                    f"v{i}",
                    runtime,
                    device,
                    scale * (1.0 + 0.03 * rng.random()),
                    0.95 + 0.005 * rng.random(),
                )
            )
    cells.append(_cell("slow", "torch", "local", 9.0, 0.99))
    cells.append(_cell("slow", "torch", "pi4", 40.0, 0.99))
    plot = latency_vs_quality(cells, "crowded")
    assert plot is not None
    assert len(plot.key_rows) == 16 * 3 + 1
    assert_plot_overlaps_nothing(plot)


@pytest.mark.parametrize("devices", [1, 4])
def test_one_device_is_one_panel_and_four_are_two_rows(devices: int):
    cells = [
        _cell(f"v{i}", runtime, f"dev{d}", (1 + i) * (1 + d), 0.9 + 0.01 * i)
        for i, runtime, d in itertools.product(range(4), ("onnxruntime", "torch"), range(devices))
    ]
    plot = latency_vs_quality(cells, "crowded")
    assert plot is not None
    panels = [r.box for r in _boxes(plot, "panel")]
    assert len(panels) == devices and len({p[1] for p in panels}) == (1 if devices == 1 else 2)
    assert_plot_overlaps_nothing(plot)


def test_without_labels_the_axis_is_agreement_and_with_a_degenerate_fp32_snr():
    def cell(variant: str, p50: float, **quality: object) -> CellRecord:
        result = {"latency_ms": {"p50": p50}, "validity": "ok", **quality}
        return CellRecord("m", variant, "onnxruntime", "local", "cfg", "ok", result=result)

    agreeing = [cell("fp32", 2.0, agreement=1.0), cell("int8", 1.0, agreement=0.97)]
    plot = latency_vs_quality(agreeing, "m")
    assert plot is not None and plot.name == "latency-vs-agreement-m"
    assert "97.0%" in plot.key_rows[1][3]
    degenerate = [
        cell("fp32", 2.0, agreement=1.0, snr_db=90.0, baseline_degenerate=["one class: x"]),
        cell("int8", 1.0, agreement=1.0, snr_db=31.5, baseline_degenerate=["one class: x"]),
    ]
    plot = latency_vs_quality(degenerate, "m")
    assert plot is not None and plot.name == "latency-vs-snr-m"
    assert plot.key_rows[1][3] == "1 ms, 31.5 dB, on the front"
    assert latency_vs_quality([cell("fp32", 1.0)], "m") is None  # no quality: no plot


class Figures(HTMLParser):
    """Every figure of the page with its image, image map areas and key table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict] = {}
        self._figure: dict | None = None
        self._key_row: list[str] | None = None
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "figure" and a.get("data-figure"):
            self._figure = {"attrs": a, "areas": [], "key": [], "img": {}}
            self.figures[a["data-figure"]] = self._figure
        elif self._figure is None:
            return
        elif tag == "img":
            self._figure["img"] = a
        elif tag == "area":
            self._figure["areas"].append(a)
        elif tag == "tr" and a.get("data-key"):
            self._key_row = []
            self._figure["key"].append(self._key_row)
        elif tag == "td" and self._key_row is not None:
            self._in_cell = True
            self._key_row.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag == "tr":
            self._key_row = None
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._key_row is not None:
            self._key_row[-1] += data


def _box(text: str) -> Box:
    x0, y0, x1, y1 = (int(v) for v in text.split(","))
    return (x0, y0, x1, y1)


def _boxes_of(text: str) -> list[Box]:
    return [_box(part) for part in text.split(";") if part]


@pytest.mark.slow
def test_in_headless_chromium_one_plot_per_model_with_no_overlapped_label(tmp_path: Path):
    browser = chromium_or_skip()
    results = tmp_path / "results"
    golden_copy(results)
    assert main(["report", str(RUN), "--results", str(results), "--format", "html"]) == 0
    page = results / "reports" / f"run-{RUN}.html"
    url = page.resolve().as_uri()

    def run_chromium(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [browser, *CHROMIUM_FLAGS, "--force-device-scale-factor=1", *args, url],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    dom = run_chromium(
        f"--user-data-dir={tmp_path / 'profile-dom'}",
        f"--window-size={WINDOW_WIDTH},2000",
        "--virtual-time-budget=10000",
        "--dump-dom",
    )
    parser = Figures()
    parser.feed(dom.stdout)
    latency = {n: f for n, f in parser.figures.items() if n.startswith("latency-vs-")}
    assert set(latency) == {f"latency-vs-accuracy-{m}" for m in MODEL_VARIANTS}
    with ResultsStore(results / "harness.db") as store:
        cells = store.cells(RUN)
    for name, figure in latency.items():
        model = name.removeprefix("latency-vs-accuracy-")
        img = figure["img"]
        natural = int(img["data-natural-width"])
        left, top, width, height = (int(v) for v in img["data-page-box"].split(","))
        # Drawn at its own size, so the image map's pixels are the page's.
        assert width == natural == int(img["width"]), name
        labels = [_box(a["coords"]) for a in figure["areas"] if a["data-region"] == "label"]
        points = [_box(a["coords"]) for a in figure["areas"] if a["data-region"] == "point"]
        assert_nothing_overlaps(
            name,
            labels,
            points,
            _boxes_of(figure["attrs"]["data-legend-boxes"]),
            _boxes_of(figure["attrs"]["data-panel-boxes"]),
            (natural, height),
        )
        measured = [c for c in cells if c.model == model and c.status == "ok"]
        assert len(labels) == len(measured)
        # Every label's tooltip names a cell of this model; the table says what each is.
        titles = [a["title"] for a in figure["areas"] if a["data-region"] == "label"]
        named = [re.match(r"(\d+): (.+) / (.+) on ([^:]+): p50 ", t) for t in titles]
        assert all(named), titles
        assert {m.group(2, 3, 4) for m in named if m} == {
            (c.variant, c.runtime, c.device) for c in measured
        }
        assert {(row[1], row[2]) for row in figure["key"]} == {
            (c.variant, c.runtime) for c in measured
        }
        figure["page_box"] = (left, top, width, height)

    bottom = max(f["page_box"][1] + f["page_box"][3] for f in latency.values())
    screenshot = tmp_path / "plots" / f"run-{RUN}-page.png"
    screenshot.parent.mkdir()
    run_chromium(
        f"--user-data-dir={tmp_path / 'profile-shot'}",
        f"--window-size={WINDOW_WIDTH},{bottom + 400}",
        f"--screenshot={screenshot}",
    )
    shot = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    for name, figure in latency.items():
        left, top, width, height = figure["page_box"]
        crop = shot[top : top + height, left : left + width]
        Image.fromarray(crop.astype(np.uint8)).save(screenshot.parent / f"{name}.png")
        png = np.asarray(Image.open(page.with_suffix("") / f"{name}.png").convert("RGB"))
        # What Chromium shows is the plot itself, pixel for pixel (within colour rounding):
        # not scaled, not cut, not covered by anything on the page.
        assert crop.shape == png.shape, name
        assert np.abs(crop - png.astype(int)).mean() < 2.0, name
    print(f"screenshots of the latency plots: {screenshot.parent}")
