"""Exceptions shared by every stage.

Each carries enough context for a user to fix the cause without reading a traceback:
configuration errors name the file, the key and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class HarnessError(Exception):
    """Base class for errors the CLI reports without a traceback."""


class ConfigError(HarnessError):
    """A suite, preset or device profile that does not validate."""

    def __init__(self, file: str | Path | None, key: str, expected: str, got: object = None):
        self.file = str(file) if file is not None else "<inline>"
        self.key = key
        self.expected = expected
        self.got = got
        detail = f": expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(f"{self.file}: key '{key}'{detail}")


class ExportError(HarnessError):
    """An exporter could not produce an artifact; the message is the exporter's own."""


class UnsupportedError(HarnessError):
    """A runtime or recipe cannot do what was asked on this target (e.g. no fp16 kernels)."""


class ModelError(HarnessError):
    """A user's model source failed to build (e.g. its factory raised); the message
    names the source and the original error, which is chained as the cause."""


class RecipeError(HarnessError):
    """A recipe failed while transforming a model."""


class RunnerError(HarnessError):
    """The on-device runner failed or returned something unusable."""

    def __init__(
        self,
        message: str,
        kind: str = "runner_error",
        stderr: str = "",
        deploy: dict[str, Any] | None = None,
        executor: dict[str, Any] | None = None,
    ):
        self.kind = kind
        self.stderr = stderr
        # What reached the board before the failure (files sent, bytes, cached), so a
        # failed cell's deploy record is kept too.
        self.deploy = deploy
        # Where and when the failed trials ran (the executor's record), set by the
        # executor: a failed cell of a device lab says which node it was on.
        self.executor = executor
        super().__init__(message)
