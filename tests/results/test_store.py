import sqlite3

import pytest

from harness.results.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CellRecord,
    ResultsStore,
    StoreError,
)


def _run(store: ResultsStore) -> int:
    return store.begin_run("s", "/x/s.toml", "0.1.0", "abc", {"cpu": "x"}, "fp", {"torch": "2"})


def test_new_store_has_current_schema_version(tmp_path):
    with ResultsStore(tmp_path / "h.db") as store:
        assert store.schema_version == SCHEMA_VERSION == max(MIGRATIONS)


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "h.db"
    ResultsStore(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer harness"):
        ResultsStore(db)


def test_cells_and_raw_samples_round_trip(tmp_path):
    with ResultsStore(tmp_path / "h.db") as store:
        run = _run(store)
        cell = CellRecord(
            "m",
            "fp32",
            "onnxruntime",
            "local",
            "h1",
            "ok",
            size_bytes=10,
            result={"latency_ms": {"p50": 1.0}},
        )
        cell_id = store.record_cell(run, cell, [1.0, 2.0, 3.0])
        assert store.samples(cell_id) == [1.0, 2.0, 3.0]
        [back] = store.cells(run)
        assert back.key == cell.key and back.result == cell.result and back.size_bytes == 10
        assert {k: d.config_hash for k, d in store.done_cells(run).items()} == {cell.key: "h1"}
        # Re-recording a cell replaces it, samples included.
        store.record_cell(run, cell, [9.0])
        [again] = store.cells(run)
        assert store.samples(again.id) == [9.0]
        assert len(store.cells(run)) == 1


def test_run_metadata_is_kept(tmp_path):
    with ResultsStore(tmp_path / "h.db") as store:
        run = _run(store)
        store.set_run_status(run, "complete")
        rec = store.get_run(run)
        assert rec.git_commit == "abc" and rec.runtime_versions == {"torch": "2"}
        assert rec.machine_fingerprint == "fp" and rec.status == "complete"
        assert store.latest_run("s").id == run and store.latest_run("other") is None


def test_failed_cell_without_samples(tmp_path):
    with ResultsStore(tmp_path / "h.db") as store:
        run = _run(store)
        store.record_cell(
            run,
            CellRecord("m", "fp16", "onnxruntime", "local", "h", "failed", reason="unsupported: x"),
            [],
        )
        [c] = store.cells(run)
        assert c.status == "failed" and c.reason == "unsupported: x"


def test_migration_path_upgrades_an_older_store_and_keeps_its_data(tmp_path, monkeypatch):
    """A store written at version 1 is upgraded in place by later migrations."""
    import harness.results.store as store_module

    db = tmp_path / "h.db"
    with ResultsStore(db) as store:
        run = _run(store)
        store.record_cell(run, CellRecord("m", "fp32", "onnxruntime", "local", "h", "ok"), [1.5])
        assert store.schema_version == SCHEMA_VERSION

    upgraded = {
        **MIGRATIONS,
        SCHEMA_VERSION + 1: ["ALTER TABLE cells ADD COLUMN note TEXT DEFAULT 'migrated'"],
    }
    monkeypatch.setattr(store_module, "MIGRATIONS", upgraded)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with ResultsStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION + 1
        [cell] = store.cells(run)
        assert store.samples(cell.id) == [1.5]
    con = sqlite3.connect(db)
    assert con.execute("SELECT note FROM cells").fetchone()[0] == "migrated"
    con.close()
