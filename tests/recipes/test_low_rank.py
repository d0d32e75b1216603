"""Low-rank factorization: the SVD maths (ranks, exactness at full rank, energy rule),
the recipe on small models (what it factorizes, skips and records) and that the result
still exports to both runtimes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
from torch import nn

from harness.errors import RecipeError
from harness.models import build_model
from harness.models.base import ModelBundle, TaskData
from harness.recipes import get_recipe_class
from harness.recipes.base import RecipeContext
from harness.recipes.config import validate_step
from harness.recipes.low_rank import (
    LowRankFactorization,
    LowRankParams,
    factorize_conv2d,
    factorize_linear,
    rank_for_energy,
)

CTX = RecipeContext(seed=0, log=lambda _msg: None)


def _matrix_with_singular_values(values: list[float], out: int, inp: int) -> torch.Tensor:
    """A random ``out x inp`` matrix whose singular values are exactly ``values``."""
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(out, len(values), generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(inp, len(values), generator=gen, dtype=torch.float64))
    return (u * torch.tensor(values, dtype=torch.float64)) @ v.T


class SmallNet(nn.Module):
    """A strided/dilated conv worth factorizing, a depthwise conv that must be skipped,
    a tiny first conv below min_features, and two linears."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)  # in*k*k = 27, out = 8: too small
        self.conv = nn.Conv2d(8, 32, 3, stride=2, padding=2, dilation=2)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(128, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw(torch.relu(self.conv(torch.relu(self.stem(x))))))
        return self.head(torch.relu(self.fc(torch.flatten(self.pool(x), 1))))


def _bundle(module: nn.Module, shape: tuple[int, ...], name: str = "small") -> ModelBundle:
    rng = np.random.default_rng(0)
    data = TaskData(
        calib_inputs=rng.standard_normal((32, *shape[1:]), dtype=np.float32),
        eval_inputs=rng.standard_normal((16, *shape[1:]), dtype=np.float32),
    )
    return ModelBundle(
        name=name,
        module=module.eval(),
        example_input=torch.from_numpy(data.eval_inputs[:1].copy()),
        data=data,
        identity={"n": name},
    )


@pytest.fixture(scope="module")
def small() -> ModelBundle:
    torch.manual_seed(0)
    return _bundle(SmallNet(), (1, 3, 16, 16))


# ---------------------------------------------------------------------------- the maths


def test_factorize_linear_full_rank_is_exact_and_low_rank_has_rank_r() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(40, 24)
    x = torch.randn(5, 40)
    full = factorize_linear(layer, 24)
    torch.testing.assert_close(full(x), layer(x), atol=1e-5, rtol=1e-5)

    low = factorize_linear(layer, 6)
    first, second = low[0], low[1]
    assert (first.in_features, first.out_features, first.bias) == (40, 6, None)
    assert (second.in_features, second.out_features) == (6, 24)
    assert torch.equal(second.bias, layer.bias)
    product = second.weight @ first.weight
    assert torch.linalg.matrix_rank(product) == 6
    # The best rank-6 approximation (Eckart-Young): error = the dropped singular values.
    s = torch.linalg.svdvals(layer.weight.detach().double())
    err = torch.linalg.norm((product - layer.weight).double())
    assert err.item() == pytest.approx(s[6:].pow(2).sum().sqrt().item(), rel=1e-4)


def test_factorize_conv_keeps_geometry() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 20, 3, stride=2, padding=2, dilation=2)
    x = torch.randn(2, 6, 11, 11)
    full = factorize_conv2d(conv, 20)
    torch.testing.assert_close(full(x), conv(x), atol=1e-5, rtol=1e-5)

    low = factorize_conv2d(conv, 5)
    first, second = low[0], low[1]
    assert first.weight.shape == (5, 6, 3, 3) and first.bias is None
    assert (first.stride, first.padding, first.dilation) == ((2, 2), (2, 2), (2, 2))
    assert second.weight.shape == (20, 5, 1, 1) and second.kernel_size == (1, 1)
    assert low(x).shape == conv(x).shape
    effective = second.weight.reshape(20, 5) @ first.weight.reshape(5, -1)
    assert torch.linalg.matrix_rank(effective) == 5
    with pytest.raises(ValueError, match="groups=1"):
        factorize_conv2d(nn.Conv2d(4, 4, 3, groups=4), 2)


