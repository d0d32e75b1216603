"""Numbers in the fit's verdict texts, with as many digits as a reader needs."""

from __future__ import annotations

from collections.abc import Callable


def number(value: float) -> str:
    """A number with as many digits as a reader needs: 31.2, 4.05, 0.123, 20."""
    size = abs(value)
    if size >= 100:
        text = f"{value:.0f}"
    elif size >= 10:
        text = f"{value:.1f}"
    elif size >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


def percent(fraction: float) -> str:
    digits = 0 if round(abs(fraction * 100), 1) >= 10 else 1
    return f"{fraction * 100:+.{digits}f}%"


def byte_size(value: float) -> str:
    if value >= 2**20:
        return f"{number(value / 2**20)} MB"
    if value >= 2**10:
        return f"{number(value / 2**10)} KB"
    return f"{number(value)} B"


def signed(show: Callable[[float], str]) -> Callable[[float], str]:
    return lambda delta: ("+" if delta >= 0 else "-") + show(abs(delta))
