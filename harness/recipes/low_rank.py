"""Low-rank factorization: replace a weight matrix by the product of two thin ones (SVD).

``W ≈ U_r S_r V_r^T`` with the ``r`` largest singular values. A ``Linear(in, out)``
becomes ``Linear(in, r, bias=False)`` followed by ``Linear(r, out)``; a ``KxK`` conv
(weight reshaped to ``(out, in*K*K)``) becomes a ``KxK`` conv with ``r`` output channels
(same stride, padding and dilation) followed by a ``1x1`` conv. Like channel pruning the
result is an ordinary dense model, so every runtime gets faster where the factorization
saves multiply-accumulates, without special kernels.

A layer is only factorized when that saves parameters (``r * (in + out) < in * out``):
near full rank two layers cost more than one. Grouped and depthwise convolutions are left
alone (each group is already a thin matrix), and so are linears that a parent module
reads ``.weight`` from directly (attention projections, the fused fast path of
``nn.TransformerEncoderLayer``), because swapping them for a pair of layers would break
the parent.

``sqrt(S)`` goes to both factors, so the two weight matrices have similar ranges: that
keeps a later int8 step from wasting its range on one badly scaled factor.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from harness.errors import RecipeError
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

__all__ = [
    "LowRankFactorization",
    "LowRankParams",
    "factorize_conv2d",
    "factorize_linear",
    "rank_for_energy",
]

# Parents whose forward reads their children's ``.weight`` directly instead of calling
# them: replacing such a child by a Sequential breaks the parent.
_OPAQUE_PARENTS: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)


class LowRankParams(RecipeParams):
    rank_ratio: float | None = Field(
        None, gt=0, le=1, description="fraction of each layer's full rank kept"
    )
    energy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="keep the smallest rank whose singular values hold this fraction of the "
        "squared singular values (the layer's 'energy')",
    )
    layers: Literal["linear", "conv", "all"] = Field(
        "all", description="which layer kinds to factorize"
    )
    min_features: int = Field(
        16,
        ge=1,
        le=1_000_000,
        description="skip layers whose smaller side (min of in*k*k and out) is below this",
    )
    finetune_epochs: FinetuneEpochs = 0
    lr: FinetuneLr = 1e-3

    @model_validator(mode="after")
    def _exactly_one_rank_rule(self) -> LowRankParams:
        if (self.rank_ratio is None) == (self.energy is None):
            raise ValueError(
                "exactly one of 'rank_ratio' (fraction of the full rank kept) or 'energy' "
                "(fraction of the squared singular values kept)"
            )
        return self


# ----------------------------------------------------------------------------- the maths


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest ``r`` whose top-``r`` singular values hold ``energy`` of ``sum(s**2)``.

    A relative tolerance of 1e-9 keeps a rank that reaches the target exactly (e.g. 13/14
    of the energy asked, 13/14 kept) from being rounded up by float error.
    """
    sq = singular_values.double().pow(2)
    total = float(sq.sum())
    if total <= 0:
        return 1
    kept = torch.cumsum(sq, 0) / total
    hits = torch.nonzero(kept >= energy - 1e-9)
    return int(hits[0].item()) + 1 if len(hits) else len(singular_values)


