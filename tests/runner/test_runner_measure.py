"""The whole runner as a program: fixture sensor roots, memory, batch, profiles, 3.8."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runner import RUNNER_PATH
from harness.runner.job import RESULT_SCHEMA_VERSION, MeasureSettings, make_job
from tests.onnx_models import matmul_onnx
from tests.suite_files import FIXTURES

VCGENCMD = FIXTURES / "pi5" / "bin" / "vcgencmd"
FAST = {"warmup_count": 1, "warmup_seconds": 0.0, "min_count": 10, "min_seconds": 0.0}


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    return matmul_onnx(tmp_path_factory.mktemp("m") / "small.onnx", 64, 64)


def run_runner(
    tmp_path: Path, job: dict, python: str = sys.executable, env: dict | None = None
) -> tuple[int, dict, str]:
    job_path, out = tmp_path / "job.json", tmp_path / "result.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run(
        [python, str(RUNNER_PATH), str(job_path), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    return proc.returncode, json.loads(out.read_text()), proc.stderr


def job_for(artifact: Path, shape: list[int], runtime: str = "onnxruntime", **kw) -> dict:
    settings = MeasureSettings(**{**FAST, "idle_seconds": 0.1, **kw.pop("settings", {})})
    return make_job(runtime, str(artifact), shape, settings, **kw)


def test_memory_rise_matches_a_64_mb_initializer(tmp_path):
    model = matmul_onnx(tmp_path / "big.onnx", 4096, 4096)  # 4096 x 4096 x 4 B = 64 MiB
    code, result, stderr = run_runner(tmp_path, job_for(model, [1, 4096], vcgencmd=None))
    assert code == 0, stderr
    mem = result["memory_mb"]
    rise = mem["after_load"] - mem["baseline"]
    # The session holds the weight once (plus a small arena); the import is not counted.
    assert 0.85 * 64 <= rise <= 1.6 * 64, mem
    assert mem["before_import"] < mem["baseline"] and mem["peak"] >= mem["after_load"] * 0.95
    assert mem["peak_includes_load"] is False


def test_jetson_fixture_power_thermals_and_cooldown_timeout(tmp_path, small_onnx):
    job = job_for(
        small_onnx,
        [1, 64],
        sysfs_root=str(FIXTURES / "jetson-jp5"),
        vcgencmd="auto",  # a fixture root: auto must not pick up a real vcgencmd
        settings={"cooldown_c": 40.0, "cooldown_timeout_s": 0.3},
    )
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    assert result["schema_version"] == RESULT_SCHEMA_VERSION
    power = result["power"]
    assert power["source"] == "measured:ina3221" and power["rails"] == ["VDD_IN"]
    assert power["power_w"] == pytest.approx(5.072 * 1.256)
    assert power["idle_source"] == "measured" and power["idle_w"] == pytest.approx(6.370432)
    assert power["energy_mj"] == 0.0  # a static fixture: no power above idle
    thermal = result["thermal"]
    assert thermal["before"]["temps_c"]["cpu-thermal"] == pytest.approx(47.312)
    assert thermal["after"]["freq_mhz"]["cpu5"] == pytest.approx(1510.4)
    assert result["env"]["governor"] == "schedutil"
    # 48 C never drops under 40 C: the gate gives up and the verdict says so.
    assert result["cooldown"]["timed_out"] is True
    assert result["cooldown"]["waited_s"] == pytest.approx(0.3, abs=0.25)
    assert "cooldown_timeout" in result["validity"] and "throttled" not in result["validity"]


def test_pi5_fixture_pmic_power_and_throttling(tmp_path, small_onnx):
    job = job_for(small_onnx, [1, 64], sysfs_root=str(FIXTURES / "pi5"), vcgencmd=str(VCGENCMD))
    code, result, stderr = run_runner(tmp_path, job, env={"FIXTURE_THROTTLED": "0x50005"})
    assert code == 0, stderr
    assert result["power"]["source"] == "measured:pmic"
    assert result["power"]["power_w"] == pytest.approx(3.3968646)
    before = result["thermal"]["before"]
    assert before["throttled"]["now"] == ["under_voltage", "throttled"]
    assert before["temps_c"] == {"cpu-thermal": 51.65}
    assert "throttled" in result["validity"]


def test_rapl_fixture_and_too_few_samples(tmp_path, small_onnx):
    job = job_for(
        small_onnx,
        [1, 64],
        sysfs_root=str(FIXTURES / "rapl"),
        vcgencmd=None,
        settings={"min_count": 10**9, "max_seconds": 0.2},
    )
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    assert result["power"]["source"] == "measured:rapl"
    assert result["power"]["power_w"] == 0.0  # the counter does not move in a fixture
    assert result["stop_reason"] == "max_seconds"
    assert "too_few_samples" in result["validity"]
    assert result["thermal"]["before"]["throttle_count"] == 0


def test_block_sampling_and_host_load_in_the_result(tmp_path, small_onnx):
    job = job_for(small_onnx, [1, 64], sysfs_root=str(FIXTURES / "host-load" / "crowded"))
    job["measure"]["block_seconds"] = 0.005
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    sampling = result["sampling"]
    assert sampling["estimate"] == "block_mean" and sampling["block_seconds"] == 0.005
    # One sample per block, each the mean of its inferences; at least MIN_BLOCKS of them.
    assert sampling["blocks"] == len(result["samples_ms"]) >= sampling["min_blocks"] == 10
    assert sampling["inferences"] >= 10 and sampling["inferences_per_block"]["min"] >= 1
    assert min(result["samples_ms"]) >= 0.0
    load = result["host_load"]
    assert load["procs_running"] == [9, 9] and load["others_runnable_per_cpu"] == 4.0
    assert load["loadavg"] == [8.40, 7.95, 6.10]
    # Blocks the loop could not fill before max_seconds: too few samples.
    job["measure"].update({"block_seconds": 0.05, "max_seconds": 0.1})
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    assert result["sampling"]["blocks"] < 10 and "too_few_samples" in result["validity"]
    # Without block_seconds: one sample per inference, no sampling record.
    code, result, stderr = run_runner(tmp_path, job_for(small_onnx, [1, 64]))
    assert code == 0 and "sampling" not in result and result["host_load"] is not None


def test_modelled_power_and_no_power(tmp_path, small_onnx):
    model = {"idle_w": 5.0, "max_w": 25.0}
    empty = tmp_path / "empty-root"
    empty.mkdir()
    job = job_for(
        small_onnx,
        [1, 64],
        sysfs_root=str(empty),
        vcgencmd=None,
        power_model=model,
        settings={"min_seconds": 0.1},
    )
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    power = result["power"]
    assert power["source"] == "modelled" and 0 < power["cpu_util"] <= 1
    assert power["power_w"] == pytest.approx(5.0 + 20.0 * power["cpu_util"])
    assert power["energy_mj"] == pytest.approx(
        (power["power_w"] - 5.0) * result["within_trial"]["p50"]
    )
    job = job_for(small_onnx, [1, 64], sysfs_root=str(empty), vcgencmd=None)
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    assert result["power"]["source"] == "none" and result["power"]["power_w"] is None
    assert result["thermal"]["before"]["temps_c"] == {}


def test_batch_larger_than_a_static_batch_is_refused(tmp_path, small_onnx):
    job = job_for(small_onnx, [1, 64], vcgencmd=None, settings={"batch": 4})
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 2 and result["kind"] == "bad_job"
    assert "static batch dimension of 1" in result["error"] and "batch" in stderr


def test_batch_on_a_dynamic_batch_artifact_and_adaptive_stop(tmp_path):
    model = matmul_onnx(tmp_path / "dyn.onnx", 64, 64, batch="N")
    job = job_for(
        model,
        [1, 64],
        vcgencmd=None,
        settings={"batch": 4, "adaptive_ci": 0.05, "min_count": 20, "max_seconds": 5.0},
    )
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    assert result["batch"] == 4 and result["input_shape"] == [4, 64]
    assert result["stop_reason"] in ("adaptive_ci", "max_seconds")
    if result["stop_reason"] == "adaptive_ci":
        p50 = result["within_trial"]["p50"]
        lo, hi = result["within_trial"]["ci95"]
        assert p50 - lo <= 0.05 * p50 + 1e-12 and hi - p50 <= 0.05 * p50 + 1e-12


def test_onnxruntime_profile_runs_after_the_timed_loop(tmp_path, small_onnx):
    job = job_for(small_onnx, [1, 64], vcgencmd=None, settings={"profile": True})
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    profile = result["profile"]
    assert profile["tool"] == "onnxruntime profiler" and profile["runs"] == 20
    (row,) = profile["ops"]
    assert row["op"] == "MatMul" and row["count"] == 1 and row["share"] == pytest.approx(1.0)
    assert row["total_ms"] == pytest.approx(row["mean_ms"]) and row["total_ms"] > 0


@pytest.mark.slow
def test_executorch_profile_marks_delegated_ops_and_refuses_a_batch(tmp_path):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return torch.topk(y.flatten(1), 4).values  # topk is not delegated

    x = torch.randn(1, 3, 16, 16)
    program = torch.export.export(Net().eval(), (x,))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    pte = tmp_path / "m.pte"
    pte.write_bytes(lowered.to_executorch().buffer)

    job = job_for(pte, [1, 3, 16, 16], "executorch", vcgencmd=None, settings={"profile": True})
    code, result, stderr = run_runner(tmp_path, job)
    assert code == 0, stderr
    assert result["import_ms"] > result["load_ms"]  # the runtime import is timed apart
    ops = {row["op"]: row for row in result["profile"]["ops"]}
    assert any(row["delegated"] for row in ops.values()), ops
    assert ops["topk.values"]["delegated"] is False
    assert sum(r["share"] for r in ops.values()) == pytest.approx(1.0, abs=0.05)

    job = job_for(pte, [1, 3, 16, 16], "executorch", vcgencmd=None, settings={"batch": 2})
    code, result, _ = run_runner(tmp_path, job)
    assert code == 2 and "static batch dimension of 1" in result["error"]


def _python38() -> str | None:
    candidates = [shutil.which("python3.8"), os.environ.get("HARNESS_PYTHON38")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 8)":
            return candidate
    return None


PY38_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import bench_runner as br
fx = sys.argv[2]
assert br.find_power_source(fx + "/jetson-jp5", None).read() > 6
assert br.find_power_source(fx + "/jetson-jp4", None).read() > 3
assert br.find_power_source(fx + "/rapl", None).label == "measured:rapl"
assert br.find_power_source(fx + "/pi5", fx + "/pi5/bin/vcgencmd").label == "measured:pmic"
snap = br.thermal_snapshot(fx + "/pi5", fx + "/pi5/bin/vcgencmd")
assert snap["throttled"]["raw"] == "0x50000"
samples, reason = br.run_loop(lambda: None, 30, 0.0, 5.0, adaptive_ci=0.5, check_every=10)
assert len(samples) >= 30 and reason in ("adaptive_ci", "max_seconds")
assert br.median_ci_ranks(10) == (2, 9)
means, counts, reason = br.run_blocks(lambda: None, 0.002, 30, 0.0, 5.0)
assert len(means) >= br.MIN_BLOCKS and sum(counts) >= 30 and reason == "count_and_time"
stat = br.read_cpu_stat(fx + "/host-load/crowded")
assert br.host_load(stat, stat, [0, 1], 0.0, 1.0)["others_runnable_per_cpu"] == 4.0
env = br.environment(fx + "/pi5")
assert env["governor"] == "ondemand" and env["python"].startswith("3.8")
print("ok")
"""


def test_runner_runs_on_python38(tmp_path):
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 interpreter here (set HARNESS_PYTHON38)")
    # The job path: parse, validate, refuse, and write the result, all under 3.8.
    (tmp_path / "bad.json").write_text("{not json")
    proc = subprocess.run(
        [python, str(RUNNER_PATH), str(tmp_path / "bad.json"), str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["kind"] == "bad_job"
    # The measuring code without a runtime: sensors, thermals, stopping rules, env.
    proc = subprocess.run(
        [python, "-c", PY38_SCRIPT, str(RUNNER_PATH.parent), str(FIXTURES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    # The probe, whose imports run in child processes of that same 3.8 interpreter.
    proc = subprocess.run(
        [python, str(RUNNER_PATH), "--probe", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout)
    assert probe["python"].startswith("3.8") and set(probe["imports"]) >= {"onnxruntime"}
    for answer in probe["imports"].values():
        assert answer["ok"] or answer["error"].startswith("ModuleNotFoundError"), answer
