"""LiteRT (the former TensorFlow Lite) as a runtime: litert-torch's fp32 and pt2e int8
conversions, the runner's LiteRtSession (int8 inputs quantized, outputs dequantized with
the model's scales), ready .tflite files, the cells a suite gives it and the install hint
when the package is missing. Skipped unless the litert extra is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.errors import ModelError, UnsupportedError
from harness.export import get_exporter
from harness.export.precision import precision_of
from harness.export.registry import runtime_spec, runtimes_for_file
from harness.models.base import ModelBundle, TaskData
from harness.models.loaders import load_file_model
from harness.recipes.base import QuantRequest
from harness.results.scoring import snr_db
from harness.runner import RUNNER_PATH, bench_runner
from harness.runner.job import make_job
from harness.runner.settings import MeasureSettings
from harness.target import TargetInfo

pytest.importorskip("ai_edge_litert", reason="the litert extra is not installed")
pytest.importorskip("litert_torch", reason="the litert extra is not installed")

TARGET = TargetInfo(arch="x86_64", cpu_features=frozenset({"avx2"}), cores=2)
STATIC = QuantRequest(mode="static", calibration_samples=32)


class SmallConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    module = SmallConvNet().eval()
    with torch.no_grad():
        bn = module.features[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    rng = np.random.default_rng(0)
    data = TaskData(
        calib_inputs=rng.standard_normal((64, 3, 16, 16), dtype=np.float32),
        eval_inputs=rng.standard_normal((32, 3, 16, 16), dtype=np.float32),
    )
    example = torch.from_numpy(data.eval_inputs[:1].copy())
    return ModelBundle(
        name="small_conv", module=module, example_input=example, data=data, identity={"n": 1}
    )


@pytest.fixture(scope="module")
def exported(bundle, tmp_path_factory) -> dict[str, object]:
    """The fp32 and int8-static .tflite files of the small conv net, with their notes."""
    directory = tmp_path_factory.mktemp("litert")
    exporter = get_exporter("litert")
    fp32 = exporter.export(bundle, directory / "fp32.tflite", None, TARGET)
    int8 = exporter.export(bundle, directory / "int8.tflite", STATIC, TARGET)
    return {"fp32": fp32, "int8": int8}


def _torch_outputs(bundle: ModelBundle, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return bundle.module(torch.from_numpy(x)).numpy()


def _session_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = bench_runner.LiteRtSession(str(path), 1)
    return np.concatenate([session.infer([x[i : i + 1]]) for i in range(len(x))])


def test_fp32_conversion_matches_torch(bundle, exported) -> None:
    result = exported["fp32"]
    assert result.notes["quant_format"] == "fp32"
    assert result.notes["io"] == {"inputs": ["float32"], "outputs": ["float32"]}
    x = bundle.data.eval_inputs
    assert np.abs(_session_outputs(result.path, x) - _torch_outputs(bundle, x)).max() < 1e-4


def test_int8_conversion_has_int8_io_and_stays_close_to_fp32(bundle, exported) -> None:
    from ai_edge_litert.interpreter import Interpreter

    result = exported["int8"]
    notes = result.notes
    assert notes["quant_format"] == "LiteRT pt2e int8 symmetric per-channel"
    assert precision_of(notes, "static").name == "int8"
    assert notes["calibration_samples"] == 32
    assert notes["io"]["inputs"][0].startswith("int8 scale=")
    assert notes["io"]["outputs"][0].startswith("int8 scale=")
    assert "CONV_2D" in notes["tflite_ops"]
    interpreter = Interpreter(model_path=str(result.path))
    dtypes = {d["dtype"].__name__ for d in interpreter.get_tensor_details()}
    assert "int8" in dtypes
    assert result.path.stat().st_size < exported["fp32"].path.stat().st_size

    x = bundle.data.eval_inputs
    fp32 = _session_outputs(exported["fp32"].path, x)
    int8 = _session_outputs(result.path, x)
    assert snr_db(int8, fp32) > 15
    assert np.mean(int8.argmax(1) == fp32.argmax(1)) >= 0.8


def test_the_session_quantizes_float_inputs_of_an_int8_model(exported) -> None:
    path = exported["int8"].path
    session = bench_runner.LiteRtSession(str(path), 1)
    assert session.input_dtypes() == ["float32"]  # the job feeds floats
    assert session.input_names is None and session.input_count() == 1
    detail = session._inputs[0]
    scale, zero_point = detail["quantization"]
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    run = session.bind([x])
    run()
    fed = session._interpreter.get_tensor(detail["index"])
    assert fed.dtype == np.int8
    expected = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    assert np.array_equal(fed, expected)
    out = session.infer([x])
    assert out.dtype == np.float32 and out.shape == (1, 10)
    raw = session._interpreter.get_tensor(session._outputs[0]["index"])
    out_scale, out_zero = session._outputs[0]["quantization"]
    assert np.allclose(out, (raw.astype(np.float32) - out_zero) * out_scale)


class Residual(nn.Module):
    """torchvision's BasicBlock: one ReLU module applied twice, the second time after
    the residual add, a pattern litert-torch's quantizer leaves unfused, saying so."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


