import numpy as np
import pytest

from harness.results.scoring import score_outputs
from harness.results.stats import (
    median_ci,
    percentile,
    robust_cv,
    summarize,
    summarize_trials,
    trials_ci,
)


def test_percentiles_match_numpy_linear_interpolation():
    rng = np.random.default_rng(1)
    values = sorted(rng.exponential(size=101).tolist())
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summary_on_known_samples():
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.min, s.p50, s.mean, s.count) == (1.0, 3.0, 3.0, 5)
    assert s.std == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1))
    assert s.cv == pytest.approx(s.std / 3.0)


def test_median_ci_uses_binomial_order_statistics():
    # For n=10 at 95% the classic interval is (x(2), x(9)).
    values = [float(v) for v in range(1, 11)]
    assert median_ci(values) == (2.0, 9.0)
    # Too few samples for a 95% interval: the whole range.
    assert median_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)


def test_median_ci_covers_true_median_about_95_percent():
    rng = np.random.default_rng(7)
    hits = 0
    trials = 400
    for _ in range(trials):
        sample = sorted(rng.lognormal(size=60).tolist())
        low, high = median_ci(sample)
        hits += low <= 1.0 <= high  # the lognormal(0, 1) median is 1
    assert 0.92 <= hits / trials <= 0.995


def test_score_outputs_accuracy_and_agreement():
    ref = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 2.0]])
    out = np.array([[2.0, 1.1], [0.0, 2.9], [0.0, 1.0], [1.0, 2.0]])  # 3rd flips class
    labels = np.array([0, 1, 0, 0])  # the model itself is wrong on the last one
    score = score_outputs(out, ref, labels)
    assert score.agreement == 0.75
    assert score.accuracy == 0.5
    assert score.max_abs_error == pytest.approx(5.0)
    assert score_outputs(ref, ref, None).accuracy is None
    with pytest.raises(ValueError):
        score_outputs(out[:2], ref, labels)


def test_trials_ci_is_a_student_t_interval_over_trial_medians():
    # mean 10, sd 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051.
    low, high = trials_ci([9.0, 10.0, 11.0])
    assert (low + high) / 2 == pytest.approx(10.0)
    assert (high - low) / 2 == pytest.approx(4.302653 / 3**0.5, rel=1e-6)
    low, high = trials_ci([5.0, 5.0])
    assert low == high == 5.0
    with pytest.raises(ValueError):
        trials_ci([1.0])


def test_summarize_trials_pools_samples_and_builds_the_ci_over_trials():
    trials = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]]
    s = summarize_trials(trials)
    assert s.count == 9 and s.p50 == 3.0 and s.min == 1.0
    assert s.ci_basis == "trials" and s.trials == 3 and s.trial_p50s == (2.0, 3.0, 4.0)
    assert s.ci95 == pytest.approx(trials_ci([2.0, 3.0, 4.0]))
    d = s.to_dict()
    assert d["ci95"] == list(s.ci95) and d["trial_p50s"] == [2.0, 3.0, 4.0]


def test_one_trial_falls_back_to_the_within_trial_ci():
    values = [float(v) for v in range(1, 11)]
    s = summarize_trials([values])
    assert s.ci_basis == "within_trial" and s.trials == 1
    assert s.ci95 == median_ci(values) == (2.0, 9.0)
    assert summarize(values).ci_basis == "within_trial"


def test_trials_ci_covers_a_drifting_mean_where_the_within_trial_ci_does_not():
    # Each "process" draws its own offset (sd 10%), then 200 samples around it: the
    # pooled within-sample CI is far too narrow; the CI over trials covers about 95%.
    rng = np.random.default_rng(11)
    hits_trials = hits_within = 0
    runs = 300
    for _ in range(runs):
        trials = [
            (1.0 + 0.1 * rng.standard_normal()) * rng.lognormal(0, 0.05, size=200) for _ in range(3)
        ]
        s = summarize_trials([t.tolist() for t in trials])
        true_median = 1.0  # E[offset] x median(lognormal(0, .05))
        hits_trials += s.ci95[0] <= true_median <= s.ci95[1]
        lo, hi = median_ci(sorted(v for t in trials for v in t))
        hits_within += lo <= true_median <= hi
    assert 0.9 <= hits_trials / runs <= 0.99
    assert hits_within / runs < 0.5


def test_robust_cv_matches_the_cv_on_normal_data():
    rng = np.random.default_rng(5)
    values = sorted((10.0 + rng.standard_normal(20_000)).tolist())
    assert robust_cv(values) == pytest.approx(0.1, rel=0.05)
    assert robust_cv([1.0, 2.0]) == 0.0
