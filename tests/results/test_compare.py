"""compare: statistics against sample sets with known answers, verdicts, matching, warnings."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.cli import main
from harness.results.compare import (
    Basis,
    FailureChange,
    Verdict,
    compare_latency_paired,
    compare_latency_stored,
    compare_runs,
    hodges_lehmann,
    hodges_lehmann_ci,
    interval_settles,
    judge_delta,
    mann_whitney_p,
    mann_whitney_smallest_p,
    paired_verdict,
    signed_rank_p,
    signed_rank_smallest_p,
    trials_can_decide,
    welch_log_p,
)
from harness.results.store import InterleaveCellRecord, InterleaveTurn, ResultsStore
from harness.results.thresholds import default_thresholds, parse_limit
from harness.suite.interleave import RoundsPlan, StopReason
from tests.golden.build_golden_db import EXPECTED_DIR, GOLDEN_DB
from tests.results_builders import VERSIONS, add_cell, new_run, two_runs
from tests.suite_files import REPO

LATENCY = default_thresholds()["latency_p50"]


def _no_samples() -> tuple[list[float], list[float]]:
    raise AssertionError("samples must not be loaded when trials can decide")


# --- the tests themselves, against hand computation and scipy ---------------------------


def test_smallest_mann_whitney_p_is_two_over_binomial():
    assert mann_whitney_smallest_p(3, 3) == pytest.approx(2 / 20)
    assert mann_whitney_smallest_p(4, 4) == pytest.approx(2 / 70)
    assert mann_whitney_smallest_p(3, 5) == pytest.approx(2 / 56)
    # Complete separation is exactly that p-value in scipy's exact test.
    p = sps.mannwhitneyu([5, 6, 7, 8], [1, 2, 3, 4], alternative="two-sided").pvalue
    assert p == pytest.approx(2 / 70)
    assert mann_whitney_p([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]) == pytest.approx(2 / 70)


def test_trials_decide_only_when_the_exact_test_can_reach_alpha():
    assert not trials_can_decide(3, 3, 0.05)  # smallest p 0.1
    assert not trials_can_decide(3, 4, 0.05)  # 2/35 = 0.057
    assert trials_can_decide(4, 4, 0.05)
    assert trials_can_decide(3, 5, 0.05)
    assert not trials_can_decide(4, 4, 0.01)  # 0.029
    assert trials_can_decide(5, 5, 0.01)  # 2/252 = 0.0079
    assert not trials_can_decide(1, 50, 0.05)


def test_mann_whitney_p_matches_scipy_and_a_hand_computed_case():
    # base [1, 2, 3], new [2.5, 4, 5]: U(new) = 2 + 3 + 3 = 8 of 9. Of the C(6, 3) = 20
    # equally likely rank arrangements, one gives U = 8 and one U = 9, so the exact
    # two-sided p is 2 * 2/20 = 0.2.
    assert mann_whitney_p([1.0, 2.0, 3.0], [2.5, 4.0, 5.0]) == pytest.approx(0.2)
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 1, 40).tolist(), rng.normal(10.5, 1, 50).tolist()
    expected = sps.mannwhitneyu(b, a, alternative="two-sided").pvalue
    assert mann_whitney_p(a, b) == pytest.approx(expected)
    assert mann_whitney_p([2.0] * 5, [2.0] * 5) == 1.0
    assert mann_whitney_p([], [1.0]) == 1.0


def test_signed_rank_p_matches_scipy_and_the_all_one_sign_case():
    assert signed_rank_p([0.1 * i for i in range(1, 11)]) == pytest.approx(2 / 1024)
    assert signed_rank_smallest_p(10) == pytest.approx(2 / 1024)
    rng = np.random.default_rng(5)
    diffs = rng.normal(0.02, 0.05, 15).tolist()
    assert signed_rank_p(diffs) == pytest.approx(sps.wilcoxon(diffs).pvalue)
    assert signed_rank_p([0.0, 0.0]) == 1.0


def test_hodges_lehmann_by_hand_and_its_interval_covers():
    # Walsh averages of [1, 2, 3]: 1, 1.5, 2, 2, 2.5, 3; their median is 2.
    assert hodges_lehmann([1.0, 2.0, 3.0]) == 2.0
    assert hodges_lehmann([0.0, 0.0, 0.0, 10.0]) == 0.0  # one wild round does not move it
    # n = 10: M = 55 Walsh averages; k = floor(27.5 - 1.96 * sqrt(96.25)) = 8.
    values = [float(v) for v in range(1, 11)]
    walsh = sorted((a + b) / 2 for i, a in enumerate(values) for b in values[i:])
    assert hodges_lehmann_ci(values) == (walsh[7], walsh[47])
    assert hodges_lehmann_ci([1.0, 2.0]) == (1.0, 2.0)  # too few: the full range
    rng = np.random.default_rng(9)
    hits = 0
    for _ in range(400):
        low, high = hodges_lehmann_ci(rng.normal(0.1, 0.05, 12).tolist())
        hits += low <= 0.1 <= high
    assert 0.92 <= hits / 400 <= 0.99


# --- latency verdicts on sample sets with a known answer ---------------------------------


def _levels(rng: np.random.Generator, n: int, level: float, spread: float) -> list[float]:
    return (level * (1 + spread * rng.standard_normal(n))).tolist()


def test_identical_distributions_are_not_significant_over_many_trials():
    rng = np.random.default_rng(11)
    verdicts = []
    for _ in range(200):
        base, new = _levels(rng, 8, 1.0, 0.03), _levels(rng, 8, 1.0, 0.03)
        lat = compare_latency_stored(
            float(np.median(base)), float(np.median(new)), base, new, LATENCY, 0.05, _no_samples
        )
        assert lat.basis is Basis.TRIALS and lat.n_base == 8
        verdicts.append(lat.verdict)
    # Significance alone happens at about alpha; a 5% effect on top almost never.
    not_significant = (Verdict.UNCHANGED, Verdict.INCONCLUSIVE)
    significant = sum(v not in not_significant for v in verdicts)
    assert significant <= 200 * 0.05 * 2
    assert verdicts.count(Verdict.REGRESSED) == 0


def test_a_twenty_percent_slowdown_with_many_trials_is_a_regression():
    rng = np.random.default_rng(12)
    base, new = _levels(rng, 8, 1.0, 0.03), _levels(rng, 8, 1.2, 0.03)
    lat = compare_latency_stored(1.0, 1.2, base, new, LATENCY, 0.05, _no_samples)
    assert lat.verdict is Verdict.REGRESSED
    assert lat.ratio == pytest.approx(1.2) and lat.change == pytest.approx(0.2)
    # All 8 new trials above all 8 base ones: the exact two-sided p is 2 / C(16, 8).
    assert lat.p_value == pytest.approx(2 / math.comb(16, 8))

    faster = compare_latency_stored(1.2, 1.0, new, base, LATENCY, 0.05, _no_samples)
    assert faster.verdict is Verdict.IMPROVED


def test_significant_but_smaller_than_the_effect_size_is_noise():
    rng = np.random.default_rng(13)
    base, new = _levels(rng, 10, 1.0, 0.002), _levels(rng, 10, 1.02, 0.002)
    lat = compare_latency_stored(1.0, 1.02, base, new, LATENCY, 0.05, _no_samples)
    assert lat.p_value < 0.001 and lat.verdict is Verdict.NOISE
    # With a 1% minimum effect the same data is a regression.
    strict = parse_limit("latency", "1%")
    again = compare_latency_stored(1.0, 1.02, base, new, strict, 0.05, _no_samples)
    assert again.verdict is Verdict.REGRESSED


def test_a_large_change_that_is_not_significant_is_inconclusive_not_unchanged():
    """+30% that the test cannot tell from the trials' spread: "unchanged" would pass it
    as clean, so it is inconclusive (and still no regression)."""
    lat = compare_latency_stored(
        1.0, 1.3, [1.0, 1.6, 0.7, 1.3], [1.3, 0.8, 1.7, 1.1], LATENCY, 0.05, _no_samples
    )
    assert lat.p_value > 0.05 and lat.verdict is Verdict.INCONCLUSIVE
    # Under the minimum effect, not significant is unchanged.
    small = compare_latency_stored(
        1.0, 1.03, [1.0, 1.06, 0.97], [1.03, 0.98, 1.05], LATENCY, 0.05, _no_samples
    )
    assert small.p_value > 0.05 and small.verdict is Verdict.UNCHANGED


def test_one_trial_falls_back_to_samples_which_overstate_significance():
    """The issue's warning, reproduced: one trial per run, levels a few percent apart,
    tight samples within each trial. Over samples, an A/A pair is 'significant'; the 5%
    effect size keeps it from being called a regression."""
    rng = np.random.default_rng(14)
    base = (1.0 * (1 + 0.002 * rng.standard_normal(200))).tolist()
    new = (1.04 * (1 + 0.002 * rng.standard_normal(200))).tolist()
    loaded = []

    def load() -> tuple[list[float], list[float]]:
        loaded.append(True)
        return base, new

    lat = compare_latency_stored(
        float(np.median(base)), float(np.median(new)), [1.0], [1.04], LATENCY, 0.05, load
    )
    assert loaded and lat.basis is Basis.SAMPLES and lat.n_base == 200
    assert lat.p_value < 1e-6  # "significant" ...
    assert lat.verdict is Verdict.NOISE  # ... but below the minimum effect


def test_welch_on_log_medians_against_scipy():
    base, new = [1.0, 1.03, 0.99], [1.2, 1.25, 1.18]
    expected = sps.ttest_ind(np.log(new), np.log(base), equal_var=False).pvalue
    assert welch_log_p(base, new) == pytest.approx(expected)
    assert welch_log_p(base, new) == welch_log_p(new, base)
    assert welch_log_p([1.0], new) == 1.0  # no spread on one side: nothing to test
    assert welch_log_p([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert welch_log_p([1.0, 1.0], [2.0, 2.0]) == 0.0


def test_three_trials_are_tested_over_trials_with_welch():
    """A default suite measures three trials: too few for Mann-Whitney at 0.05, enough
    for Welch's t on the log medians, so the test stays over independent processes."""
    drifting = [1.0, 1.06, 0.97]  # the drift seen between back-to-back processes here
    a_a = compare_latency_stored(
        1.0, 1.03, drifting, [1.03, 0.98, 1.05], LATENCY, 0.05, _no_samples
    )
    assert a_a.basis is Basis.TRIALS and a_a.test == "welch-t-log" and a_a.n_base == 3
    assert a_a.verdict is Verdict.UNCHANGED  # the samples basis called this kind significant
    slower = compare_latency_stored(
        1.0, 1.3, [1.0, 1.02, 0.99], [1.3, 1.32, 1.28], LATENCY, 0.05, _no_samples
    )
    assert slower.p_value < 0.01 and slower.verdict is Verdict.REGRESSED


