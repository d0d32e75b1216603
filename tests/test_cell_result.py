import dataclasses
import json

import pytest

from harness.results.cell_result import CELL_RESULT_API_VERSION, CellResult, CellResultError
from harness.results.store import CellRecord

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
    r = CellRecord("m", "v", "rt", "d", "h", "ok", result=STORED).measurements
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
