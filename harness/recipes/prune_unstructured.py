"""Unstructured L1 magnitude pruning (torch.nn.utils.prune), optionally gradual.

Zeroes the smallest-magnitude weights of every conv/linear (and attention input
projection). The result is an ordinary dense module that contains zeros: ONNX Runtime
and ExecuTorch run dense kernels, so this shrinks compressed file size and shows the
accuracy cost of sparsity, but does not make inference faster. The notes say so, so
nobody reads a latency table expecting otherwise.

Sparsity is exact: counts are integers (largest-remainder allocation per layer in
'layer' scope), and already-zero weights are the smallest, so each cumulative step of a
gradual schedule keeps the earlier zeros.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import prune

from harness.errors import RecipeError
from harness.recipes.base import (
    FinetuneLr,
    RecipeParams,
    TransformInput,
    TransformRecipe,
    TransformStep,
)
from harness.recipes.training import finetune, quality

NO_SPEEDUP_NOTE = "dense kernels do not skip zeros: expect no speedup"


class UnstructuredPruningParams(RecipeParams):
    sparsity: float = Field(0.5, gt=0, lt=1, description="fraction of pruned weights set to 0")
    scope: Literal["global", "layer"] = Field(
        "global",
        description="'global': one magnitude threshold over all layers; 'layer': each layer "
        "gets the same sparsity",
    )
    schedule_steps: int = Field(
        1, ge=1, le=100, description="prune in this many increasing (linear) steps"
    )
    finetune_epochs: int = Field(
        0, ge=0, le=1000, description="fine-tuning epochs after each step (pruned stay 0)"
    )
    lr: FinetuneLr = 1e-3


def prunable_weights(module: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, owner module, parameter name) of every weight that gets pruned.

    Conv and Linear weights (the attention output projection is a Linear) plus the packed
    q/k/v input projection of ``nn.MultiheadAttention``. Biases and norms are left alone:
    they are a tiny fraction of the weights and pruning them hurts accuracy most.
    """
    out: list[tuple[str, nn.Module, str]] = []
    seen: set[int] = set()
    for mod_name, m in module.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            pname = "weight"
        elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            pname = "in_proj_weight"
        else:
            continue
        param = getattr(m, pname, None)
        if param is None or id(param) in seen:
            continue
        seen.add(id(param))
        out.append((f"{mod_name}.{pname}" if mod_name else pname, m, pname))
    return out


def _layer_counts(sizes: list[int], sparsity: float) -> list[int]:
    """Per-layer zero counts summing to exactly ``round(sparsity * total)``.

    Each layer gets ``floor(s * n)``; the remaining weights go to the layers with the
    largest fractional parts (Hamilton's method), so the total is exact.
    """
    target = round(sparsity * sum(sizes))
    raw = [sparsity * n for n in sizes]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(sizes)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: target - sum(counts)]:
        counts[i] += 1
    return counts


def _prune_step(
    targets: list[tuple[str, nn.Module, str]], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """Zero the cumulative ``sparsity`` with torch.nn.utils.prune and make it permanent.

    Returns the masks (1 = kept) so fine-tuning can hold the zeros in place.
    """
    if scope == "global":
        total = sum(getattr(m, n).numel() for _, m, n in targets)
        prune.global_unstructured(
            [(m, n) for _, m, n in targets],
            pruning_method=prune.L1Unstructured,
            amount=round(sparsity * total),
        )
    else:
        sizes = [getattr(m, n).numel() for _, m, n in targets]
        for (_, m, n), k in zip(targets, _layer_counts(sizes, sparsity), strict=True):
            prune.l1_unstructured(m, n, amount=k)
    masks = {}
    for qname, m, n in targets:
        masks[qname] = getattr(m, f"{n}_mask").detach().clone()
        prune.remove(m, n)
    return masks


class UnstructuredPruning(TransformRecipe[UnstructuredPruningParams]):
    """Zero the smallest weights (exact sparsity), optionally gradually with fine-tuning."""

    name = "prune-unstructured"
    Params: ClassVar = UnstructuredPruningParams

    def step(self, work: TransformInput) -> TransformStep:
        # The gradual schedule fine-tunes between its steps, so it trains here rather than
        # through the template's single fine-tune.
        p = self.params
        bundle, ctx, module = work.bundle, work.ctx, work.module
        original = bundle.module
        targets = prunable_weights(module)
        if not targets:
            raise RecipeError(
                f"prune-unstructured: {bundle.name!r} has no conv/linear weights to prune"
            )
        reference = work.reference
        notes: dict[str, Any] = {
            "target_sparsity": p.sparsity,
            "scope": p.scope,
            "schedule_steps": p.schedule_steps,
            "finetune_epochs": p.finetune_epochs,
        }
        notes.update(
            {f"{k}_before": v for k, v in quality(original, bundle.data, reference).items()}
        )

        schedule = [p.sparsity * (k + 1) / p.schedule_steps for k in range(p.schedule_steps)]
        params_by_name = {q: getattr(m, n) for q, m, n in targets}
        for step, s in enumerate(schedule):
            masks = _prune_step(targets, s, p.scope)
            params_by_name = {q: getattr(m, n) for q, m, n in targets}
            if p.finetune_epochs > 0:
                ctx.log(
                    f"prune-unstructured: step {step + 1}/{len(schedule)} at sparsity {s:.3f}, "
                    f"fine-tuning {p.finetune_epochs} epochs"
                )

                def hold_zeros(
                    masks: dict[str, torch.Tensor] = masks,
                    params: dict[str, torch.Tensor] = params_by_name,
                ) -> None:
                    for q, mask in masks.items():
                        params[q].mul_(mask)

                notes.update(
                    finetune(
                        module,
                        bundle.data,
                        original,
                        epochs=p.finetune_epochs,
                        lr=p.lr,
                        seed=ctx.seed + step,
                        after_step=hold_zeros,
                        log=ctx.log,
                    )
                )
        notes.update({f"{k}_after": v for k, v in quality(module, bundle.data, reference).items()})

        zeros = {q: int((w == 0).sum().item()) for q, w in params_by_name.items()}
        sizes = {q: w.numel() for q, w in params_by_name.items()}
        total, total_zeros = sum(sizes.values()), sum(zeros.values())
        achieved = total_zeros / total
        all_params = sum(w.numel() for w in module.parameters())
        all_zeros = sum(int((w == 0).sum().item()) for w in module.parameters())
        notes.update(
            {
                "schedule": [round(s, 6) for s in schedule],
                "achieved_sparsity": achieved,
                "pruned_weights_total": total,
                "zero_weights": total_zeros,
                "model_sparsity": round(all_zeros / all_params, 6),
                "layer_sparsity": {q: round(zeros[q] / sizes[q], 4) for q in sizes},
                "expected_speedup": "none on dense runtimes",
                "note": NO_SPEEDUP_NOTE,
            }
        )
        return TransformStep(
            module,
            notes,
            info={"sparsity": round(achieved, 6), "nonzero_params": all_params - all_zeros},
        )
