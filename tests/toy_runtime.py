"""A toy runtime in one module, as a plugin would add one: its exporter writes the model's
weights as a ``.toy`` JSON file and its registry entry says the rest. It proves the seam:
the suite, `devices check`, artifact keys and reports take it without another edit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from harness.export.base import Exporter, ExportResult
from harness.export.registry import RuntimeSpec
from harness.models.inputs import InputSpec

SPEC = RuntimeSpec(
    name="toyrt",
    exporter="tests.toy_runtime:ToyExporter",
    suffix=".toy",
    import_name="toyrt",
    packages=("toyrt-engine",),
    install_hint="pip install toyrt-engine",
    file_reader="tests.toy_runtime:read_toy_inputs",
    file_kind="toy model",
    quant_modes=("dynamic",),
    optional=True,
)


class ToyExporter(Exporter):
    runtime: ClassVar[str] = "toyrt"
    suffix: ClassVar[str] = ".toy"

    def export(self, bundle, out_path, quant, target) -> ExportResult:  # type: ignore[override]
        shapes = {name: list(p.shape) for name, p in bundle.module.state_dict().items()}
        inputs = [s.to_dict() for s in bundle.inputs]
        Path(out_path).write_text(json.dumps({"weights": shapes, "inputs": inputs}))
        return ExportResult(path=Path(out_path), notes={"quant_format": "fp32"})

    @classmethod
    def versions(cls) -> dict[str, str]:
        return {"toyrt-engine": "absent"}


def read_toy_inputs(path: Path) -> tuple[InputSpec, ...]:
    data = json.loads(Path(path).read_text())
    return tuple(InputSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in data["inputs"])
