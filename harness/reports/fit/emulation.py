"""Emulated estimates against real measurements of the same board and variant, and how
far each emulated profile can be trusted over all its pairs."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.reports.fit.sources import board_of
from harness.results.store import CellRecord, ResultsStore


@dataclass(frozen=True)
class EstimateVsMeasured:
    estimate: float | None
    measured: float | None

    @property
    def ratio(self) -> float | None:
        if self.estimate is None or not self.measured:
            return None
        return self.estimate / self.measured

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "measured": self.measured, "ratio": self.ratio}


@dataclass(frozen=True)
class EmulationComparison:
    """One variant measured on a real board and estimated on its emulated profile."""

    board: str
    model: str
    variant: str
    runtime: str
    emulated_device: str
    emulated_run_id: int | None
    real_device: str
    real_run_id: int | None
    p50_ms: EstimateVsMeasured
    peak_memory_mb: EstimateVsMeasured

    def to_dict(self) -> dict[str, Any]:
        return {
            "board": self.board,
            "model": self.model,
            "variant": self.variant,
            "runtime": self.runtime,
            "emulated_device": self.emulated_device,
            "emulated_run_id": self.emulated_run_id,
            "real_device": self.real_device,
            "real_run_id": self.real_run_id,
            "p50_ms": self.p50_ms.to_dict(),
            "peak_memory_mb": self.peak_memory_mb.to_dict(),
        }


@dataclass(frozen=True)
class EmulationTrust:
    """How far one emulated profile's estimates were from its board, over all pairs."""

    board: str
    emulated_device: str
    pairs: int
    p50_ratio_geomean: float | None
    p50_ratio_range: tuple[float, float] | None
    peak_memory_ratio_geomean: float | None
    peak_memory_ratio_range: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "board": self.board,
            "emulated_device": self.emulated_device,
            "pairs": self.pairs,
            "p50_ratio_geomean": self.p50_ratio_geomean,
            "p50_ratio_range": list(self.p50_ratio_range) if self.p50_ratio_range else None,
            "peak_memory_ratio_geomean": self.peak_memory_ratio_geomean,
            "peak_memory_ratio_range": (
                list(self.peak_memory_ratio_range) if self.peak_memory_ratio_range else None
            ),
        }


def _geomean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and v > 0]
    if not present:
        return None
    return math.exp(sum(math.log(v) for v in present) / len(present))


def _range(values: list[float | None]) -> tuple[float, float] | None:
    present = [v for v in values if v is not None]
    return (min(present), max(present)) if present else None


def compare_emulation(
    store: ResultsStore,
    run_id: int,
    devices: Collection[str],
    boards: Mapping[str, str],
) -> tuple[EmulationComparison, ...]:
    """Estimate against measurement for every variant of ``devices`` in the run that the
    store also holds on the other side (an emulated device's board, or a real board's
    emulated profile). The other side comes from this run when it has it, else from the
    latest run that does; only successful cells count."""
    runs = [run_id, *sorted((r.id for r in store.runs() if r.id != run_id), reverse=True)]
    # (device, model, variant, runtime) -> the newest successful cell, this run first.
    newest: dict[tuple[str, str, str, str], CellRecord] = {}
    reported: list[CellRecord] = []
    for rid in runs:
        for cell in store.cells(rid):
            if cell.status != "ok":
                continue
            newest.setdefault((cell.device, cell.model, cell.variant, cell.runtime), cell)
            if rid == run_id and cell.device in devices:
                reported.append(cell)
    emulated_by_board: dict[str, list[str]] = {}
    for (device, *_), cell in newest.items():
        board = board_of(device, cell.emulated, boards)
        if board is not None and device not in emulated_by_board.get(board, []):
            emulated_by_board.setdefault(board, []).append(device)

    pairs: list[tuple[CellRecord, CellRecord]] = []  # (emulated, real)
    for cell in reported:
        rest = (cell.model, cell.variant, cell.runtime)
        board = board_of(cell.device, cell.emulated, boards)
        if board is not None:
            real = newest.get((board, *rest))
            if real is not None and not real.emulated:
                pairs.append((cell, real))
        elif not cell.emulated:
            for emulated_device in emulated_by_board.get(cell.device, []):
                estimate = newest.get((emulated_device, *rest))
                if estimate is not None:
                    pairs.append((estimate, cell))
    unique: dict[tuple[Any, ...], EmulationComparison] = {}
    for estimate, real in pairs:
        key = (estimate.device, real.device, estimate.model, estimate.variant, estimate.runtime)
        unique.setdefault(
            key,
            EmulationComparison(
                board=real.device,
                model=real.model,
                variant=real.variant,
                runtime=real.runtime,
                emulated_device=estimate.device,
                emulated_run_id=estimate.run_id,
                real_device=real.device,
                real_run_id=real.run_id,
                p50_ms=EstimateVsMeasured(
                    estimate.result.latency.stat("p50"), real.result.latency.stat("p50")
                ),
                peak_memory_mb=EstimateVsMeasured(
                    estimate.result.peak_memory_mb, real.result.peak_memory_mb
                ),
            ),
        )
    return tuple(unique.values())


def emulation_trust(comparisons: Iterable[EmulationComparison]) -> tuple[EmulationTrust, ...]:
    groups: dict[tuple[str, str], list[EmulationComparison]] = {}
    for c in comparisons:
        groups.setdefault((c.board, c.emulated_device), []).append(c)
    return tuple(
        EmulationTrust(
            board=board,
            emulated_device=device,
            pairs=len(items),
            p50_ratio_geomean=_geomean([c.p50_ms.ratio for c in items]),
            p50_ratio_range=_range([c.p50_ms.ratio for c in items]),
            peak_memory_ratio_geomean=_geomean([c.peak_memory_mb.ratio for c in items]),
            peak_memory_ratio_range=_range([c.peak_memory_mb.ratio for c in items]),
        )
        for (board, device), items in groups.items()
    )
