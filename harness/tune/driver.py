"""Measuring the search's points: each proposed chain becomes a variant of a suite
derived from the user's (one model, one runtime, one device), walked by the same
:class:`~harness.suite.walk.SuiteWalker` as ``harness run``, so every tried cell is
stored like any other (suite ``<name>-tune``, reported by ``harness report``) and a
repeated tune reuses what an earlier one measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from harness.devices.config import DeviceProfile
from harness.reports.fit.budgets import BudgetCheck, CheckStatus, budget_checks
from harness.results.store import CellRecord
from harness.suite.config import Budget, ModelEntry, Suite, Variant
from harness.suite.walk import SuiteWalker, WalkEvent
from harness.tune.search import BudgetSearch, Measured
from harness.tune.space import ChainSpace, Knobs


@dataclass(frozen=True)
class TuneRequest:
    suite: Suite
    model: ModelEntry
    runtime: str
    device: DeviceProfile
    budget: Budget
    space: ChainSpace
    max_cells: int
    results_dir: Path
    new_run: bool = False

    @property
    def suite_name(self) -> str:
        return f"{self.suite.name}-tune"


@dataclass(frozen=True)
class Trial:
    """One measured point: the search's view of it and the stored cell."""

    index: int
    name: str
    knobs: Knobs
    predicted_p90_ms: float | None
    measured: Measured
    cell: CellRecord
    reused: bool  # an earlier tune of this suite had measured it


@dataclass(frozen=True)
class TuneOutcome:
    request: TuneRequest
    search: BudgetSearch
    trials: tuple[Trial, ...]
    stopped: str
    run_id: int | None

    @property
    def pick(self) -> Trial | None:
        chosen = self.search.pick()
        return next((t for t in self.trials if t.measured is chosen), None)


def measured_of(knobs: Knobs, cell: CellRecord, checks: tuple[BudgetCheck, ...]) -> Measured:
    """The search's view of a stored cell: which kinds of limit it broke, its objective
    (accuracy where the model has labels, else SNR against the fp32 PyTorch model)."""
    if cell.status != "ok":
        return Measured(knobs, None, False, False, None, failed=cell.reason or "failed")
    results = [check.evaluate(cell) for check in checks]
    broken = [
        (c, r) for c, r in zip(checks, results, strict=True) if r.status is CheckStatus.BROKEN
    ]
    accuracy = cell.result.accuracy
    return Measured(
        knobs,
        cell.result.latency.stat("p90"),
        broke_ceiling=any(c.is_ceiling for c, _ in broken),
        broke_floor=any(not c.is_ceiling for c, _ in broken),
        objective=accuracy if accuracy is not None else cell.result.snr_db,
        unknown=any(r.status is CheckStatus.UNKNOWN for r in results),
    )


def run_tune(
    request: TuneRequest,
    on_event: Callable[[WalkEvent], None] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuneOutcome:
    checks = budget_checks(request.budget)
    search = BudgetSearch(request.space, request.budget.p90_ms)
    entry = request.model.model_copy(update={"variants": None})
    variants: dict[str, Variant] = {}
    trials: list[Trial] = []
    run_id = None
    stopped = f"the cell budget ({request.max_cells}) is spent"
    while len(trials) < request.max_cells:
        knobs = search.next()
        if knobs is None:
            stopped = "every chain of the space is measured or ruled out"
            break
        predicted = search.predict_p90(knobs) if search.measured else None
        name = request.space.name(knobs)
        variants[name] = Variant(name=name, steps=request.space.steps(knobs))
        derived = replace(
            request.suite,
            name=request.suite_name,
            models=[entry],
            variants=dict(variants),
            runtimes=[request.runtime],
            devices=[request.device],
            exclude=[],
            budgets={request.device.name: request.budget},
        )
        walker = SuiteWalker(
            derived,
            request.results_dir,
            new_run=request.new_run and not trials,
            on_event=on_event,
        )
        try:
            summary = walker.walk()
            run_id = summary.run_id
            cells = {c.variant: c for c in walker.store.cells(summary.run_id)}
        finally:
            walker.close()
        cell = cells[name]
        outcome = measured_of(knobs, cell, checks)
        search.record(outcome)
        trial = Trial(
            len(trials) + 1, name, knobs, predicted, outcome, cell, summary.skipped > len(trials)
        )
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    return TuneOutcome(request, search, tuple(trials), stopped, run_id)
