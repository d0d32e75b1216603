"""What the process exits with (the table is in harness/cli.py's docstring and the README)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CELLS_FAILED = 1
EXIT_REGRESSED = 1  # compare: something regressed
EXIT_INCOMPLETE = 3  # compare: no regression, but some cells could not be judged
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it ended


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C: the walk stops
    every runner, marks the run interrupted and keeps what was measured."""


def interrupt_exit(exc: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
