"""Exporters by runtime name, resolved lazily through :mod:`harness.export.registry`."""

from __future__ import annotations

from harness.export.base import Exporter
from harness.export.registry import runtime_spec


def get_exporter(runtime: str) -> Exporter:
    return runtime_spec(runtime).exporter_class()()
