"""The terminal tables in a real terminal at 80, 120 and 200 columns: no number is cut.

``harness report`` and ``harness fit`` run as a user runs them, in a pseudo-terminal
whose window size is set with ``TIOCSWINSZ`` and with ``COLUMNS``/``LINES`` unset, so rich
finds the width itself. Every number of the run's JSON report (``--format json``) that
the table has a column for must be that column's cell, whole; every column the table
leaves out must be named in its footer; every note (a failure's reason) must be there in
full; and no line may be wider than the terminal. At 200 columns, where the full table
fits, the output is the pinned golden table.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from rich.cells import cell_len

from harness.reports.fit.render import EMULATION_COLUMNS, VARIANT_COLUMNS
from harness.reports.table import COLUMNS, GROUP_COLUMNS
from tests.cli_runner import harness
from tests.golden.build_golden_db import EXPECTED_DIR, GOLDEN_BUDGETS, GOLDEN_DB
from tests.suite_files import REPO, write_tiny_suite

RUN = "4"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_pty(args: list[str], columns: int, lines: int = 60, timeout: float = 120) -> str:
    """``harness ARGS`` with its stdin, stdout and stderr on a pty of ``columns`` x
    ``lines``; what it wrote, without colour codes and carriage returns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child's side of the terminal is closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = ANSI.sub("", b"".join(chunks).decode()).replace("\r", "")
    assert code == 0, f"harness {' '.join(args)} exited {code}:\n{text}"
    return text


