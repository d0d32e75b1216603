"""The runner's stopping rules (fake clock) and its own median CI (no scipy on a board)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from harness.results.stats import median_ci
from harness.runner import bench_runner


class ScriptedClock:
    """Time advances only when the fake inference runs, by the next scripted duration."""

    def __init__(self, durations):
        self.now = 0.0
        self._durations = iter(durations)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def run(self) -> None:
        self.calls += 1
        self.now += next(self._durations)


def test_fixed_rule_reports_its_reason():
    clock = ScriptedClock(itertools.repeat(0.01))
    samples, reason = bench_runner.run_loop(clock.run, 20, 0.5, 10.0, clock=clock)
    assert reason == "count_and_time" and len(samples) == 50  # 0.5 s / 10 ms > 20
    clock = ScriptedClock(itertools.repeat(0.5))
    samples, reason = bench_runner.run_loop(clock.run, 20, 0.5, 2.0, clock=clock)
    assert reason == "max_seconds" and len(samples) == 4


def test_adaptive_stops_at_min_count_when_samples_are_identical():
    clock = ScriptedClock(itertools.repeat(0.002))
    samples, reason = bench_runner.run_loop(
        clock.run, 30, 100.0, 10.0, clock=clock, adaptive_ci=0.01, check_every=10
    )
    # min_seconds does not apply to the adaptive rule; it never stops before min_count.
    assert reason == "adaptive_ci" and len(samples) == 30


def test_adaptive_runs_until_the_ci_is_narrow_and_checks_every_n():
    rng = np.random.default_rng(3)
    durations = (0.001 * rng.lognormal(0, 0.3, size=100_000)).tolist()
    clock = ScriptedClock(durations)
    samples, reason = bench_runner.run_loop(
        clock.run, 50, 0.0, 1000.0, clock=clock, adaptive_ci=0.01, check_every=25
    )
    assert reason == "adaptive_ci"
    n = len(samples)
    assert n > 50
    # Checks happen at min_count, then every check_every (or 5% of n when larger).
    checks = [50]
    while checks[-1] < n:
        checks.append(checks[-1] + max(25, checks[-1] // 20))
    assert n == checks[-1]
    median, lo, hi = bench_runner.median_and_ci(sorted(samples))
    assert median - lo <= 0.01 * median and hi - median <= 0.01 * median
    # The previous check point did not yet meet the target.
    previous = sorted(samples[: checks[-2]])
    assert not bench_runner.ci_is_narrow(previous, 0.01)


def test_adaptive_gives_up_at_max_seconds():
    rng = np.random.default_rng(4)
    durations = (0.01 * rng.lognormal(0, 2.0, size=10_000)).tolist()
    clock = ScriptedClock(durations)
    samples, reason = bench_runner.run_loop(
        clock.run, 10, 0.0, 3.0, clock=clock, adaptive_ci=0.001, check_every=5
    )
    assert reason == "max_seconds"
    assert sum(samples) >= 3.0 - max(samples)


class QuotaClock:
    """A clock for code run under a CFS quota: each inference takes ``work`` s of CPU;
    after every ``quota`` s of CPU the group waits out the rest of its ``period`` (the
    throttle lands inside whichever inference crosses the quota, as the kernel's does)."""

    def __init__(self, work: float, quota: float, period: float):
        self.now, self.work, self.quota, self.period = 0.0, work, quota, period
        self.used = 0.0  # CPU time used in the current period

    def __call__(self) -> float:
        return self.now

    def run(self) -> None:
        left = self.work
        while self.used + left > self.quota:
            ran = self.quota - self.used
            left -= ran
            self.now += ran + (self.period - self.quota)  # throttled to the period's end
            self.used = 0.0
        self.used += left
        self.now += left


def test_block_sampling_sees_a_quota_that_per_inference_sampling_misses():
    # 10 us inferences under a 25% quota (2 ms per 8 ms): a quarter of the speed.
    clock = QuotaClock(work=10e-6, quota=0.002, period=0.008)
    samples, _ = bench_runner.run_loop(clock.run, 1000, 0.5, 10.0, clock=clock)
    # Per inference, the throttle hits 1 inference in 200: the p50 is the uncapped time.
    assert bench_runner.median_and_ci(sorted(samples))[0] == pytest.approx(10e-6)

    clock = QuotaClock(work=10e-6, quota=0.002, period=0.008)
    means, counts, reason = bench_runner.run_blocks(clock.run, 0.08, 50, 0.5, 10.0, clock=clock)
    assert reason == "count_and_time"
    # Each block of 10 periods holds its throttles: the p50 is 4x the uncapped time
    # (within the phase error of a block, one period in ten).
    assert bench_runner.median_and_ci(sorted(means))[0] == pytest.approx(40e-6, rel=0.1)
    # Contiguous blocks: their total is the loop's whole time, every throttle inside.
    assert sum(m * n for m, n in zip(means, counts, strict=True)) == pytest.approx(clock.now)
    assert len(means) >= bench_runner.MIN_BLOCKS and sum(counts) >= 50


def test_block_floors_inference_count_and_long_inferences():
    # The floors: min_count inferences and MIN_BLOCKS blocks, then min_seconds. Powers
    # of two, so the sums are exact: 8 inferences of 2**-10 s fill a 2**-7 s block.
    tick, block = 2.0**-10, 2.0**-7
    clock = ScriptedClock(itertools.repeat(tick))
    means, counts, reason = bench_runner.run_blocks(clock.run, block, 5, 0.0, 10.0, clock=clock)
    assert reason == "count_and_time" and len(means) == bench_runner.MIN_BLOCKS
    assert counts == [8] * bench_runner.MIN_BLOCKS and means == [tick] * len(means)
    clock = ScriptedClock(itertools.repeat(tick))
    means, counts, _ = bench_runner.run_blocks(clock.run, block, 400, 0.0, 10.0, clock=clock)
    assert sum(counts) == 400 and len(means) == 50
    clock = ScriptedClock(itertools.repeat(tick))
    means, _, _ = bench_runner.run_blocks(clock.run, block, 5, 0.25, 10.0, clock=clock)
    assert len(means) == 32  # min_seconds: 0.25 s of 2**-7 s blocks
    # An inference longer than the block is a block of one: timed as itself.
    clock = ScriptedClock(itertools.repeat(0.05))
    means, counts, _ = bench_runner.run_blocks(clock.run, 0.01, 3, 0.0, 10.0, clock=clock)
    assert set(counts) == {1} and means == pytest.approx([0.05] * len(means))
    # max_seconds still stops it (the runner then flags too few samples).
    clock = ScriptedClock(itertools.repeat(0.5))
    means, _, reason = bench_runner.run_blocks(clock.run, 0.01, 3, 0.0, 2.0, clock=clock)
    assert reason == "max_seconds" and len(means) == 4


def test_block_adaptive_rule_checks_the_block_means():
    rng = np.random.default_rng(5)
    durations = (0.001 * rng.lognormal(0, 0.3, size=100_000)).tolist()
    clock = ScriptedClock(durations)
    means, _counts, reason = bench_runner.run_blocks(
        clock.run, 0.02, 10, 100.0, 1000.0, clock=clock, adaptive_ci=0.02
    )
    assert reason == "adaptive_ci" and len(means) >= bench_runner.MIN_BLOCKS
    assert bench_runner.ci_is_narrow(sorted(means), 0.02)


@pytest.mark.parametrize("n", [*range(1, 120), 250, 999, 1000, 2500, 5000])
def test_runner_median_ci_ranks_match_the_host(n):
    values = [float(v) for v in range(1, n + 1)]
    lo, hi = bench_runner.median_ci_ranks(n)
    assert (values[lo - 1], values[hi - 1]) == median_ci(values)


def test_runner_median_ci_normal_approximation_is_close_beyond_5000():
    n = 20_000
    lo, hi = bench_runner.median_ci_ranks(n)
    exact_lo = median_ci([float(v) for v in range(1, n + 1)])[0]
    assert abs(lo - exact_lo) <= 1 and hi == n - lo + 1


def test_robust_cv_ignores_a_few_spikes_the_plain_cv_does_not():
    values = [1.0 + 0.01 * ((i * 37) % 11 - 5) / 5 for i in range(1000)]
    values[::100] = [200.0] * 10  # 1% preemption spikes
    ordered = sorted(values)
    assert bench_runner._cv(values) > 1.0
    assert bench_runner.robust_cv(ordered) < 0.02


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"threads": 0}, "'threads'"),
        ({"batch": 1.5}, "'batch'"),
        ({"batch": True}, "'batch'"),
        ({"measure": {"min_count": -1}}, "'measure.min_count'"),
        ({"measure": {"adaptive_ci": 1.5}}, "'measure.adaptive_ci'"),
        ({"measure": {"adaptive_ci": 0.01, "max_seconds": None}}, "'measure.max_seconds'"),
        ({"measure": {"max_cv": 0}}, "'measure.max_cv'"),
        ({"measure": {"block_seconds": 0}}, "'measure.block_seconds'"),
        ({"measure": {"block_seconds": "80ms"}}, "'measure.block_seconds'"),
        ({"measure": {"min_cnt": 3}}, "'measure.min_cnt'"),
        ({"warmup": "fast"}, "'warmup'"),
        ({"cooldown": {"max_c": "hot"}}, "'cooldown.max_c'"),
        ({"power": {"model": {"idle_w": 5}}}, "'power.model.max_w'"),
        ({"power": {"model": {"idle_w": 9, "max_w": 3}}}, "'power.model.max_w'"),
        ({"power": {"interval_s": 0}}, "'power.interval_s'"),
        ({"profile": {"enabled": "yes"}}, "'profile.enabled'"),
        ({"profile": {"top": 0}}, "'profile.top'"),
        ({"input_shape": [1, 0]}, "'input_shape'"),
        ({"input_dtype": "complex64"}, "'input_dtype'"),
        ({"sysfs_root": ""}, "'sysfs_root'"),
        ({"vcgencmd": 3}, "'vcgencmd'"),
        ({"schema_version": 4}, "'schema_version'"),
        # Schema 3 describes inputs in "inputs" only: an old single-shape body is refused.
        ({"schema_version": 3}, "'input_shape'"),
    ],
)
def test_job_validation_names_the_key(tmp_path, patch, key):
    job = {"schema_version": 2, "runtime": "onnxruntime", "artifact": "m.onnx"}
    job["input_shape"] = [1, 4]
    job.update(patch)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    with pytest.raises(bench_runner.JobError) as err:
        bench_runner.load_job(str(path))
    assert key in str(err.value)