def test_interleaved_pairs_cancel_drift_that_hides_a_ten_percent_slowdown():
    """Both sides drift by +-30% across rounds (a board heating up, a co-tenant); the
    candidate is 10% slower within every round. Unpaired, the drift swamps it; paired,
    it is a clear regression."""
    rng = np.random.default_rng(15)
    drift = 1 + 0.3 * np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False))
    base = drift * (1 + 0.01 * rng.standard_normal(12))
    new = 1.10 * drift * (1 + 0.01 * rng.standard_normal(12))
    rounds = list(zip(base.tolist(), new.tolist(), strict=True))
    paired = compare_latency_paired(rounds, LATENCY, 0.05)
    assert paired.basis is Basis.INTERLEAVED and paired.n_base == 12
    assert paired.verdict is Verdict.REGRESSED
    assert paired.ratio == pytest.approx(1.10, abs=0.02)
    assert paired.p_value == pytest.approx(2 / 2**12)  # every round slower
    low, high = paired.ratio_ci95
    assert low <= paired.ratio <= high and low > 1.05
    unpaired = compare_latency_stored(
        float(np.median(base)), float(np.median(new)), base.tolist(), new.tolist(),
        LATENCY, 0.05, _no_samples,
    )  # fmt: skip
    assert unpaired.verdict is Verdict.INCONCLUSIVE  # +10%, but drowned in the drift


