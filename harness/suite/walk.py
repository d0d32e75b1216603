"""Walk a suite's matrix cell by cell, recording every outcome in the results store.

A cell is (model, variant, runtime, device). Each one ends as a success with
measurements or a failure with its reason; a failure never stops the rest. Cells
already recorded in the run (at the same configuration) are skipped, so an interrupted
run resumes where it stopped; cells that failed for a reason that may pass
(:data:`TRANSIENT_KINDS`) are measured again, and with ``retry_failed`` every failed
one. An interrupt (Ctrl-C, SIGTERM) stops every device's runner, then marks the run
interrupted; the cells recorded so far are whole, because each is written in one
transaction. A board that becomes unavailable ends its lane: its remaining cells are
recorded as not attempted, at once, and the next run tries them again.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import harness
from harness.artifacts import ArtifactStore, build_dirs, digest, library_versions
from harness.devices import lane
from harness.devices.config import DeviceProfile
from harness.errors import (
    ConfigError,
    ExportError,
    HarnessError,
    ModelError,
    RecipeError,
    RunnerError,
    UnsupportedError,
)
from harness.export.registry import runtime_spec, runtimes_for_file
from harness.machine import git_commit, machine_fingerprint, machine_info
from harness.pipeline import Pipeline, quant_mode
from harness.results.owner import describe_owner, owner_alive, this_process
from harness.results.scoring import measured_inputs, score_outputs
from harness.results.store import CellRecord, DoneCell, ResultsStore
from harness.runlog import log_path, run_log
from harness.runner.job import settings_dict
from harness.runner.trials import combine_trials
from harness.suite.config import ModelEntry, Suite, Variant
from harness.suite.on_device import Executor, InProcessExecutor, artifact_job


@dataclass(frozen=True)
class Cell:
    entry: ModelEntry
    variant: Variant
    runtime: str
    device: DeviceProfile

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.entry.name, self.variant.name, self.runtime, self.device.name)

    @property
    def label(self) -> str:
        return " / ".join(self.key)


def expand(suite: Suite) -> list[Cell]:
    """The suite's matrix in walk order: model, variant, runtime, device."""
    cells = []
    for entry in suite.models:
        names = entry.variants if entry.variants is not None else list(suite.variants)
        variants = [suite.variants[n] for n in names]
        runtimes = suite.runtimes
        if entry.file is not None:
            # A ready file runs on the runtimes that read its format only (an .onnx on
            # onnxruntime and OpenVINO), and no recipe applies to it.
            readers = runtimes_for_file(entry.file)
            runtimes = [r for r in suite.runtimes if r in readers]
            variants = [v for v in variants if v.is_baseline]
        for variant in variants:
            for runtime in runtimes:
                for device in suite.devices:
                    if not suite.excluded(entry.name, variant.name, runtime, device.name):
                        cells.append(Cell(entry, variant, runtime, device))
    return cells


@dataclass(frozen=True)
class WalkEvent:
    kind: str  # "begin" | "cell_start" | "cell_done" | "cell_skipped" | "log" | "end"
    index: int = 0
    total: int = 0
    cell: Cell | None = None
    record: CellRecord | None = None
    message: str = ""
    run_id: int | None = None


# Failures that may pass on their own: a continued run measures these cells again.
# (A time-out counts only on a board (DeviceProfile.is_remote_board), where a stalled link
# or a busy board causes it; on this machine it is the model's own doing.)
# (worker_lost: the device lab's node running a board's cell died or left the cluster.)
TRANSIENT_KINDS = frozenset({"device_unavailable", "runner_crashed", "interrupted", "worker_lost"})
BOARD_TRANSIENT_KINDS = frozenset({"timeout"})


class RunBusy(HarnessError):
    """The run a ``harness run`` would resume is being run by a live process."""


@dataclass
class WalkSummary:
    run_id: int
    total: int
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[CellRecord] = field(default_factory=list)
    # Cells measured again because they had failed: failure kind -> count.
    retried: Counter[str] = field(default_factory=Counter)
    log_path: Path | None = None

    def retried_text(self) -> str:
        """``"3 retried (device_unavailable 2, timeout 1)"``, or "" when none was."""
        if not self.retried:
            return ""
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.retried.most_common())
        return f"{sum(self.retried.values())} retried ({kinds})"


@dataclass
class _LaneState:
    unavailable: str | None = None  # why a board of this lane stopped answering