def parse_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every rich table in ``text``: (its title, its headers, its rows' first lines).

    A row's later lines (a wrapped note) have an empty first cell and are skipped."""
    lines = text.split("\n")
    tables = []
    for i, line in enumerate(lines):
        if not line.startswith("┏"):
            continue
        title = lines[i - 1].strip()
        headers = [h.strip() for h in lines[i + 1].strip("┃ ").split("┃")]
        rows = []
        for row in lines[i + 3 :]:
            if not row.startswith("│"):
                break
            cells = [c.strip() for c in row.strip().strip("│").split("│")]
            if cells[0]:
                rows.append(cells)
        tables.append((title, headers, rows))
    return tables


def squeezed(text: str) -> str:
    return " ".join(text.split())


def assert_fits(text: str, columns: int) -> None:
    wide = [line for line in text.split("\n") if cell_len(line) > columns]
    assert not wide, f"{len(wide)} lines wider than {columns} columns, first: {wide[0]!r}"


def left_out_named(text: str, columns: int) -> str | None:
    """What the footer says was left out (it may wrap over lines), or None: no footer."""
    found = re.search(rf"left out at {columns} columns: ([^;]*); (.*?) shows", squeezed(text))
    if found is None:
        return None
    assert "--format markdown" in found.group(2)
    return found.group(1)


@pytest.fixture(scope="module")
def golden_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("width-results")
    shutil.copyfile(GOLDEN_DB, results / "harness.db")
    return results


@pytest.fixture(scope="module")
def report_json(golden_results: Path) -> list[dict]:
    args = ["report", RUN, "--format", "json", "--results", str(golden_results)]
    return json.loads(harness(*args, timeout=120, check=True).stdout)


def _f(value: float | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    return "-" if value is None else format(value * scale, spec) + suffix


def expected_cells(cell: dict, cells: list[dict]) -> dict[str, str]:
    """The table's number cells for one JSON cell, computed from the JSON alone."""
    if cell["status"] != "ok":
        return {c: "-" for c in ("p50 ms", "p90 ms", "size KB", "peak MB", "energy mJ")}
    same = ("model", "runtime", "device")
    base = next(
        b
        for b in cells
        if all(b[k] == cell[k] for k in same) and not b["lineage"] and b["status"] == "ok"
    )
    p50, base_p50 = cell["latency_ms"]["p50"], base["latency_ms"]["p50"]
    acc, base_acc = cell["accuracy"], base["accuracy"]
    return {
        "p50 ms": _f(p50, ".3f"),
        "p90 ms": _f(cell["latency_ms"]["p90"], ".3f"),
        "speedup": _f(base_p50 / p50, ".2f", suffix="x"),
        "size KB": _f(cell["size_bytes"], ".1f", 1 / 1024),
        "size x": _f(cell["size_bytes"] / base["size_bytes"], ".2f"),
        "peak MB": _f(cell["memory_mb"]["peak"], ".0f"),
        "accuracy": _f(acc, ".1f", 100),
        "acc Δ pt": _f(None if acc is None or base_acc is None else acc - base_acc, "+.1f", 100),
        "agreement": _f(cell["agreement"], ".1f", 100),
        "SNR dB": _f(cell["snr_db"], ".1f"),
        "energy mJ": _f(cell["energy_mj"], ".3f"),
    }


def check_report_table(text: str, columns: int, cells: list[dict]) -> set[str]:
    """Every number of ``cells`` (the JSON report) that the table has a column for is that
    column's cell, whole; what is left out is named; every failure's reason is there.
    The columns shown."""
    tables = {title: (headers, rows) for title, headers, rows in parse_tables(text)}
    groups = {f"{c['model']} on {c['device']}" for c in cells}
    assert set(tables) == groups
    headers = {h for hs, _ in tables.values() for h in hs}
    assert all(hs == next(iter(tables.values()))[0] for hs, _ in tables.values())
    # The row's name and its headline numbers are always there.
    assert {"runtime", "variant", "status", "p50 ms", "speedup"} <= headers
    every = [c for c in COLUMNS if c not in GROUP_COLUMNS and c != "note"]
    assert left_out_named(text, columns) == ", ".join(c for c in every if c not in headers)
    checked = 0
    for cell in cells:
        hs, rows = tables[f"{cell['model']} on {cell['device']}"]
        (row,) = [r for r in rows if r[:2] == [cell["runtime"], cell["variant"]]]
        shown = dict(zip(hs, row, strict=True))
        for column, value in expected_cells(cell, cells).items():
            if column in shown:
                assert shown[column] == value, (cell["variant"], column, shown)
                checked += 1
        if cell["status"] != "ok":
            assert squeezed(cell["reason"]) in squeezed(text)
    assert checked >= len(cells) * 3
    return headers


@pytest.mark.parametrize("columns", [80, 120])
def test_report_table_keeps_every_number_whole(
    golden_results: Path, report_json: list[dict], columns: int
) -> None:
    text = run_in_pty(["report", RUN, "--results", str(golden_results)], columns)
    assert_fits(text, columns)
    headers = check_report_table(text, columns, report_json)
    assert "note" not in headers, "the full table fits: no longer a test of narrowing"


@pytest.mark.slow
def test_run_prints_its_table_whole_at_80(tmp_path: Path) -> None:
    """The table ``harness run`` ends with, after a real run of a tiny suite."""
    suite = write_tiny_suite(tmp_path, runtimes=("onnxruntime",))
    results = tmp_path / "results"
    text = run_in_pty(["run", "-q", str(suite), "--results", str(results)], 80, timeout=600)
    # Python's own warnings on stderr are the terminal's to wrap; the report is ours.
    table = text[text.index("tiny (run 1)") :]
    assert_fits(table, 80)
    args = ["report", "1", "--format", "json", "--results", str(results)]
    cells = json.loads(harness(*args, timeout=120, check=True).stdout)
    assert [c["status"] for c in cells] == ["ok", "ok"]
    headers = check_report_table(table, 80, cells)
    # The tiny model has no labels: its empty accuracy columns give way to agreement.
    assert all(c["accuracy"] is None for c in cells)
    assert "agreement" in headers and "acc Δ pt" not in headers, headers


def test_report_narrow_keeps_more_at_120_than_at_80(golden_results: Path) -> None:
    shown = {}
    for columns in (80, 120):
        text = run_in_pty(["report", RUN, "--results", str(golden_results)], columns)
        shown[columns] = set(parse_tables(text)[0][1])
    assert shown[80] < shown[120]


def test_report_at_200_columns_is_the_pinned_table(golden_results: Path) -> None:
    """Where every column fits, the terminal shows what ``-o`` writes (pinned)."""
    text = run_in_pty(["report", RUN, "--results", str(golden_results)], 200)
    assert_fits(text, 200)
    pinned = (EXPECTED_DIR / "run-4-table.txt").read_text()
    assert [line.rstrip() for line in text.strip("\n").split("\n")] == [
        line.rstrip() for line in pinned.strip("\n").split("\n")
    ]
    assert "left out at" not in text


def test_fit_table_keeps_every_number_whole_at_80(golden_results: Path, tmp_path: Path) -> None:
    suite = tmp_path / "budgets.toml"
    suite.write_text(GOLDEN_BUDGETS)
    base = ["fit", RUN, "--results", str(golden_results), "--suite", str(suite)]
    report = json.loads(harness(*base, "--format", "json", timeout=120).stdout)
    columns = 80
    text = run_in_pty(base, columns)
    assert_fits(text, columns)
    tables = parse_tables(text)
    by_title = {title: (headers, rows) for title, headers, rows in tables}
    checked = 0
    for device in report["devices"]:
        hs, rows = by_title[f"{device['device']} ({device['label']})"]
        assert {"model", "variant", "runtime", "verdict", "p90 ms"} <= set(hs)
        for v in device["variants"]:
            (row,) = [r for r in rows if r[:3] == [v["model"], v["variant"], v["runtime"]]]
            shown = dict(zip(hs, row, strict=True))
            m = v["metrics"]
            size = m["size_bytes"]
            want = {
                "verdict": v["verdict"],
                "p90 ms": _f(m["p90_ms"], ".3f"),
                "peak MB": _f(m["peak_memory_mb"], ".0f"),
                "accuracy": _f(m["accuracy"], ".1f", 100, "%"),
                "SNR dB": _f(m["snr_db"], ".1f"),
                "energy mJ": _f(m["energy_mj"], ".3g"),
                "size KB": _f(size, ".1f", 1 / 1024) if size is not None else "-",
            }
            for column, value in want.items():
                if column in shown:
                    assert shown[column] == value, (v["variant"], column, shown)
                    checked += 1
            if v["verdict"] != "fits":
                assert squeezed(v["summary"]) in squeezed(text)
    assert checked >= 3 * sum(len(d["variants"]) for d in report["devices"])
    assert report["emulation_vs_real"], "golden run 4 has the pi4 board and its emulation"
    hs, rows = by_title["emulated estimates against real measurements"]
    assert {"board", "model", "variant", "runtime", "p50 est/real"} <= set(hs)
    for c in report["emulation_vs_real"]:
        key = [c["board"], c["model"], c["variant"], c["runtime"]]
        (row,) = [r for r in rows if r[:4] == key]
        shown = dict(zip(hs, row, strict=True))
        p50, peak = c["p50_ms"], c["peak_memory_mb"]
        want = {
            "p50 est/real": _f(p50["ratio"], ".2f", suffix="x"),
            "peak est/real": _f(peak["ratio"], ".2f", suffix="x"),
            "p50 est ms": _f(p50["estimate"], ".3f"),
            "p50 real ms": _f(p50["measured"], ".3f"),
            "peak est MB": _f(peak["estimate"], ".0f"),
            "peak real MB": _f(peak["measured"], ".0f"),
        }
        for column, value in want.items():
            if column in shown:
                assert shown[column] == value, (key, column, shown)
    # What either table left out is named in the footer, the variant table's first.
    shown_anywhere = {h for _, hs, _ in tables for h in hs}
    missing = [c for c in (*VARIANT_COLUMNS, *EMULATION_COLUMNS) if c not in shown_anywhere]
    missing = [c for c in missing if c != "why"]
    assert missing, "the fit tables fit 80 columns: no longer a test of narrowing"
    assert left_out_named(text, columns) == ", ".join(missing)


def test_fit_at_80_keeps_the_budgeted_columns(golden_results: Path, tmp_path: Path) -> None:
    """A figure a budget limits is what a verdict is about: it stays before the others."""

    def fit_at_80(budget: str) -> str:
        suite = tmp_path / "budgets.toml"
        suite.write_text(f'name = "b"\n\n[budgets.local]\n{budget}\n')
        args = ["fit", RUN, "--results", str(golden_results), "--suite", str(suite)]
        text = run_in_pty([*args, "--device", "local"], 80)
        assert_fits(text, 80)
        return text

    text = fit_at_80("energy_mj = 0.3\nmax_size_bytes = 100000")
    title, headers, _ = parse_tables(text)[0]
    assert title == "local (measured)"
    assert {"verdict", "energy mJ", "size KB"} <= set(headers), headers
    assert "p90 ms" not in headers and "p90 ms" in (left_out_named(text, 80) or "")
    # Without a budget on them, energy and size are the first to go at 80 columns.
    headers = parse_tables(fit_at_80("p90_ms = 0.05"))[0][1]
    assert "energy mJ" not in headers and "size KB" not in headers
