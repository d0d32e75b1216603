"""The fit report of one run: every budgeted device's verdicts and recommendations, the
devices without a budget, and emulation against the real boards."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from harness.reports.fit.budgets import budget_checks, budget_for
from harness.reports.fit.emulation import (
    EmulationComparison,
    EmulationTrust,
    compare_emulation,
    emulation_trust,
)
from harness.reports.fit.ranking import DEFAULT_ACCURACY_TOLERANCE, DeviceFit, assess_device
from harness.reports.fit.sources import board_of, device_selected, run_devices
from harness.results.store import ResultsStore
from harness.suite.config import Budget


@dataclass(frozen=True)
class FitReport:
    run_id: int
    suite_name: str
    accuracy_tolerance: float
    devices: tuple[DeviceFit, ...]
    devices_without_budget: tuple[str, ...]
    emulation_vs_real: tuple[EmulationComparison, ...]
    emulation_trust: tuple[EmulationTrust, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "suite_name": self.suite_name,
            "accuracy_tolerance": self.accuracy_tolerance,
            "devices": [d.to_dict() for d in self.devices],
            "devices_without_budget": list(self.devices_without_budget),
            "emulation_vs_real": [c.to_dict() for c in self.emulation_vs_real],
            "emulation_trust": [t.to_dict() for t in self.emulation_trust],
        }


def fit_report(
    store: ResultsStore,
    run_id: int,
    budgets: Mapping[str, Budget],
    *,
    boards: Mapping[str, str] | None = None,
    devices: Collection[str] | None = None,
    accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
) -> FitReport:
    """The fit report of one run.

    ``budgets`` maps device or board names to budgets and ``boards`` emulated profile names
    to their board (both as :func:`~harness.reports.fit.plan.plan_fit` gives them, with
    command-line limits laid over); ``devices`` limits the report to these devices and
    the emulated profiles of these boards. A budget with no limit set counts as none.
    """
    boards = boards or {}
    run = store.get_run(run_id)
    cells = store.cells(run_id)
    present = run_devices(cells)
    selected = [d for d, emu in present.items() if device_selected(d, emu, devices, boards)]
    fits: list[DeviceFit] = []
    without: list[str] = []
    for device in selected:
        board = board_of(device, present[device], boards)
        found = budget_for(device, board, budgets)
        if found is None or not budget_checks(found[1]):
            without.append(device)
            continue
        device_cells = [c for c in cells if c.device == device]
        fits.append(
            assess_device(device, device_cells, found[0], found[1], board, accuracy_tolerance)
        )
    comparisons = compare_emulation(store, run_id, selected, boards)
    return FitReport(
        run_id=run_id,
        suite_name=run.suite_name,
        accuracy_tolerance=accuracy_tolerance,
        devices=tuple(fits),
        devices_without_budget=tuple(without),
        emulation_vs_real=comparisons,
        emulation_trust=emulation_trust(comparisons),
    )
