"""A store written by the foundation (schema version 1) opens in this harness, upgraded in
place, with its runs, cells and samples intact."""

from __future__ import annotations

import json
import sqlite3

from harness.results.selection import resolve_run
from harness.results.store import (
    SCHEMA_VERSION,
    InterleaveCellRecord,
    InterleaveTurn,
    ResultsStore,
)

# The foundation's version-1 DDL exactly as it shipped (harness/results/store.py at
# MIGRATIONS[1]); copied, not imported, so that a later edit of MIGRATIONS[1] cannot
# make this test pass against a schema no old database has.
V1_DDL = [
    """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            suite_name TEXT NOT NULL,
            suite_path TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'interrupted', 'complete')),
            harness_version TEXT NOT NULL,
            git_commit TEXT,
            machine_fingerprint TEXT NOT NULL,
            machine_json TEXT NOT NULL,
            runtime_versions_json TEXT NOT NULL
        )""",
    """CREATE TABLE cells (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            variant TEXT NOT NULL,
            runtime TEXT NOT NULL,
            device TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            reason TEXT,
            emulated INTEGER NOT NULL DEFAULT 0,
            artifact_hash TEXT,
            size_bytes INTEGER,
            result_json TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            UNIQUE (run_id, model, variant, runtime, device)
        )""",
    """CREATE TABLE samples (
            cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            PRIMARY KEY (cell_id, seq)
        )""",
    "CREATE INDEX cells_by_run ON cells (run_id)",
    "CREATE INDEX runs_by_suite ON runs (suite_name, id)",
]
RESULT = {"latency_ms": {"p50": 1.5, "trial_p50s": [1.4, 1.5, 1.6]}, "accuracy": 0.97}


def _version_1_db(path) -> None:
    con = sqlite3.connect(path)
    for statement in V1_DDL:
        con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    con.execute(
        """INSERT INTO runs (suite_name, suite_path, started_at, finished_at, status,
            harness_version, git_commit, machine_fingerprint, machine_json,
            runtime_versions_json) VALUES ('quickstart', '/x/quickstart.toml',
            '2026-01-01T00:00:00+00:00', '2026-01-01T00:10:00+00:00', 'complete', '0.1.0',
            'deadbeefcafe', 'fp-1', '{"cpu": "x"}', '{"onnxruntime": "1.31.1"}')"""
    )
    con.execute(
        """INSERT INTO cells (run_id, model, variant, runtime, device, config_hash, status,
            reason, emulated, artifact_hash, size_bytes, result_json, finished_at)
            VALUES (1, 'digits-cnn', 'int8', 'onnxruntime', 'local', 'cfg', 'ok', NULL, 0,
            'art', 31208, ?, '2026-01-01T00:05:00+00:00')""",
        (json.dumps(RESULT),),
    )
    con.execute(
        """INSERT INTO cells (run_id, model, variant, runtime, device, config_hash, status,
            reason, emulated, result_json, finished_at) VALUES (1, 'digits-cnn', 'fp16',
            'onnxruntime', 'local', 'cfg', 'failed', 'unsupported: fp16', 0, '{}',
            '2026-01-01T00:06:00+00:00')"""
    )
    con.executemany(
        "INSERT INTO samples (cell_id, seq, latency_ms) VALUES (1, ?, ?)",
        [(i, 1.4 + 0.01 * i) for i in range(20)],
    )
    con.commit()
    con.close()


def test_a_version_1_store_is_upgraded_and_keeps_its_data(tmp_path):
    db = tmp_path / "harness.db"
    _version_1_db(db)
    with ResultsStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 3
        [run] = store.runs()
        assert (run.suite_name, run.git_commit, run.status) == (
            "quickstart",
            "deadbeefcafe",
            "complete",
        )
        assert run.runtime_versions == {"onnxruntime": "1.31.1"}
        ok, failed = store.cells(run.id)
        assert ok.key == ("digits-cnn", "int8", "onnxruntime", "local")
        assert ok.result == RESULT and ok.size_bytes == 31208
        assert store.samples(ok.id) == [1.4 + 0.01 * i for i in range(20)]
        assert failed.status == "failed" and failed.reason == "unsupported: fp16"
        # What version 2 adds works on the upgraded file.
        assert resolve_run(store, "deadbee").id == run.id
        interleave = store.begin_interleave(run.id, run.id, 6, 20, 0.025, None, "fp-1")
        turn = InterleaveTurn(0, "base", 0, 1.5, (1.5, 1.6))
        store.record_interleave_cell(
            interleave,
            InterleaveCellRecord(ok.key, "art", "art", "ok", None, {"trials": 1}, (turn,)),
        )
        [back] = store.interleave_cells(interleave)
        assert back.turns == (turn,)
        # Version 3: an old run has no owner, so it is nobody's to wait for.
        assert (run.owner_pid, run.owner_host, run.owner_started) == (None, None, None)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"runs_by_commit", "cells_by_run", "runs_by_suite"} <= indexes
    con.close()
    # Opening it again applies nothing twice.
    with ResultsStore(db) as store:
        assert store.schema_version == 3 and len(store.interleaves()) == 1
