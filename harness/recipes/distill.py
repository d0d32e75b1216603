"""Knowledge distillation: the input bundle teaches a smaller zoo architecture.

The student is trained on ``alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher || student)``.
The same student (same initial weights, epochs, learning rate and batch order) is also
trained on the hard labels alone, so the notes show what distillation itself bought,
not just what a smaller model scores.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from pydantic import Field, ValidationError
from torch import nn

from harness.errors import RecipeError
from harness.models.architectures import count_params
from harness.models.base import ModelBundle
from harness.models.inputs import call_module
from harness.recipes.base import RecipeParams, TransformInput, TransformRecipe, TransformStep
from harness.recipes.training import evaluate_accuracy, predict_logits, train_classifier


class DistillationParams(RecipeParams):
    student_model: str | None = Field(
        None, description="zoo name of the student (default: the teacher's zoo architecture)"
    )
    student_params: dict[str, Any] = Field(
        default_factory=dict,
        description="student architecture params, e.g. {'width': 4} for digits-cnn; merged "
        "over the teacher's params when the architecture is the same",
    )
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the hard-label loss")
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature T")
    epochs: int = Field(20, ge=0, le=1000, description="student training epochs")
    lr: float = Field(3e-3, gt=0, le=1, description="Adam learning rate (cosine decay)")
    seed: int = Field(0, ge=0, description="student init and batch order")


class Distillation(TransformRecipe[DistillationParams]):
    """Train a smaller zoo student from the bundle's outputs and labels."""

    name = "distill"
    Params: ClassVar = DistillationParams

    def _student(self, bundle: ModelBundle) -> tuple[nn.Module, str, dict[str, Any]]:
        from harness.models.zoo import ZOO, get_zoo_model

        p = self.params
        teacher_zoo = bundle.identity.get("zoo")
        student_name = p.student_model or teacher_zoo
        if student_name is None:
            raise RecipeError(
                f"distill: {bundle.name!r} is not a zoo model, so there is no architecture "
                "to shrink; set student_model to a zoo name"
            )
        if student_name not in ZOO:
            raise RecipeError(
                f"distill: unknown student_model {student_name!r}; expected one of "
                f"{', '.join(sorted(ZOO))}"
            )
        zoo = get_zoo_model(student_name)
        merged: dict[str, Any] = {}
        if student_name == teacher_zoo:
            merged.update(bundle.identity.get("params") or {})
        merged.update(p.student_params)
        try:
            params = zoo.Params.model_validate(merged)
        except ValidationError as exc:
            raise RecipeError(
                f"distill: student_params {p.student_params!r} are not valid for "
                f"{student_name!r}: {exc}"
            ) from exc
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            module = zoo.architecture(params).float()
        # The recipe trains the student with its own epochs/lr/seed: recording the zoo's
        # training fields (inherited from the teacher) would misdescribe the student.
        arch = {
            k: v
            for k, v in params.model_dump(mode="json").items()
            if k not in ("epochs", "lr", "seed")
        }
        return module, student_name, arch

    def step(self, work: TransformInput) -> TransformStep:
        # The student is a new module trained here (twice, for the comparison), so the
        # template's copy of the teacher and its fine-tune are not used.
        p = self.params
        bundle, ctx = work.bundle, work.ctx
        data = bundle.data
        if data.train_inputs is None or data.train_labels is None or data.eval_labels is None:
            raise RecipeError(
                f"distill: {bundle.name!r} has no labelled train set (e.g. a random-weight "
                "model); distillation needs one. Use dataset='digits' for resnet18/"
                "mobilenet_v2, or a factory that returns (module, example_input, "
                "{'train_inputs': ..., 'train_labels': ..., 'eval_inputs': ..., "
                "'eval_labels': ...})"
            )
        init, student_name, student_params = self._student(bundle)
        try:
            with torch.no_grad():
                out = call_module(init.eval(), bundle.example_args)
        except Exception as exc:
            shapes = ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in bundle.input_specs)
            raise RecipeError(
                f"distill: student {student_name!r} cannot take the teacher's inputs "
                f"({shapes}): {type(exc).__name__}: {exc}"
            ) from exc
        teacher_train = predict_logits(bundle.module, data.train_inputs)
        if out.shape[-1] != teacher_train.shape[-1]:
            raise RecipeError(
                f"distill: student has {out.shape[-1]} outputs, teacher {teacher_train.shape[-1]}"
            )

        common = {"epochs": p.epochs, "lr": p.lr, "seed": p.seed}
        ctx.log(f"distill: training {student_name} student with the teacher ({p.epochs} epochs)")
        distilled = train_classifier(
            copy.deepcopy(init),
            data.train_inputs,
            data.train_labels,
            soft_targets=teacher_train,
            alpha=p.alpha,
            temperature=p.temperature,
            **common,
        )
        ctx.log("distill: training the same student alone (hard labels) for comparison")
        alone = train_classifier(
            copy.deepcopy(init), data.train_inputs, data.train_labels, **common
        )

        teacher_acc = evaluate_accuracy(bundle.module, data.eval_inputs, data.eval_labels)
        distilled_acc = evaluate_accuracy(distilled, data.eval_inputs, data.eval_labels)
        alone_acc = evaluate_accuracy(alone, data.eval_inputs, data.eval_labels)
        teacher_params = count_params(bundle.module)
        student_count = count_params(distilled)
        notes = {
            "student_model": student_name,
            "student_arch_params": student_params,
            "teacher_params": teacher_params,
            "student_params_count": student_count,
            "param_ratio": round(student_count / teacher_params, 4),
            "teacher_accuracy": round(teacher_acc, 6),
            "student_distilled_accuracy": round(distilled_acc, 6),
            "student_alone_accuracy": round(alone_acc, 6),
            "distillation_gain": round(distilled_acc - alone_acc, 6),
            "alpha": p.alpha,
            "temperature": p.temperature,
            "epochs": p.epochs,
            "lr": p.lr,
            "seed": p.seed,
        }
        return TransformStep(
            distilled, notes, info={"student": {"zoo": student_name, "params": student_params}}
        )