def _reason(kind: str, message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    return f"{kind}: {first}"[:500]


class SuiteWalker:
    def __init__(
        self,
        suite: Suite,
        results_dir: Path,
        *,
        fresh: bool = False,
        new_run: bool = False,
        retry_failed: bool = False,
        on_event: Callable[[WalkEvent], None] | None = None,
        executor: Executor | None = None,
    ):
        self.suite = suite
        self.results_dir = Path(results_dir)
        self.fresh = fresh
        self.new_run = new_run or fresh
        self.retry_failed = retry_failed
        self.on_event = on_event or (lambda event: None)
        self.store = ResultsStore(self.results_dir / "harness.db")
        cache_dir, artifacts_dir = build_dirs(self.results_dir)
        self.pipeline = Pipeline(
            suite,
            cache_dir=cache_dir,
            artifacts=ArtifactStore(artifacts_dir),
            fresh=fresh,
            log=lambda msg: self.on_event(WalkEvent("log", message=msg)),
        )
        # Runs each cell's trials: in this process, or on a device lab's node (Ray).
        self.executor = executor or InProcessExecutor()
        self._prepared: dict[str, tuple[Any, Any] | BaseException] = {}
        self._build_lock = threading.Lock()
        self._stop = threading.Event()

    def close(self) -> None:
        self.executor.close()
        self.store.close()

    def _open_run(self) -> int:
        """The run to walk: the suite's latest, taken over for this process, or a new
        one. A run left ``running`` by a process that died is marked interrupted first;
        one whose process is alive is refused (:class:`RunBusy`)."""
        commit = git_commit(Path(__file__).resolve().parents[1])
        versions = library_versions()
        owner = this_process()
        for run in self.store.abandoned_runs(owner_alive):
            self._log(
                f"run {run.id} ({run.suite_name}) was left running by "
                f"{describe_owner(run)}, which is gone: marked interrupted"
            )
        latest = self.store.latest_run(self.suite.name)
        if latest is not None and not self.new_run:
            _, holder = self.store.claim_run(latest.id, owner, owner_alive)
            if holder is not None:
                raise RunBusy(
                    f"{self.store.path}: run {holder.id} of suite {self.suite.name} is being "
                    f"run by {describe_owner(holder)} (since {holder.started_at}); wait for "
                    "it to finish or stop it, or start a separate run with --new-run"
                )
            self.store.update_run_context(latest.id, commit, versions)
            return latest.id
        info = machine_info()
        return self.store.begin_run(
            suite_name=self.suite.name,
            suite_path=str(self.suite.path),
            harness_version=harness.__version__,
            git_commit=commit,
            machine=info,
            machine_fingerprint=machine_fingerprint(info),
            runtime_versions=versions,
            owner=owner,
        )

    def _log(self, message: str) -> None:
        self.on_event(WalkEvent("log", message=message))

    def _retries(self, cell: Cell, done: DoneCell) -> bool:
        """Whether a cell the run already holds at this configuration runs again."""
        if done.status == "ok":
            return False
        if self.retry_failed:
            return True
        kind = done.failure_kind
        return kind in TRANSIENT_KINDS or (
            cell.device.is_remote_board and kind in BOARD_TRANSIENT_KINDS
        )

    def config_hash(self, cell: Cell) -> str:
        target = cell.device.target()
        config: dict[str, Any] = {
            "artifact": self.pipeline.artifact_key(cell.entry, cell.variant, cell.runtime, target),
            "device": cell.device.model_dump(mode="json"),
            "measure": self.suite.measure.model_dump(mode="json"),
        }
        # A runtime measuring another's artifact (OpenVINO) is not in its key: its own
        # version is. (None for the runtimes the shared version table covers.)
        own = runtime_spec(cell.runtime).own_versions()
        if own:
            config["runtime_versions"] = own
        return digest(config)

    def walk(self) -> WalkSummary:
        """Every cell, one at a time per lane (:func:`harness.devices.lane`): the cells
        on this machine in order, each SSH board's beside them in its own thread."""
        cells = expand(self.suite)
        run_id = self._open_run()
        summary = WalkSummary(
            run_id=run_id, total=len(cells), log_path=log_path(self.results_dir, run_id)
        )
        with run_log(summary.log_path, on_warning=self._log):
            try:
                self._walk_cells(summary, run_id, cells)
            except BaseException:
                # Ctrl-C, SIGTERM, or anything else that stops the walk: no runner may go
                # on measuring, the run is not running any more, and what it recorded is
                # whole, so it resumes like an interrupted one.
                self._stop.set()
                self.executor.abort()
                self.store.set_run_status(run_id, "interrupted")
                raise
        self.store.set_run_status(run_id, "complete")
        self.on_event(WalkEvent("end", total=len(cells), run_id=run_id))
        return summary

    def _walk_cells(self, summary: WalkSummary, run_id: int, cells: list[Cell]) -> None:
        self.on_event(WalkEvent("begin", total=len(cells), run_id=run_id))
        done = self.store.done_cells(run_id)
        lanes: dict[str, list[tuple[int, Cell, str]]] = {}
        for index, cell in enumerate(cells, start=1):
            config_hash = self.config_hash(cell)
            before = done.get(cell.key)
            if before is not None and before.config_hash == config_hash:
                if not self._retries(cell, before):
                    summary.skipped += 1
                    self.on_event(WalkEvent("cell_skipped", index, len(cells), cell))
                    continue
                summary.retried[before.failure_kind or "failed"] += 1
            lanes.setdefault(lane(cell.device), []).append((index, cell, config_hash))
        if summary.retried:
            self._log(f"measuring again what had failed: {summary.retried_text()}")
        if len(lanes) == 1:
            state = _LaneState()
            for index, cell, config_hash in next(iter(lanes.values())):
                self.on_event(WalkEvent("cell_start", index, len(cells), cell))
                record, samples = self._run_lane_cell(cell, config_hash, state)
                self._record(summary, run_id, index, cell, record, samples)
        elif lanes:
            self._walk_lanes(summary, run_id, lanes)

    def _run_lane_cell(
        self, cell: Cell, config_hash: str, state: _LaneState
    ) -> tuple[CellRecord, list[float]]:
        """One cell of a lane; once a board of the lane is unavailable, its remaining
        cells are recorded as not attempted instead of each waiting out the retries."""
        if state.unavailable is not None:
            base = self._base(cell, config_hash)
            result = {"lineage": cell.variant.lineage()}
            message = (
                f"not attempted: {cell.device.name} became unavailable earlier in this run "
                f"({state.unavailable})"
            )
            record = self._failed(base, result, "device_unavailable", message)
            return replace(record, result=record.result.with_values(wall_seconds=0.0)), []
        record, samples = self.run_cell(cell, config_hash)
        if (
            cell.device.is_remote_board
            and record.status != "ok"
            and record.result.failure_kind == "device_unavailable"
        ):
            state.unavailable = str(record.result.error or "")[:300]
        return record, samples

    def _record(
        self,
        summary: WalkSummary,
        run_id: int,
        index: int,
        cell: Cell,
        record: CellRecord,
        samples: list[float],
    ) -> None:
        self.store.record_cell(run_id, record, samples)
        summary.ran += 1
        if record.status != "ok":
            summary.failed += 1
            summary.failures.append(record)
        self.on_event(WalkEvent("cell_done", index, summary.total, cell, record))

    def _walk_lanes(
        self, summary: WalkSummary, run_id: int, lanes: dict[str, list[tuple[int, Cell, str]]]
    ) -> None:
        """Lanes in threads; this thread writes the store and sends the events.

        Artifacts are built first, all of them, so no export or training runs on this
        machine while a cell here is being timed.
        """
        for cells in lanes.values():
            for _, cell, _ in cells:
                try:
                    self._prepare(cell)
                except Exception:
                    # Kept by _prepare and raised again in run_cell, where it becomes
                    # this cell's failed record; the rest of the matrix goes on.
                    pass
        finished: queue.Queue[tuple[str, int, Cell, Any]] = queue.Queue()

        def work(cells: list[tuple[int, Cell, str]]) -> None:
            state = _LaneState()
            try:
                for index, cell, config_hash in cells:
                    if self._stop.is_set():
                        break
                    finished.put(("start", index, cell, None))
                    outcome = self._run_lane_cell(cell, config_hash, state)
                    finished.put(("done", index, cell, outcome))
            finally:
                # Always, or the loop below would wait for this lane forever.
                finished.put(("lane_end", 0, cells[0][1], None))

        threads = [
            threading.Thread(target=work, args=(cells,), name=f"lane {name}", daemon=True)
            for name, cells in lanes.items()
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        while running:
            try:
                # A timeout so Ctrl-C reaches this thread between cells.
                kind, index, cell, payload = finished.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "start":
                self.on_event(WalkEvent("cell_start", index, summary.total, cell))
            elif kind == "done":
                record, samples = payload
                self._record(summary, run_id, index, cell, record, samples)
            else:
                running -= 1

    def _prepare(self, cell: Cell) -> tuple[Any, Any]:
        """The cell's model data and artifact, built once (a failure is kept and raised
        again, so a lane does not rebuild what already failed)."""
        # Before the cache: runtimes sharing an artifact (onnxruntime, OpenVINO) differ in
        # the variants they run, and one's refusal must not be the other's.
        runtime_spec(cell.runtime).check_quant_mode(quant_mode(cell.variant))
        target = cell.device.target()
        key = self.pipeline.artifact_key(cell.entry, cell.variant, cell.runtime, target)
        with self._build_lock:
            if key not in self._prepared:
                try:
                    data = self.pipeline.model_data(cell.entry)
                    artifact = self.pipeline.artifact(
                        cell.entry, cell.variant, cell.runtime, target
                    )
                    self._prepared[key] = (data, artifact)
                except Exception as exc:
                    self._prepared[key] = exc
            prepared = self._prepared[key]
        if isinstance(prepared, BaseException):
            raise prepared
        return prepared

    @staticmethod
    def _base(cell: Cell, config_hash: str) -> dict[str, Any]:
        return {
            "model": cell.entry.name,
            "variant": cell.variant.name,
            "runtime": cell.runtime,
            "device": cell.device.name,
            "config_hash": config_hash,
            "emulated": cell.device.emulated,
        }

    def run_cell(self, cell: Cell, config_hash: str) -> tuple[CellRecord, list[float]]:
        base = self._base(cell, config_hash)
        result: dict[str, Any] = {"lineage": cell.variant.lineage()}
        started = time.perf_counter()
        try:
            record, samples = self._measure(cell, base, result)
        except UnsupportedError as exc:
            record, samples = self._failed(base, result, "unsupported", str(exc)), []
        except ExportError as exc:
            record, samples = self._failed(base, result, "export_error", str(exc)), []
        except RecipeError as exc:
            record, samples = self._failed(base, result, "recipe_error", str(exc)), []
        except ModelError as exc:  # the user's factory raised: its traceback helps them
            result["traceback"] = traceback.format_exc()
            record, samples = self._failed(base, result, "model_error", str(exc)), []
        except RunnerError as exc:
            result["stderr"] = exc.stderr
            if exc.deploy is not None:
                result["deploy"] = exc.deploy
            if exc.executor is not None:
                result["executor"] = exc.executor
            message = str(exc)
            if exc.kind == "runtime_missing":
                message += f"; install it on {cell.device.name}: "
                message += runtime_spec(cell.runtime).install_hint
            record, samples = self._failed(base, result, exc.kind, message), []
        except ConfigError as exc:  # e.g. a user factory that returns the wrong thing
            record, samples = self._failed(base, result, "model_error", str(exc)), []
        except Exception as exc:  # a bug must not stop the matrix; keep the traceback
            result["traceback"] = traceback.format_exc()
            record = self._failed(base, result, "internal_error", f"{type(exc).__name__}: {exc}")
            samples = []
        wall = round(time.perf_counter() - started, 2)
        return replace(record, result=record.result.with_values(wall_seconds=wall)), samples

    @staticmethod
    def _failed(
        base: dict[str, Any], result: dict[str, Any], kind: str, message: str
    ) -> CellRecord:
        result = {**result, "failure_kind": kind, "error": message}
        return CellRecord(status="failed", reason=_reason(kind, message), result=result, **base)

    def _measure(
        self, cell: Cell, base: dict[str, Any], result: dict[str, Any]
    ) -> tuple[CellRecord, list[float]]:
        data, artifact = self._prepare(cell)
        for key in ("transform_notes", "export_notes", "model_info"):
            if key in artifact.meta:
                result[key] = artifact.meta[key]
        settings = self.suite.measure.settings()
        job = artifact_job(
            cell.runtime, artifact, data.inputs, settings, cell.device, quant_mode(cell.variant)
        )
        executed = self.executor.run_trials(
            cell.device,
            job,
            artifact.path,
            data.eval_inputs,
            self.suite.measure.timeout_seconds,
            settings.trials,
        )
        run = executed.run
        result["executor"] = executed.executor
        fields, samples = combine_trials(run.results, settings)
        result.update(fields)
        result.update(
            {
                "measure": settings_dict(settings),
                "inputs": measured_inputs(run.results[0], data.inputs, settings.batch),
                "accuracy": None,
                "agreement": None,
            }
        )
        if run.outputs is not None and data.reference is not None:
            embedding = data.info.get("output") == "embedding"
            quality = score_outputs(run.outputs, data.reference, data.labels, embedding)
            result.update(quality.to_dict())
            if embedding:  # the reports say why agreement is absent and show the cosine
                result["output"] = "embedding"
            if data.degenerate:
                result["baseline_degenerate"] = list(data.degenerate)
        elif run.outputs is not None and data.labels is not None:
            result["accuracy"] = float((run.outputs.argmax(axis=1) == data.labels).mean())
        record = CellRecord(
            status="ok",
            artifact_hash=artifact.key,
            size_bytes=artifact.size_bytes,
            result=result,
            **base,
        )
        return record, samples
