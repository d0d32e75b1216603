"""The recipe contract.

A variant is a chain of recipes. Two kinds exist because compression happens at two
places: *transform* recipes (pruning, distillation, low-rank) rewrite the PyTorch module
and are shared by every runtime; *quantize* recipes only describe what the exporter of
each runtime must do (ORT quantizes an ONNX graph, ExecuTorch quantizes through pt2e),
so they produce a :class:`QuantRequest` and must come last in a chain.

A transform recipe implements only its own :meth:`TransformRecipe.step`; the base's
``apply`` is the template around it that every transform shares.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from harness.models.base import ModelBundle
from harness.target import TargetInfo

if TYPE_CHECKING:  # configs and reports import this module without paying for torch's import
    import torch
    from torch import nn


class RecipeParams(BaseModel):
    """Base for every recipe's parameters: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# The fine-tuning knobs of the recipes that fine-tune after their step; each recipe sets
# its own default.
FinetuneEpochs = Annotated[int, Field(ge=0, le=1000, description="epochs of fine-tuning after")]
FinetuneLr = Annotated[float, Field(gt=0, le=1, description="fine-tuning learning rate (Adam)")]


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

    # bf16 is a run-time precision (OpenVINO's): the artifact stays fp32.
    mode: Literal["static", "dynamic", "fp16", "qat", "bf16"]
    per_channel: bool = True
    calibration_samples: int = 128
    activation_dtype: Literal["auto", "uint8", "int8"] = "auto"
    qat_epochs: int = 0
    qat_lr: float = 1e-4


ParamsT = TypeVar("ParamsT", bound=RecipeParams)


class Recipe(ABC, Generic[ParamsT]):
    name: ClassVar[str]
    kind: ClassVar[Literal["transform", "quantize"]]
    Params: ClassVar[type[RecipeParams]]

    def __init__(self, params: ParamsT):
        self.params = params


class TransformInput:
    """The bundle a transform step works on, with what steps commonly need, each made on
    first use (distillation builds its own student and never copies the teacher)."""

    def __init__(self, bundle: ModelBundle, ctx: RecipeContext):
        self.bundle = bundle
        self.ctx = ctx

    @cached_property
    def module(self) -> nn.Module:
        """A float, eval-mode copy of the input module for the step to rewrite in place:
        a recipe must never modify ``bundle.module``."""
        return copy.deepcopy(self.bundle.module).float().eval()

    @cached_property
    def reference(self) -> torch.Tensor:
        """The input module's logits on the eval inputs: the quality reference for
        models without labels."""
        from harness.recipes.training import predict_logits

        return predict_logits(self.bundle.module, self.bundle.data.eval_inputs)


@dataclass(frozen=True)
class Finetune:
    """Fine-tuning the template runs after a step. ``stage`` names the quality measured
    right after the step (``accuracy_pruned``), between ``*_before`` and ``*_after``."""

    stage: str
    epochs: int
    lr: float


@dataclass
class TransformStep:
    """What a recipe's own step produced, for the template to finish.

    ``notes`` open the lineage notes; ``info`` goes into the new bundle's info;
    ``closing_notes`` come after the template's size notes, where those recipes always
    put them.
    """

    module: nn.Module
    notes: dict[str, Any] = field(default_factory=dict)
    finetune: Finetune | None = None
    info: dict[str, Any] = field(default_factory=dict)
    closing_notes: dict[str, Any] = field(default_factory=dict)


class TransformRecipe(Recipe[ParamsT]):
    """A recipe that rewrites the module: subclasses implement :meth:`step` only.

    :meth:`apply` runs the step under the training thread count, fine-tunes when the step
    asks, derives the new bundle (params, MACs and accuracy recounted) and, with
    ``records_size``, ends the notes with the parameter and MAC counts before and after.
    """

    kind: ClassVar[Literal["transform", "quantize"]] = "transform"
    records_size: ClassVar[bool] = False

    @abstractmethod
    def step(self, work: TransformInput) -> TransformStep:
        """Transform ``work.module`` (or build a new module); never ``work.bundle.module``."""

    def apply(self, bundle: ModelBundle, ctx: RecipeContext) -> TransformOutcome:
        """Return a new bundle; ``bundle.module`` is not modified."""
        # Imported here: they import torch (see the TYPE_CHECKING import above).
        from harness.models.architectures import model_stats
        from harness.recipes.training import (
            derive_bundle,
            finetune_with_quality,
            torch_threads,
            training_threads,
        )

        with torch_threads(training_threads(bundle.module, bundle.example_args)):
            work = TransformInput(bundle, ctx)
            before = model_stats(work.module, bundle.example_args) if self.records_size else None
            step = self.step(work)
            notes = dict(step.notes)
            if step.finetune is not None:
                notes.update(
                    finetune_with_quality(
                        step.module,
                        bundle.module,
                        bundle.data,
                        work.reference,
                        stage=step.finetune.stage,
                        recipe=self.name,
                        epochs=step.finetune.epochs,
                        lr=step.finetune.lr,
                        seed=ctx.seed,
                        log=ctx.log,
                    )
                )
            new = derive_bundle(bundle, step.module, **step.info)
            if before is not None:
                notes.update(_size_notes(before, new.info))
            notes.update(step.closing_notes)
            return TransformOutcome(bundle=new, notes=notes)


def _size_notes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "params_before": before["params_count"],
        "params_after": after["params_count"],
        "macs_before": before["macs"],
        "macs_after": after["macs"],
        "params_reduction": round(1 - after["params_count"] / before["params_count"], 4),
        "macs_reduction": round(1 - after["macs"] / max(before["macs"], 1), 4),
    }


class QuantizeRecipe(Recipe[ParamsT]):
    kind: ClassVar[Literal["transform", "quantize"]] = "quantize"

    @abstractmethod
    def request(self) -> QuantRequest: ...
