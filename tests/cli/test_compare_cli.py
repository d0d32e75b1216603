"""``harness compare``: run selection, output formats and exit codes (0 nothing regressed,
1 something regressed, 2 bad input), and the interleaved re-measurement end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.artifacts import ArtifactStore
from harness.cli import main
from harness.results.store import ResultsStore
from tests.onnx_models import matmul_model
from tests.results_builders import KEY, add_cell, new_run
from tests.suite_files import FAST_MEASURE, write_suite

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


def _results(
    tmp_path: Path,
    new_levels: list[float],
    *,
    new_peak: float = 100.0,
    suite_extra: str = "",
    artifact_hash: str = "art-1",
) -> Path:
    """Two runs (commits aaaa1111, bbbb2222) of one cell with 5 trials each."""
    results = tmp_path / "results"
    tmp_path.mkdir(parents=True, exist_ok=True)
    suite = write_suite(tmp_path, SUITE + suite_extra)
    rng = np.random.default_rng(0)
    with ResultsStore(results / "harness.db") as store:
        base = new_run(store, commit="aaaa1111", suite_path=str(suite))
        add_cell(store, base, levels=[1.0, 1.01, 0.99, 1.0, 1.0], rng=rng, measure=FAST,
                 artifact_hash=artifact_hash)  # fmt: skip
        new = new_run(store, commit="bbbb2222", suite_path=str(suite))
        add_cell(store, new, levels=new_levels, rng=rng, peak_mb=new_peak, measure=FAST,
                 artifact_hash=artifact_hash)  # fmt: skip
    return results


def compare(results: Path, *args: str) -> int:
    return main(["compare", *args, "--results", str(results)])


def test_nothing_regressed_exits_0(tmp_path, capsys):
    results = _results(tmp_path, [1.0, 0.99, 1.01, 1.0, 1.0])
    assert compare(results) == 0
    out = capsys.readouterr().out
    assert "run 1 @ aaaa1111 -> run 2 @ bbbb2222" in out and "no regression" in out


def test_a_regression_exits_1_in_every_format(tmp_path, capsys):
    results = _results(tmp_path, [1.25, 1.26, 1.24, 1.25, 1.25])
    assert compare(results, "--format", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressed"] and data["counts"]["regressed"] == 1
    [cell] = data["cells"]
    assert cell["verdict"] == "regressed" and cell["latency"]["basis"] == "trials"
    assert cell["latency"]["ratio"] == pytest.approx(1.25, abs=0.02)
    assert compare(results, "--format", "markdown") == 1
    assert "| net | fp32 | onnxruntime | local | regressed |" in capsys.readouterr().out
    assert compare(results) == 1
    assert "REGRESSED" in capsys.readouterr().out
    out_file = tmp_path / "cmp.json"
    assert compare(results, "--format", "json", "-o", str(out_file)) == 1
    assert json.loads(out_file.read_text())["regressed"]


def test_three_trials_that_cannot_tell_a_large_change_exit_0_but_say_so(tmp_path, capsys):
    """The default suite's 3 trials, spreading widely, with the median +53%: no
    significance, so no regression (exit 0, as the README says), but the row says the
    test could not tell, the summary counts it and the legend explains the marker."""
    results = tmp_path / "results"
    suite = write_suite(tmp_path, SUITE)
    rng = np.random.default_rng(0)
    with ResultsStore(results / "harness.db") as store:
        base = new_run(store, commit="aaaa1111", suite_path=str(suite))
        add_cell(store, base, levels=[1.0, 1.3, 0.8], rng=rng)
        new = new_run(store, commit="bbbb2222", suite_path=str(suite))
        add_cell(store, new, levels=[1.53, 1.0, 2.2], rng=rng)
    assert compare(results, "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    [cell] = data["cells"]
    assert cell["verdict"] == "inconclusive" and cell["latency"]["verdict"] == "inconclusive"
    assert cell["latency"]["change"] > 0.4 and not cell["latency"]["significant"]
    assert data["counts"]["inconclusive"] == 1 and not data["regressed"]
    assert cell["notes"][0].startswith("inconclusive: +")
    assert compare(results, "--format", "markdown") == 0
    markdown = capsys.readouterr().out
    assert "| net | fp32 | onnxruntime | local | inconclusive? |" in markdown
    assert "over 3 trials a side" in markdown and "use --interleave" in markdown
    assert compare(results) == 0
    # The terminal table (its lines wrapped at the console's width: compare words).
    out = " ".join(capsys.readouterr().out.split())
    assert "no regression found, but 1 cell(s) inconclusive" in out
    assert "verdicts: regressed = " in out and "markers: ! after a change" in out


def test_a_looser_threshold_or_the_suites_compare_table_clears_it(tmp_path):
    results = _results(tmp_path, [1.0, 0.99, 1.01, 1.0, 1.0], new_peak=130.0)
    assert compare(results) == 1  # peak memory +30% against 10%
    assert compare(results, "--threshold", "memory=40%") == 0
    relaxed = _results(
        tmp_path / "b", [1.0, 0.99, 1.01, 1.0, 1.0], new_peak=130.0,
        suite_extra='\n[compare]\nmemory = "50%"\n',
    )  # fmt: skip
    assert compare(relaxed) == 0
    assert compare(relaxed, "--threshold", "memory=20%") == 1  # the command line wins


def test_a_newly_failing_cell_exits_1(tmp_path, capsys):
    results = tmp_path / "results"
    with ResultsStore(results / "harness.db") as store:
        base, new = new_run(store), new_run(store)
        add_cell(store, base)
        add_cell(store, new, status="failed", reason="export_error: boom")
    assert compare(results) == 1
    assert "NEWLY FAILING: net / fp32 / onnxruntime / local" in capsys.readouterr().out


def test_runs_are_selected_by_id_latest_and_commit(tmp_path, capsys):
    results = _results(tmp_path, [1.25] * 5)
    with ResultsStore(results / "harness.db") as store:
        third = new_run(store, commit="cccc3333")
        add_cell(store, third, levels=[1.0] * 5)

    def selected(*args: str) -> tuple[int, int]:
        compare(results, *args, "--format", "json")
        data = json.loads(capsys.readouterr().out)
        return data["base"]["id"], data["new"]["id"]

    assert selected() == (2, 3)
    assert selected("1", "2") == (1, 2)
    assert selected("latest~2", "latest~1") == (1, 2)
    assert selected("aaaa", "bbbb2222") == (1, 2)
    assert selected("1") == (1, 3)  # the new run defaults to the latest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["7", "latest"], "no run with id 7"),
        (["latest~9"], "holds only 3 runs"),
        (["not-a-run!"], "expected a run id, 'latest', 'latest~N' or a git commit"),
        (["ffff9999"], "no run in"),
        (["--threshold", "latency=5"], "key '--threshold latency'"),
        (["--alpha", "0.9"], "--alpha 0.9"),
        (["--rounds", "2", "--interleave"], "at least 6 rounds"),
        (["--max-rounds", "3", "--interleave"], "--max-rounds 3: expected at least 6"),
        (["--from-interleave", "4"], "no interleaved comparison with id 4"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, args, message):
    results = _results(tmp_path, [1.0] * 5)
    with ResultsStore(results / "harness.db") as store:
        new_run(store, commit="aaaa9999")
    assert compare(results, *args) == 2
    assert message in capsys.readouterr().err


def test_an_ambiguous_commit_prefix_or_too_few_runs_exit_2(tmp_path, capsys):
    results = tmp_path / "results"
    with ResultsStore(results / "harness.db") as store:
        new_run(store, commit="abcd1111")
    assert compare(results) == 2
    assert "comparing needs two" in capsys.readouterr().err
    with ResultsStore(results / "harness.db") as store:
        new_run(store, commit="abcd2222")
    assert compare(results, "abcd") == 2
    assert "ambiguous" in capsys.readouterr().err
    assert main(["compare", "--results", str(tmp_path / "empty")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_a_bad_compare_table_in_the_runs_suite_exits_2(tmp_path, capsys):
    results = _results(tmp_path, [1.0] * 5, suite_extra='\n[compare]\nlatency = "fast"\n')
    assert compare(results) == 2
    assert "key 'compare.latency'" in capsys.readouterr().err


def test_interleave_re_measures_both_artifacts_alternately_and_stores_every_turn(tmp_path, capsys):
    """A real runner on this machine: the same tiny ONNX model as base and candidate."""
    artifacts = ArtifactStore(tmp_path / "results" / "artifacts")
    staged = artifacts.staging_path("art-1", ".onnx")
    matmul_model(staged, size=16, layers=2)
    artifacts.commit("art-1", staged, ".onnx", {"runtime": "onnxruntime"})
    results = _results(tmp_path, [1.0] * 5)

    code = compare(
        results, "--interleave", "--rounds", "6", "--max-rounds", "6", "--format", "json"
    )
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    data = json.loads(captured.out)
    [cell] = data["cells"]
    assert cell["latency"]["basis"] == "interleaved" and cell["latency"]["n_base"] == 6
    assert data["interleave_id"] == 1 and data["warnings"] == []
    with ResultsStore(results / "harness.db") as store:
        [record] = store.interleaves()
        assert (record.base_run_id, record.new_run_id, record.status) == (1, 2, "complete")
        assert (record.min_rounds, record.max_rounds) == (6, 6)
        assert record.target_half_width == pytest.approx(0.025)  # half the 5% limit
        [stored] = store.interleave_cells(1)
    assert stored.key == KEY and stored.status == "ok" and len(stored.turns) == 12
    # ABBA...: the base goes first in even rounds, second in odd ones.
    firsts = [t.side for t in stored.turns if t.position == 0]
    assert firsts == ["base", "new"] * 3
    assert all(t.samples_ms and t.p50_ms > 0 for t in stored.turns)
    assert stored.measure["trials"] == 1 and stored.measure["min_count"] == 5

    # The stored rounds give the same comparison without measuring again.
    assert compare(results, "--from-interleave", "1", "--format", "json") == code
    again = json.loads(capsys.readouterr().out)
    assert again["cells"] == data["cells"]


def test_a_cell_that_cannot_be_re_measured_is_not_judged_and_exits_3(tmp_path, capsys):
    """The stored runs say +25%, but they are not what --interleave judges: a cell whose
    artifact is gone has no verdict, and the comparison is incomplete (exit 3)."""
    results = _results(tmp_path, [1.25] * 5, artifact_hash="gone")
    assert compare(results, "--interleave", "--rounds", "6", "--format", "json") == 3
    data = json.loads(capsys.readouterr().out)
    [cell] = data["cells"]
    assert cell["verdict"] == "not_judged" and cell["latency"] is None
    assert cell["not_judged"].startswith("artifact_missing: the base run's artifact gone")
    assert data["incomplete"] and not data["regressed"]
    assert data["counts"]["not_judged"] == 1 and data["counts"]["regressed"] == 0
    assert any("1 cell(s) not judged" in w for w in data["warnings"])
    with ResultsStore(results / "harness.db") as store:
        [stored] = store.interleave_cells(1)
    assert stored.status == "failed" and "artifact_missing" in stored.reason

    assert compare(results, "--interleave", "--rounds", "6") == 3
    out = capsys.readouterr().out
    assert "not judged: artifact_missing" in out
    assert "1 not judged" in out and "INCOMPLETE" in out and "REGRESSED" not in out
    # The same stored interleave judged again: still not judged, still 3.
    assert compare(results, "--from-interleave", "1") == 3
    # Without --interleave the stored runs are judged (with their drift warning).
    assert compare(results) == 1


def _tiny_artifact(results: Path, key: str, size: int, layers: int) -> None:
    artifacts = ArtifactStore(results / "artifacts")
    staged = artifacts.staging_path(key, ".onnx")
    matmul_model(staged, size=size, layers=layers)
    artifacts.commit(key, staged, ".onnx", {"runtime": "onnxruntime"})


def test_a_regression_elsewhere_wins_over_an_incomplete_comparison(tmp_path, capsys):
    """Three cells re-measured for real: one whose candidate is many times slower
    (regressed), one on a device profile that does not exist and one whose artifact is
    gone (both not judged). Regression wins: exit 1."""
    results = tmp_path / "results"
    tmp_path.mkdir(parents=True, exist_ok=True)
    suite = write_suite(tmp_path, SUITE)
    _tiny_artifact(results, "fast", size=16, layers=1)
    _tiny_artifact(results, "slow", size=128, layers=12)
    slow_key = ("slow", "fp32", "onnxruntime", "local")
    nodev_key = ("nodev", "fp32", "onnxruntime", "no-such-board")
    gone_key = ("gone", "fp32", "onnxruntime", "local")
    with ResultsStore(results / "harness.db") as store:
        for run_commit, slow_hash in (("aaaa1111", "fast"), ("bbbb2222", "slow")):
            run = new_run(store, commit=run_commit, suite_path=str(suite))
            add_cell(store, run, slow_key, measure=FAST, artifact_hash=slow_hash)
            add_cell(store, run, nodev_key, measure=FAST, artifact_hash="fast")
            add_cell(store, run, gone_key, measure=FAST, artifact_hash="gone")
    code = compare(results, "--interleave", "--rounds", "6", "--format", "json")
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["regressed"] and data["incomplete"]
    by_model = {c["model"]: c for c in data["cells"]}
    assert by_model["slow"]["verdict"] == "regressed"
    assert by_model["slow"]["latency"]["basis"] == "interleaved"
    # Settled at the minimum: the interval is wholly above the limit after 6 rounds.
    assert by_model["slow"]["latency"]["n_base"] == 6
    assert by_model["nodev"]["verdict"] == "not_judged"
    assert "a device profile named 'no-such-board'" in by_model["nodev"]["not_judged"]
    assert by_model["gone"]["verdict"] == "not_judged"
    assert "artifact_missing" in by_model["gone"]["not_judged"]


READY_SUITE = """
name = "ready"
runtimes = ["onnxruntime"]
devices = ["local"]

