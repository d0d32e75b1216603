"""Structured (channel) pruning with torch_pruning, then optional fine-tuning.

Unlike unstructured sparsity, removing whole channels shrinks the dense tensors, so every
runtime gets faster without sparse kernels. torch_pruning traces the model into a
dependency graph, so channels coupled by a residual add, a depthwise convolution
(groups == channels) or a BatchNorm are removed together and the pruned model stays
consistent. The classifier's outputs are never pruned: the class count must not change.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from harness.errors import RecipeError
from harness.models.architectures import count_params
from harness.models.inputs import call_module
from harness.recipes.base import (
    Finetune,
    FinetuneEpochs,
    FinetuneLr,
    RecipeParams,
    TransformInput,
    TransformRecipe,
    TransformStep,
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
    finetune_epochs: FinetuneEpochs = 5
    lr: FinetuneLr = 1e-3
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


class ChannelPruning(TransformRecipe[ChannelPruningParams]):
    """Remove the lowest-magnitude channels (dependency-aware), then fine-tune."""

    name = "prune-channels"
    Params: ClassVar = ChannelPruningParams
    records_size = True

    def step(self, work: TransformInput) -> TransformStep:
        import torch_pruning as tp

        p = self.params
        bundle, module = work.bundle, work.module
        example = bundle.example_args
        params_before = count_params(module)
        shapes_before = _shapes(module)
        num_classes = _output_width(module, example)

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
        if count_params(module) >= params_before:
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
        shapes_after = _shapes(module)
        return TransformStep(
            module,
            notes,
            finetune=Finetune(stage="pruned", epochs=p.finetune_epochs, lr=p.lr),
            closing_notes={
                "tensors_shrunk": sum(shapes_after.get(k) != v for k, v in shapes_before.items())
            },
        )
