"""Transform recipes on real (small) zoo models: pruning shrinks, sparsity is exact,
distillation trains a smaller student, and no recipe touches its input module."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import RecipeError
from harness.models import build_model
from harness.models.base import ModelBundle
from harness.recipes import get_recipe_class
from harness.recipes.base import (
    Finetune,
    RecipeContext,
    RecipeParams,
    TransformInput,
    TransformRecipe,
    TransformStep,
)
from harness.recipes.distill import Distillation
from harness.recipes.prune_channels import ChannelPruning
from harness.recipes.prune_unstructured import UnstructuredPruning, prunable_weights
from harness.recipes.training import distillation_loss, train_classifier

CTX = RecipeContext(seed=0, log=lambda _msg: None)


@pytest.fixture(scope="module")
def cache_dir(zoo_cache: Path) -> Path:
    return zoo_cache


@pytest.fixture(scope="module")
def cnn(cache_dir: Path) -> ModelBundle:
    """A trained digits-cnn (default width, fewer epochs to keep the file fast): the
    teacher and the pruning subject."""
    return build_model("digits-cnn", {"epochs": 5}, cache_dir)


@pytest.fixture(scope="module")
def resnet() -> ModelBundle:
    return build_model("resnet18", {"width_mult": 0.25, "input_size": 32}, None)


@pytest.fixture(scope="module")
def mobilenet() -> ModelBundle:
    return build_model("mobilenet_v2", {"width_mult": 0.5, "input_size": 32}, None)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_unchanged(module: nn.Module, snap: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    assert state.keys() == snap.keys()
    for k, v in snap.items():
        assert state[k].shape == v.shape and torch.equal(state[k], v), k


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------- registry


def test_registry_names_resolve() -> None:
    for name, cls in [
        ("prune-channels", ChannelPruning),
        ("prune-unstructured", UnstructuredPruning),
        ("distill", Distillation),
    ]:
        assert get_recipe_class(name) is cls
        assert cls.name == name and cls.kind == "transform"
        cls.Params()  # every parameter has a default


@pytest.mark.parametrize(
    "cls, params",
    [
        (UnstructuredPruning, {"sparsity": 1.5}),
        (UnstructuredPruning, {"sparsity": 0}),
        (UnstructuredPruning, {"schedule_steps": 0}),
        (UnstructuredPruning, {"scope": "row"}),
        (ChannelPruning, {"ratio": 0}),
        (ChannelPruning, {"ratio": 1}),
        (ChannelPruning, {"importance": "l3"}),
        (ChannelPruning, {"finetune_epochs": -1}),
        (Distillation, {"temperature": -1}),
        (Distillation, {"alpha": 1.5}),
        (Distillation, {"epochs": -1}),
        (Distillation, {"lr": 0}),
        (Distillation, {"studnet_params": {}}),  # unknown key
    ],
)
def test_invalid_params_raise_validation_error(cls: type, params: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        cls.Params(**params)


# ------------------------------------------------------------------------------ training


def test_distillation_loss_formula() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    y = torch.randint(0, 10, (5,))
    assert torch.allclose(distillation_loss(s, t, y, 1.0, 4.0), F.cross_entropy(s, y))
    kl = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean")
    assert torch.allclose(distillation_loss(s, t, None, 0.0, 4.0), 16 * kl)
    mixed = 0.3 * F.cross_entropy(s, y) + 0.7 * 16 * kl
    assert torch.allclose(distillation_loss(s, t, y, 0.3, 4.0), mixed)
    assert distillation_loss(t, t, None, 0.0, 2.0).abs() < 1e-6


def test_train_loop_is_deterministic_and_keeps_the_global_rng() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    state = torch.random.get_rng_state()
    nets = []
    for _ in range(2):
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        nets.append(train_classifier(net, x, y, epochs=3, lr=1e-2, seed=5, batch_size=8))
    torch.set_rng_state(state)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
    assert not nets[0].training


def test_conv_net_trains_channels_last_and_comes_back_in_the_default_layout() -> None:
    # Channels-last is a training speed-up only: the exporters trace the module
    # afterwards and must see contiguous (NCHW) weights, and the caller's data is untouched.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 12, 12)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    before = [p.detach().clone() for p in net.parameters()]
    train_classifier(net, x, y, epochs=2, lr=1e-2, seed=0, batch_size=8)
    conv = net[0].weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert x.flags["C_CONTIGUOUS"]


def test_training_threads_keeps_tiny_models_on_one_thread() -> None:
    from harness.models.architectures import DigitsCNN, MobileNetV2
    from harness.recipes.training import training_threads

    assert training_threads(DigitsCNN(), torch.zeros(1, 1, 8, 8)) == 1
    big = training_threads(MobileNetV2(width_mult=0.5), torch.zeros(1, 3, 96, 96))
    assert big == torch.get_num_threads()


# ------------------------------------------------------------------------ channel pruning


def test_channel_pruning_digits_cnn(cnn: ModelBundle) -> None:
    snap = _snapshot(cnn.module)
    out = ChannelPruning(ChannelPruning.Params(ratio=0.5, finetune_epochs=2)).apply(cnn, CTX)
    _assert_unchanged(cnn.module, snap)
    pruned, notes = out.bundle.module, out.notes
    assert pruned is not cnn.module
    convs_before = [m for m in cnn.module.modules() if isinstance(m, nn.Conv2d)]
    convs_after = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    for a, b in zip(convs_before, convs_after, strict=True):
        assert b.out_channels == a.out_channels // 2  # half the channels of every conv
        assert b.weight.shape[0] < a.weight.shape[0]
    assert pruned.classifier.out_features == 10
    # Conv params scale with channels^2: about a quarter remains.
    assert 0.2 < notes["params_after"] / notes["params_before"] < 0.32
    assert notes["params_after"] == _params(pruned) == out.bundle.info["params_count"]
    assert notes["macs_after"] < notes["macs_before"]
    assert out.bundle.info["macs"] == notes["macs_after"]
    with torch.no_grad():
        assert pruned(cnn.example_input).shape == (1, 10)
    for key in ("accuracy_before", "accuracy_pruned", "accuracy_after"):
        assert 0 <= notes[key] <= 1
    assert notes["accuracy_after"] >= 0.9
    assert out.bundle.info["accuracy"] == notes["accuracy_after"]
    assert cnn.info["params_count"] == notes["params_before"]  # input info untouched


def test_channel_pruning_mlp(cache_dir: Path) -> None:
    mlp = build_model("mlp", {"hidden": [64, 32], "epochs": 5}, cache_dir)
    out = ChannelPruning(ChannelPruning.Params(ratio=0.5, finetune_epochs=0)).apply(mlp, CTX)
    linears = [m for m in out.bundle.module.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [32, 16, 10]
    assert linears[0].in_features == 64  # the input width is not prunable


def test_channel_pruning_resnet18_residuals(resnet: ModelBundle) -> None:
    snap = _snapshot(resnet.module)
    params = ChannelPruning.Params(ratio=0.5, finetune_epochs=1)
    out = ChannelPruning(params).apply(resnet, CTX)
    _assert_unchanged(resnet.module, snap)
    pruned = out.bundle.module
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        for blk_b, blk_a in zip(getattr(resnet.module, layer), getattr(pruned, layer), strict=True):
            assert blk_a.conv1.out_channels == blk_b.conv1.out_channels // 2
            # The residual add couples conv2's outputs to the block input: still equal.
            assert blk_a.conv2.out_channels == blk_a.bn2.num_features
    assert pruned.fc.out_features == 10
    ratio = out.notes["params_after"] / out.notes["params_before"]
    assert 0.2 < ratio < 0.32
    x = torch.from_numpy(resnet.data.eval_inputs[:4])
    with torch.no_grad():
        assert pruned(x).shape == (4, 10)
    # No labels: fine-tuning matched the original model's outputs instead.
    assert "self-distillation" in out.notes["finetune"]
    assert 0 <= out.notes["agreement_after"] <= 1


def test_channel_pruning_mobilenet_depthwise(mobilenet: ModelBundle) -> None:
    snap = _snapshot(mobilenet.module)
    out = ChannelPruning(ChannelPruning.Params(ratio=0.5, finetune_epochs=0)).apply(mobilenet, CTX)
    _assert_unchanged(mobilenet.module, snap)
    before = [m for m in mobilenet.module.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    after = [m for m in out.bundle.module.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(before) == len(after) > 0
    for a, b in zip(before, after, strict=True):
        # Depthwise stays depthwise: groups == in == out channels, all shrunk together.
        assert b.groups == b.in_channels == b.out_channels < a.out_channels
    assert out.notes["params_after"] < 0.35 * out.notes["params_before"]
    with torch.no_grad():
        assert out.bundle.module(mobilenet.example_input).shape == (1, 10)


def test_channel_pruning_transformer_prunes_feed_forward(cache_dir: Path) -> None:
    tr = build_model(
        "transformer", {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "epochs": 1}, cache_dir
    )
    # torch_pruning leaves d_model (shared by every residual add, norm and attention
    # projection) alone here; the feed-forward hidden width is what shrinks.
    out = ChannelPruning(ChannelPruning.Params(finetune_epochs=0)).apply(tr, CTX)
    layer = out.bundle.module.encoder.layers[0]
    assert layer.linear1.out_features == 16 and layer.linear2.in_features == 16
    with torch.no_grad():
        assert out.bundle.module(tr.example_input).shape == (1, 10)


# ------------------------------------------------------------------- unstructured pruning


def _zeros(module: nn.Module) -> tuple[int, int]:
    weights = [getattr(m, n) for _, m, n in prunable_weights(module)]
    return sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.3, 0.77])
def test_unstructured_sparsity_is_exact(cnn: ModelBundle, scope: str, sparsity: float) -> None:
    snap = _snapshot(cnn.module)
    params = UnstructuredPruning.Params(sparsity=sparsity, scope=scope)
    out = UnstructuredPruning(params).apply(cnn, CTX)
    _assert_unchanged(cnn.module, snap)
    zeros, total = _zeros(out.bundle.module)
    assert abs(zeros - sparsity * total) <= 1
    assert out.notes["zero_weights"] == zeros
    assert out.notes["achieved_sparsity"] == pytest.approx(zeros / total)
    assert out.notes["expected_speedup"] == "none on dense runtimes"
    assert "expect no speedup" in out.notes["note"]
    if scope == "layer":
        for s in out.notes["layer_sparsity"].values():
            assert abs(s - sparsity) < 0.01
    # Permanent: a plain dense module, no masks, no re-parametrisation hooks.
    module = out.bundle.module
    assert not any(n.endswith(("_orig", "_mask")) for n, _ in module.named_parameters())
    assert not any(n.endswith("_mask") for n, _ in module.named_buffers())
    assert all(not m._forward_pre_hooks for m in module.modules())
    assert out.bundle.info["params_count"] == cnn.info["params_count"]  # still dense


def test_unstructured_gradual_with_finetune_keeps_zeros(cnn: ModelBundle) -> None:
    params = UnstructuredPruning.Params(sparsity=0.8, schedule_steps=2, finetune_epochs=1)
    out = UnstructuredPruning(params).apply(cnn, CTX)
    zeros, total = _zeros(out.bundle.module)
    assert abs(zeros - 0.8 * total) <= 1  # fine-tuning did not regrow pruned weights
    assert out.notes["schedule"] == [0.4, 0.8]
    assert out.notes["accuracy_after"] > 0.9


def test_unstructured_on_transformer_attention(cache_dir: Path) -> None:
    tr = build_model(
        "transformer", {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "epochs": 1}, cache_dir
    )
    out = UnstructuredPruning(UnstructuredPruning.Params(sparsity=0.5)).apply(tr, CTX)
    assert any(k.endswith("in_proj_weight") for k in out.notes["layer_sparsity"])
    zeros, total = _zeros(out.bundle.module)
    assert abs(zeros - 0.5 * total) <= 1


# ---------------------------------------------------------------------------- distillation


def test_distillation_trains_a_smaller_student(cnn: ModelBundle) -> None:
    snap = _snapshot(cnn.module)
    params = Distillation.Params(student_params={"width": 4}, epochs=6)
    out = Distillation(params).apply(cnn, CTX)
    _assert_unchanged(cnn.module, snap)
    notes, student = out.notes, out.bundle.module
    assert _params(student) == notes["student_params_count"] < notes["teacher_params"]
    assert notes["param_ratio"] <= 0.25
    assert student.classifier.in_features == 16  # width 4 -> 4 * 4 pooled channels
    for key in ("teacher_accuracy", "student_distilled_accuracy", "student_alone_accuracy"):
        assert 0.0 <= notes[key] <= 1.0
    assert notes["teacher_accuracy"] == cnn.info["accuracy"]
    assert notes["student_distilled_accuracy"] > 0.5
    assert out.bundle.info["accuracy"] == notes["student_distilled_accuracy"]
    assert out.bundle.info["params_count"] == notes["student_params_count"]
    assert (notes["alpha"], notes["temperature"], notes["epochs"]) == (0.5, 4.0, 6)
    with torch.no_grad():
        assert student(cnn.example_input).shape == (1, 10)


def test_distillation_to_another_zoo_architecture(cnn: ModelBundle) -> None:
    # The MLP flattens its input, so it can learn from the CNN's 1x8x8 images.
    params = Distillation.Params(student_model="mlp", student_params={"hidden": 16}, epochs=1)
    out = Distillation(params).apply(cnn, CTX)
    assert out.notes["student_model"] == "mlp"
    assert out.notes["student_arch_params"]["hidden"] == [16]
    assert out.notes["student_params_count"] == 64 * 16 + 16 + 16 * 10 + 10
    # A student that cannot take the teacher's input is refused with the reason.
    bad = Distillation.Params(student_model="transformer", epochs=1)
    with pytest.raises(RecipeError, match="cannot take the teacher's input"):
        Distillation(bad).apply(cnn, CTX)


def test_distillation_needs_labels(resnet: ModelBundle) -> None:
    with pytest.raises(RecipeError, match="labelled train set"):
        Distillation(Distillation.Params(student_params={"width_mult": 0.125})).apply(resnet, CTX)


def test_distillation_rejects_bad_student_params(cnn: ModelBundle) -> None:
    with pytest.raises(RecipeError, match="student_params"):
        Distillation(Distillation.Params(student_params={"width": 0})).apply(cnn, CTX)


# ------------------------------------------------------------------- the recipe template


class _DropBiasParams(RecipeParams):
    finetune_epochs: int = 1


class _DropClassifierBias(TransformRecipe[_DropBiasParams]):
    """A toy recipe that implements only its step: the classifier loses its bias."""

    name = "drop-classifier-bias"
    Params: ClassVar = _DropBiasParams
    records_size = True

    def __init__(self, params: _DropBiasParams) -> None:
        super().__init__(params)
        self.seen: dict[str, object] = {}

    def step(self, work: TransformInput) -> TransformStep:
        module = work.module
        self.seen = {"threads": torch.get_num_threads(), "copy": module is not work.bundle.module}
        old = module.classifier
        module.classifier = nn.Linear(old.in_features, old.out_features, bias=False)
        with torch.no_grad():
            module.classifier.weight.copy_(old.weight)
        return TransformStep(
            module,
            {"dropped": "classifier.bias"},
            finetune=Finetune(stage="unbiased", epochs=self.params.finetune_epochs, lr=1e-3),
            info={"toy": True},
            closing_notes={"last": 1},
        )


def test_a_recipe_implementing_only_its_step_gets_the_template(cnn: ModelBundle) -> None:
    snap = _snapshot(cnn.module)
    threads = torch.get_num_threads()
    recipe = _DropClassifierBias(_DropBiasParams())
    out = recipe.apply(cnn, CTX)
    _assert_unchanged(cnn.module, snap)
    assert recipe.seen == {"threads": 1, "copy": True}  # a tiny model trains on one thread
    assert torch.get_num_threads() == threads
    notes = out.notes
    assert list(notes) == [
        "dropped",
        "accuracy_before",
        "accuracy_unbiased",
        "finetune",
        "finetune_epochs",
        "accuracy_after",
        "params_before",
        "params_after",
        "macs_before",
        "macs_after",
        "params_reduction",
        "macs_reduction",
        "last",
    ]
    assert notes["accuracy_before"] == cnn.info["accuracy"]
    assert notes["finetune"] == "hard labels (train split)" and notes["finetune_epochs"] == 1
    assert notes["params_before"] == cnn.info["params_count"]
    assert notes["params_after"] == notes["params_before"] - 10 == _params(out.bundle.module)
    assert notes["params_reduction"] == round(10 / notes["params_before"], 4)
    info = out.bundle.info
    assert info["toy"] is True
    assert "weights" in cnn.info and "weights" not in info  # the parent's, not the child's
    assert info["params_count"] == notes["params_after"]
    assert info["accuracy"] == notes["accuracy_after"]


def test_a_step_without_finetune_or_size_gets_only_its_notes(cnn: ModelBundle) -> None:
    class Identity(TransformRecipe[_DropBiasParams]):
        name = "identity"
        Params: ClassVar = _DropBiasParams

        def step(self, work: TransformInput) -> TransformStep:
            return TransformStep(work.module, {"did": "nothing"})

    out = Identity(_DropBiasParams()).apply(cnn, CTX)
    assert out.notes == {"did": "nothing"}
    assert out.bundle.module is not cnn.module
    assert out.bundle.info["params_count"] == cnn.info["params_count"]
