"""Interleaved re-measurement: a base and a candidate artifact, alternately, on one device.

Two runs made at different times see different machines: on the shared 2-core
reference machine a cell's p50 drifts by several percent between runner processes and
more between sessions, so comparing stored runs cannot resolve a 5-10% slowdown. Here
each round runs one runner trial of each side back to back, in alternating order
(base-new, new-base, ...) so that neither side always runs first; whatever drifts
during a round hits both sides alike, and the rounds are compared pairwise
(:func:`harness.results.compare.compare_latency_paired`). Every turn is stored (the
``interleaves`` tables of the results store), so a re-measurement is never lost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from harness.artifacts import Artifact, ArtifactStore, build_dirs
from harness.builtin import not_found
from harness.configfile import load_toml
from harness.devices.config import DeviceProfile, find_profile, load_profile
from harness.errors import ConfigError, HarnessError, RunnerError
from harness.machine import git_commit, machine_fingerprint, machine_info
from harness.results.compare import (
    DEFAULT_ALPHA,
    hodges_lehmann,
    hodges_lehmann_ci,
    interval_settles,
    match_cells,
    paired_rounds,
)
from harness.results.stats import percentile
from harness.results.store import (
    CellRecord,
    InterleaveCellRecord,
    InterleaveTurn,
    ResultsStore,
    RunRecord,
)
from harness.results.thresholds import Direction, Threshold
from harness.runner.job import MeasureSettings, settings_dict
from harness.suite.on_device import OpenDevices, artifact_job

DEFAULT_TIMEOUT_S = 600.0
SIDES = ("base", "new")


class StopReason(str, Enum):
    """Why a cell's rounds ended."""

    SETTLED = "settled"  # the interval fixes the verdict
    PRECISE = "precise"  # the interval is as narrow as the plan asks
    MAX_ROUNDS = "max_rounds"
    FIXED = "fixed"  # no precision target and no limit: min_rounds it is


@dataclass(frozen=True)
class RoundsPlan:
    """How many rounds a cell gets: at least ``min_rounds``, then more until its verdict
    cannot change any more or its ratio is known precisely enough, and never more than
    ``max_rounds``.

    After each round from ``min_rounds`` on, the new/base ratio's interval at
    ``confidence`` is looked at (the interval the verdict uses, see
    :func:`harness.results.compare.paired_verdict`). With a ``threshold``, the cell
    stops as soon as more rounds could not change what it is called
    (:func:`harness.results.compare.interval_settles`): the interval wholly beyond the
    limit (regressed, or improved), or wholly short of the regression limit with no
    improvement in view. Otherwise it stops once the interval's half-width is at most
    ``target_half_width`` (None: no such target), or at ``max_rounds``.

    Why: an A/A pair or a change of twice the limit is settled in about ten rounds on a
    quiet machine and in a few dozen on a loaded one; only a change close to the limit
    needs the precision target or the cap, and there either verdict is fair. An A/A
    cell can settle as regressed only once its interval is wholly above the limit (its
    estimate a half-width beyond it), so looking after every round barely adds false
    regressions: tests/suite/test_interleave_rates.py measures the rates by simulation.
    """

    min_rounds: int = 10
    max_rounds: int = 60
    target_half_width: float | None = 0.025
    threshold: Threshold | None = None
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"rounds: expected 1 <= min ({self.min_rounds}) <= max ({self.max_rounds})"
            )
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence: expected between 0 and 1, got {self.confidence}")

    @classmethod
    def for_limit(
        cls,
        min_rounds: int,
        max_rounds: int,
        latency_limit: float,
        alpha: float = DEFAULT_ALPHA,
    ) -> RoundsPlan:
        """The plan ``harness compare --interleave`` uses: settle on the latency limit
        at confidence 1 - ``alpha``, else go on until the interval is within +-half the
        limit (where a change of twice the limit clears the verdict's bar in over 99%
        of cells), at most ``max_rounds``."""
        threshold = Threshold("latency_p50", Direction.HIGHER_IS_WORSE, latency_limit)
        return cls(
            min_rounds, max(min_rounds, max_rounds), 0.5 * latency_limit, threshold, 1.0 - alpha
        )

    def stop_reason(self, pairs: Sequence[tuple[float, float]]) -> StopReason | None:
        """Why the cell stops after these rounds, or None to measure another."""
        n = len(pairs)
        if n < self.min_rounds:
            return None
        if self.target_half_width is None and self.threshold is None:
            return StopReason.FIXED
        log_ratios = [math.log(new / base) for base, new in pairs]
        low, high = (math.exp(v) for v in hodges_lehmann_ci(log_ratios, self.confidence))
        if self.threshold is not None:
            ratio = math.exp(hodges_lehmann(log_ratios))
            if interval_settles(ratio, low, high, self.threshold):
                return StopReason.SETTLED
        if self.target_half_width is not None and (high - low) / 2.0 <= self.target_half_width:
            return StopReason.PRECISE
        return StopReason.MAX_ROUNDS if n >= self.max_rounds else None

    def done(self, pairs: Sequence[tuple[float, float]]) -> bool:
        return self.stop_reason(pairs) is not None


