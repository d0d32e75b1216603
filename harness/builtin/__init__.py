"""The recipe presets, device profiles and example suites that ship inside the package.

They are the defaults after the user's own directories (a suite's ``recipe_dirs`` /
``device_dirs``, ``recipes/`` and ``devices/`` beside the suite, its parent and the
working directory), so ``pip install`` and a suite anywhere can name ``int8-static`` or
``pi4-emulated``; a user's file of the same name wins. In a checkout the top-level
``recipes/``, ``devices/`` and ``suites/quickstart.toml`` link here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from harness.plugins import suggest

__all__ = ["BUILTIN_DIR", "builtin_dir", "builtin_suite", "not_found"]

BUILTIN_DIR = Path(__file__).resolve().parent

Kind = Literal["recipes", "devices", "suites"]

_WHAT = {"recipes": "recipe preset", "devices": "device profile", "suites": "suite"}


def builtin_dir(kind: Kind) -> Path:
    """The package's own directory of ``kind`` (``recipes``, ``devices``, ``suites``)."""
    return BUILTIN_DIR / kind


def builtin_suite(name: str) -> Path | None:
    """The shipped suite called ``name`` (``quickstart`` or ``quickstart.toml``), if any."""
    stem = name[: -len(".toml")] if name.endswith(".toml") else name
    if "/" in stem or not stem:
        return None
    path = builtin_dir("suites") / f"{stem}.toml"
    return path if path.is_file() else None


def not_found(kind: Kind, name: str, dirs: Sequence[Path]) -> str:
    """What a lookup of ``name`` expected: every directory searched (and whether it
    exists) and every name found there, with a 'did you mean' hint."""
    searched = []
    known: set[str] = set()
    for d in dirs:
        if d.is_dir():
            names = {p.stem for p in d.glob("*.toml")}
            known |= names
            label = "the package's own" if d.resolve() == builtin_dir(kind) else ""
            searched.append(f"{label + ' ' if label else ''}{d} ({len(names)})")
        else:
            searched.append(f"{d} (no such directory)")
    found = suggest(name, sorted(known)) if known else "nothing found"
    return f"a {_WHAT[kind]} named {name!r}; searched {', '.join(searched)}; {found}"
