"""Damaged local inputs are the user's errors, named, through the real CLI: a results
store that is not one (random bytes, someone else's SQLite, a copy cut short), a model
file cut short, a factory module that does not import."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from harness.cli import main
from harness.results.store import SCHEMA_VERSION, ResultsStore
from tests.results_builders import add_cell, new_run
from tests.suite_files import FAST_MEASURE, write_suite

ONE_TRIAL = FAST_MEASURE + "trials = 1\n"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``harness ARGV``: its exit code, stdout and stderr."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue(), capsys.readouterr().err


def tiny_suite(directory: Path) -> Path:
    return write_suite(
        directory,
        """
        name = "tiny"
        runtimes = ["onnxruntime"]
        devices = ["local"]
        [[models]]
        name = "tiny"
        factory = "tinymodel:make"
        [variants]
        fp32 = []
        """
        + ONE_TRIAL,
    )


# --- the results store ------------------------------------------------------------


def store_commands(results: Path, suite: Path) -> list[list[str]]:
    """Every command that opens the store."""
    r = str(results)
    return [
        ["run", str(suite), "--results", r, "-q"],
        ["report", "--results", r],
        ["fit", "--results", r, "--budget", "p90_ms=5"],
        ["compare", "--results", r],
        ["history", "net", "--results", r],
    ]


def damaged_stores(directory: Path) -> dict[str, Path]:
    """harness.db files that are not results stores, each in its own results dir."""
    stores = {}
    rand = directory / "random" / "harness.db"
    rand.parent.mkdir()
    rand.write_bytes(os.urandom(64 * 1024))
    stores["SQLite cannot read it: file is not a database"] = rand

    other = directory / "other" / "harness.db"
    other.parent.mkdir()
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    con.commit()
    con.close()
    stores["a SQLite database with other tables: photos"] = other

    # A store of ours at the current version, minus a table (someone else's user_version).
    stranger = directory / "stranger" / "harness.db"
    stranger.parent.mkdir()
    con = sqlite3.connect(stranger)
    con.execute("CREATE TABLE runs (id INTEGER)")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    con.commit()
    con.close()
    stores[f"a SQLite database at schema version {SCHEMA_VERSION} without the table(s)"] = stranger

    # A real store, copied and cut short: SQLite would open it and fail mid-report.
    cut = directory / "cut" / "harness.db"
    cut.parent.mkdir()
    with ResultsStore(cut) as store:
        run = new_run(store)
        for i in range(40):
            add_cell(store, run, (f"net{i}", "fp32", "onnxruntime", "local"))
    con = sqlite3.connect(cut)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = cut.stat().st_size
    with open(cut, "r+b") as f:
        f.truncate(size // 2)
    stores[f"truncated: its header says {size} bytes, the file has {size // 2}"] = cut
    return stores


def test_a_harness_db_that_is_not_a_results_store_is_exit_2_from_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tiny_suite(tmp_path)
    for why, db in damaged_stores(tmp_path).items():
        before = db.read_bytes()
        for argv in store_commands(db.parent, suite):
            code, out, err = cli(capsys, *argv)
            assert code == 2, (argv, out, err)
            assert f"harness: error: {db}: not a harness results store ({why}" in err, (argv, err)
            assert "Traceback" not in err + out
        assert db.read_bytes() == before  # nothing written into someone else's file


def test_a_damaged_store_says_so_from_a_subprocess_too(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "harness.db").write_bytes(os.urandom(8192))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "not a harness results store" in proc.stderr and "Traceback" not in proc.stderr


MIGRATE_ONCE = """
import sys
from harness.results.store import ResultsStore
print("ready", flush=True)
with ResultsStore(sys.argv[1]) as store:
    print("version", store.schema_version, flush=True)
"""


def test_two_processes_opening_a_fresh_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    """The test holds the store's write lock while four processes open it, so all of
    them read version 0 before any can migrate; then it lets go. One migrates, the
    others see it done (without the lock they would each create the tables)."""
    db = tmp_path / "harness.db"
    holder = sqlite3.connect(db, isolation_level=None)
    assert holder.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    holder.execute("BEGIN IMMEDIATE")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_ONCE, str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        # Each is now reading the version (0) and then waiting for the write lock.
        time.sleep(1.0)
        assert all(proc.poll() is None for proc in procs)
        holder.execute("COMMIT")
        outcomes = [proc.communicate(timeout=60) for proc in procs]
    finally:
        holder.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == f"version {SCHEMA_VERSION}"
    with ResultsStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.runs() == []
