"""Host side of measurement: trials, their combination, the job and result contract,
the [measure] options and the report's JSON keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.configfile import validate
from harness.devices.base import Device, DeviceRun
from harness.devices.config import LocalProfile
from harness.devices.local import LocalDevice
from harness.errors import ConfigError, RunnerError
from harness.reports.cells import cell_to_dict
from harness.results.stats import trials_ci
from harness.results.store import CellRecord
from harness.runner.job import JOB_SCHEMA_VERSION, MeasureSettings, check_result, make_job
from harness.runner.trials import combine_trials, run_trials
from harness.suite.config import MeasureConfig
from tests.onnx_models import matmul_onnx


def fake_result(samples, power_w=10.0, idle_w=4.0, validity="ok", temps=40.0, **extra):
    return {
        "schema_version": 2,
        "status": "ok",
        "samples_ms": samples,
        "load_ms": 5.0,
        "first_inference_ms": 2.0,
        "import_ms": 100.0,
        "memory_mb": {"before_import": 10, "baseline": 20, "after_load": 30, "peak": 35},
        "power": {
            "source": "measured:ina3221",
            "power_w": power_w,
            "idle_w": idle_w,
            "rails": ["VDD_IN"],
            "cpu_util": 0.5,
        },
        "thermal": {
            "before": {"temps_c": {"cpu": temps}, "freq_mhz": {"cpu0": 1000.0}},
            "after": {"temps_c": {"cpu": temps + 5}, "freq_mhz": {"cpu0": 900.0}},
        },
        "validity": validity,
        "within_trial": {"ci95": [1, 2], "cv_robust": 0.01},
        "stop_reason": "count_and_time",
        "env": {"python": "3.11"},
        "runtime_version": "1.0",
        "profile": None,
        **extra,
    }


class RecordingDevice(Device):
    def __init__(self, results):
        super().__init__(LocalProfile(name="fake"))
        self.results = list(results)
        self.calls: list[tuple[dict[str, Any], Path | None]] = []

    def run(self, job, artifact, eval_inputs, timeout_s):
        self.calls.append((job, eval_inputs))
        outputs = np.zeros((2, 2)) if eval_inputs is not None else None
        return DeviceRun(result=self.results[len(self.calls) - 1], outputs=outputs)


def test_trials_are_separate_runs_with_eval_and_profile_in_the_first_only():
    device = RecordingDevice([fake_result([1.0])] * 3)
    job = make_job("onnxruntime", "m.onnx", [1, 4], MeasureSettings(profile=True))
    run = run_trials(device, job, Path("m.onnx"), Path("eval.npy"), 60.0, 3)
    assert len(run.results) == 3 and run.outputs is not None
    assert [c[1] for c in device.calls] == [Path("eval.npy"), None, None]
    assert [c[0]["profile"]["enabled"] for c in device.calls] == [True, False, False]


def test_combined_result_builds_the_ci_over_trials():
    results = [
        fake_result([1.0, 1.1, 0.9], power_w=10.0, temps=40.0),
        fake_result([1.2, 1.3, 1.1], power_w=12.0, validity=["throttled"]),
        fake_result([1.0, 1.05, 0.95], power_w=11.0, temps=50.0),
    ]
    settings = MeasureSettings(batch=2, max_cv=0.05)
    fields, samples = combine_trials(results, settings)
    assert samples == [1.0, 1.1, 0.9, 1.2, 1.3, 1.1, 1.0, 1.05, 0.95]
    lat = fields["latency_ms"]
    assert fields["trials"] == 3 and fields["ci_basis"] == lat["ci_basis"] == "trials"
    assert lat["trial_p50s"] == [1.0, 1.2, 1.0]
    assert lat["ci95"] == pytest.approx(list(trials_ci([1.0, 1.2, 1.0])))
    assert fields["samples"] == 9
    assert fields["throughput_ips"] == pytest.approx(2 * 1e3 / lat["p50"])
    assert fields["power_w"] == pytest.approx(11.0) and fields["idle_w"] == 4.0
    assert fields["energy_mj"] == pytest.approx((11.0 - 4.0) * lat["p50"])
    assert fields["power_source"] == "measured:ina3221"
    assert fields["temps_c"] == {"before": {"cpu": 40.0}, "after": {"cpu": 55.0}}
    # A trial's reason, and the trials' medians spreading more than max_cv (9.4%).
    assert fields["validity"] == ["throttled", "unstable"]
    assert fields["memory_mb"]["peak"] == 35 and fields["memory_mb"]["baseline"] == 20
    assert [t["p50"] for t in fields["trial_results"]] == [1.0, 1.2, 1.0]


def test_reasons_with_numbers_are_kept_once_per_reason():
    loaded = "host_loaded: 4.0 other runnable tasks per CPU"
    results = [
        fake_result([1.0], validity=[loaded]),
        fake_result([1.0], validity=["host_loaded: 2.5 other runnable tasks per CPU"]),
        fake_result([1.0], validity=["speed_cap_not_enforced", "throttled"]),
    ]
    fields, _ = combine_trials(results, MeasureSettings())
    # The known order, one entry each; the first trial's numbers and how many trials.
    assert fields["validity"] == [
        "throttled",
        "speed_cap_not_enforced",
        f"{loaded} (2 of 3 trials)",
    ]
    every = [fake_result([1.0], validity=[loaded])] * 2
    assert combine_trials(every, MeasureSettings())[0]["validity"] == [loaded]


def test_one_trial_is_marked_within_trial():
    fields, _ = combine_trials([fake_result([1.0] * 10)], MeasureSettings(trials=1))
    assert fields["ci_basis"] == "within_trial" and fields["validity"] == "ok"


def test_a_version_1_result_is_refused_with_a_hint():
    with pytest.raises(RunnerError, match="old bench_runner"):
        check_result({"schema_version": 1, "status": "ok", "samples_ms": [1.0]}, "device x")
    with pytest.raises(RunnerError, match="non-numeric"):
        check_result({"schema_version": 2, "status": "ok", "samples_ms": ["1"]}, "device x")


def test_measure_config_options_reach_the_job():
    config = MeasureConfig(
        batch=2, trials=5, adaptive_ci=0.01, cooldown_c=60, profile=True, max_cv=0.1
    )
    settings = config.settings()
    job = make_job("executorch", "m.pte", [1, 3], settings, power_model={"idle_w": 1, "max_w": 2})
    assert job["schema_version"] == JOB_SCHEMA_VERSION == 3
    assert job["inputs"] == [{"name": "input", "shape": [1, 3], "dtype": "float32", "range": None}]
    assert job["batch"] == 2 and job["measure"]["adaptive_ci"] == 0.01
    assert job["measure"]["max_cv"] == 0.1 and job["cooldown"]["max_c"] == 60
    assert job["profile"]["enabled"] is True and job["power"]["model"]["max_w"] == 2
    assert settings.trials == 5


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"trials": 0}, "trials"),
        ({"batch": 0}, "batch"),
        ({"adaptive_ci": 1.5}, "adaptive_ci"),
        ({"adaptive_ci": 0}, "adaptive_ci"),
        ({"max_cv": -1}, "max_cv"),
        ({"cooldown_c": 500}, "cooldown_c"),
        ({"profile": "often"}, "profile"),
        ({"power_interval_s": 0}, "power_interval_s"),
    ],
)
def test_measure_config_rejects_bad_values_naming_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        validate(MeasureConfig, data, "suite.toml", key_prefix="measure")
    assert info.value.key == f"measure.{key}"


def test_report_json_has_the_new_keys_and_keeps_the_old():
    fields, _ = combine_trials([fake_result([1.0, 2.0])] * 2, MeasureSettings())
    record = CellRecord(
        model="m",
        variant="fp32",
        runtime="onnxruntime",
        device="local",
        config_hash="x",
        status="ok",
        result=fields,
    )
    cell = cell_to_dict(record)
    for key in (
        "load_ms",
        "first_inference_ms",
        "throughput_ips",
        "power_w",
        "energy_mj",
        "power_source",
        "temps_c",
        "validity",
        "profile",
        "trials",
        "latency_ms",
        "samples",
        "memory_mb",
        "accuracy",
        "agreement",
        "emulated",
    ):
        assert key in cell
    assert cell["latency_ms"]["ci95"] == fields["latency_ms"]["ci95"]
    assert cell["latency_ms"]["ci_basis"] == "trials" and cell["trials"] == 2
    failed = cell_to_dict(CellRecord("m", "v", "r", "d", "x", "failed", reason="boom"))
    assert failed["power_w"] is None and failed["validity"] is None


def test_local_device_runs_three_trial_processes(tmp_path):
    model = matmul_onnx(tmp_path / "m.onnx", 32, 32)
    settings = MeasureSettings(warmup_count=1, warmup_seconds=0, min_count=20, min_seconds=0.05)
    job = make_job(
        "onnxruntime", str(model), [1, 32], settings, sysfs_root=str(tmp_path), vcgencmd=None
    )
    device = LocalDevice(LocalProfile(name="local"))
    run = run_trials(device, job, model, None, 120.0, 3)
    fields, samples = combine_trials(run.results, settings)
    assert fields["trials"] == 3 and fields["ci_basis"] == "trials"
    assert len(samples) == fields["samples"] >= 60
    low, high = fields["latency_ms"]["ci95"]
    assert low <= sum(fields["latency_ms"]["trial_p50s"]) / 3 <= high
    assert fields["power_source"] == "none"  # no power model given, no sensor here
