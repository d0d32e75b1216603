"""Each cell's deploy record (what an SSH device sent and found cached) in the JSON and
HTML reports, failed cells too; cells on this machine have none."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

from harness.cli import main
from harness.results.store import ResultsStore
from tests.results_builders import add_cell, new_run

LOCAL = ("net", "fp32", "onnxruntime", "local")
BOARD_OK = ("net", "fp32", "onnxruntime", "pi")
BOARD_FAILED = ("net", "int8", "onnxruntime", "pi")
SENT = {
    "host": "pi@10.0.0.7:22",
    "files_sent": 3,
    "bytes_sent": 1234567,
    "files_cached": 0,
    "sent": ["bench_runner.py", "net-fp32.onnx", "eval_inputs.npy"],
}
# The board went away after the runner arrived: a failed cell that still sent something.
PARTLY = {
    "host": "pi@10.0.0.7:22",
    "files_sent": 1,
    "bytes_sent": 4096,
    "files_cached": 1,
    "sent": ["net-int8.onnx"],
}


def results_dir(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    with ResultsStore(results / "harness.db") as store:
        run = new_run(store)
        add_cell(store, run, LOCAL)
        add_cell(store, run, BOARD_OK, extra={"deploy": SENT})
        add_cell(
            store,
            run,
            BOARD_FAILED,
            status="failed",
            reason="device_unavailable: stalled sending net-int8.onnx",
            extra={"deploy": PARTLY},
        )
    return results


def report(results: Path, *argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["report", "--results", str(results), *argv]) == 0
    return out.getvalue()


def test_the_json_report_carries_each_cells_deploy_record(tmp_path: Path) -> None:
    reported = json.loads(report(results_dir(tmp_path), "--format", "json"))
    cells = {(c["model"], c["variant"], c["runtime"], c["device"]): c for c in reported}
    assert cells[LOCAL]["deploy"] is None
    assert cells[BOARD_OK]["deploy"] == SENT
    assert cells[BOARD_FAILED]["status"] == "failed"
    assert cells[BOARD_FAILED]["deploy"] == PARTLY


class DeployRows(HTMLParser):
    """The deployments table: cell id -> the text of each of its cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._row: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-deploy-cell"):
            self._row = a["data-deploy-cell"] or ""
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._text is not None:
            self.rows[self._row].append("".join(self._text))
            self._text = None
        elif tag == "tr":
            self._row = None


def test_the_html_report_lists_what_each_board_cell_deployed(tmp_path: Path) -> None:
    results = results_dir(tmp_path)
    page_path = tmp_path / "run.html"
    report(results, "--format", "html", "-o", str(page_path))
    page = page_path.read_text()
    parser = DeployRows()
    parser.feed(page)
    assert set(parser.rows) == {"/".join(BOARD_OK), "/".join(BOARD_FAILED)}  # not local
    assert parser.rows["/".join(BOARD_OK)] == [
        "/".join(BOARD_OK),
        "ok",
        "pi@10.0.0.7:22",
        "3",
        "1,234,567",
        "0",
        "bench_runner.py, net-fp32.onnx, eval_inputs.npy",
    ]
    assert parser.rows["/".join(BOARD_FAILED)][1:] == [
        "failed",
        "pi@10.0.0.7:22",
        "1",
        "4,096",
        "1",
        "net-int8.onnx",
    ]
    assert 'id="deploy"' in page


def test_a_run_on_this_machine_only_has_no_deploy_section(tmp_path: Path) -> None:
    results = tmp_path / "results"
    with ResultsStore(results / "harness.db") as store:
        add_cell(store, new_run(store), LOCAL)
    page_path = tmp_path / "run.html"
    report(results, "--format", "html", "-o", str(page_path))
    assert "data-deploy-cell" not in page_path.read_text()
    assert 'id="deploy"' not in page_path.read_text()
