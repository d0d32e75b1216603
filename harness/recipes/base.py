"""The recipe contract.

A variant is a chain of recipes. Two kinds exist because compression happens at two
places: *transform* recipes (pruning, distillation, low-rank) rewrite the PyTorch module
and are shared by every runtime; *quantize* recipes only describe what the exporter of
each runtime must do (ORT quantizes an ONNX graph, ExecuTorch quantizes through pt2e),
so they produce a :class:`QuantRequest` and must come last in a chain.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from harness.models.base import ModelBundle
from harness.target import TargetInfo


class RecipeParams(BaseModel):
    """Base for every recipe's parameters: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class RecipeContext:
    seed: int = 0
    target: TargetInfo | None = None
    cache_dir: Path | None = None
    log: Callable[[str], None] = print


@dataclass
class TransformOutcome:
    """The rewritten model and what the step wants recorded in the variant's lineage."""

    bundle: ModelBundle
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuantRequest:
    """What a quantize recipe asks of an exporter.

    ``activation_dtype='auto'`` lets the exporter pick the format that is fast on the
    target CPU (and record its choice and reason in the export notes).
    """

    mode: Literal["static", "dynamic", "fp16", "qat"]
    per_channel: bool = True
    calibration_samples: int = 128
    activation_dtype: Literal["auto", "uint8", "int8"] = "auto"
    qat_epochs: int = 0
    qat_lr: float = 1e-4


class Recipe(ABC):
    name: ClassVar[str]
    kind: ClassVar[Literal["transform", "quantize"]]
    Params: ClassVar[type[RecipeParams]]

    def __init__(self, params: RecipeParams):
        self.params = params


class TransformRecipe(Recipe):
    kind: ClassVar[Literal["transform", "quantize"]] = "transform"

    @abstractmethod
    def apply(self, bundle: ModelBundle, ctx: RecipeContext) -> TransformOutcome:
        """Return a new bundle; must not modify ``bundle.module`` in place."""


class QuantizeRecipe(Recipe):
    kind: ClassVar[Literal["transform", "quantize"]] = "quantize"

    @abstractmethod
    def request(self) -> QuantRequest: ...
