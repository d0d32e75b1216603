"""Quality of a variant: task accuracy, and fidelity to the fp32 PyTorch reference outputs
on the same inputs (top-1 agreement, cosine similarity, signal-to-noise ratio).

Outputs are the model's first output (the one every runtime returns first). The class
axis is the last one: a classifier's ``(N, C)`` has N positions, a tagger's ``(N, T, C)``
has N x T, and accuracy and agreement count positions.

Top-1 agreement alone can lie: a random-weight model whose fp32 outputs pick the same
class on every input agrees 100% with any variant that keeps that bias, however far its
outputs moved. So every score carries the cosine similarity and the SNR of the outputs,
and :func:`degenerate_reasons` says when the reference itself makes agreement
meaningless. An embedding (a factory's ``data["output"] = "embedding"``) has no classes:
its largest coordinate means nothing, so it gets no agreement (None) and is scored by the
cosine of the embeddings and the SNR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.models.inputs import InputSpec

# Outputs identical to the reference have no noise: their SNR is reported as this cap
# (float32 rounding alone gives about 130-150 dB), so results stay finite JSON numbers.
SNR_CAP_DB = 200.0
# Outputs whose spread across inputs is below this share of their size hardly depend on
# the input: trained and random-weight zoo models measure 0.4-1.0 here, a random MLP
# whose output bias dominates 0.02.
CONSTANT_SPREAD = 0.05


@dataclass(frozen=True)
class QualityScore:
    accuracy: float | None  # None where the model has no labels
    # Top-1 agreement with the fp32 reference (per position); None for an embedding.
    agreement: float | None
    max_abs_error: float
    mean_abs_error: float
    cosine: float  # mean over samples of the cosine similarity of the flattened outputs
    snr_db: float  # 10 log10(sum ref^2 / sum (out - ref)^2) over every output value
    # The same with the reference's mean over the inputs taken out of the signal: how well
    # the part of the output that depends on the input is kept (the constant part, e.g. a
    # dominant bias, inflates snr_db, cosine and agreement alike).
    snr_varying_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def snr_db(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Signal-to-noise ratio of ``outputs`` against ``reference`` in dB, capped at
    :data:`SNR_CAP_DB` (and at -SNR_CAP_DB for an all-zero reference)."""
    out = np.asarray(outputs, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    signal = float(np.sum(ref * ref))
    noise = float(np.sum((out - ref) ** 2))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(min(max(10.0 * math.log10(signal / noise), -SNR_CAP_DB), SNR_CAP_DB))


def score_outputs(
    outputs: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    embedding: bool = False,
) -> QualityScore:
    """Compare a variant's outputs with the fp32 reference outputs on the same inputs.

    ``embedding``: the outputs are embeddings, not class scores: no agreement, and
    labels (which an embedding cannot have) are ignored."""
    if outputs.shape != reference.shape:
        raise ValueError(f"variant outputs have shape {outputs.shape}, reference {reference.shape}")
    out = outputs.astype(np.float64)
    ref = reference.astype(np.float64)
    top1 = out.argmax(axis=-1)
    accuracy = None
    if labels is not None and not embedding:
        accuracy = float((top1 == np.asarray(labels).reshape(top1.shape)).mean())
    diff = np.abs(out - ref)
    flat_out, flat_ref = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    norms = np.linalg.norm(flat_out, axis=1) * np.linalg.norm(flat_ref, axis=1)
    dots = (flat_out * flat_ref).sum(axis=1)
    cos = np.where(norms > 0, dots / np.maximum(norms, 1e-30), 1.0)
    return QualityScore(
        accuracy=accuracy,
        agreement=None if embedding else float((top1 == ref.argmax(axis=-1)).mean()),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
        cosine=float(cos.mean()),
        snr_db=snr_db(out, ref),
        snr_varying_db=snr_db(out - ref.mean(axis=0), ref - ref.mean(axis=0)),
    )


def degenerate_reasons(reference: np.ndarray, embedding: bool = False) -> list[str]:
    """Why the fp32 reference outputs cannot tell variants apart by top-1 agreement.

    * ``one class``: the reference picks the same class at every position of every
      input, so any variant with the same bias agrees 100% (not checked for an
      ``embedding``, which has no classes and no agreement);
    * ``near-constant outputs``: the outputs vary across inputs by less than
      :data:`CONSTANT_SPREAD` of their RMS, i.e. they hardly depend on the input (a
      random-weight network whose biases dominate); the constant part then inflates SNR
      and cosine too, and ``snr_varying_db`` is the figure to read.

    Empty when neither holds (or with fewer than two positions to compare).
    """
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim < 2 or ref.shape[0] < 2:
        return []
    reasons = []
    top1 = ref.argmax(axis=-1).reshape(-1)
    classes = ref.shape[-1]
    if not embedding and classes > 1 and top1.size > 1 and np.all(top1 == top1[0]):
        reasons.append(
            f"one class: the fp32 model picks class {int(top1[0])} of {classes} on all "
            f"{top1.size} evaluated positions, so top-1 agreement is 100% for any variant "
            "with the same bias; judge it by SNR and cosine"
        )
    rms = float(np.sqrt(np.mean(ref * ref)))
    spread = float(np.mean(np.std(ref, axis=0)))
    if rms > 0 and spread < CONSTANT_SPREAD * rms:
        reasons.append(
            f"near-constant outputs: they vary across inputs by {spread / rms:.1%} of their "
            "size, so the model barely depends on its input and its constant part inflates "
            "agreement, cosine and SNR alike; judge it by the input-dependent SNR"
        )
    elif rms == 0:
        reasons.append("near-constant outputs: every output is zero")
    return reasons


def measured_inputs(
    runner_result: dict[str, Any], specs: Sequence[InputSpec], batch: int
) -> list[dict[str, Any]]:
    """The inputs a cell was timed with, for its result: what the runner fed (name, shape
    with the batch, dtype after any cast, id range), with where each range came from;
    the specs at ``batch`` when the runner did not say (an older runner)."""
    sources = {s.name: s.range_source for s in specs}
    fed = runner_result.get("inputs")
    if not isinstance(fed, list):
        return [s.with_batch(batch).to_dict() for s in specs]
    out = []
    for item in fed:
        entry = dict(item)
        if sources.get(entry.get("name")):
            entry["range_source"] = sources[entry["name"]]
        out.append(entry)
    return out
