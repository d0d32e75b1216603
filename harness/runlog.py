"""The run log: ``RESULTS/logs/run-ID.log``, where a run's diagnostics go.

The terminal shows progress and each cell's outcome in the harness's own words. What
lies under them (paramiko's handshake tracebacks, retries with their back-off, runner
clean-ups on a board) is kept in the run log, so a user who wants the detail finds it
and the progress display stays readable. The harness's own warnings are also passed to
``on_warning`` (the progress display shows them as log lines).

What other code writes to the process's standard error while a run walks goes there too
(:class:`StderrToLog`): ExecuTorch's and torch's native cpuinfo diagnostics (written
straight to file descriptor 2, past Python), torch's own log handler (``W1202 ...
_pytree.py ...``), torchao's "Failed to load ..." notes and any Python warning that
gets past the CLI's filters. None of it is the user's to act on during a run, and it
would tear the progress display apart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"
_LOGGERS = ("harness", "paramiko")


class _Forward(logging.Handler):
    def __init__(self, on_warning: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self._on_warning = on_warning

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._on_warning(record.getMessage())
        except Exception:  # a display that fails must not stop the run
            self.handleError(record)


def log_path(results_dir: Path, run_id: int) -> Path:
    return Path(results_dir) / "logs" / f"run-{run_id}.log"


@contextlib.contextmanager
def run_log(path: Path, on_warning: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Send the harness's and paramiko's log records to ``path`` (appended: a resumed
    run continues its log) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(_FORMAT))
    handlers: list[logging.Handler] = [to_file]
    if on_warning is not None:
        handlers.append(_Forward(on_warning))
    saved = {}
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(to_file)
    harness_log = logging.getLogger("harness")
    for handler in handlers[1:]:
        harness_log.addHandler(handler)
    try:
        yield path
    finally:
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(to_file)
            logger.setLevel(saved[name])
        for handler in handlers[1:]:
            harness_log.removeHandler(handler)
        to_file.close()


STDERR_HEADER = (
    b"---- standard error of the harness process (native libraries, third-party warnings), "
    b"kept off the terminal ----\n"
)


class StderrToLog:
    """File descriptor 2 sent away from the terminal while a run walks: into a temporary
    file until the run log's path is known (:meth:`to_log`, once the run has an id), then
    into the run log itself (appended; the log's own handler appends too, so lines
    interleave in time order). At the end the terminal's stderr is back; whatever was
    captured before a run log existed (a run that failed to start) is written to the
    terminal then, so nothing an error said is lost.

    The descriptor is redirected, not ``sys.stderr`` replaced: native code writes to the
    descriptor, and a handler that holds the ``sys.stderr`` object (torch installs one on
    import) keeps a stream that stays valid after the run."""

    # The capture in effect, if any: a message meant for the user during a run (a second
    # Ctrl-C) goes through it to the terminal.
    active: StderrToLog | None = None

    def __init__(self) -> None:
        self._saved: int | None = None
        self._pending: IO[bytes] | None = None
        self.path: Path | None = None

    def __enter__(self) -> StderrToLog:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._pending = tempfile.TemporaryFile()
        os.dup2(self._pending.fileno(), 2)
        StderrToLog.active = self
        return self

    def _take_pending(self) -> bytes:
        if self._pending is None:
            return b""
        self._pending.flush()
        self._pending.seek(0)
        data = self._pending.read()
        self._pending.close()
        self._pending = None
        return data

    def to_log(self, path: Path) -> None:
        """From now on, stderr goes to ``path`` (with what was captured so far)."""
        if self._saved is None or self.path is not None:
            return
        sys.stderr.flush()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, STDERR_HEADER + self._take_pending())
            os.dup2(fd, 2)
        finally:
            os.close(fd)
        self.path = path

    @classmethod
    def write_terminal(cls, text: str) -> None:
        """Write to the terminal's stderr, past a capture in effect (a message for the user)."""
        sys.stderr.flush()
        active = cls.active
        os.write(active._saved if active and active._saved is not None else 2, text.encode())

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        StderrToLog.active = None
        sys.stderr.flush()
        pending = self._take_pending()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        if pending:
            os.write(2, pending)
