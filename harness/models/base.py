"""What the model stage hands to recipes and exporters: plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # reports and compare load configs without paying for torch's import
    import torch


@dataclass
class TaskData:
    """Inputs (float32, batch-first) and labels for one model.

    ``calib`` feeds quantization calibration, ``train`` feeds fine-tuning and
    distillation, ``eval`` scores every variant. Labels are None when the model has no
    task (e.g. a randomly initialised resnet18); agreement with the fp32 reference is
    then the only quality measure.
    """

    calib_inputs: np.ndarray
    eval_inputs: np.ndarray
    eval_labels: np.ndarray | None = None
    train_inputs: np.ndarray | None = None
    train_labels: np.ndarray | None = None

    @property
    def has_labels(self) -> bool:
        return self.eval_labels is not None


@dataclass
class ModelBundle:
    """A PyTorch model ready for recipes and export.

    ``identity`` is a stable JSON-able description (zoo name + parameters, or a file
    hash) used in content hashes; ``module`` is in eval mode and fp32.
    """

    name: str
    module: torch.nn.Module
    example_input: torch.Tensor
    data: TaskData
    identity: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileModel:
    """A ready .onnx or .pte file: benchmark-only, no recipes apply."""

    name: str
    path: str
    runtime: str
    input_shape: list[int]
    identity: dict[str, Any]


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