@pytest.mark.parametrize(
    ("inputs", "key"),
    [
        (None, "'inputs'"),
        ([], "'inputs'"),
        (["tokens"], "'inputs[0]'"),
        ([{"name": "", "shape": [1, 4], "dtype": "int64"}], "'inputs[0].name'"),
        ([{"name": "a", "shape": [1, 0], "dtype": "int64"}], "'inputs[0].shape'"),
        ([{"name": "a", "shape": [1, 4], "dtype": "complex64"}], "'inputs[0].dtype'"),
        ([{"name": "a", "shape": [1, 4], "dtype": "int64", "range": [5, 5]}], "'inputs[0].range'"),
        ([{"name": "a", "shape": [1], "dtype": "float32", "range": [0, 5]}], "'inputs[0].range'"),
        ([{"name": "a", "shape": [1], "dtype": "int64", "low": 0}], "'inputs[0].low'"),
        (
            [
                {"name": "a", "shape": [1], "dtype": "int64"},
                {"name": "a", "shape": [1], "dtype": "int64"},
            ],
            "'inputs[1].name'",
        ),
    ],
)
def test_schema_3_inputs_are_validated_naming_the_key(tmp_path, inputs, key):
    job = {"schema_version": 3, "runtime": "onnxruntime", "artifact": "m.onnx"}
    if inputs is not None:
        job["inputs"] = inputs
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    with pytest.raises(bench_runner.JobError) as err:
        bench_runner.load_job(str(path))
    assert key in str(err.value)


