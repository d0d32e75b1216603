import dataclasses
import json

import pytest

from harness.results import cell_result
from harness.results.cell_result import CELL_RESULT_API_VERSION, CellResult, CellResultError
from harness.results.store import CellRecord, ResultsStore, StoreError

STORED = {
    "latency_ms": {"p50": 1.5, "p90": 2.25, "trial_p50s": [1.4, 1.6]},
    "memory_mb": {"peak": 12.5},
    "accuracy": 0.75,
    "validity": ["cv 0.3 above 0.2"],
    "lineage": [{"recipe": "int8"}],
    "runtime_version": "1.2.3",
}


def test_round_trip_is_the_stored_dict_byte_for_byte() -> None:
    back = CellResult.from_dict(STORED).to_dict()
    assert json.dumps(back) == json.dumps(STORED)


def test_a_dict_without_api_version_loads_as_the_current_version() -> None:
    result = CellResult.from_dict(dict(STORED))
    assert result.api_version == CELL_RESULT_API_VERSION
    assert "api_version" not in result.to_dict()


def test_a_future_api_version_is_refused_with_a_clear_message() -> None:
    with pytest.raises(CellResultError, match=r"api_version 99 is newer .* upgrade the harness"):
        CellResult.from_dict({**STORED, "api_version": 99})


def test_accessors_read_the_stored_values() -> None:
    r = CellRecord("m", "v", "rt", "d", "h", "ok", result=STORED).result
    assert r.latency.p50_ms == 1.5
    assert r.latency.stat("p90") == 2.25
    assert r.latency.trial_p50s_ms == (1.4, 1.6)
    assert r.peak_memory_mb == 12.5
    assert r.accuracy == 0.75
    assert r.validity == ["cv 0.3 above 0.2"]
    assert r.runtime_version == "1.2.3"


def test_accessors_on_missing_data_return_none() -> None:
    r = CellResult.from_dict({})
    assert r.latency.p50_ms is None
    assert r.latency.stat("p90") is None
    assert r.latency.trial_p50s_ms == ()
    assert r.peak_memory_mb is None
    assert r.accuracy is None and r.energy_mj is None and r.validity is None
    assert r.baseline_degenerate == ()


def test_result_is_immutable_and_independent_of_its_source() -> None:
    source = json.loads(json.dumps(STORED))
    r = CellResult.from_dict(source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.api_version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.data["accuracy"] = 1.0  # type: ignore[index]
    source["latency_ms"]["p50"] = 99.0
    assert r.latency.p50_ms == 1.5


def test_a_cell_record_reads_a_dict_into_a_cell_result() -> None:
    record = CellRecord("m", "v", "rt", "d", "h", "ok", result=STORED)
    assert isinstance(record.result, CellResult)
    assert record.result == STORED and record.result["lineage"] == [{"recipe": "int8"}]
    assert CellRecord("m", "v", "rt", "d", "h", "ok").result == {}


def test_values_read_from_a_result_are_copies() -> None:
    r = CellResult.from_dict(STORED)
    r["lineage"].append({"recipe": "prune"})
    r.lineage.append({"recipe": "prune"})
    r.measure["x"] = 1
    assert r.get("lineage") == [{"recipe": "int8"}] and r.measure == {}
    with pytest.raises(TypeError):
        r["accuracy"] = 1.0  # type: ignore[index]


def test_with_values_returns_a_new_result_and_keeps_the_key_order() -> None:
    r = CellResult.from_dict(STORED)
    later = r.with_values(wall_seconds=1.25)
    assert r.wall_seconds is None and later.wall_seconds == 1.25
    assert list(later) == [*STORED, "wall_seconds"]


def test_the_store_writes_the_version_and_reads_it_back(tmp_path) -> None:
    from tests.results_builders import new_run

    with ResultsStore(tmp_path / "h.db") as store:
        run = new_run(store)
        store.record_cell(run, CellRecord("m", "v", "rt", "d", "h", "ok", result=STORED), [])
        raw = store._db.execute("SELECT result_json FROM cells").fetchone()[0]
        assert json.loads(raw) == {"api_version": CELL_RESULT_API_VERSION, **STORED}
        [cell] = store.cells(run)
    assert cell.result.to_dict() == STORED and cell.result.latency.p50_ms == 1.5


def _stored_with(tmp_path, result_json: str):
    from tests.results_builders import new_run

    store = ResultsStore(tmp_path / "h.db")
    run = new_run(store)
    store.record_cell(run, CellRecord("m", "v", "rt", "d", "h", "ok"), [])
    with store._db:
        store._db.execute("UPDATE cells SET result_json = ?", (result_json,))
    return store, run


def test_a_result_stored_before_versions_reads_as_version_one(tmp_path) -> None:
    store, run = _stored_with(tmp_path, json.dumps(STORED))
    with store:
        [cell] = store.cells(run)
    assert cell.result.api_version == 1 and cell.result.to_dict() == STORED


def test_a_result_from_a_newer_harness_names_the_database_and_the_cell(tmp_path) -> None:
    store, run = _stored_with(tmp_path, json.dumps({**STORED, "api_version": 99}))
    with store, pytest.raises(StoreError) as err:
        store.cells(run)
    text = str(err.value)
    assert str(tmp_path / "h.db") in text and "m/v/rt/d" in text and "upgrade" in text


def test_an_older_shape_goes_through_each_migration_step(monkeypatch) -> None:
    # A pretend history: version 1 kept the peak as "peak_mb", version 2 a memory table.
    steps = {
        1: lambda d: {
            **{k: v for k, v in d.items() if k != "peak_mb"},
            "memory_mb": {"peak": d.get("peak_mb")},
        },
        2: lambda d: {**d, "migrated": True},
    }
    monkeypatch.setattr(cell_result, "MIGRATIONS", steps)
    monkeypatch.setattr(cell_result, "CELL_RESULT_API_VERSION", 3)
    r = CellResult.from_dict({"peak_mb": 7.0})  # no version key: version 1
    assert r.peak_memory_mb == 7.0 and r["migrated"] is True
    assert CellResult.from_dict({"api_version": 2, "memory_mb": {"peak": 3.0}})["migrated"]
    with pytest.raises(CellResultError, match="not a version number"):
        CellResult.from_dict({"api_version": "2"})
