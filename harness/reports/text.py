"""Small text helpers every report shares: numbers in table cells, markdown tables, and
names safe in file names and HTML ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "-"  # what a table cell shows for a value that was not measured


def fmt_number(value: float | None, spec: str, scale: float = 1.0) -> str:
    """``value`` (times ``scale``: 100 for a fraction shown in percent) in the format
    ``spec``, or ``-`` when there is none."""
    if value is None:
        return MISSING
    return format(value if scale == 1 else value * scale, spec)


def fmt_value(value: Any, spec: str = ".3g") -> str:
    """:func:`fmt_number` for a number; any other value (a text, a flag) as it prints,
    for the HTML page's cells, which also show values that are not numbers."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return fmt_number(value, spec)
    return MISSING if value is None else str(value)


def md_row(values: Sequence[str]) -> str:
    """One markdown table row; a ``|`` inside a value is escaped."""
    return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"


def md_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table's lines: the header, the rule under it, then the rows."""
    return [md_row(columns), "|" + "---|" * len(columns), *(md_row(r) for r in rows)]


def slug(text: str) -> str:
    """``text`` with every character but letters, digits, ``-`` and ``_`` made ``-``: a
    file name or HTML id that stays readable."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)
