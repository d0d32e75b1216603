"""The HTML report of the golden run: self-contained, every cell's row and every plot
there, failed and invalid cells with their reasons, and, in a real headless Chromium,
every image decoded and no console message.

The browser's screenshot is kept as a test artifact in results/test-artifacts/report-html/
(``HARNESS_TEST_ARTIFACTS`` overrides the directory); the test prints where.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.reports.html import write_html_report
from harness.results.store import ResultsStore
from harness.suite.config import Budget
from tests.chromium import CHROMIUM_FLAGS, chromium_or_skip
from tests.golden.build_golden_db import cell_keys, golden_copy
from tests.suite_files import REPO

RUN = 4


class PageElements(HTMLParser):
    """The attributes of every element the tests look for."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str | None]] = {}
        self.problems: dict[str, dict[str, str | None]] = {}
        self.images: list[dict[str, str | None]] = []
        self.sections: dict[str, dict[str, str | None]] = {}
        self.body: dict[str, str | None] = {}
        self.external: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "tr" and a.get("data-cell"):
            self.rows[a["data-cell"] or ""] = a
        if tag == "tr" and a.get("data-problem-cell"):
            self.problems[a["data-problem-cell"] or ""] = a
        if tag == "img":
            self.images.append(a)
        if tag == "section" and a.get("data-optional"):
            self.sections[a["data-optional"] or ""] = a
        if tag == "body":
            self.body = a
        for name in ("src", "href"):
            value = a.get(name) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(f"<{tag} {name}={value[:80]}>")


def parse(text: str) -> PageElements:
    page = PageElements()
    page.feed(text)
    return page


