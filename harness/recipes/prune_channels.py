"""Structured (channel) pruning with torch_pruning, then optional fine-tuning.

Unlike unstructured sparsity, removing whole channels shrinks the dense tensors, so every
runtime gets faster without sparse kernels. torch_pruning traces the model into a
dependency graph, so channels coupled by a residual add, a depthwise convolution
(groups == channels) or a BatchNorm are removed together and the pruned model stays
consistent. The classifier's outputs are never pruned: the class count must not change.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from harness.errors import RecipeError
from harness.models.architectures import count_params, model_stats
from harness.models.base import ModelBundle
from harness.models.inputs import call_module
from harness.recipes.base import RecipeContext, RecipeParams, TransformOutcome, TransformRecipe
from harness.recipes.training import (
    derive_bundle,
    finetune_with_quality,
    predict_logits,
    torch_threads,
    training_threads,
)

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class ChannelPruningParams(RecipeParams):
    ratio: float = Field(
        0.5, gt=0, lt=1, description="fraction of channels removed from each prunable group"
    )
    importance: Literal["l1", "l2"] = Field(
        "l1", description="channel score: L1 or L2 norm of the coupled weights"
    )
    global_pruning: bool = Field(
        False, description="rank channels across layers instead of the same ratio per layer"
    )
    finetune_epochs: int = Field(5, ge=0, le=1000, description="epochs of fine-tuning after")
    lr: float = Field(1e-3, gt=0, le=1, description="fine-tuning learning rate (Adam)")
    round_to: int | None = Field(
        None, ge=1, le=256, description="keep channel counts multiples of this (SIMD width)"
    )


def _output_width(module: nn.Module, example: tuple[torch.Tensor, ...]) -> int | None:
    """The class count: the (first) output's last axis (classes are last everywhere)."""
    with torch.no_grad():
        out = call_module(module, example)
    return int(out.shape[-1]) if out.dim() >= 2 else None


def _ignored_layers(module: nn.Module, num_classes: int | None) -> list[nn.Module]:
    """The final classifier and every layer producing ``num_classes`` outputs."""
    layers = [m for m in module.modules() if isinstance(m, _PRUNABLE)]
    ignored = [layers[-1]] if layers else []
    for m in layers:
        out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        if num_classes is not None and out == num_classes and m not in ignored:
            ignored.append(m)
    return ignored


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in module.named_parameters()}


class ChannelPruning(TransformRecipe):
    """Remove the lowest-magnitude channels (dependency-aware), then fine-tune."""

    name = "prune-channels"
    Params: ClassVar = ChannelPruningParams

    def apply(self, bundle: ModelBundle, ctx: RecipeContext) -> TransformOutcome:
        with torch_threads(training_threads(bundle.module, bundle.example_args)):
            return self._apply(bundle, ctx)

    def _apply(self, bundle: ModelBundle, ctx: RecipeContext) -> TransformOutcome:
        import torch_pruning as tp

        p: ChannelPruningParams = self.params  # type: ignore[assignment]
        original = bundle.module
        module = copy.deepcopy(original).float().eval()
        example = bundle.example_args
        before = model_stats(module, example)
        shapes_before = _shapes(module)
        num_classes = _output_width(module, example)
        reference = predict_logits(original, bundle.data.eval_inputs)

        mha = {m: m.num_heads for m in module.modules() if isinstance(m, nn.MultiheadAttention)}
        importance = tp.importance.MagnitudeImportance(p=1 if p.importance == "l1" else 2)
        try:
            with warnings.catch_warnings():
                # Free-standing nn.Parameters (e.g. a positional embedding) are pruned
                # along their last dimension; torch_pruning warns about that every time.
                warnings.filterwarnings("ignore", message=".*unwrapped.*")
                warnings.filterwarnings("ignore", message=".*last non-singleton.*")
                pruner = tp.pruner.MetaPruner(
                    module,
                    example,
                    importance=importance,
                    global_pruning=p.global_pruning,
                    pruning_ratio=p.ratio,
                    max_pruning_ratio=0.9,
                    ignored_layers=_ignored_layers(module, num_classes),
                    round_to=p.round_to,
                    num_heads=mha,
                )
                pruner.step()
            with torch.no_grad():
                out = call_module(module, example)
        except Exception as exc:
            raise RecipeError(
                f"prune-channels: torch_pruning could not prune {bundle.name!r} "
                f"({type(exc).__name__}: {exc}); the model's graph has a coupling "
                "torch_pruning does not handle (try prune-unstructured instead)"
            ) from exc
        if count_params(module) >= before["params_count"]:
            # torch_pruning has pruners for LSTM but not for GRU or plain RNN layers, so
            # everything feeding or fed by one is left alone.
            recurrent = [n for n, m in module.named_modules() if isinstance(m, (nn.GRU, nn.RNN))]
            also = (
                f"; torch_pruning does not prune recurrent layers ({', '.join(recurrent)}), "
                "nor what feeds them"
                if recurrent
                else ""
            )
            raise RecipeError(
                f"prune-channels: nothing was pruned in {bundle.name!r} at ratio {p.ratio} "
                f"(every conv/linear layer is either the classifier or coupled to it{also})"
            )
        if num_classes is not None and _output_width(module, example) != num_classes:
            raise RecipeError("prune-channels: pruning changed the output width")
        del out

        notes: dict[str, Any] = {
            "ratio": p.ratio,
            "importance": p.importance,
            "global_pruning": p.global_pruning,
            "round_to": p.round_to,
        }
        notes.update(
            finetune_with_quality(
                module,
                original,
                bundle.data,
                reference,
                stage="pruned",
                recipe="prune-channels",
                epochs=p.finetune_epochs,
                lr=p.lr,
                seed=ctx.seed,
                log=ctx.log,
            )
        )

        new = derive_bundle(bundle, module)
        after = {"params_count": new.info["params_count"], "macs": new.info["macs"]}
        shapes_after = _shapes(module)
        notes.update(
            {
                "params_before": before["params_count"],
                "params_after": after["params_count"],
                "macs_before": before["macs"],
                "macs_after": after["macs"],
                "params_reduction": round(1 - after["params_count"] / before["params_count"], 4),
                "macs_reduction": round(1 - after["macs"] / max(before["macs"], 1), 4),
                "tensors_shrunk": sum(shapes_after.get(k) != v for k, v in shapes_before.items()),
            }
        )
        return TransformOutcome(bundle=new, notes=notes)