def test_interleaved_a_a_with_drift_is_unchanged():
    rng = np.random.default_rng(16)
    drift = 1 + 0.3 * np.sin(np.linspace(0, 3, 10))
    rounds = [
        (d * (1 + 0.02 * rng.standard_normal()), d * (1 + 0.02 * rng.standard_normal()))
        for d in drift
    ]
    assert compare_latency_paired(rounds, LATENCY, 0.05).verdict is Verdict.UNCHANGED


def test_rounds_plan_stops_once_the_ratio_is_precise_enough():
    plan = RoundsPlan(min_rounds=6, max_rounds=40, target_half_width=0.025)
    steady = [(1.0, 1.1)] * 6
    assert not plan.done(steady[:5]) and plan.done(steady)  # exact: stop at the minimum
    rng = np.random.default_rng(10)
    noisy = [(1.0, 1.1 * float(np.exp(rng.normal(0, 0.15)))) for _ in range(40)]
    assert not plan.done(noisy[:20])  # +-15% a round: 20 rounds are not enough
    assert plan.done(noisy)  # the cap
    assert RoundsPlan(6, 40, None).done(noisy[:6])  # no target: fixed rounds
    with pytest.raises(ValueError):
        RoundsPlan(min_rounds=10, max_rounds=5)


def test_the_paired_verdict_asks_the_interval_to_clear_a_quarter_of_the_limit():
    # The A/A cell of issue 11 that was called regressed: 1.050 [1.008, 1.088].
    assert paired_verdict(1.050, (1.008, 1.088), 0.01, 0.05, LATENCY) is Verdict.NOISE
    assert paired_verdict(1.050, (1.008, 1.088), 0.2, 0.05, LATENCY) is Verdict.UNCHANGED
    assert paired_verdict(1.060, (1.0125, 1.095), 0.001, 0.05, LATENCY) is Verdict.REGRESSED
    assert paired_verdict(1.060, (1.012, 1.095), 0.001, 0.05, LATENCY) is Verdict.NOISE
    assert paired_verdict(1.049, (1.030, 1.070), 0.001, 0.05, LATENCY) is Verdict.NOISE
    assert paired_verdict(0.94, (0.90, 0.9875), 0.001, 0.05, LATENCY) is Verdict.IMPROVED
    assert paired_verdict(0.94, (0.90, 0.99), 0.001, 0.05, LATENCY) is Verdict.NOISE
    assert paired_verdict(1.0, (0.99, 1.01), 0.9, 0.05, LATENCY) is Verdict.UNCHANGED


