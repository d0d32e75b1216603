"""The runner as a program: job validation, stopping rules, a real ORT measurement."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runner import RUNNER_PATH, bench_runner
from harness.runner.job import RESULT_SCHEMA_VERSION, MeasureSettings, make_job


class FakeClock:
    """Each call advances time by ``step`` seconds."""

    def __init__(self, step: float):
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_loop_stops_when_both_count_and_time_are_reached():
    # Each call reads the clock twice (0.1 s per call): 1 s needs 10 calls, more than 5.
    samples, reason = bench_runner.run_loop(lambda: None, 5, 1.0, clock=FakeClock(0.05))
    assert (len(samples), reason) == (10, "count_and_time")
    # Time reached early, count not: the count wins.
    samples, reason = bench_runner.run_loop(lambda: None, 50, 0.1, clock=FakeClock(0.05))
    assert (len(samples), reason) == (50, "count_and_time")


def test_loop_respects_the_hard_time_cap():
    samples, reason = bench_runner.run_loop(
        lambda: None, 1000, 0.0, max_seconds=1.0, clock=FakeClock(0.05)
    )
    assert (len(samples), reason) == (10, "max_seconds")


def _run_runner(tmp_path: Path, job_text: str) -> tuple[int, dict, str]:
    job = tmp_path / "job.json"
    job.write_text(job_text)
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(RUNNER_PATH), str(job), str(out)], capture_output=True, text=True
    )
    return proc.returncode, json.loads(out.read_text()), proc.stderr


def test_corrupt_job_gives_clear_error_and_nonzero_exit(tmp_path):
    code, result, stderr = _run_runner(tmp_path, "{not json")
    assert code == 2
    assert result["status"] == "error" and result["kind"] == "bad_job"
    assert "not valid JSON" in stderr and "job.json" in stderr


def test_job_with_wrong_key_names_the_key(tmp_path):
    job = {"schema_version": 1, "runtime": "tflite", "artifact": "x", "input_shape": [1]}
    code, result, stderr = _run_runner(tmp_path, json.dumps(job))
    assert code == 2
    assert "'runtime'" in result["error"] and "tflite" in result["error"]
    assert "'runtime'" in stderr


def test_missing_artifact_is_a_runtime_error(tmp_path):
    job = make_job("onnxruntime", str(tmp_path / "none.onnx"), [1, 4], MeasureSettings())
    code, result, _ = _run_runner(tmp_path, json.dumps(job))
    assert code == 3 and result["kind"] == "runtime_error"


def test_runner_measures_a_real_onnx_model(tmp_path):
    import numpy as np
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).eval()
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(
        model, (torch.randn(1, 8),), str(onnx_path), input_names=["input"], dynamo=False
    )
    inputs = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    np.save(tmp_path / "eval.npy", inputs)
    settings = MeasureSettings(warmup_count=2, warmup_seconds=0, min_count=20, min_seconds=0.01)
    job = make_job(
        "onnxruntime",
        str(onnx_path),
        [1, 8],
        settings,
        eval_inputs=str(tmp_path / "eval.npy"),
        outputs_out=str(tmp_path / "out.npy"),
    )
    code, result, stderr = _run_runner(tmp_path, json.dumps(job))
    assert code == 0, stderr
    assert result["schema_version"] == RESULT_SCHEMA_VERSION
    assert len(result["samples_ms"]) >= 20 and min(result["samples_ms"]) > 0
    mem = result["memory_mb"]
    assert mem["baseline"] > 0 and mem["after_load"] >= mem["baseline"] * 0.9 and mem["peak"] > 0
    outputs = np.load(tmp_path / "out.npy")
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
    assert outputs == pytest.approx(expected, abs=1e-5)


def test_runner_is_python38_syntax_and_imports_nothing_from_harness():
    source = RUNNER_PATH.read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("harness")
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("harness") for a in node.names)
        # Annotations such as `list[int]` or `int | None` fail at run time on 3.8:
        # the runner carries none.
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotated = [a for a in node.args.args + node.args.kwonlyargs if a.annotation]
            assert not annotated and node.returns is None, node.name
        assert not isinstance(node, ast.AnnAssign)