def artifact_dir() -> Path:
    directory = Path(os.environ.get("HARNESS_TEST_ARTIFACTS", REPO / "results" / "test-artifacts"))
    return directory / "report-html"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``harness report 4 --format html`` on a copy of golden.db (the default output)."""
    results = tmp_path_factory.mktemp("html-results")
    golden_copy(results)
    assert main(["report", str(RUN), "--results", str(results), "--format", "html"]) == 0
    page = results / "reports" / f"run-{RUN}.html"
    assert page.is_file()
    return page


@pytest.fixture(scope="module")
def run_cells(report: Path) -> dict[str, str]:
    """Every cell of the run as ``model/variant/runtime/device`` -> its verdict."""
    with ResultsStore(report.parents[1] / "harness.db") as store:
        out = {}
        for c in store.cells(RUN):
            validity = c.result.get("validity")
            if c.status != "ok":
                out["/".join(c.key)] = "failed"
            else:
                out["/".join(c.key)] = "ok" if validity in (None, "ok") else "invalid"
        return out


def test_every_cell_has_its_row_with_its_verdict(report: Path, run_cells: dict) -> None:
    page = parse(report.read_text())
    assert set(page.rows) == set(run_cells) == {"/".join(k) for k in cell_keys()}
    for cell, verdict in run_cells.items():
        assert page.rows[cell]["data-verdict"] == verdict, cell
    assert len({row["id"] for row in page.rows.values()}) == len(page.rows)  # ids unique


def test_failed_and_invalid_cells_appear_with_their_reasons(report: Path, run_cells: dict) -> None:
    text = report.read_text()
    page = parse(text)
    problems = {c for c, v in run_cells.items() if v != "ok"}
    assert set(page.problems) == problems
    assert "mlp/int8/onnxruntime/pi4" in problems  # the throttled board cell
    assert "unsupported: fp16 is not supported by onnxruntime" in text
    assert "throttled: the CPU was throttled" in text


def test_the_page_is_self_contained(report: Path) -> None:
    text = report.read_text()
    page = parse(text)
    assert page.external == []
    assert "link" not in page.tags  # no stylesheet fetched
    assert "http://" not in text and "https://" not in text
    assert page.images, "no plots"
    for img in page.images:
        assert (img["src"] or "").startswith("data:image/png;base64,")
        assert img["alt"] and img["data-plot"]


def test_every_plot_is_also_a_png_beside_the_page(report: Path) -> None:
    page = parse(report.read_text())
    image_dir = report.with_suffix("")
    names = [img["data-plot"] for img in page.images]
    kinds = {"latency-vs-accuracy", "latency-distribution", "size-memory", "energy", "history"}
    for kind in kinds:
        assert any(n and n.startswith(kind) for n in names), kind
    for img in page.images:
        png = image_dir / f"{img['data-plot']}.png"
        assert png.read_bytes() == base64.b64decode((img["src"] or "").split(",", 1)[1])
    for model in ("digits-cnn", "mlp"):  # one per model, a panel per device
        assert f"latency-vs-accuracy-{model}" in names


def test_optional_sections_render_when_their_modules_exist(report: Path) -> None:
    text = report.read_text()
    page = parse(text)
    assert set(page.sections) == {"fit", "history"}
    assert "<!-- optional section: hardware fit" in text
    # Without budgets the fit still sets the emulated estimates against the real board.
    assert 'id="emulation-vs-real"' in text
    assert "No budgets to check" in text
    assert sum(1 for img in page.images if (img["data-plot"] or "").startswith("history-")) == 6


def test_budgets_given_fill_the_fit_section(tmp_path: Path) -> None:
    golden_copy(tmp_path)
    budgets = {"pi4": Budget(p90_ms=0.2, peak_memory_mb=80, min_accuracy=0.95)}
    with ResultsStore(tmp_path / "harness.db") as store:
        written = write_html_report(
            store, RUN, tmp_path / "fit.html", budgets=budgets, with_history=False
        )
    text = written.path.read_text()
    assert "fit" in written.sections and "history" not in written.sections
    assert 'data-fit-device="pi4"' in text and 'data-fit-device="pi4-emulated"' in text
    assert 'data-fit-cell="mlp/fp32/onnxruntime/pi4"' in text
    assert "Recommended:" in text


@pytest.mark.slow
def test_in_headless_chromium_every_row_and_image_is_there_and_nothing_logged(
    report: Path, run_cells: dict, tmp_path: Path
) -> None:
    browser = chromium_or_skip()
    url = report.resolve().as_uri()
    common = [browser, *CHROMIUM_FLAGS, "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(
        [
            *common,
            f"--user-data-dir={tmp_path / 'profile-dom'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dom.returncode == 0, dom.stderr[-3000:]
    page = parse(dom.stdout)
    assert set(page.rows) == set(run_cells)
    assert set(page.problems) == {c for c, v in run_cells.items() if v != "ok"}
    assert page.images
    for img in page.images:
        assert int(img.get("data-natural-width") or 0) > 0, f"{img['data-plot']} not decoded"
    assert page.body.get("data-images-decoded") == f"{len(page.images)}/{len(page.images)}"
    # Console messages (log, warning, error, uncaught exceptions) come as INFO:CONSOLE lines.
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console

    artifacts = artifact_dir()
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / f"run-{RUN}.png"
    shot = subprocess.run(
        [
            *common,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            "--window-size=1280,9000",  # tall enough for the plots, not only the tables
            f"--screenshot={screenshot}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shot.returncode == 0, shot.stderr[-3000:]
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    shutil.copyfile(report, artifacts / report.name)
    print(f"screenshot of the golden HTML report: {screenshot}")


def test_a_level_change_across_runs_is_marked_in_the_history_plot(tmp_path: Path) -> None:
    """Ten runs of one cell whose p50 steps up 20% at the sixth: the page's history plot
    marks that run (the step is found by harness.results.history, drawn by plots)."""
    import numpy as np

    from tests.results_builders import add_cell, new_run

    rng = np.random.default_rng(7)
    with ResultsStore(tmp_path / "harness.db") as store:
        runs = []
        for i in range(10):
            runs.append(new_run(store, commit=f"{i:04x}beef", suite="hist"))
            level = 1.0 if i < 5 else 1.2
            add_cell(store, runs[-1], levels=[level * (1 + 0.01 * rng.standard_normal())] * 3)
        report = write_html_report(store, runs[-1], tmp_path / "page.html")
    [history_png] = [p for p in report.images if p.name.startswith("history-")]
    assert history_png.is_file() and "history" in report.sections
    page = (tmp_path / "page.html").read_text()
    # The plot's alt text lists the level changes it marks.
    assert f"level changes: fp32/onnxruntime +20% at run {runs[5]}" in page