@dataclass(frozen=True)
class InterleaveEvent:
    kind: str  # "cell_start" | "turn" | "cell_done"
    key: tuple[str, str, str, str]
    index: int = 0  # which cell, from 1
    total: int = 0
    round: int = 0
    side: str = ""
    p50_ms: float | None = None
    record: InterleaveCellRecord | None = None


@dataclass(frozen=True)
class InterleaveOutcome:
    interleave_id: int
    cells: dict[tuple[str, str, str, str], InterleaveCellRecord]


def _settings(cell: CellRecord) -> MeasureSettings:
    """The candidate cell's measure settings, one trial per turn and no profiling (the
    per-op profile costs time and is not what is being compared)."""
    known = {f.name for f in dataclasses.fields(MeasureSettings)}
    stored = {k: v for k, v in cell.result.measure.items() if k in known}
    return dataclasses.replace(MeasureSettings(**stored), trials=1, profile=False)


def _inputs(artifact: Artifact, cell: CellRecord) -> tuple[Any, ...]:
    """The input specs the cell was measured with: read from the artifact (a ready
    file's shape from its sidecar, where the suite may have given it), with the integer
    id ranges the cell recorded, by position (a file keeps no ranges; without one ids
    are 0)."""
    from harness.models.loaders import load_file_model

    stored = artifact.meta.get("input_shape")
    specs = load_file_model(artifact.path, input_shape=stored or None).inputs
    measured = cell.result.inputs
    if len(measured) != len(specs):
        return specs
    return tuple(
        dataclasses.replace(spec, id_range=tuple(m["range"]))
        if not spec.is_float and isinstance(m, dict) and m.get("range")
        else spec
        for spec, m in zip(specs, measured, strict=True)
    )


def _profile(name: str, device_dirs: Sequence[Path]) -> DeviceProfile:
    """The device profile a cell names, looked up in ``device_dirs``."""
    path = find_profile(name, list(device_dirs))
    if path is None:
        raise HarnessError("expected " + not_found("devices", name, list(device_dirs)))
    return load_profile(path)


def _measure_cell(
    base: CellRecord,
    new: CellRecord,
    artifacts: ArtifactStore,
    devices: OpenDevices,
    device_dirs: Sequence[Path],
    plan: RoundsPlan,
    timeout_s: float,
    on_turn: Callable[[int, str, float], None],
) -> InterleaveCellRecord:
    settings = _settings(new)
    turns: list[InterleaveTurn] = []

    def record(status: str, reason: str | None) -> InterleaveCellRecord:
        return InterleaveCellRecord(
            key=new.key,
            base_artifact_hash=base.artifact_hash or "",
            new_artifact_hash=new.artifact_hash or "",
            status=status,
            reason=reason,
            measure=settings_dict(settings),
            turns=tuple(turns),
        )

    found: dict[str, Artifact] = {}
    for side, cell in zip(SIDES, (base, new), strict=True):
        artifact = artifacts.get(cell.artifact_hash or "")
        if artifact is None:
            return record(
                "failed",
                f"artifact_missing: the {side} run's artifact {cell.artifact_hash} is not in "
                f"{artifacts.root} (re-run its suite to rebuild it)",
            )
        found[side] = artifact
    try:
        profile = _profile(new.device, device_dirs)
        device = devices.get(profile)
        jobs = {
            side: artifact_job(new.runtime, artifact, _inputs(artifact, new), settings, profile)
            for side, artifact in found.items()
        }
        pairs: list[tuple[float, float]] = []
        while not plan.done(pairs):
            round_index = len(pairs)
            # Alternate who goes first, so a drift within a round does not always favour
            # the same side.
            order = SIDES if round_index % 2 == 0 else SIDES[::-1]
            p50s: dict[str, float] = {}
            for position, side in enumerate(order):
                run = device.run(jobs[side], found[side].path, None, timeout_s)
                samples = [float(s) for s in run.result["samples_ms"]]
                p50s[side] = percentile(sorted(samples), 50)
                turns.append(
                    InterleaveTurn(round_index, side, position, p50s[side], tuple(samples))
                )
                on_turn(round_index, side, p50s[side])
            pairs.append((p50s["base"], p50s["new"]))
    except RunnerError as exc:
        return record("failed", f"{exc.kind}: {exc}"[:500])
    except HarnessError as exc:  # no such device profile, an unreadable artifact
        return record("failed", f"bad_input: {exc}"[:500])
    except Exception as exc:  # a bug must not stop the other cells
        return record("failed", f"internal_error: {type(exc).__name__}: {exc}"[:500])
    return record("ok", None)


