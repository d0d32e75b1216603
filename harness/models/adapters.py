"""Module wrappers the loader puts around user models (importable, so a wrapped model
pickles into the transform cache like any other)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class KeywordInputs(torch.nn.Module):
    """Calls a module whose example input is a dict with positional inputs in that dict's
    order (``module(**dict(zip(names, args)))``), so the exported graph's inputs are
    named after the dict keys and every runtime feeds them in order."""

    def __init__(self, module: torch.nn.Module, names: Sequence[str]):
        super().__init__()
        self.module = module
        self.names = tuple(names)

    def forward(self, *args: torch.Tensor) -> Any:
        if len(args) != len(self.names):
            raise TypeError(f"expected {len(self.names)} inputs ({', '.join(self.names)})")
        return self.module(**dict(zip(self.names, args, strict=True)))
