import numpy as np
import pytest

from harness.results.scoring import score_outputs
from harness.results.stats import median_ci, percentile, summarize


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