def test_schema_3_job_keeps_every_input_and_an_old_job_becomes_one_unnamed_input(tmp_path):
    job = {"schema_version": 3, "runtime": "onnxruntime", "artifact": "m.onnx"}
    job["inputs"] = [
        {"name": "tokens", "shape": [1, 12], "dtype": "int64", "range": [0, 40]},
        {"name": "mask", "shape": [1, 12], "dtype": "bool"},
    ]
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    merged = bench_runner.load_job(str(path))
    assert [(i["name"], i["dtype"], i["range"]) for i in merged["inputs"]] == [
        ("tokens", "int64", [0, 40]),
        ("mask", "bool", None),
    ]
    old = {"schema_version": 2, "runtime": "onnxruntime", "artifact": "m.onnx"}
    old.update(input_shape=[1, 3, 8, 8], input_dtype="float16")
    path.write_text(json.dumps(old))
    merged = bench_runner.load_job(str(path))
    assert merged["inputs"] == [
        {"name": None, "shape": [1, 3, 8, 8], "dtype": "float16", "range": None}
    ]


def test_version_1_job_is_read_with_defaults(tmp_path):
    job = {"schema_version": 1, "runtime": "executorch", "artifact": "m.pte"}
    job["input_shape"] = [1, 3, 8, 8]
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    merged = bench_runner.load_job(str(path))
    assert merged["batch"] == 1 and merged["measure"]["adaptive_ci"] is None
    assert merged["profile"]["enabled"] is False and merged["sysfs_root"] == "/"