@pytest.mark.parametrize(
    ("energy", "rank"),
    # squared singular values 16, 9, 4, 1 (total 30): cumulative 16, 25, 29, 30
    [(0.5, 1), (16 / 30, 1), (0.54, 2), (25 / 30, 2), (0.84, 3), (29 / 30, 3), (0.99, 4), (1, 4)],
)
def test_energy_rule_on_known_singular_values(energy: float, rank: int) -> None:
    w = _matrix_with_singular_values([4.0, 3.0, 2.0, 1.0], 8, 6)
    assert rank_for_energy(torch.linalg.svdvals(w), energy) == rank


def test_recipe_energy_picks_the_rank_of_a_constructed_layer() -> None:
    # One 32x32 layer with 2 large singular values and 30 tiny ones: 99% of the energy
    # sits in rank 2.
    layer = nn.Linear(32, 32)
    values = [10.0, 8.0] + [0.05] * 30
    with torch.no_grad():
        layer.weight.copy_(_matrix_with_singular_values(values, 32, 32).float())
    bundle = _bundle(nn.Sequential(layer, nn.ReLU(), nn.Linear(32, 4)), (1, 32), "known")
    out = LowRankFactorization(LowRankParams(energy=0.99)).apply(bundle, CTX)
    assert out.notes["ranks"]["0"]["rank"] == 2
    assert out.notes["ranks"]["0"]["energy_kept"] >= 0.99
    assert "2" in out.notes["skipped"]  # the 32->4 head is below min_features


# ---------------------------------------------------------------------------- the recipe


def test_recipe_factorizes_what_pays_and_skips_the_rest(small: ModelBundle) -> None:
    before = {k: v.clone() for k, v in small.module.state_dict().items()}
    out = LowRankFactorization(LowRankParams(rank_ratio=0.25)).apply(small, CTX)
    after = small.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # input untouched

    module, notes = out.bundle.module, out.notes
    assert isinstance(module.conv, nn.Sequential) and isinstance(module.fc, nn.Sequential)
    assert module.conv[0].out_channels == 8  # ceil(0.25 * min(32, 72))
    assert module.conv[0].stride == (2, 2) and module.conv[0].dilation == (2, 2)
    assert module.fc[0].out_features == 16  # ceil(0.25 * 64)
    assert isinstance(module.stem, nn.Conv2d) and isinstance(module.dw, nn.Conv2d)
    assert notes["skipped"]["dw"].startswith("grouped conv")
    assert "min_features" in notes["skipped"]["stem"]
    assert notes["layers_factorized"] == 2
    assert notes["ranks"]["fc"] == {
        "rank": 16,
        "full_rank": 64,
        "energy_kept": notes["ranks"]["fc"]["energy_kept"],
        "params": [128 * 64, 16 * (128 + 64)],
    }
    params = sum(p.numel() for p in module.parameters())
    assert notes["params_after"] == params == out.bundle.info["params_count"]
    assert notes["params_after"] < notes["params_before"]
    assert notes["macs_after"] < notes["macs_before"]
    assert 0 <= notes["agreement_after"] <= 1  # no labels: agreement with the original
    with torch.no_grad():
        assert module(small.example_input).shape == (1, 10)


def test_recipe_layers_filter(small: ModelBundle) -> None:
    only_linear = LowRankFactorization(LowRankParams(rank_ratio=0.25, layers="linear"))
    out = only_linear.apply(small, CTX)
    assert set(out.notes["ranks"]) == {"fc"}
    assert isinstance(out.bundle.module.conv, nn.Conv2d)


