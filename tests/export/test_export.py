"""Exporters against real onnxruntime / ExecuTorch sessions (no mocks).

The models are tiny and built here; each artifact is exported once per module and
shared by the tests that inspect it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.errors import ExportError, UnsupportedError
from harness.export import get_exporter
from harness.export.base import ExportResult
from harness.models.base import ModelBundle, TaskData
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo

X86_VNNI = TargetInfo(arch="x86_64", cpu_features=frozenset({"avx2", "avx512_vnni"}), cores=2)
X86_AVX2 = TargetInfo(arch="x86_64", cpu_features=frozenset({"avx2", "fma"}), cores=2)
ARM = TargetInfo(arch="aarch64")
ARM_FP16 = TargetInfo(arch="aarch64", cpu_features=frozenset({"asimd", "asimdhp", "fphp"}))
STATIC = QuantRequest(mode="static", calibration_samples=16)


# ------------------------------------------------------------------------------ models


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def tiny_mlp() -> nn.Module:
    # ~85k weights, so int8 is clearly under half the fp32 file.
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


class DataDependent(nn.Module):
    """Python control flow on a tensor value: not capturable by torch.export."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.linear(x)
        return -self.linear(x)


def make_bundle(name: str, module: nn.Module, shape: tuple[int, ...], seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    for m in module.modules():  # non-trivial BN statistics, so folding is exercised
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    rng = np.random.default_rng(seed)
    data = TaskData(
        calib_inputs=rng.standard_normal((32, *shape[1:]), dtype=np.float32),
        eval_inputs=rng.standard_normal((16, *shape[1:]), dtype=np.float32),
    )
    example = torch.from_numpy(data.eval_inputs[:1].copy())
    return ModelBundle(
        name=name, module=module.eval(), example_input=example, data=data, identity={"n": name}
    )


@pytest.fixture(scope="module")
def cnn() -> ModelBundle:
    torch.manual_seed(0)
    return make_bundle("tiny_cnn", TinyCNN(), (1, 3, 16, 16))


@pytest.fixture(scope="module")
def mlp() -> ModelBundle:
    torch.manual_seed(1)
    return make_bundle("tiny_mlp", tiny_mlp(), (1, 64), seed=1)


# ------------------------------------------------------------------------------ runners


def run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    return np.concatenate([session.run(None, {"input": x[None]})[0] for x in inputs])


def run_pte(path: Path, inputs: np.ndarray) -> np.ndarray:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    outs = [method.execute([torch.from_numpy(x[None].copy())])[0] for x in inputs]
    return torch.cat(outs).numpy()


def run_torch(bundle: ModelBundle, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return bundle.module(torch.from_numpy(inputs)).numpy()


RUNNERS = {"onnxruntime": run_onnx, "executorch": run_pte}


def export(
    bundle: ModelBundle,
    runtime: str,
    directory: Path,
    quant: QuantRequest | None = None,
    target: TargetInfo = X86_VNNI,
    tag: str = "",
) -> ExportResult:
    exporter = get_exporter(runtime)
    mode = quant.mode if quant else "fp32"
    out = directory / f"{bundle.name}-{mode}{tag}{exporter.suffix}"
    result = exporter.export(bundle, out, quant, target)
    assert result.path == out and out.is_file()
    return result


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


# ------------------------------------------------------------------------------ fp32


def test_onnx_fp32_matches_torch(cnn: ModelBundle, artifacts: Path) -> None:
    before = {k: v.clone() for k, v in cnn.module.state_dict().items()}
    result = export(cnn, "onnxruntime", artifacts)
    got = run_onnx(result.path, cnn.data.eval_inputs)
    np.testing.assert_allclose(got, run_torch(cnn, cnn.data.eval_inputs), atol=1e-4, rtol=1e-4)
    assert result.notes["quant_format"] == "fp32"
    assert 0 < result.notes["gzip_bytes"] < result.path.stat().st_size
    # torch.onnx's per-node debug metadata is dropped: sizes compare weights and graph only
    assert result.notes["debug_metadata_stripped"] > 0
    import onnx

    assert not any(n.metadata_props for n in onnx.load(str(result.path)).graph.node)
    # one self-contained file, no external data or scratch files next to it
    assert sorted(p.name for p in artifacts.iterdir()) == [result.path.name]
    # the exporter worked on a copy
    assert not cnn.module.training
    after = cnn.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_pte_fp32_matches_torch(cnn: ModelBundle, tmp_path: Path) -> None:
    result = export(cnn, "executorch", tmp_path)
    got = run_pte(result.path, cnn.data.eval_inputs)
    np.testing.assert_allclose(got, run_torch(cnn, cnn.data.eval_inputs), atol=1e-4, rtol=1e-4)
    assert result.notes["non_delegated_ops"] == 0
    assert result.notes["xnnpack_delegated_ops"] > 0
    assert 0 < result.notes["gzip_bytes"] < result.path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == [result.path.name]


# ------------------------------------------------------------------------------ int8


@pytest.mark.parametrize(
    ("target", "pair", "reason"),
    [
        (X86_VNNI, "QDQ U8S8 per-channel", "VNNI"),
        (X86_AVX2, "QDQ U8S8 per-channel reduce-range", "without VNNI"),
        (ARM, "QDQ S8S8 per-channel", "ARM"),
    ],
    ids=["x86-vnni", "x86-avx2", "arm"],
)
def test_onnx_static_int8(
    mlp: ModelBundle, tmp_path: Path, target: TargetInfo, pair: str, reason: str
) -> None:
    fp32 = export(mlp, "onnxruntime", tmp_path)
    int8 = export(mlp, "onnxruntime", tmp_path, STATIC, target)
    assert int8.notes["quant_format"] == pair
    assert reason in int8.notes["quant_reason"]
    assert int8.notes["calibration_samples"] == 16
    assert int8.path.stat().st_size < 0.5 * fp32.path.stat().st_size
    assert int8.notes["gzip_bytes"] < 0.5 * fp32.notes["gzip_bytes"]
    ref = run_onnx(fp32.path, mlp.data.eval_inputs)
    assert len(set(ref.argmax(1))) >= 3  # the agreement check below means something
    assert agreement(run_onnx(int8.path, mlp.data.eval_inputs), ref) >= 0.75


def test_onnx_static_activation_dtype_forced(mlp: ModelBundle, tmp_path: Path) -> None:
    forced = QuantRequest(mode="static", calibration_samples=8, activation_dtype="int8")
    result = export(mlp, "onnxruntime", tmp_path, forced, X86_VNNI)
    assert result.notes["quant_format"] == "QDQ S8S8 per-channel"
    assert "forced" in result.notes["quant_reason"]
    assert result.notes["calibration_samples"] == 8


def test_onnx_static_int8_cnn(cnn: ModelBundle, tmp_path: Path) -> None:
    int8 = export(cnn, "onnxruntime", tmp_path, STATIC, X86_VNNI)
    got = run_onnx(int8.path, cnn.data.eval_inputs)
    ref = run_torch(cnn, cnn.data.eval_inputs)
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()
    assert int8.notes["int8_weights"] >= 3  # both convs and the linear


def test_onnx_dynamic_int8(mlp: ModelBundle, tmp_path: Path) -> None:
    fp32 = export(mlp, "onnxruntime", tmp_path)
    dyn = export(mlp, "onnxruntime", tmp_path, QuantRequest(mode="dynamic"))
    assert "dynamic int8" in dyn.notes["quant_format"]
    assert dyn.path.stat().st_size < 0.5 * fp32.path.stat().st_size
    ref = run_torch(mlp, mlp.data.eval_inputs)
    assert agreement(run_onnx(dyn.path, mlp.data.eval_inputs), ref) >= 0.75


@pytest.mark.slow
def test_pte_dynamic_int8(mlp: ModelBundle, tmp_path: Path) -> None:
    fp32 = export(mlp, "executorch", tmp_path)
    dyn = export(mlp, "executorch", tmp_path, QuantRequest(mode="dynamic"))
    assert "dynamic" in dyn.notes["quant_format"]
    assert dyn.path.stat().st_size < 0.5 * fp32.path.stat().st_size
    ref = run_torch(mlp, mlp.data.eval_inputs)
    assert agreement(run_pte(dyn.path, mlp.data.eval_inputs), ref) >= 0.75


@pytest.mark.slow
def test_pte_static_int8(mlp: ModelBundle, tmp_path: Path) -> None:
    fp32 = export(mlp, "executorch", tmp_path)
    int8 = export(mlp, "executorch", tmp_path, STATIC)
    assert int8.notes["quant_format"] == "XNNPACK pt2e int8 symmetric per-channel"
    assert int8.notes["calibration_samples"] == 16
    assert int8.notes["non_delegated_ops"] == 0
    assert int8.path.stat().st_size < 0.5 * fp32.path.stat().st_size
    ref = run_torch(mlp, mlp.data.eval_inputs)
    assert len(set(ref.argmax(1))) >= 3
    assert agreement(run_pte(int8.path, mlp.data.eval_inputs), ref) >= 0.75


@pytest.mark.slow
def test_onnx_dynamic_int8_transformer_with_shared_weights(tmp_path: Path) -> None:
    # Freshly built encoder layers are deep copies with identical weights, which the ONNX
    # exporter deduplicates; quantize_dynamic used to corrupt such shared Gemm weights.
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    bundle = make_bundle("encoder", nn.TransformerEncoder(layer, 2), (1, 10, 32))
    fp32 = export(bundle, "onnxruntime", tmp_path)
    inputs = bundle.data.eval_inputs[:4]
    ref = run_torch(bundle, inputs)
    np.testing.assert_allclose(run_onnx(fp32.path, inputs), ref, atol=1e-4, rtol=1e-4)
    dyn = export(bundle, "onnxruntime", tmp_path, QuantRequest(mode="dynamic"))
    assert dyn.notes.get("unshared_gemm_weights", 0) >= 1
    assert np.abs(run_onnx(dyn.path, inputs) - ref).max() < 0.2


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("runtime", ["onnxruntime", "executorch"])
def test_fp16_on_x86_is_unsupported(mlp: ModelBundle, tmp_path: Path, runtime: str) -> None:
    exporter = get_exporter(runtime)
    out = tmp_path / f"m{exporter.suffix}"
    with pytest.raises(UnsupportedError, match="fp16"):
        exporter.export(mlp, out, QuantRequest(mode="fp16"), X86_VNNI)
    assert list(tmp_path.iterdir()) == []


def test_onnx_fp16_message_names_missing_kernels(mlp: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="no fp16 kernels for Conv/Gemm/MatMul on x86"):
        get_exporter("onnxruntime").export(
            mlp, tmp_path / "m.onnx", QuantRequest(mode="fp16"), X86_VNNI
        )


def test_pte_fp16_message_names_missing_kernels(mlp: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="XNNPACK has no native fp16 kernels for this CPU"):
        get_exporter("executorch").export(
            mlp, tmp_path / "m.pte", QuantRequest(mode="fp16"), X86_VNNI
        )


def test_pte_refuses_uint8_activations(mlp: ModelBundle, tmp_path: Path) -> None:
    forced = QuantRequest(mode="static", activation_dtype="uint8")
    with pytest.raises(UnsupportedError, match="uint8"):
        get_exporter("executorch").export(mlp, tmp_path / "m.pte", forced, ARM)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_pte_fp16_on_arm_with_fp16(cnn: ModelBundle, tmp_path: Path) -> None:
    # XNNPACK runs the fp16 program on this host too, so its output can be checked.
    result = export(cnn, "executorch", tmp_path, QuantRequest(mode="fp16"), ARM_FP16)
    got = run_pte(result.path, cnn.data.eval_inputs[:4])
    np.testing.assert_allclose(got, run_torch(cnn, cnn.data.eval_inputs[:4]), atol=2e-2)


@pytest.mark.parametrize(
    ("runtime", "prefix"),
    [("onnxruntime", "torch.onnx.export failed: "), ("executorch", "torch.export.export failed: ")],
)
def test_unexportable_module_raises_export_error(tmp_path: Path, runtime: str, prefix: str) -> None:
    bundle = make_bundle("data_dependent", DataDependent(), (1, 64))
    exporter = get_exporter(runtime)
    out = tmp_path / f"bad{exporter.suffix}"
    with pytest.raises(ExportError) as info:
        exporter.export(bundle, out, None, X86_VNNI)
    message = str(info.value)
    assert message.startswith(prefix)
    assert "data-dependent" in message  # the underlying torch.export message
    assert "\x1b[" not in message and len(message) <= 2100
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no scratch directory left either


def test_versions() -> None:
    onnx_versions = get_exporter("onnxruntime").versions()
    assert set(onnx_versions) == {"onnxruntime", "onnx", "torch"}
    et_versions = get_exporter("executorch").versions()
    assert set(et_versions) == {"executorch", "torch", "torchao"}
    assert all(isinstance(v, str) and v for v in (*onnx_versions.values(), *et_versions.values()))
