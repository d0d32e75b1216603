"""Models: the zoo (defined in code), user factories and ready .onnx/.pte files.

The public functions are re-exported lazily: ``import harness.models`` (which every
recipe and exporter does, via :mod:`harness.models.base`) must not pull in
scikit-learn, torch_pruning or the training code until a model is actually built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.models.base import FileModel, ModelBundle, TaskData, ZooModel

if TYPE_CHECKING:
    from harness.models.loaders import load_factory_model, load_file_model
    from harness.models.zoo import ZOO, build_model, get_zoo_model, list_models

__all__ = [
    "ZOO",
    "FileModel",
    "ModelBundle",
    "TaskData",
    "ZooModel",
    "build_model",
    "get_zoo_model",
    "list_models",
    "load_factory_model",
    "load_file_model",
]

_LAZY = {
    "ZOO": "harness.models.zoo",
    "build_model": "harness.models.zoo",
    "get_zoo_model": "harness.models.zoo",
    "list_models": "harness.models.zoo",
    "load_factory_model": "harness.models.loaders",
    "load_file_model": "harness.models.loaders",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness.models' has no attribute {name!r}")