def device_dirs_of(run: RunRecord) -> list[Path]:
    """Where the run's device profiles are: its suite's ``device_dirs`` and the usual
    places beside it (as :func:`harness.suite.config.load_suite` looks them up)."""
    from harness.suite.config import default_dirs

    suite_path = Path(run.suite_path)
    if not suite_path.is_file():
        return default_dirs(None, "devices", [])
    try:
        extra = load_toml(suite_path).get("device_dirs", [])
    except ConfigError:
        extra = []
    return default_dirs(suite_path.parent, "devices", [str(e) for e in extra])


def interleave_runs(
    store: ResultsStore,
    results_dir: Path,
    base_run: RunRecord,
    new_run: RunRecord,
    pairs: Sequence[tuple[CellRecord, CellRecord]],
    *,
    plan: RoundsPlan | None = None,
    device_dirs: Sequence[Path] = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_event: Callable[[InterleaveEvent], None] | None = None,
) -> InterleaveOutcome:
    """Re-measure each (base cell, new cell) pair's artifacts alternately for as many
    rounds as ``plan`` asks, storing each cell's turns as it finishes. A cell that cannot
    be measured (artifact gone, device profile missing, runner failure) is stored as
    failed with its reason (the comparison then shows it as not judged) and the others
    go on. Ctrl-C marks the interleave interrupted."""
    plan = plan or RoundsPlan()
    emit = on_event or (lambda event: None)
    info = machine_info()
    interleave_id = store.begin_interleave(
        base_run.id,
        new_run.id,
        plan.min_rounds,
        plan.max_rounds,
        plan.target_half_width,
        git_commit(Path(__file__).resolve().parents[1]),
        machine_fingerprint(info),
    )
    artifacts = ArtifactStore(build_dirs(Path(results_dir))[1])
    devices = OpenDevices()
    out: dict[tuple[str, str, str, str], InterleaveCellRecord] = {}
    try:
        for index, (base, new) in enumerate(pairs, start=1):
            emit(InterleaveEvent("cell_start", new.key, index, len(pairs)))

            def on_turn(round_index: int, side: str, p50: float, key=new.key, i=index) -> None:
                emit(InterleaveEvent("turn", key, i, len(pairs), round_index, side, p50))

            cell = _measure_cell(
                base, new, artifacts, devices, device_dirs, plan, timeout_s, on_turn
            )
            store.record_interleave_cell(interleave_id, cell)
            out[cell.key] = cell
            emit(InterleaveEvent("cell_done", new.key, index, len(pairs), record=cell))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: no runner may go on measuring
        devices.abort()
        store.set_interleave_status(interleave_id, "interrupted")
        raise
    finally:
        devices.close()
    store.set_interleave_status(interleave_id, "complete")
    return InterleaveOutcome(interleave_id, out)


def interleave_compare(
    store: ResultsStore,
    results_dir: Path,
    base_run: RunRecord,
    new_run: RunRecord,
    *,
    min_rounds: int,
    max_rounds: int,
    thresholds: Mapping[str, Threshold],
    alpha: float,
    say: Callable[[str], None] = lambda line: None,
) -> InterleaveOutcome:
    """The interleave ``harness compare --interleave`` judges: every cell both runs
    measured ok, re-measured on the new run's device profiles for the rounds
    :meth:`RoundsPlan.for_limit` gives on the latency limit of ``thresholds`` at level
    ``alpha``. ``say`` gets a line when it starts and one as each cell finishes."""
    pairs = match_cells(store.cells(base_run.id), store.cells(new_run.id)).both_ok
    plan = RoundsPlan.for_limit(min_rounds, max_rounds, thresholds["latency_p50"].limit, alpha)
    say(
        f"interleaving runs {base_run.id} and {new_run.id}: {len(pairs)} cells, "
        f"{plan.min_rounds}-{plan.max_rounds} rounds each (base and new alternately, "
        "until the verdict is settled or the ratio is known to "
        f"+-{(plan.target_half_width or 0) * 100:g}%)"
    )

    def on_event(event: InterleaveEvent) -> None:
        if event.kind == "cell_done" and event.record is not None:
            rec = event.record
            rounds = paired_rounds(rec)
            if rec.status == "ok":
                stop = plan.stop_reason(rounds)
                status = f"{len(rounds)} rounds ({stop.value if stop else 'stopped'})"
            else:
                status = f"not judged: {rec.reason}"
            say(f"[{event.index}/{event.total}] {' / '.join(event.key)}: {status}")

    return interleave_runs(
        store,
        results_dir,
        base_run,
        new_run,
        pairs,
        plan=plan,
        device_dirs=device_dirs_of(new_run),
        on_event=on_event,
    )
