"""Exporters by runtime name, resolved lazily."""

from __future__ import annotations

from harness.export.base import Exporter
from harness.plugins import resolve

EXPORTERS: dict[str, str] = {
    "onnxruntime": "harness.export.onnx:OnnxExporter",
    "executorch": "harness.export.executorch:ExecuTorchExporter",
}


def get_exporter(runtime: str) -> Exporter:
    return resolve(EXPORTERS[runtime])()