def test_an_interval_settles_the_verdict_beyond_the_limit_or_short_of_it():
    assert interval_settles(1.10, 1.06, 1.14, LATENCY)  # wholly above: regressed
    assert interval_settles(0.90, 0.86, 0.94, LATENCY)  # wholly below: improved
    assert interval_settles(1.00, 0.97, 1.03, LATENCY)  # inside the band
    assert interval_settles(1.00, 0.94, 1.04, LATENCY)  # cannot regress, no gain in view
    assert not interval_settles(0.97, 0.93, 1.01, LATENCY)  # a gain of 3%: go on
    assert not interval_settles(1.05, 1.008, 1.088, LATENCY)  # straddles the limit
    assert not interval_settles(1.0, 0.90, 1.10, LATENCY)


def test_rounds_plan_stops_a_cell_once_its_verdict_is_settled():
    plan = RoundsPlan.for_limit(6, 40, LATENCY.limit)
    assert plan.target_half_width == pytest.approx(0.025) and plan.confidence == 0.95
    rng = np.random.default_rng(11)

    def rounds(ratio: float, spread: float, n: int = 40) -> list[tuple[float, float]]:
        return [(1.0, ratio * float(np.exp(rng.normal(0, spread)))) for _ in range(n)]

    slower = rounds(1.5, 0.02)
    assert plan.stop_reason(slower[:5]) is None
    assert plan.stop_reason(slower[:6]) is StopReason.SETTLED  # at the minimum
    same = rounds(1.0, 0.01)
    assert plan.stop_reason(same[:6]) is StopReason.SETTLED
    # At the limit itself the interval keeps straddling it: the precision target ends it.
    at_limit = rounds(1.05, 0.05)
    stop = next(n for n in range(6, 41) if plan.done(at_limit[:n]))
    assert stop > 10 and plan.stop_reason(at_limit[:stop]) is StopReason.PRECISE
    noisy = rounds(1.05, 0.3)
    assert not any(plan.done(noisy[:n]) for n in range(6, 40))
    assert plan.stop_reason(noisy) is StopReason.MAX_ROUNDS
    assert RoundsPlan(6, 40, None).stop_reason(noisy[:6]) is StopReason.FIXED


# --- deterministic metrics ----------------------------------------------------------------


def test_memory_size_and_accuracy_against_their_thresholds():
    t = default_thresholds()
    assert judge_delta(t["memory_peak"], 100.0, 115.0).verdict is Verdict.REGRESSED
    assert judge_delta(t["memory_peak"], 100.0, 105.0).verdict is Verdict.UNCHANGED
    assert judge_delta(t["memory_peak"], 100.0, 80.0).verdict is Verdict.IMPROVED
    assert judge_delta(t["size"], 1000, 1010).verdict is Verdict.UNCHANGED
    assert judge_delta(t["size"], 1000, 1030).verdict is Verdict.REGRESSED
    drop = judge_delta(t["accuracy"], 0.95, 0.94)
    assert drop.verdict is Verdict.REGRESSED and drop.change == pytest.approx(-0.01)
    assert judge_delta(t["accuracy"], 0.995, 0.990).verdict is Verdict.REGRESSED  # exactly 0.5pt
    assert judge_delta(t["accuracy"], 0.94, 0.946).verdict is Verdict.IMPROVED
    assert judge_delta(t["accuracy"], None, 0.9).verdict is None


