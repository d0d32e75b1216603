"""The budgets and boards of a fit: what ``harness fit`` and the HTML report's fit section
check a run against, from one place.

The budgets come from a suite file (the one given, else the run's own when it is still
there) with command-line limits laid over them for the target devices; the boards that
emulated profiles stand for come from the suite's device directories (or the default
ones without a suite).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.reports.fit.budgets import with_overrides
from harness.reports.fit.sources import (
    SuiteBudgets,
    board_of,
    boards_from_profiles,
    device_selected,
    load_suite_budgets,
    run_devices,
)
from harness.results.store import ResultsStore, RunRecord
from harness.suite.config import Budget, default_dirs


@dataclass(frozen=True)
class FitPlan:
    """What one fit is computed from, and what its callers tell the user about it."""

    run_id: int
    suite: SuiteBudgets | None  # None: no suite file to read budgets from
    budgets: dict[str, Budget]  # device or board -> budget, command-line limits laid over
    boards: dict[str, str]  # emulated profile -> the board it stands for
    present: dict[str, bool]  # the run's devices (matrix order) -> emulated
    devices: tuple[str, ...] | None  # the devices asked for; None: every device of the run
    # Asked-for names with no cells in the run on them or on a profile emulating them.
    unknown_devices: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. that the run's suite file is gone


def plan_fit(
    store: ResultsStore,
    run: RunRecord,
    suite_path: Path | None = None,
    overrides: Mapping[str, float] | None = None,
    wanted: Collection[str] | None = None,
) -> FitPlan:
    """The budgets and boards to check ``run`` against. ``suite_path`` is read whether or
    not it exists (a missing file is the caller's error); without it the run's own suite
    file is read when it is still there, and a note says when it is not. ``overrides``
    (:func:`~harness.reports.fit.budgets.parse_budget_options`) are laid over the budget
    of each ``wanted`` device, else of every device of the run."""
    notes: list[str] = []
    suite: SuiteBudgets | None = None
    if suite_path is not None:
        suite = load_suite_budgets(suite_path)
    else:
        own = Path(run.suite_path) if run.suite_path else None
        if own is not None and own.is_file():
            suite = load_suite_budgets(own)
        else:
            notes.append(f"the run's suite file {own} is not there")
    boards = boards_from_profiles(suite.device_dirs if suite else default_dirs(None, "devices", []))
    present = run_devices(store.cells(run.id))
    devices = tuple(wanted) if wanted else None
    unknown = tuple(
        name
        for name in devices or ()
        if not any(device_selected(d, e, [name], boards) for d, e in present.items())
    )
    targets = (
        {name: board_of(name, present.get(name, False), boards) for name in devices}
        if devices
        else {d: board_of(d, e, boards) for d, e in present.items()}
    )
    budgets = with_overrides(suite.budgets if suite else {}, overrides or {}, targets)
    return FitPlan(
        run_id=run.id,
        suite=suite,
        budgets=budgets,
        boards=boards,
        present=present,
        devices=devices,
        unknown_devices=unknown,
        notes=tuple(notes),
    )
