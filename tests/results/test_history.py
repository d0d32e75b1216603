"""history: step detection on series with known steps, and a cell's series from a store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.results.history import CellFilter, detect_steps, history
from harness.results.store import ResultsStore
from tests.results_builders import add_cell, new_run


def _noisy(rng: np.random.Generator, levels: list[tuple[int, float]], noise: float) -> list[float]:
    return [lvl * (1 + noise * rng.standard_normal()) for n, lvl in levels for _ in range(n)]


def test_one_step_is_found_where_it_is_and_measured():
    series = _noisy(np.random.default_rng(1), [(12, 1.0), (12, 1.2)], 0.02)
    [step] = detect_steps(series)
    assert step.index == 12
    assert step.change == pytest.approx(0.2, abs=0.03)
    assert step.p_value < 0.01


def test_two_steps_are_both_found_with_levels_of_their_neighbouring_segments():
    series = _noisy(np.random.default_rng(2), [(10, 1.0), (10, 1.25), (10, 0.9)], 0.02)
    first, second = detect_steps(series)
    assert (first.index, second.index) == (10, 20)
    assert first.before == pytest.approx(1.0, abs=0.03)
    assert second.before == pytest.approx(1.25, abs=0.03)
    assert second.after == pytest.approx(0.9, abs=0.03)
    assert second.change == pytest.approx(0.9 / 1.25 - 1, abs=0.03)


def test_flat_noisy_series_have_no_step():
    hits = 0
    for seed in range(100):
        series = _noisy(np.random.default_rng(100 + seed), [(30, 1.0)], 0.03)
        hits += bool(detect_steps(series, seed=seed))
    assert hits <= 2  # significance alone is ~5%; the 5% effect size removes nearly all


def test_flat_series_false_steps_stay_near_alpha_without_an_effect_size():
    hits = sum(
        bool(detect_steps(_noisy(np.random.default_rng(300 + s), [(20, 1.0)], 0.03), min_effect=0))
        for s in range(100)
    )
    assert hits <= 12  # alpha 0.05 over the whole scan, not per split


def test_one_wild_run_is_not_a_step():
    series = _noisy(np.random.default_rng(3), [(20, 1.0)], 0.01)
    series[9] = 3.0
    assert detect_steps(series) == []


def test_a_significant_step_below_the_minimum_effect_is_not_reported():
    series = _noisy(np.random.default_rng(4), [(15, 1.0), (15, 1.03)], 0.003)
    assert detect_steps(series) == []
    [step] = detect_steps(series, min_effect=0.01)
    assert step.index == 15


def test_too_short_series_have_no_step():
    assert detect_steps([]) == [] and detect_steps([1.0, 2.0, 3.0]) == []


def test_detection_is_deterministic():
    series = _noisy(np.random.default_rng(5), [(8, 1.0), (8, 1.1)], 0.03)
    assert detect_steps(series) == detect_steps(series)


# --- filters and series from a store ------------------------------------------------------


def test_cell_filters():
    key = ("digits-cnn", "int8", "onnxruntime", "local")
    assert CellFilter.parse("model=digits-cnn,variant=int8").matches(key)
    assert CellFilter.parse("model=digits-*,device=local").matches(key)
    assert not CellFilter.parse("model=mlp").matches(key)
    assert CellFilter.parse("digits-cnn/int8/*").matches(key)
    assert not CellFilter.parse("*/fp32/*").matches(key)
    for bad in ("model=", "color=red", "model=a,foo", ""):
        with pytest.raises(HarnessError):
            CellFilter.parse(bad)


def _store_with_a_step(path) -> ResultsStore:
    """12 runs; cell A's level steps +20% at the 7th run, whose 9th run failed; cell B
    is flat."""
    rng = np.random.default_rng(7)
    store = ResultsStore(path)
    a = ("net", "int8", "onnxruntime", "local")
    b = ("net", "fp32", "onnxruntime", "local")
    for i in range(12):
        run = new_run(store, commit=f"{i:04d}abcd" * 4)
        level = 1.2 if i >= 6 else 1.0
        if i == 8:
            add_cell(store, run, a, status="failed", reason="timeout: killed")
        else:
            add_cell(store, run, a, levels=[level] * 3, rng=rng, noise=0.01)
        add_cell(store, run, b, levels=[2.0] * 3, rng=rng, noise=0.01)
    new_run(store, suite="other")  # a run of another suite, without these cells
    return store


def test_history_series_with_its_step_and_failed_runs_kept(tmp_path):
    with _store_with_a_step(tmp_path / "h.db") as store:
        [a] = history(store, "model=net,variant=int8")
        [b] = history(store, "*/fp32/*")
        both = history(store, "model=net")
        with pytest.raises(HarnessError, match=r"no cell .* matches"):
            history(store, "model=nothing")
        assert history(store, "model=net", suite="s") == both
    assert [s.key[1] for s in both] == ["fp32", "int8"]  # key order
    assert len(a.points) == 12 and a.points[8].status == "failed" and a.points[8].p50 is None
    assert a.points[8].reason == "timeout: killed"
    [step] = a.steps
    assert step.index == 6 and step.run_id == a.points[6].run_id
    assert step.git_commit == a.points[6].git_commit
    assert step.change == pytest.approx(0.2, abs=0.03)
    assert b.steps == ()
    assert all(p.ci95 and p.ci95[0] <= p.p50 <= p.ci95[1] for p in b.points)
    data = json.loads(json.dumps(a.to_dict()))
    assert data["label"] == "net / int8 / onnxruntime / local"
    assert data["points"][0]["p50_ms"] > 0 and len(data["points"][0]["ci95_ms"]) == 2
    assert data["steps"][0]["index"] == 6


def test_history_command(tmp_path, capsys):
    results = tmp_path / "results"
    _store_with_a_step(results / "harness.db").close()
    args = ["history", "model=net,variant=int8", "--results", str(results)]
    assert main([*args, "--format", "json"]) == 0
    [series] = json.loads(capsys.readouterr().out)
    assert series["steps"][0]["index"] == 6
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "steps: run 7" in out and "+2" in out
    assert main([*args, "--format", "markdown"]) == 0
    assert "| run | commit |" in capsys.readouterr().out
    assert main(["history", "model=zzz", "--results", str(results)]) == 2
    assert main([*args, "--min-effect", "5"]) == 2
    assert main(["history", "x", "--results", str(tmp_path / "none")]) == 2


def test_short_series_say_that_no_step_could_be_significant(tmp_path, capsys):
    from harness.results.history import smallest_step_p

    assert smallest_step_p(7) > 0.05 > smallest_step_p(8)
    rng = np.random.default_rng(8)
    results = tmp_path / "results"
    with ResultsStore(results / "harness.db") as store:
        for level in (1.0, 1.0, 1.5, 1.5):
            add_cell(store, new_run(store), levels=[level] * 3, rng=rng)
        [series] = history(store, "model=net")
    assert series.steps == () and not series.steps_detectable
    assert main(["history", "model=net", "--results", str(results)]) == 0
    assert "4 measured runs are too few" in capsys.readouterr().out