def _split_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``A @ B`` the best rank-``rank`` approximation of ``matrix``.

    ``A = U_r sqrt(S_r)`` (out x r), ``B = sqrt(S_r) V_r^T`` (r x in); computed in float64
    so a full-rank split reproduces the matrix to float32 precision.
    """
    u, s, vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).float(), (root[:, None] * vh[:rank]).float()


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear(in, out)`` as ``Linear(in, rank, bias=False)`` then ``Linear(rank, out)``."""
    a, b = _split_svd(layer.weight, rank)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(b)
        second.weight.copy_(a)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorize_conv2d(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """A ``KxK`` conv as a ``KxK`` conv to ``rank`` channels then a ``1x1`` conv.

    The first conv keeps the original stride, padding, dilation and padding mode, so the
    output has the same spatial size; the ``1x1`` conv mixes the ``rank`` channels into
    the output channels and carries the bias.
    """
    if layer.groups != 1:
        raise ValueError("factorize_conv2d handles groups=1 convolutions only")
    out_ch, in_ch, kh, kw = layer.weight.shape
    a, b = _split_svd(layer.weight.reshape(out_ch, in_ch * kh * kw), rank)
    first = nn.Conv2d(
        in_ch,
        rank,
        (kh, kw),
        stride=layer.stride,  # type: ignore[arg-type]
        padding=layer.padding,  # type: ignore[arg-type]
        dilation=layer.dilation,  # type: ignore[arg-type]
        bias=False,
        padding_mode=layer.padding_mode,
    )
    second = nn.Conv2d(rank, out_ch, 1, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(b.reshape(rank, in_ch, kh, kw))
        second.weight.copy_(a.reshape(out_ch, rank, 1, 1))
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def _matrix(layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return layer.weight
    w = layer.weight  # type: ignore[union-attr]
    return w.reshape(w.shape[0], -1)  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ the recipe


def _candidates(
    module: nn.Module, kind: str
) -> list[tuple[str, nn.Module, str, nn.Module | None, str | None]]:
    """(name, parent, attribute, layer or None, reason skipped or None) per layer of
    ``kind`` in module order."""
    out: list[tuple[str, nn.Module, str, nn.Module | None, str | None]] = []
    for parent_name, parent in module.named_modules():
        for attr, child in parent.named_children():
            name = f"{parent_name}.{attr}" if parent_name else attr
            is_linear = isinstance(child, nn.Linear)
            is_conv = isinstance(child, nn.Conv2d)
            if not (is_linear or is_conv):
                continue
            if (kind == "linear" and not is_linear) or (kind == "conv" and not is_conv):
                continue
            reason = None
            if isinstance(parent, _OPAQUE_PARENTS):
                reason = f"{type(parent).__name__} reads its weight directly"
            elif is_conv and child.groups != 1:  # type: ignore[union-attr]
                reason = f"grouped conv (groups={child.groups})"  # type: ignore[union-attr]
            out.append((name, parent, attr, child, reason))
    return out


class LowRankFactorization(TransformRecipe[LowRankParams]):
    """SVD-factorize Linear and KxK Conv2d layers to a lower rank, then fine-tune."""

    name = "low-rank"
    Params: ClassVar = LowRankParams
    records_size = True

    def _rank(self, s: torch.Tensor) -> int:
        p = self.params
        if p.energy is not None:
            return rank_for_energy(s, p.energy)
        assert p.rank_ratio is not None
        return max(1, math.ceil(p.rank_ratio * len(s) - 1e-9))

    def step(self, work: TransformInput) -> TransformStep:
        p = self.params
        bundle, module = work.bundle, work.module

        factorized: dict[str, dict[str, Any]] = {}
        skipped: dict[str, str] = {}
        for name, parent, attr, layer, reason in _candidates(module, p.layers):
            assert layer is not None
            matrix = _matrix(layer)
            out_f, in_f = matrix.shape
            if reason is None and min(in_f, out_f) < p.min_features:
                reason = f"smaller side {min(in_f, out_f)} < min_features {p.min_features}"
            if reason is not None:
                skipped[name] = reason
                continue
            s = torch.linalg.svdvals(matrix.detach().double())
            rank = self._rank(s)
            if rank * (in_f + out_f) >= in_f * out_f:
                skipped[name] = f"rank {rank} of {len(s)} would not save parameters"
                continue
            if isinstance(layer, nn.Linear):
                replacement = factorize_linear(layer, rank)
            else:
                replacement = factorize_conv2d(layer, rank)  # type: ignore[arg-type]
            setattr(parent, attr, replacement)
            kept = float(s[:rank].pow(2).sum() / s.pow(2).sum()) if float(s.sum()) > 0 else 1.0
            factorized[name] = {
                "rank": rank,
                "full_rank": len(s),
                "energy_kept": round(kept, 4),
                "params": [in_f * out_f, rank * (in_f + out_f)],
            }
        for name, layer in module.named_modules():
            if isinstance(layer, nn.RNNBase):
                skipped[name] = (
                    f"nn.{type(layer).__name__} is not factorized (Linear and Conv2d are)"
                )
        if not factorized:
            raise RecipeError(
                f"low-rank: no layer of {bundle.name!r} was factorized "
                f"({len(skipped)} considered: "
                + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
                + ")"
            )
        with torch.no_grad():
            out = call_module(module, bundle.example_args)
        if out.shape[1:] != work.reference.shape[1:]:
            raise RecipeError("low-rank: factorization changed the output shape")

        notes: dict[str, Any] = {
            "rank_ratio": p.rank_ratio,
            "energy": p.energy,
            "layers": p.layers,
            "min_features": p.min_features,
            "layers_factorized": len(factorized),
            "layers_skipped": len(skipped),
            "ranks": factorized,
            "skipped": skipped,
        }
        return TransformStep(
            module, notes, finetune=Finetune(stage="factorized", epochs=p.finetune_epochs, lr=p.lr)
        )
