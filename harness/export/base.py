"""The exporter contract: one module per runtime format, registered by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.models.base import ModelBundle
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo


@dataclass
class ExportResult:
    path: Path
    # What the exporter chose and why, e.g. {"quant_format": "QDQ U8S8",
    # "quant_reason": "x86 with VNNI"}; stored with the variant.
    notes: dict[str, Any] = field(default_factory=dict)


class Exporter(ABC):
    runtime: ClassVar[str]
    suffix: ClassVar[str]

    @abstractmethod
    def export(
        self,
        bundle: ModelBundle,
        out_path: Path,
        quant: QuantRequest | None,
        target: TargetInfo,
    ) -> ExportResult:
        """Write the artifact to ``out_path``.

        Raise :class:`harness.errors.ExportError` with the exporter's own message when the
        model cannot be exported, :class:`harness.errors.UnsupportedError` when the
        request makes no sense for this runtime on this target (e.g. fp16 without fp16
        kernels).
        """

    @classmethod
    @abstractmethod
    def versions(cls) -> dict[str, str]:
        """Versions of the libraries whose change must invalidate cached artifacts."""