[[models]]
name = "ready"
file = "ready.onnx"

[variants]
fp32 = []
"""


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_a_ready_onnx_file_is_re_measured_from_the_copy_its_run_kept(tmp_path, capsys):
    """A ``file =`` model is measured from a copy in the artifact store, so --interleave
    judges it; editing the user's file after the base run changes the new run's
    artifact, not what the base run measured."""
    from harness.artifacts import file_sha256

    model = tmp_path / "ready.onnx"
    matmul_model(model, size=16, layers=2)
    original_sha = file_sha256(model)
    suite = write_suite(tmp_path, READY_SUITE + FAST_MEASURE)
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "-q"]) == 0
    matmul_model(model, size=32, layers=3)  # the user rewrites the file in place
    assert main(["run", str(suite), "--results", str(results), "-q", "--new-run"]) == 0
    capsys.readouterr()

    code = compare(
        results, "--interleave", "--rounds", "6", "--max-rounds", "8", "--format", "json"
    )
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    data = json.loads(captured.out)
    [cell] = data["cells"]
    assert cell["verdict"] != "not_judged" and cell["not_judged"] is None
    assert cell["latency"]["basis"] == "interleaved" and cell["latency"]["n_base"] >= 6
    assert not data["incomplete"] and not cell["same_artifact"]
    with ResultsStore(results / "harness.db") as store:
        [record] = store.interleave_cells(1)
        base_cell, new_cell = (store.cells(run.id)[0] for run in store.runs())
    assert record.status == "ok" and record.base_artifact_hash == base_cell.artifact_hash
    artifacts = ArtifactStore(results / "artifacts")
    base_copy = artifacts.get(base_cell.artifact_hash)
    new_copy = artifacts.get(new_cell.artifact_hash)
    assert base_copy is not None and new_copy is not None
    assert base_copy.path != model and base_copy.meta["source_file"] == str(model.resolve())
    assert file_sha256(base_copy.path) == base_copy.meta["sha256"] == original_sha
    assert file_sha256(new_copy.path) == file_sha256(model) != original_sha
    assert [i["shape"] for i in base_copy.meta["inputs"]] == [[1, 16, 16]]
