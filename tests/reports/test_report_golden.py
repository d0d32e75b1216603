"""The golden results database: it rebuilds to the same content, holds what its docstring
promises (compare, history and fit pin on that too), and the report outputs on it are
pinned in tests/golden/expected/.

When a change to the reports is intended, regenerate the pins (never edit them by hand)::

    .venv/bin/python tests/golden/build_golden_db.py --expected
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.store import ResultsStore
from tests.golden.build_golden_db import (
    BOARD,
    COMMITS,
    EMULATED,
    EXPECTED_DIR,
    EXPECTED_REPORTS,
    GOLDEN_DB,
    MEMORY_RISE_CELLS,
    REGRESSED_CELLS,
    THROTTLED_CELL,
    TIMEOUT_CELL,
    UNSTABLE_CELL,
    build,
    cell_keys,
    dump,
    golden_copy,
    render_report,
)

REGENERATE = "regenerate with: .venv/bin/python tests/golden/build_golden_db.py --expected"


@pytest.fixture(scope="module")
def golden_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory holding a copy of golden.db as harness.db."""
    directory = tmp_path_factory.mktemp("golden-results")
    golden_copy(directory)
    return directory


def test_rebuilding_gives_the_same_content(tmp_path: Path) -> None:
    rebuilt = dump(build(tmp_path / "rebuilt.db"))
    committed = dump(GOLDEN_DB)
    assert rebuilt.keys() == committed.keys(), f"tables differ; {REGENERATE}"
    for table in committed:
        assert rebuilt[table] == committed[table], f"table {table} differs; {REGENERATE}"


def test_the_golden_database_holds_what_its_docstring_says(golden_results: Path) -> None:
    with ResultsStore(golden_results / "harness.db") as store:
        runs = store.runs()
        assert [r.id for r in runs] == [1, 2, 3, 4]
        assert all(r.status == "complete" and r.suite_name == "golden" for r in runs)
        assert [r.git_commit for r in runs] == [COMMITS[0], COMMITS[1], COMMITS[2], COMMITS[2]]
        fingerprints = [r.machine_fingerprint for r in runs]
        assert len(set(fingerprints[:3])) == 1 and fingerprints[3] != fingerprints[0]
        assert runs[3].runtime_versions["onnxruntime"] != runs[2].runtime_versions["onnxruntime"]
        by_run = {r.id: {c.key: c for c in store.cells(r.id)} for r in runs}
        for cells in by_run.values():
            assert list(cells) == cell_keys() and len(cells) == 40
            for c in cells.values():
                assert c.emulated == (c.device == EMULATED)
                if c.variant == "fp16":
                    assert c.status == "failed" and c.reason.startswith("unsupported: fp16")
                if c.status == "ok":
                    samples = store.samples(c.id)
                    assert len(samples) == c.result["samples"] >= 60
                    assert c.result["latency_ms"]["trials"] == 3
                    source = c.result["power_source"]
                    assert source == ("measured:rapl" if c.device == "local" else "modelled")
                    assert (c.result["emulation"] is not None) == (c.device == EMULATED)
        timeout = by_run[3][TIMEOUT_CELL]
        assert timeout.status == "failed" and timeout.reason.startswith("timeout: ")
        assert by_run[2][UNSTABLE_CELL].result["validity"] == ["unstable"]
        assert by_run[4][THROTTLED_CELL].result["validity"] == ["throttled"]
        assert THROTTLED_CELL[3] == BOARD
        # The others are valid (so the A/A pair of runs 1 and 2 differs only by noise).
        invalid = {
            (run, key)
            for run, cells in by_run.items()
            for key, c in cells.items()
            if c.status == "ok" and c.result["validity"] != "ok"
        }
        assert invalid == {(2, UNSTABLE_CELL), (4, THROTTLED_CELL)}
        for key in REGRESSED_CELLS:
            before, after = (by_run[r][key].result["latency_ms"]["p50"] for r in (2, 3))
            assert 1.15 < after / before < 1.35, key
        for key in MEMORY_RISE_CELLS:
            before, after = (by_run[r][key].result["memory_mb"]["peak"] for r in (2, 3))
            assert after - before == pytest.approx(24.0, abs=0.5), key


@pytest.mark.parametrize(("run", "fmt", "name"), EXPECTED_REPORTS)
def test_report_output_is_pinned(golden_results: Path, tmp_path: Path, run, fmt, name) -> None:
    out = render_report(golden_results, run, fmt, tmp_path / name)
    expected = EXPECTED_DIR / name
    assert out.read_text() == expected.read_text(), (
        f"harness report {run} --format {fmt} changed on golden.db; if intended, {REGENERATE}"
    )


def test_pinned_json_keeps_the_foundation_fields_and_adds_the_comparison() -> None:
    cells = json.loads((EXPECTED_DIR / "run-4.json").read_text())
    assert len(cells) == 40
    int8 = next(
        c
        for c in cells
        if (c["model"], c["variant"], c["runtime"], c["device"])
        == ("digits-cnn", "int8", "onnxruntime", "local")
    )
    assert {"latency_ms", "memory_mb", "size_bytes", "accuracy", "agreement", "emulated"} <= set(
        int8
    )
    assert int8["verdict"] == "ok"
    versus = int8["vs_baseline"]
    assert versus["variant"] == "fp32" and versus["speedup"] > 1 and versus["size_ratio"] < 1
    assert versus["accuracy_delta_points"] == pytest.approx((350 - 351) / 360 * 100)
    failed = [c for c in cells if c["verdict"] == "failed"]
    assert failed and all(c["vs_baseline"] is None and c["reason"] for c in failed)
    assert [c["verdict"] for c in cells].count("invalid") == 1


@pytest.mark.parametrize("spec", ["latest", "latest~1", "2", "8b0e4d2c"])
def test_report_and_fit_name_runs_as_compare_does(
    golden_results: Path, spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id, latest, latest~N or a commit prefix: the same names compare takes."""
    from harness.cli import main

    expected_run = {"latest": 4, "latest~1": 3, "2": 2, "8b0e4d2c": 2}[spec]
    assert main(["report", spec, "--results", str(golden_results), "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    with ResultsStore(golden_results / "harness.db") as store:
        assert len(cells) == len(store.cells(expected_run))
    code = main(
        ["fit", spec, "--results", str(golden_results), "--budget", "p90_ms=5", "--format", "json"]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["run_id"] == expected_run


def test_report_refuses_a_run_name_it_cannot_resolve(
    golden_results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    assert main(["report", "no-such-run", "--results", str(golden_results)]) == 2
    assert "expected a run id, 'latest', 'latest~N' or a git commit" in capsys.readouterr().err