def test_what_the_quantizer_prints_goes_to_the_notes(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = TaskData(
        calib_inputs=rng.standard_normal((8, 3, 8, 8), dtype=np.float32),
        eval_inputs=rng.standard_normal((2, 3, 8, 8), dtype=np.float32),
    )
    bundle = ModelBundle(
        name="residual",
        module=Residual().eval(),
        example_input=torch.from_numpy(data.calib_inputs[:1].copy()),
        data=data,
        identity={"n": 2},
    )
    quant = QuantRequest(mode="static", calibration_samples=8)
    result = get_exporter("litert").export(bundle, tmp_path / "r.tflite", quant, TARGET)
    assert result.notes["quantizer_messages"] == {"Relu partition has more than one output node": 1}
    assert "partition" not in capsys.readouterr().out


def test_dynamic_int8_keeps_float_io_and_unsupported_modes_are_refused(bundle, tmp_path) -> None:
    exporter = get_exporter("litert")
    dynamic = exporter.export(bundle, tmp_path / "dyn.tflite", QuantRequest(mode="dynamic"), TARGET)
    assert dynamic.notes["quant_format"].startswith("LiteRT pt2e dynamic int8")
    assert dynamic.notes["io"] == {"inputs": ["float32"], "outputs": ["float32"]}
    for mode in ("fp16", "qat"):
        with pytest.raises(UnsupportedError, match=f"does not build {mode}"):
            exporter.export(bundle, tmp_path / "x.tflite", QuantRequest(mode=mode), TARGET)
    with pytest.raises(UnsupportedError, match="uint8"):
        exporter.export(
            bundle,
            tmp_path / "x.tflite",
            QuantRequest(mode="static", activation_dtype="uint8"),
            TARGET,
        )
    assert not (tmp_path / "x.tflite").exists()
    assert runtime_spec("litert").quant_modes == ("static", "dynamic")


def test_a_static_batch_other_than_the_job_s_is_refused(exported) -> None:
    session = bench_runner.LiteRtSession(str(exported["fp32"].path), 1)
    with pytest.raises(bench_runner.JobError, match="static batch dimension of 1"):
        session.check_batch(4, [np.zeros((4, 3, 16, 16), np.float32)])
    session.check_batch(1, [np.zeros((1, 3, 16, 16), np.float32)])


def test_a_ready_tflite_file_is_read_with_float_inputs(exported, tmp_path) -> None:
    model = load_file_model(exported["int8"].path)
    assert model.runtime == "litert"
    assert [(s.name, s.shape, s.dtype) for s in model.inputs] == [
        ("input", (1, 3, 16, 16), "float32")
    ]
    assert runtimes_for_file("model.tflite") == ["litert"]
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="not a valid LiteRT model"):
        load_file_model(broken)


def _run(job: dict, tmp_path: Path, hide_litert: bool = False) -> tuple[int, dict]:
    job_path, out = tmp_path / "job.json", tmp_path / "result.json"
    job_path.write_text(json.dumps(job))
    argv = [str(RUNNER_PATH), str(job_path), str(out)]
    if hide_litert:
        # A Python without the package: importing it fails as an absent one does.
        code = (
            "import runpy, sys; sys.modules['ai_edge_litert'] = None; "
            f"sys.argv = {argv!r}; runpy.run_path({argv[0]!r}, run_name='__main__')"
        )
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, *argv]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, json.loads(out.read_text())


def test_the_runner_measures_an_int8_tflite_and_says_it_has_no_op_timings(
    exported, tmp_path
) -> None:
    settings = MeasureSettings(
        warmup_count=2, warmup_seconds=0, min_count=20, min_seconds=0.01, profile=True
    )
    job = make_job("litert", str(exported["int8"].path), [1, 3, 16, 16], settings)
    code, result = _run(job, tmp_path)
    assert code == 0, result
    assert result["env"]["runtime"]["name"] == "litert"
    assert len(result["samples_ms"]) >= 20 and min(result["samples_ms"]) > 0
    profile = result["profile"]
    assert profile["tool"] == "none" and profile["ops"] is None
    assert "no per-op timings" in profile["error"]


def test_a_python_without_ai_edge_litert_fails_the_job_as_runtime_missing(
    exported, tmp_path
) -> None:
    job = make_job("litert", str(exported["fp32"].path), [1, 3, 16, 16], MeasureSettings())
    code, result = _run(job, tmp_path, hide_litert=True)
    assert code != 0
    assert result["kind"] == "runtime_missing"
    assert "litert is not installed for" in result["error"]


def test_the_registry_keys_artifacts_by_both_litert_packages() -> None:
    from importlib.metadata import version

    spec = runtime_spec("litert")
    assert spec.optional and spec.suffix == ".tflite"
    assert spec.own_versions() == {
        "ai-edge-litert": version("ai-edge-litert"),
        "litert-torch": version("litert-torch"),
    }
    assert "constraints-litert.txt" in spec.install_hint


@pytest.mark.slow
def test_a_suite_runs_litert_beside_onnxruntime(tmp_path) -> None:
    from harness.results.store import ResultsStore
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker
    from tests.suite_files import FAST_MEASURE, write_suite

    suite = write_suite(
        tmp_path,
        """
        name = "lt"
        runtimes = ["onnxruntime", "litert"]
        devices = ["local"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        int8 = ["int8-static"]
        half = ["fp16"]
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
        ort, lt = cells[(variant, "onnxruntime")], cells[(variant, "litert")]
        assert ort.status == lt.status == "ok", (ort.reason, lt.reason)
        assert ort.artifact_hash != lt.artifact_hash
        assert lt.result.agreement >= (1.0 if variant == "fp32" else 0.75)
    assert cells[("fp32", "litert")].result.snr_db > 60
    int8 = cells[("int8", "litert")].result
    assert int8.export_notes["quant_format"].startswith("LiteRT pt2e int8")
    assert int8.snr_db > 15
    refused = cells[("half", "litert")]
    assert refused.status == "failed" and refused.result.failure_kind == "unsupported"
