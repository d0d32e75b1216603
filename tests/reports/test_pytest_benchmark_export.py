"""``harness report RUN --format pytest-benchmark``: the file pytest-benchmark's own loader
and ``pytest-benchmark compare`` read, with stats that mean what they mean there."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.storage.file import FileStorage

from harness.cli import main
from harness.results.store import ResultsStore
from tests.golden.build_golden_db import golden_copy

STATS_KEYS = {
    "min",
    "max",
    "mean",
    "stddev",
    "rounds",
    "median",
    "iqr",
    "q1",
    "q3",
    "iqr_outliers",
    "stddev_outliers",
    "outliers",
    "ld15iqr",
    "hd15iqr",
    "ops",
    "total",
    "data",
    "iterations",
}
BENCHMARK_KEYS = {"group", "name", "fullname", "params", "param", "extra_info", "options", "stats"}


class _QuietLogger:
    def warning(self, text: str, **kwargs: object) -> None:
        raise AssertionError(f"pytest-benchmark warned: {text}")

    def info(self, text: str, **kwargs: object) -> None:
        pass

    def debug(self, text: str, **kwargs: object) -> None:
        pass


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(results directory with golden.db, the run-4 export as pytest-benchmark names files)."""
    results = tmp_path_factory.mktemp("pb-results")
    golden_copy(results)
    out = tmp_path_factory.mktemp("pb-storage") / "0001_golden-run-4.json"
    code = main(
        ["report", "4", "--results", str(results), "--format", "pytest-benchmark", "-o", str(out)]
    )
    assert code == 0
    return results, out


def test_the_layout_is_pytest_benchmarks(exported: tuple[Path, Path]) -> None:
    _, out = exported
    data = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    assert data["commit_info"]["id"] == "c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3"
    assert data["commit_info"]["dirty"] is False
    assert data["machine_info"]["node"] == "bench-b"
    assert data["datetime"].startswith("2026-03-05T")
    for bench in data["benchmarks"]:
        assert set(bench) == BENCHMARK_KEYS
        assert set(bench["stats"]) == STATS_KEYS
        assert bench["group"] == f"{bench['params']['model']}/{bench['params']['device']}"
        assert bench["fullname"] == f"golden::{bench['name']}"


def test_stats_are_the_raw_samples_in_seconds(exported: tuple[Path, Path]) -> None:
    results, out = exported
    data = json.loads(out.read_text())
    with ResultsStore(results / "harness.db") as store:
        cells = {f"{c.model}[{c.variant}/{c.runtime}/{c.device}]": c for c in store.cells(4)}
        for bench in data["benchmarks"]:
            cell = cells[bench["name"]]
            samples_s = [s / 1e3 for s in store.samples(cell.id)]
            stats = bench["stats"]
            assert stats["data"] == pytest.approx(samples_s)
            assert stats["rounds"] == len(samples_s) == cell.result["samples"]
            assert stats["median"] == pytest.approx(statistics.median(samples_s))
            assert stats["min"] == pytest.approx(cell.result["latency_ms"]["min"] / 1e3)
            assert stats["ops"] == pytest.approx(len(samples_s) / sum(samples_s))
            assert bench["extra_info"]["p90_ms"] == cell.result["latency_ms"]["p90"]
            assert bench["extra_info"]["verdict"] in ("ok", "invalid")


def test_failed_cells_are_listed_with_their_reasons(exported: tuple[Path, Path]) -> None:
    _, out = exported
    data = json.loads(out.read_text())
    failed = data["harness"]["failed"]
    assert len(data["benchmarks"]) + len(failed) == 40
    assert {f["name"] for f in failed} == {
        f"digits-cnn[fp16/{r}/{d}]"
        for r in ("onnxruntime", "executorch")
        for d in ("local", "pi4-emulated")
    }
    assert all(f["reason"].startswith("unsupported: fp16") for f in failed)
    throttled = next(b for b in data["benchmarks"] if b["name"] == "mlp[int8/onnxruntime/pi4]")
    assert throttled["extra_info"]["validity"] == ["throttled"]


def test_pytest_benchmarks_loader_reads_it(exported: tuple[Path, Path]) -> None:
    _, out = exported
    storage = FileStorage(out.parent, logger=_QuietLogger())
    loaded = list(storage.load_benchmarks(str(out)))
    assert len(loaded) == 36
    assert {b["name"] for b in loaded} >= {"digits-cnn[int8/onnxruntime/local]"}
    assert all(b["median"] > 0 and b["rounds"] >= 60 for b in loaded)


def test_pytest_benchmark_compare_shows_it(exported: tuple[Path, Path]) -> None:
    _, out = exported
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_benchmark",
            "compare",
            str(out),
            "--group-by=group",
            "--columns=min,median,max",
        ],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "benchmark 'digits-cnn/local': 8 tests" in proc.stdout
    assert "mlp[int8/onnxruntime/pi4]" in proc.stdout
