"""OpenVINO as a runtime on the ONNX artifact: a real openvino session in the runner,
pinned to f32 unless a bf16 variant asks, per-op counters, and the cells a suite gives it
(sharing onnxruntime's artifact, refusing what it cannot run, saying how to install it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.export.registry import runtime_spec, runtimes_for_file
from harness.runner import RUNNER_PATH, bench_runner
from harness.runner.job import make_job
from harness.runner.settings import MeasureSettings

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A small conv net as ONNX, an input, and the torch model's output on it."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 16 * 16, 10),
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    path = tmp_path_factory.mktemp("ov") / "conv.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input"], dynamo=False)
    with torch.no_grad():
        expected = model(x).numpy()
    return path, x.numpy(), expected


def test_the_session_is_pinned_to_f32_and_matches_torch(conv_onnx) -> None:
    path, x, expected = conv_onnx
    session = bench_runner.OpenVinoSession(str(path), 1, {"inference_precision": "f32"})
    assert session.settings == {"inference_precision": "f32"}
    assert session.input_names == ["input"] and session.input_dtypes() == ["float32"]
    out = session.infer([x])
    assert np.abs(out - expected).max() < 1e-4


def test_bf16_is_asked_for_and_changes_the_outputs(conv_onnx) -> None:
    path, x, expected = conv_onnx
    core = openvino.Core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 arithmetic for OpenVINO")
    session = bench_runner.OpenVinoSession(str(path), 1, {"inference_precision": "bf16"})
    assert session.settings == {"inference_precision": "bf16"}
    error = np.abs(session.infer([x]) - expected).max()
    assert 1e-4 < error < 0.5  # bf16 keeps 8 mantissa bits: visibly off, still the model


def test_an_unknown_option_or_precision_names_the_key(conv_onnx) -> None:
    path, _, _ = conv_onnx
    with pytest.raises(bench_runner.JobError, match=r"runtime_options.inference_precision"):
        bench_runner.OpenVinoSession(str(path), 1, {"inference_precision": "int4"})
    with pytest.raises(bench_runner.JobError, match=r"runtime_options.streams"):
        bench_runner.OpenVinoSession(str(path), 1, {"streams": 2})


def test_a_static_batch_other_than_the_job_s_is_refused(conv_onnx) -> None:
    path, x, _ = conv_onnx
    session = bench_runner.OpenVinoSession(str(path), 1)
    with pytest.raises(bench_runner.JobError, match="static batch dimension of 1"):
        session.check_batch(4, [np.repeat(x, 4, axis=0)])


def _run(job: dict, tmp_path: Path, hide_openvino: bool = False) -> tuple[int, dict]:
    job_path, out = tmp_path / "job.json", tmp_path / "result.json"
    job_path.write_text(json.dumps(job))
    argv = [str(RUNNER_PATH), str(job_path), str(out)]
    if hide_openvino:
        # A Python without the package: importing it fails as an absent one does.
        code = (
            "import runpy, sys; sys.modules['openvino'] = None; "
            f"sys.argv = {argv!r}; runpy.run_path({argv[0]!r}, run_name='__main__')"
        )
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, *argv]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, json.loads(out.read_text())


def test_the_runner_measures_and_profiles_an_onnx_file(conv_onnx, tmp_path) -> None:
    path, _, _ = conv_onnx
    settings = MeasureSettings(
        warmup_count=2, warmup_seconds=0, min_count=20, min_seconds=0.01, profile=True
    )
    job = make_job(
        "openvino",
        str(path),
        [1, 3, 16, 16],
        settings,
        runtime_options={"inference_precision": "f32"},
    )
    code, result = _run(job, tmp_path)
    assert code == 0, result
    assert result["env"]["runtime"]["name"] == "openvino"
    assert result["runtime_settings"] == {"inference_precision": "f32"}
    assert len(result["samples_ms"]) >= 20 and min(result["samples_ms"]) > 0
    profile = result["profile"]
    assert profile["tool"] == "openvino perf counters" and profile["runs"] == 20
    ops = {row["op"]: row for row in profile["ops"]}
    assert ops["Convolution"]["count"] == 2 and ops["Convolution"]["total_ms"] > 0
    assert all("f32" in k.lower() or "fp32" in k.lower() for k in ops["Convolution"]["kernels"])


def test_a_python_without_openvino_fails_the_job_as_runtime_missing(conv_onnx, tmp_path) -> None:
    path, _, _ = conv_onnx
    job = make_job("openvino", str(path), [1, 3, 16, 16], MeasureSettings())
    code, result = _run(job, tmp_path, hide_openvino=True)
    assert code != 0
    assert result["kind"] == "runtime_missing"
    assert "openvino is not installed for" in result["error"]


def test_openvino_shares_the_onnx_artifact_and_reads_ready_onnx_files() -> None:
    spec = runtime_spec("openvino")
    assert spec.builds_as == "onnxruntime"
    assert runtimes_for_file("model.onnx") == ["onnxruntime", "openvino"]
    assert runtimes_for_file("model.pte") == ["executorch"]
    assert spec.runtime_options(None) == {"inference_precision": "f32"}
    assert spec.runtime_options("static") == {"inference_precision": "f32"}
    assert spec.runtime_options("bf16") == {"inference_precision": "bf16"}
    assert spec.own_versions() == {"openvino": openvino.__version__.split("-")[0]}


@pytest.mark.slow
def test_a_suite_runs_openvino_beside_onnxruntime(tmp_path) -> None:
    from harness.results.store import ResultsStore
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker
    from tests.suite_files import FAST_MEASURE, write_suite

    suite = write_suite(
        tmp_path,
        """
        name = "ov"
        runtimes = ["onnxruntime", "openvino"]
        devices = ["local"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        int8 = ["int8-static"]
        bf16 = ["bf16"]
        """
        + FAST_MEASURE,
    )
    walker = SuiteWalker(load_suite(suite), tmp_path / "results")
    try:
        summary = walker.walk()
    finally:
        walker.close()
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        cells = {(c.variant, c.runtime): c for c in store.cells(summary.run_id)}
    for variant in ("fp32", "int8"):
        ort, ov = cells[(variant, "onnxruntime")], cells[(variant, "openvino")]
        assert ort.status == ov.status == "ok", (ort.reason, ov.reason)
        # One artifact, measured by both runtimes.
        assert ort.artifact_hash == ov.artifact_hash
        assert ov.result.runtime_settings == {"inference_precision": "f32"}
        # int8 moves a few top-1 answers of a random tiny net; the two runtimes'
        # int8 kernels round alike, so they agree about as well as each other.
        assert ov.result.agreement >= (1.0 if variant == "fp32" else 0.9)
        assert abs(ov.result.snr_db - ort.result.snr_db) < (5 if variant == "int8" else 100)
    assert cells[("fp32", "openvino")].result.snr_db > 60  # f32: the same numbers as torch
    refused = cells[("bf16", "onnxruntime")]
    assert refused.status == "failed" and refused.result.failure_kind == "unsupported"
    assert "runtimes that do: openvino" in (refused.reason or "")
    bf16 = cells[("bf16", "openvino")]
    assert bf16.status == "ok", bf16.reason
    assert bf16.result.export_notes["quant_format"].startswith("bf16")
