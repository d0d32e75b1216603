"""Quantization-aware training: the int8-qat recipe, the shared pt2e QAT loop and both
exporters' QAT artifacts, scored in the real runtimes on the held-out digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
from torch import nn

from harness.errors import UnsupportedError
from harness.export import get_exporter
from harness.export.executorch import qat_pt2e
from harness.models import build_model
from harness.models.base import ModelBundle, TaskData
from harness.recipes import get_recipe_class
from harness.recipes.base import QuantRequest
from harness.recipes.quantize import Int8Qat
from harness.target import TargetInfo

X86_VNNI = TargetInfo(arch="x86_64", cpu_features=frozenset({"avx2", "avx512_vnni"}), cores=2)
X86_AVX2 = TargetInfo(arch="x86_64", cpu_features=frozenset({"avx2", "fma"}), cores=2)
ARM = TargetInfo(arch="aarch64")
QAT = QuantRequest(mode="qat", qat_epochs=1, qat_lr=1e-4, calibration_samples=32)


@pytest.fixture(scope="module")
def cnn(zoo_cache: Path) -> ModelBundle:
    return build_model("digits-cnn", {"epochs": 5}, zoo_cache)


def _unlabelled_mlp() -> ModelBundle:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    rng = np.random.default_rng(0)
    data = TaskData(
        calib_inputs=rng.standard_normal((64, 64), dtype=np.float32),
        eval_inputs=rng.standard_normal((32, 64), dtype=np.float32),
    )
    example = torch.from_numpy(data.eval_inputs[:1].copy())
    return ModelBundle("mlp", module, example, data, identity={"n": "mlp"})


def accuracy(path: Path, bundle: ModelBundle) -> float:
    inputs, labels = bundle.data.eval_inputs, bundle.data.eval_labels
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        preds = [session.run(None, {"input": x[None]})[0].argmax() for x in inputs]
    else:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(path)).load_method("forward")
        preds = [method.execute([torch.from_numpy(x[None].copy())])[0].argmax() for x in inputs]
    return float(np.mean(np.array(preds) == labels))


# ------------------------------------------------------------------------------- recipe


def test_recipe_request() -> None:
    assert get_recipe_class("int8-qat") is Int8Qat and Int8Qat.kind == "quantize"
    request = Int8Qat(Int8Qat.Params()).request()
    assert request == QuantRequest(
        mode="qat", per_channel=True, calibration_samples=128, qat_epochs=2, qat_lr=1e-4
    )
    custom = Int8Qat(Int8Qat.Params(epochs=5, lr=3e-4, per_channel=False)).request()
    assert (custom.qat_epochs, custom.qat_lr, custom.per_channel) == (5, 3e-4, False)


@pytest.mark.parametrize(
    "params", [{"epochs": 0}, {"lr": 0}, {"calibration_samples": 0}, {"epoch": 2}]
)
def test_recipe_invalid_params(params: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        Int8Qat.Params(**params)


# ------------------------------------------------------------------------ the QAT loop


def test_qat_without_labels_matches_the_fp32_outputs() -> None:
    bundle = _unlabelled_mlp()
    result = qat_pt2e(bundle, QuantRequest(mode="qat", qat_epochs=2, calibration_samples=16))
    notes = result.notes
    assert "self-distillation" in notes["qat_training"]
    assert [h["epoch"] for h in notes["qat_history"]] == [1, 2]
    assert all("agreement" in h and h["loss"] >= 0 for h in notes["qat_history"])
    assert notes["qat_batch"] == 32 and notes["calibration_samples"] == 16
    assert "qat_batchnorm" not in notes  # nothing to fold in an MLP
    x = torch.from_numpy(bundle.data.eval_inputs)
    with torch.no_grad():
        ref, got = bundle.module(x), result.module(x)
    assert float((ref.argmax(1) == got.argmax(1)).float().mean()) >= 0.8


class PinnedBatch(nn.Module):
    """Single-sample code (flattens the whole input): only exportable at batch 1."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten()[None])


def test_qat_falls_back_to_one_sample_at_a_time() -> None:
    bundle = _unlabelled_mlp()
    bundle.module = PinnedBatch().eval()
    result = qat_pt2e(bundle, QuantRequest(mode="qat", qat_epochs=1, calibration_samples=4))
    assert result.notes["qat_batch"].startswith("1 sample at a time")
    assert len(result.notes["qat_history"]) == 1


def test_pte_qat_refuses_uint8_activations(tmp_path: Path) -> None:
    forced = QuantRequest(mode="qat", activation_dtype="uint8")
    with pytest.raises(UnsupportedError, match="uint8"):
        get_exporter("executorch").export(_unlabelled_mlp(), tmp_path / "m.pte", forced, ARM)


# ---------------------------------------------------------------- exporters on digits


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "executorch"])
def test_qat_on_digits(cnn: ModelBundle, tmp_path: Path, runtime: str) -> None:
    exporter = get_exporter(runtime)
    result = exporter.export(cnn, tmp_path / f"qat{exporter.suffix}", QAT, X86_VNNI)
    notes = result.notes
    # int8 weights: well under half of the fp32 weights alone
    assert result.path.stat().st_size < 0.5 * 4 * cnn.info["params_count"]
    assert 0 < notes["gzip_bytes"] < result.path.stat().st_size
    assert notes["qat_training"] == "hard labels (train split)"
    assert len(notes["qat_history"]) == 1 and "accuracy" in notes["qat_history"][0]
    assert notes["qat_batchnorm"].startswith("3 of 3 folded")
    assert "qat_method" in notes
    if runtime == "onnxruntime":
        assert notes["quant_format"] == "QAT QDQ U8S8 per-channel"
        assert "VNNI" in notes["quant_reason"] and notes["int8_weights"] >= 4
    else:
        assert notes["quant_format"] == "XNNPACK pt2e QAT int8 symmetric per-channel"
        assert notes["non_delegated_ops"] == 0
    assert accuracy(result.path, cnn) >= cnn.info["accuracy"] - 0.03


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "label"),
    [(ARM, "QAT QDQ S8S8 per-channel"), (X86_AVX2, "QAT QDQ U8S8 per-channel reduce-range")],
    ids=["arm", "x86-avx2"],
)
def test_onnx_qat_trains_in_the_target_format(
    tmp_path: Path, target: TargetInfo, label: str
) -> None:
    bundle = _unlabelled_mlp()
    result = get_exporter("onnxruntime").export(bundle, tmp_path / "m.onnx", QAT, target)
    assert result.notes["quant_format"] == label
    import onnx

    model = onnx.load(str(result.path))
    inits = {i.name: i for i in model.graph.initializer}
    weights = [
        onnx.numpy_helper.to_array(inits[n.input[0]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    ]
    assert weights and all(w.dtype == np.int8 for w in weights)
    if "reduce-range" in label:  # 7-bit weights, as onnxruntime's AVX2 kernels need
        assert max(int(np.abs(w).max()) for w in weights) <= 64
