"""Where a command's output goes: the terminal, or the file of its ``-o/--output``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console


def terminal_console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped or logged output: rich would assume 80 columns and fold the table.
        console = Console(highlight=False, soft_wrap=False, width=200)
    return console


def stderr_console(quiet: bool) -> Console:
    return Console(stderr=True, highlight=False, quiet=quiet)


def write_text(text: str, output: Path | None) -> None:
    """``text`` into ``output`` as it is, or to stdout ending in a newline."""
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def write_rich(render: Callable[[Console], None], output: Path | None) -> None:
    """What ``render`` prints, to the terminal or into ``output`` (200 columns, no
    highlighting, so the file reads the same whatever terminal made it)."""
    if output is None:
        render(terminal_console())
        return
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as fh:
        render(Console(file=fh, width=200, highlight=False))