# --- whole runs ------------------------------------------------------------------------------


def test_runs_with_many_trials_compare_over_trials(tmp_path):
    store, base, new = two_runs(tmp_path / "h.db", [1.0, 1.01, 0.99, 1.0, 1.02], [1.2] * 5)
    with store:
        comparison = compare_runs(store, base, new)
    [cell] = comparison.cells
    assert cell.latency.basis is Basis.TRIALS
    assert cell.verdict is Verdict.REGRESSED and comparison.regressed
    assert not any("raw samples" in w for w in comparison.warnings)


def test_three_trials_are_tested_over_trials_without_a_warning(tmp_path):
    store, base, new = two_runs(tmp_path / "h.db", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    with store:
        comparison = compare_runs(store, base, new)
    [cell] = comparison.cells
    assert cell.latency.basis is Basis.TRIALS and cell.latency.test == "welch-t-log"
    assert cell.verdict in (Verdict.UNCHANGED, Verdict.NOISE) and not comparison.regressed
    assert not any("raw samples" in w for w in comparison.warnings)


def test_one_trial_is_tested_on_samples_with_a_warning(tmp_path):
    store, base, new = two_runs(tmp_path / "h.db", [1.0], [1.0])
    with store:
        comparison = compare_runs(store, base, new)
    [cell] = comparison.cells
    assert cell.latency.basis is Basis.SAMPLES and cell.latency.n_base == 30
    assert cell.verdict in (Verdict.UNCHANGED, Verdict.NOISE) and not comparison.regressed
    [warning] = [w for w in comparison.warnings if "raw samples" in w]
    assert "trials 1 vs 1" in warning and "--interleave" in warning


def test_cells_are_matched_and_nothing_is_dropped(tmp_path):
    rng = np.random.default_rng(1)
    with ResultsStore(tmp_path / "h.db") as store:
        base = new_run(store)
        new = new_run(store)
        kept, gone, added = ("m", "fp32", "ort", "local"), ("m", "old", "ort", "local"), (
            "m", "new", "ort", "local",
        )  # fmt: skip
        broke, broken = ("m", "int8", "ort", "local"), ("m", "fp16", "ort", "local")
        for run in (base, new):
            add_cell(store, run, kept, rng=rng)
            add_cell(store, run, broken, status="failed", reason="unsupported: fp16")
        add_cell(store, base, gone, rng=rng)
        add_cell(store, new, added, status="failed", reason="export_error: boom")
        add_cell(store, base, broke, rng=rng)
        add_cell(store, new, broke, status="failed", reason="timeout: killed")
        comparison = compare_runs(store, base, new)
    assert [c.key for c in comparison.cells] == [kept]
    assert [u.key for u in comparison.only_in_base] == [gone]
    assert [(u.key, u.reason) for u in comparison.only_in_new] == [(added, "export_error: boom")]
    failed = {f.key: f for f in comparison.failed}
    assert set(failed) == {broke, broken}
    assert failed[broke].newly_failed and failed[broke].new_reason == "timeout: killed"
    assert not failed[broken].newly_failed
    # A cell that ran before and fails now is a regression, whatever the latencies say.
    assert comparison.regressed
    counts = comparison.counts()
    assert counts["newly_failed"] == 1 and counts["still_failing"] == 1 and counts["fixed"] == 0
    assert failed[broken].change is FailureChange.STILL_FAILING
    assert failed[broke].change is FailureChange.NEWLY_FAILED
    assert counts["only_in_base"] == 1 and counts["only_in_new"] == 1


def test_memory_rise_regresses_a_cell_whose_latency_held(tmp_path):
    store, base, new = two_runs(
        tmp_path / "h.db", [1.0] * 5, [1.0] * 5, peak_mb=130.0, accuracy=0.9
    )
    with store:
        comparison = compare_runs(store, base, new)
    [cell] = comparison.cells
    deltas = {d.metric: d for d in cell.deltas}
    assert deltas["memory_peak"].verdict is Verdict.REGRESSED
    assert deltas["memory_peak"].change == pytest.approx(0.3)
    assert deltas["size"].verdict is Verdict.UNCHANGED
    assert deltas["accuracy"].verdict is Verdict.UNCHANGED
    assert cell.verdict is Verdict.REGRESSED and cell.same_artifact


def test_thresholds_and_alpha_are_honoured(tmp_path):
    store, base, new = two_runs(tmp_path / "h.db", [1.0] * 5, [1.0] * 5, peak_mb=130.0)
    with store:
        loose = compare_runs(
            store, base, new, thresholds={"memory_peak": parse_limit("memory", "50%")}
        )
        assert not loose.regressed
        assert {t.metric: t.text for t in loose.thresholds}["memory_peak"] == "50%"
        with pytest.raises(ValueError):
            compare_runs(store, base, new, alpha=0)


def test_warnings_for_other_machines_runtime_versions_and_unfinished_runs(tmp_path):
    rng = np.random.default_rng(2)
    with ResultsStore(tmp_path / "h.db") as store:
        base = new_run(store)
        other = dict(VERSIONS, onnxruntime="1.31.0", harness_code="other")
        new = new_run(store, fingerprint="machine-b", versions=other, status="interrupted")
        add_cell(store, base, rng=rng)
        add_cell(store, new, rng=rng)
        warnings = compare_runs(store, base, new).warnings
        same = compare_runs(store, base, base).warnings
    text = "\n".join(warnings)
    assert "different machines" in text and "machine-a vs machine-b" in text
    assert "onnxruntime 1.31.1 -> 1.31.0" in text
    assert "harness_code" not in text  # the harness's own code digest is not a runtime
    assert f"the new run {new} is interrupted" in text
    assert any("compared with itself" in w for w in same)


def test_cell_notes_name_invalid_measurements_and_changed_settings(tmp_path):
    store, base, new = two_runs(
        tmp_path / "h.db",
        [1.0] * 5,
        [1.0] * 5,
        validity=["throttled"],
        measure={"trials": 5, "min_count": 100},
        artifact_hash="art-2",
    )
    with store:
        [cell] = compare_runs(store, base, new).cells
    assert "new measurement not valid: throttled" in cell.notes
    assert any("min_count 30 -> 100" in n for n in cell.notes)
    assert not cell.same_artifact


def test_interleaved_records_replace_the_stored_latency_basis(tmp_path):
    store, base, new = two_runs(tmp_path / "h.db", [1.0] * 3, [1.0] * 3)
    key = ("net", "fp32", "onnxruntime", "local")
    drift = 1 + 0.2 * np.sin(np.arange(10))
    turns = tuple(
        InterleaveTurn(r, side, pos, float(drift[r] * (1.2 if side == "new" else 1.0)))
        for r in range(10)
        for pos, side in enumerate(("base", "new") if r % 2 == 0 else ("new", "base"))
    )
    record = InterleaveCellRecord(key, "art-1", "art-1", "ok", None, {}, turns)
    failed = dataclasses.replace(record, status="failed", reason="timeout: killed", turns=())
    with store:
        comparison = compare_runs(store, base, new, interleaved={key: record}, interleave_id=7)
        not_judged = compare_runs(store, base, new, interleaved={key: failed}, interleave_id=8)
        never_reached = compare_runs(store, base, new, interleaved={}, interleave_id=9)
        stored = compare_runs(store, base, new)
    [cell] = comparison.cells
    assert cell.latency.basis is Basis.INTERLEAVED and cell.verdict is Verdict.REGRESSED
    assert cell.latency.ratio == pytest.approx(1.2) and comparison.interleave_id == 7
    assert not any("measured at different times" in w for w in comparison.warnings)
    assert comparison.regressed and not comparison.incomplete
    # A failed re-measurement is no verdict: no fallback to the stored runs.
    [cell] = not_judged.cells
    assert cell.verdict is Verdict.NOT_JUDGED and cell.latency is None
    assert cell.not_judged == "timeout: killed"
    assert not_judged.incomplete and not not_judged.regressed
    assert not_judged.counts()["not_judged"] == 1
    assert not any("judged on stored runs" in w for w in not_judged.warnings)
    assert any("1 cell(s) not judged" in w for w in not_judged.warnings)
    data = not_judged.to_dict()
    assert data["incomplete"] and data["cells"][0]["verdict"] == "not_judged"
    # A cell the interleave never got to (interrupted) is not judged either.
    [cell] = never_reached.cells
    assert cell.verdict is Verdict.NOT_JUDGED and "#9 has no record of this cell" in cell.not_judged
    # Without an interleave, the stored runs are what is judged.
    [cell] = stored.cells
    assert cell.latency.basis is Basis.TRIALS and not stored.incomplete


def test_results_are_frozen_and_serialise_to_json(tmp_path):
    store, base, new = two_runs(tmp_path / "h.db", [1.0] * 3, [1.3] * 3, size_bytes=0)
    with store:
        comparison = compare_runs(store, base, new)
    with pytest.raises(dataclasses.FrozenInstanceError):
        comparison.alpha = 0.1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        comparison.cells[0].verdict = Verdict.UNCHANGED  # type: ignore[misc]
    data = comparison.to_dict()
    from harness.reports.compare import render_comparison_json

    back = json.loads(render_comparison_json(comparison))
    assert back["cells"][0]["size"]["change"] == -1.0
    assert data["base"]["id"] == base and data["new"]["git_commit"] == "bbbb2222"
    assert set(data["cells"][0]) >= {"model", "verdict", "latency", "memory_peak", "accuracy"}
    assert back["cells"][0]["latency"]["basis"] == "trials"


# --- the golden pin ---------------------------------------------------------------------------

# (base, new): the A/A pair, the injected regression (with a newly failing cell), and the
# move to another machine with another onnxruntime (warnings, a fixed cell).
GOLDEN_PAIRS = (("1", "2"), ("2", "3"), ("3", "4"))


def compare_json_on_golden(workdir: Path, base: str, new: str) -> str:
    """``harness compare BASE NEW --format json`` on a copy of golden.db, with default
    thresholds (an empty suite file, so a suites/golden.toml cannot change them)."""
    results = workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(GOLDEN_DB, results / "harness.db")
    suite = workdir / "defaults.toml"
    suite.write_text('name = "defaults"\n')
    out = workdir / f"compare-{base}-{new}.json"
    args = ["--results", str(results), "--suite", str(suite), "--format", "json", "-o", str(out)]
    main(["compare", base, new, *args])
    return out.read_text()


def _rounded(value: object) -> object:
    """Floats to 10 significant digits: the pin is about the numbers, not the last ulp."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def expected_compare_path(base: str, new: str) -> Path:
    return EXPECTED_DIR / f"compare-{base}-{new}.json"


def write_expected() -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for base, new in GOLDEN_PAIRS:
            path = expected_compare_path(base, new)
            path.write_text(compare_json_on_golden(Path(tmp) / f"{base}-{new}", base, new))
            written.append(path)
    return written


@pytest.mark.parametrize(("base", "new"), GOLDEN_PAIRS)
def test_compare_json_on_the_golden_database_is_pinned(tmp_path, base, new):
    expected = expected_compare_path(base, new)
    assert expected.is_file(), "generate it: python -m tests.results.test_compare --write-expected"
    got = json.loads(compare_json_on_golden(tmp_path, base, new))
    assert _rounded(got) == _rounded(json.loads(expected.read_text())), (
        f"harness compare {base} {new} changed on golden.db; if that is intended, regenerate "
        "with python -m tests.results.test_compare --write-expected and review the diff"
    )


def test_golden_regression_is_found_and_the_a_a_pair_mostly_is_not(tmp_path):
    injected = json.loads(compare_json_on_golden(tmp_path / "a", "2", "3"))
    regressed = {
        (c["model"], c["variant"], c["runtime"], c["device"])
        for c in injected["cells"]
        if c["latency"]["verdict"] == "regressed"
    }
    # The builder's REGRESSED_CELLS: digits-cnn int8/pruned-int8 on executorch, x1.25.
    assert {
        ("digits-cnn", v, "executorch", d)
        for v in ("int8", "pruned-int8")
        for d in ("local", "pi4-emulated")
    } <= regressed
    memory = {
        (c["model"], c["variant"]) for c in injected["cells"]
        if c["memory_peak"]["verdict"] == "regressed"
    }  # fmt: skip
    assert memory == {("mlp", v) for v in ("fp32", "int8", "prune-50", "pruned-int8")}
    [newly] = [f for f in injected["failed"] if f["newly_failed"]]
    assert (newly["model"], newly["variant"], newly["runtime"]) == ("mlp", "prune-50", "executorch")
    assert injected["regressed"]

    machines = json.loads(compare_json_on_golden(tmp_path / "b", "3", "4"))
    assert any("different machines" in w for w in machines["warnings"])
    assert any("onnxruntime 1.31.1 -> 1.31.0" in w for w in machines["warnings"])
    assert not any("raw samples" in w for w in machines["warnings"])

    # Three trials per cell, tested over the trials (Welch on the log medians): the A/A
    # pair, whose trials drift by a few percent, has nothing regressed or improved.
    a_a = json.loads(compare_json_on_golden(tmp_path / "c", "1", "2"))
    assert a_a["counts"]["regressed"] + a_a["counts"]["improved"] == 0
    assert not a_a["regressed"]


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write-expected"]:
        sys.exit("usage: python -m tests.results.test_compare --write-expected")
    for written_path in write_expected():
        print(f"wrote {written_path}")


# --- too few trials to tell: inconclusive, said in the row and the legend ----------------

WIDE_BASE = [1.0, 1.3, 0.8]  # three trials spreading as a busy machine's do
WIDE_NEW = [1.53, 1.0, 2.2]  # median +53%


def test_three_trials_with_a_large_unresolved_change_are_inconclusive(tmp_path):
    store, base, new = two_runs(tmp_path / "h.db", WIDE_BASE, WIDE_NEW)
    with store:
        comparison = compare_runs(store, base, new)
    [cell] = comparison.cells
    lat = cell.latency
    assert lat.basis is Basis.TRIALS and lat.test == "welch-t-log" and lat.n_base == 3
    assert lat.change > 0.4 and lat.p_value >= 0.05
    assert cell.verdict is Verdict.INCONCLUSIVE and lat.verdict is Verdict.INCONCLUSIVE
    assert not comparison.regressed and not comparison.incomplete
    assert comparison.inconclusive == 1 and comparison.counts()["inconclusive"] == 1
    note = cell.notes[0]
    change = lat.threshold.format_change(lat.change)
    assert note.startswith(f"inconclusive: {change} over 3 trials a side (welch-t-log p ")
    assert "too few trials" in note and "use --interleave or more trials" in note
    assert cell.to_dict()["verdict"] == "inconclusive"


def test_an_inconclusive_latency_is_never_shown_as_improved(tmp_path):
    # The artifact halved in size (an improvement), but the latency may be +53%.
    store, base, new = two_runs(tmp_path / "h.db", WIDE_BASE, WIDE_NEW, size_bytes=500)
    with store:
        comparison = compare_runs(store, base, new)
    [cell] = comparison.cells
    assert {d.metric: d.verdict for d in cell.deltas}["size"] is Verdict.IMPROVED
    assert cell.verdict is Verdict.INCONCLUSIVE


def test_the_rendered_row_says_so_and_a_legend_explains_every_marker(tmp_path):
    import io

    from rich.console import Console

    from harness.reports.compare import (
        LEGEND,
        render_comparison_markdown,
        render_comparison_rich,
    )

    store, base, new = two_runs(tmp_path / "h.db", WIDE_BASE, WIDE_NEW)
    with store:
        comparison = compare_runs(store, base, new)
    out = io.StringIO()
    render_comparison_rich(comparison, Console(file=out, width=1000, highlight=False))
    text = out.getvalue()
    markdown = render_comparison_markdown(comparison)
    [cell] = comparison.cells
    for rendered in (text, markdown):
        assert "inconclusive?" in rendered and " unchanged " not in rendered.split("verdicts:")[0]
        assert cell.latency.threshold.format_change(cell.latency.change) + " ?" in rendered
        assert "over 3 trials a side" in rendered
        assert "no regression found, but 1 cell(s) inconclusive" in rendered
        for line in LEGEND:
            assert line in rendered
    # The legend names every verdict and every marker the table can show.
    legend = " ".join(LEGEND)
    for word in ("regressed", "improved", "noise", "unchanged", "inconclusive?", "not judged"):
        assert f"{word} = " in legend, word
    for marker in ("! after a change", "+ = improved", "? = inconclusive", "[low, high]", "- ="):
        assert marker in legend, marker
    for basis in ("trials", "samples", "interleaved"):
        assert basis in legend


def test_a_clean_pair_still_reads_no_regression(tmp_path):
    from harness.reports.compare import summary_line

    store, base, new = two_runs(tmp_path / "h.db", [1.0, 1.01, 0.99], [1.0, 1.0, 1.01])
    with store:
        comparison = compare_runs(store, base, new)
    assert comparison.inconclusive == 0
    assert summary_line(comparison).endswith("; no regression)")
