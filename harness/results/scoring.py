"""Quality of a variant: task accuracy and agreement with the fp32 reference outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class QualityScore:
    accuracy: float | None  # None where the model has no labels
    agreement: float  # top-1 agreement with the fp32 reference
    max_abs_error: float
    mean_abs_error: float
    cosine: float

    def to_dict(self) -> dict:
        return asdict(self)


def score_outputs(
    outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None
) -> QualityScore:
    """Compare a variant's outputs (N, C) with the fp32 reference outputs on the same inputs."""
    if outputs.shape != reference.shape:
        raise ValueError(f"variant outputs have shape {outputs.shape}, reference {reference.shape}")
    out = outputs.reshape(len(outputs), -1).astype(np.float64)
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    top1 = out.argmax(axis=1)
    accuracy = float((top1 == labels).mean()) if labels is not None else None
    diff = np.abs(out - ref)
    norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
    cos = np.where(norms > 0, (out * ref).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
    return QualityScore(
        accuracy=accuracy,
        agreement=float((top1 == ref.argmax(axis=1)).mean()),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
        cosine=float(cos.mean()),
    )
