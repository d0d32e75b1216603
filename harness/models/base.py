"""What the model stage hands to recipes and exporters: plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.models.inputs import SINGLE_INPUT_NAME, Batch, InputSpec, example_args

if TYPE_CHECKING:  # reports and compare load configs without paying for torch's import
    import torch


@dataclass
class TaskData:
    """Inputs (batch-first) and labels for one model.

    Each ``*_inputs`` is a :data:`~harness.models.inputs.Batch`: one array for a model
    with one input, a tuple of arrays (in the order of the bundle's input specs) for
    several; floats are float32, integer ids keep their integer dtype. ``calib`` feeds
    quantization calibration, ``train`` feeds fine-tuning and distillation, ``eval``
    scores every variant. Labels are class ids shaped like the model's first output
    without its last (class) axis: ``(N,)`` for a classifier, ``(N, T)`` for a tagger.
    They are None when the model has no task (e.g. a randomly initialised resnet18);
    fidelity to the fp32 reference (agreement, cosine, SNR) is then the only measure.
    """

    calib_inputs: Batch
    eval_inputs: Batch
    eval_labels: np.ndarray | None = None
    train_inputs: Batch | None = None
    train_labels: np.ndarray | None = None

    @property
    def has_labels(self) -> bool:
        return self.eval_labels is not None


@dataclass
class ModelBundle:
    """A PyTorch model ready for recipes and export.

    ``identity`` is a stable JSON-able description (zoo name + parameters, or a file
    hash) used in content hashes; ``module`` is in eval mode and fp32 and is called
    positionally, ``module(*example_args(example_input))``. ``example_input`` is one
    tensor (batch 1) or a tuple of them; ``inputs`` describes each (name, shape, dtype,
    id range) and is derived from the example when left empty.
    """

    name: str
    module: torch.nn.Module
    example_input: torch.Tensor | tuple[torch.Tensor, ...]
    data: TaskData
    identity: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[InputSpec, ...] = ()

    @property
    def example_args(self) -> tuple[torch.Tensor, ...]:
        return example_args(self.example_input)

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        """The given specs, or ones read off the example (float32 unless integer)."""
        if self.inputs:
            return self.inputs
        args = self.example_args
        names = [SINGLE_INPUT_NAME] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
        return tuple(
            InputSpec(
                name,
                tuple(int(d) for d in a.shape),
                "float32" if a.is_floating_point() else str(a.dtype).removeprefix("torch."),
            )
            for name, a in zip(names, args, strict=True)
        )


@dataclass
class FileModel:
    """A ready model file (.onnx, .pte, .tflite): benchmark-only, no recipes apply."""

    name: str
    path: str
    runtime: str
    inputs: tuple[InputSpec, ...]
    identity: dict[str, Any]

    @property
    def input_shape(self) -> list[int]:
        """The first input's shape (what a one-input file's callers read)."""
        return list(self.inputs[0].shape)


class ZooModel:
    """A model defined in code. Subclasses set ``name``, ``description``, ``Params``
    (a pydantic model with ``extra='forbid'``) and implement both methods."""

    name: str = ""
    description: str = ""
    has_labels: bool = False
    Params: type = object

    def architecture(self, params: Any) -> torch.nn.Module:
        """The untrained module (used by distillation to build students)."""
        raise NotImplementedError

    def build(self, params: Any, cache_dir: Any) -> ModelBundle:
        """The ready model: trained (and cached under ``cache_dir``) where the zoo trains it."""
        raise NotImplementedError
