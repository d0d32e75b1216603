"""The stage ``harness compare --interleave`` calls (:func:`interleave_compare`): which
cells it pairs, the rounds it gives them, the lines it reports and what it stores, run
for real on this machine's runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.artifacts import ArtifactStore
from harness.results.store import ResultsStore
from harness.results.thresholds import resolve_thresholds
from harness.suite.interleave import InterleaveOutcome, StopReason, interleave_compare
from tests.onnx_models import matmul_model
from tests.results_builders import KEY, add_cell, new_run
from tests.suite_files import write_suite

SUITE = """
name = "s"
runtimes = ["onnxruntime"]
devices = ["local"]

[[models]]
name = "tiny"
factory = "tinymodel:make"

[variants]
fp32 = []
"""
FAST = {
    "trials": 1,
    "warmup_count": 2,
    "warmup_seconds": 0.0,
    "min_count": 5,
    "min_seconds": 0.02,
    "max_seconds": 2.0,
}
FAILED_KEY = ("broken", "fp32", "onnxruntime", "local")
GONE_KEY = ("gone", "fp32", "onnxruntime", "local")
NO_DEVICE_KEY = ("net", "fp32", "onnxruntime", "no-such-board")


def _results(tmp_path: Path, *extra_cells: tuple[tuple[str, str, str, str], str]) -> Path:
    """Two runs of ``KEY`` on one real tiny artifact, plus ``extra_cells`` (key, artifact
    hash) in both, and ``FAILED_KEY`` ok in the base run only."""
    results = tmp_path / "results"
    artifacts = ArtifactStore(results / "artifacts")
    staged = artifacts.staging_path("art-1", ".onnx")
    matmul_model(staged, size=16, layers=2)
    artifacts.commit("art-1", staged, ".onnx", {"runtime": "onnxruntime"})
    suite = write_suite(tmp_path, SUITE)
    rng = np.random.default_rng(0)
    with ResultsStore(results / "harness.db") as store:
        for commit in ("aaaa1111", "bbbb2222"):
            run = new_run(store, commit=commit, suite_path=str(suite))
            add_cell(store, run, levels=[1.0] * 3, rng=rng, measure=FAST)
            for key, artifact_hash in extra_cells:
                add_cell(store, run, key, rng=rng, measure=FAST, artifact_hash=artifact_hash)
            status = "ok" if commit == "aaaa1111" else "failed"
            add_cell(store, run, FAILED_KEY, rng=rng, measure=FAST, status=status)
    return results


def _stage(results: Path, **kwargs) -> tuple[list[str], InterleaveOutcome, ResultsStore]:
    lines: list[str] = []
    store = ResultsStore(results / "harness.db")
    outcome = interleave_compare(
        store,
        results,
        store.get_run(1),
        store.get_run(2),
        min_rounds=kwargs.pop("min_rounds", 6),
        max_rounds=kwargs.pop("max_rounds", 6),
        thresholds=resolve_thresholds(),
        alpha=0.05,
        say=lines.append,
        **kwargs,
    )
    return lines, outcome, store


def test_re_measures_the_cells_both_runs_measured_and_reports_each(tmp_path: Path) -> None:
    lines, outcome, store = _stage(_results(tmp_path))
    with store:
        # The cell that failed in the new run is not re-measured: nothing to compare.
        assert list(outcome.cells) == [KEY]
        assert lines[0] == (
            "interleaving runs 1 and 2: 1 cells, 6-6 rounds each (base and new alternately, "
            "until the verdict is settled or the ratio is known to +-2.5%)"
        )
        [done] = lines[1:]
        assert done.startswith("[1/1] net / fp32 / onnxruntime / local: 6 rounds (")
        assert done.removesuffix(")").rsplit("(", 1)[1] in {r.value for r in StopReason}
        [record] = store.interleaves()
        assert (record.id, record.status) == (outcome.interleave_id, "complete")
        assert (record.min_rounds, record.max_rounds) == (6, 6)
        # Half the default 5% latency limit.
        assert record.target_half_width == pytest.approx(0.025)
        [stored] = store.interleave_cells(outcome.interleave_id)
    assert stored.status == "ok" and len(stored.turns) == 12
    assert stored.measure["trials"] == 1 and stored.measure["min_count"] == 5


def test_max_rounds_below_min_rounds_is_raised_to_it(tmp_path: Path) -> None:
    lines, outcome, store = _stage(_results(tmp_path), min_rounds=6, max_rounds=2)
    store.close()
    assert "6-6 rounds each" in lines[0]
    assert len(outcome.cells[KEY].turns) == 12


def test_cells_that_cannot_be_measured_are_reported_not_judged(tmp_path: Path) -> None:
    """A missing artifact and a device profile found nowhere each fail their own cell
    with the reason; the measurable cell is still measured."""
    results = _results(tmp_path, (GONE_KEY, "art-gone"), (NO_DEVICE_KEY, "art-1"))
    lines, outcome, store = _stage(results)
    store.close()
    by_key = {line.split(": ", 1)[0].split("] ", 1)[1]: line for line in lines[1:]}
    gone = by_key[" / ".join(GONE_KEY)]
    assert "not judged: artifact_missing: the base run's artifact art-gone" in gone
    assert "not judged: bad_input: expected " in by_key[" / ".join(NO_DEVICE_KEY)]
    assert "no-such-board" in by_key[" / ".join(NO_DEVICE_KEY)]
    assert outcome.cells[KEY].status == "ok"
    assert {outcome.cells[k].status for k in (GONE_KEY, NO_DEVICE_KEY)} == {"failed"}
