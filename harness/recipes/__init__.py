"""Recipes by name, resolved lazily (importing torch_pruning only when a suite prunes)."""

from __future__ import annotations

from harness.plugins import resolve
from harness.recipes.base import Recipe

RECIPES: dict[str, str] = {
    "int8-static": "harness.recipes.quantize:Int8Static",
    "int8-dynamic": "harness.recipes.quantize:Int8Dynamic",
    "int8-qat": "harness.recipes.quantize:Int8Qat",
    "fp16": "harness.recipes.quantize:Fp16",
    "bf16": "harness.recipes.quantize:Bf16",
    "prune-channels": "harness.recipes.prune_channels:ChannelPruning",
    "prune-unstructured": "harness.recipes.prune_unstructured:UnstructuredPruning",
    "distill": "harness.recipes.distill:Distillation",
    "low-rank": "harness.recipes.low_rank:LowRankFactorization",
}


def get_recipe_class(name: str) -> type[Recipe]:
    return resolve(RECIPES[name])
