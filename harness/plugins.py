"""Lazy resolution of plugins named in a registry as ``"package.module:Attribute"``.

Registries map a public name to a dotted path so importing the harness does not import
every backend (executorch, torch_pruning ...) until a suite actually asks for it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any


def resolve(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"plugin path {path!r} must look like 'package.module:Attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ImportError(f"{module_name} has no attribute {attr!r}") from exc


def suggest(name: str, known: Mapping[str, Any] | list[str]) -> str:
    """A 'did you mean' hint listing the known names."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"one of {', '.join(names)}{hint}"
