"""Exporters by runtime name, resolved lazily through :mod:`harness.export.registry`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.export.registry import runtime_spec

if TYPE_CHECKING:  # the contract imports the model and recipe stages: only for types
    from harness.export.base import Exporter


def get_exporter(runtime: str) -> Exporter:
    return runtime_spec(runtime).exporter_class()()