def test_recipe_refuses_to_do_nothing(small: ModelBundle) -> None:
    # At full rank two layers always cost more than one: nothing is worth factorizing.
    with pytest.raises(RecipeError, match="no layer of 'small' was factorized"):
        LowRankFactorization(LowRankParams(rank_ratio=1.0)).apply(small, CTX)


def test_transformer_layers_are_left_alone() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 1), nn.Flatten(), nn.Linear(8 * 32, 64))
    bundle = _bundle(model.eval(), (1, 8, 32), "enc")
    out = LowRankFactorization(LowRankParams(rank_ratio=0.25)).apply(bundle, CTX)
    assert set(out.notes["ranks"]) == {"2"}
    assert any("reads its weight directly" in r for r in out.notes["skipped"].values())
    with torch.no_grad():
        out.bundle.module(bundle.example_input)  # the encoder's fast path still works


def test_digits_mlp_with_finetune(tmp_path: Path) -> None:
    mlp = build_model("mlp", {"hidden": [128, 64], "epochs": 5}, tmp_path)
    params = LowRankParams(rank_ratio=0.5, finetune_epochs=1)
    out = LowRankFactorization(params).apply(mlp, CTX)
    notes = out.notes
    assert notes["ranks"]["body.0"]["rank"] == 32  # 64 -> 128: half of rank 64
    assert notes["ranks"]["body.2"]["rank"] == 32  # 128 -> 64
    for key in ("accuracy_before", "accuracy_factorized", "accuracy_after"):
        assert 0 <= notes[key] <= 1
    assert notes["finetune"] == "hard labels (train split)"
    assert notes["accuracy_after"] > 0.8
    assert out.bundle.info["accuracy"] == notes["accuracy_after"]


# ---------------------------------------------------------------------------- validation


def test_registered_under_its_name() -> None:
    assert get_recipe_class("low-rank") is LowRankFactorization
    assert LowRankFactorization.kind == "transform"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"rank_ratio": 0.5, "energy": 0.9},
        {"rank_ratio": 0},
        {"rank_ratio": 1.5},
        {"energy": 0},
        {"energy": 1.01},
        {"rank_ratio": 0.5, "layers": "attention"},
        {"rank_ratio": 0.5, "min_features": 0},
        {"rank_ratio": 0.5, "finetune_epochs": -1},
        {"rank_ratio": 0.5, "rank": 4},
    ],
)
def test_invalid_params(params: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        LowRankParams(**params)


def test_suite_error_names_the_key() -> None:
    with pytest.raises(Exception, match=r"key 'variants\.lr\[0\]': expected exactly one of"):
        validate_step({"recipe": "low-rank"}, "suite.toml", "variants.lr[0]")


# ---------------------------------------------------------------------------- export


@pytest.mark.slow
def test_factorized_model_exports_to_both_runtimes(small: ModelBundle, tmp_path: Path) -> None:
    from harness.export import get_exporter
    from harness.target import TargetInfo

    out = LowRankFactorization(LowRankParams(rank_ratio=0.25)).apply(small, CTX)
    bundle = out.bundle
    target = TargetInfo(arch="x86_64", cpu_features=frozenset({"avx2"}))
    x = bundle.data.eval_inputs[:1]
    with torch.no_grad():
        ref = bundle.module(torch.from_numpy(x)).numpy()

    onnx_result = get_exporter("onnxruntime").export(bundle, tmp_path / "m.onnx", None, target)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_result.path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], ref, atol=1e-4, rtol=1e-4)

    pte_result = get_exporter("executorch").export(bundle, tmp_path / "m.pte", None, target)
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(pte_result.path)).load_method("forward")
    got = method.execute([torch.from_numpy(x.copy())])[0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    # Every conv (the factorized pairs included) runs in XNNPACK; only the 2x2 adaptive
    # pool, which XNNPACK does not take, stays outside.
    assert not any("conv" in op for op in pte_result.notes["non_delegated_by_op"])
