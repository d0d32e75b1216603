"""The run log: ``RESULTS/logs/run-ID.log``, where a run's diagnostics go.

The terminal shows progress and each cell's outcome in the harness's own words. What
lies under them (paramiko's handshake tracebacks, retries with their back-off, runner
clean-ups on a board) is kept in the run log, so a user who wants the detail finds it
and the progress display stays readable. The harness's own warnings are also passed to
``on_warning`` (the progress display shows them as log lines).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

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
