"""Two harness processes on one results directory at once, as two terminals would run them.

Both must finish with nothing lost or doubled (SQLite in WAL mode with a busy timeout,
each cell written in one transaction, artifacts committed by rename), or the second
must refuse at once saying which process holds the run.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results.store import ResultsStore
from tests.cli_runner import cli, wait_until
from tests.suite_files import FAST_MEASURE, REPO, write_tiny_suite

pytestmark = pytest.mark.slow


def suite(directory: Path, name: str, measure: str = FAST_MEASURE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_tiny_suite(directory, name=name, runtimes=("onnxruntime",), measure=measure)


def start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float = 600) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, out + err


def running_owner(db: Path) -> int | None:
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(db) as con:
            row = con.execute("SELECT owner_pid FROM runs WHERE status = 'running'").fetchone()
    except sqlite3.OperationalError:  # still being created
        return None
    return row[0] if row else None


@pytest.mark.usefixtures("shared_builds")
def test_a_second_run_of_a_suite_that_is_running_refuses_at_once_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = FAST_MEASURE.replace("min_seconds = 0.02", "min_seconds = 2.0")
    path = suite(tmp_path / "s", "busy", slow)
    results = tmp_path / "results"
    first = start("run", str(path), "--results", str(results))
    try:
        assert wait_until(lambda: running_owner(results / "harness.db") == first.pid, 120)
        began = time.monotonic()
        code, _ = cli("run", str(path), "--results", str(results))
        took = time.monotonic() - began
    finally:
        first_code, first_out = finish(first)
    err = capsys.readouterr().err
    assert code == 2 and took < 20, (code, took, err)
    assert f"run 1 of suite busy is being run by harness pid {first.pid} on this host" in err
    assert first_code == 0, first_out
    with ResultsStore(results / "harness.db") as store:
        [run] = store.runs()
        assert run.status == "complete" and len(store.cells(run.id)) == 2


def test_two_suites_into_one_results_directory_at_once_both_finish_whole(tmp_path: Path) -> None:
    results = tmp_path / "results"
    paths = [suite(tmp_path / name, name) for name in ("left", "right")]
    procs = [start("run", str(p), "--results", str(results)) for p in paths]
    outcomes = [finish(p) for p in procs]
    for code, out in outcomes:
        assert code == 0, out
        assert "database is locked" not in out
    with ResultsStore(results / "harness.db") as store:
        runs = store.runs()
        assert sorted(r.suite_name for r in runs) == ["left", "right"]
        for run in runs:
            cells = store.cells(run.id)
            assert run.status == "complete"
            assert sorted(c.variant for c in cells) == ["fp32", "int8"]
            assert all(c.status == "ok" and store.samples(c.id) for c in cells)


@pytest.mark.usefixtures("shared_builds")
def test_a_run_and_an_interleaved_compare_at_once_both_finish(tmp_path: Path) -> None:
    results = tmp_path / "results"
    base = suite(tmp_path / "base", "base")
    for extra in ([], ["--new-run"]):
        code, out = cli("run", str(base), "--results", str(results), *extra)
        assert code == 0, out
    other = suite(tmp_path / "other", "other")
    compare = start(
        "compare",
        "--interleave",
        "--rounds",
        "6",
        "--max-rounds",
        "6",
        "--results",
        str(results),
        "-q",
    )
    run = start("run", str(other), "--results", str(results))
    compare_code, compare_out = finish(compare)
    run_code, run_out = finish(run)
    assert run_code == 0, run_out
    # Whether the A/A pair looks regressed under the other run's load is not the point.
    assert compare_code in (0, 1), compare_out
    assert "database is locked" not in compare_out + run_out
    with ResultsStore(results / "harness.db") as store:
        [interleave] = store.interleaves()
        assert interleave.status == "complete"
        assert all(c.status == "ok" for c in store.interleave_cells(interleave.id))
        assert [r.status for r in store.runs()] == ["complete"] * 3
    assert re.search(r"tiny", compare_out)
