"""The results store: one SQLite file, a row per run, per cell and per latency sample.

Every finished cell is written in one transaction, so an interrupted run leaves only
whole cells behind and the next run resumes after the last one. The schema version is
SQLite's ``user_version``; :data:`MIGRATIONS` lists, for each version, the statements
that take a database from the previous version to it, and opening a store applies the
missing ones in order.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results.cell_result import CellResult, CellResultError

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            suite_name TEXT NOT NULL,
            suite_path TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'interrupted', 'complete')),
            harness_version TEXT NOT NULL,
            git_commit TEXT,
            machine_fingerprint TEXT NOT NULL,
            machine_json TEXT NOT NULL,
            runtime_versions_json TEXT NOT NULL
        )""",
        """CREATE TABLE cells (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            variant TEXT NOT NULL,
            runtime TEXT NOT NULL,
            device TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            reason TEXT,
            emulated INTEGER NOT NULL DEFAULT 0,
            artifact_hash TEXT,
            size_bytes INTEGER,
            result_json TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            UNIQUE (run_id, model, variant, runtime, device)
        )""",
        """CREATE TABLE samples (
            cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            PRIMARY KEY (cell_id, seq)
        )""",
        "CREATE INDEX cells_by_run ON cells (run_id)",
        "CREATE INDEX runs_by_suite ON runs (suite_name, id)",
    ],
    # Regression tracking: runs are looked up by commit, and interleaved re-measurements
    # (base and candidate artifacts run alternately, see harness.suite.interleave) are
    # kept beside the runs they compare rather than as runs of their own, because both
    # sides of one cell share a cell key and a run holds each cell once.
    2: [
        "CREATE INDEX runs_by_commit ON runs (git_commit, id)",
        """CREATE TABLE interleaves (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            base_run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            new_run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'interrupted', 'complete')),
            min_rounds INTEGER NOT NULL,
            max_rounds INTEGER NOT NULL,
            target_half_width REAL,
            git_commit TEXT,
            machine_fingerprint TEXT NOT NULL
        )""",
        """CREATE TABLE interleave_cells (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            interleave_id INTEGER NOT NULL REFERENCES interleaves(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            variant TEXT NOT NULL,
            runtime TEXT NOT NULL,
            device TEXT NOT NULL,
            base_artifact_hash TEXT NOT NULL,
            new_artifact_hash TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            reason TEXT,
            measure_json TEXT NOT NULL,
            UNIQUE (interleave_id, model, variant, runtime, device)
        )""",
        """CREATE TABLE interleave_turns (
            cell_id INTEGER NOT NULL REFERENCES interleave_cells(id) ON DELETE CASCADE,
            round INTEGER NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('base', 'new')),
            position INTEGER NOT NULL,
            p50_ms REAL NOT NULL,
            samples_json TEXT NOT NULL,
            PRIMARY KEY (cell_id, round, side)
        )""",
        "CREATE INDEX interleaves_by_runs ON interleaves (base_run_id, new_run_id, id)",
    ],
    # Who runs a run: the harness process (pid on host) that opened or resumed it, so a
    # second `harness run` can tell a live run from one whose process died (kill -9).
    3: [
        "ALTER TABLE runs ADD COLUMN owner_pid INTEGER",
        "ALTER TABLE runs ADD COLUMN owner_host TEXT",
        # The owner process's start time, so a reused pid is not taken for the owner.
        "ALTER TABLE runs ADD COLUMN owner_started REAL",
    ],
}
SCHEMA_VERSION = max(MIGRATIONS)
# How long a write waits for another process's transaction (two runs, or a run and a
# compare, on one results directory) before SQLite gives up with "database is locked".
BUSY_TIMEOUT_S = 60.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunRecord:
    id: int
    suite_name: str
    suite_path: str
    started_at: str
    finished_at: str | None
    status: str
    harness_version: str
    git_commit: str | None
    machine_fingerprint: str
    machine: dict[str, Any]
    runtime_versions: dict[str, str]
    owner_pid: int | None = None
    owner_host: str | None = None
    owner_started: float | None = None


@dataclass(frozen=True)
class RunOwner:
    """The harness process that runs a run: its pid, host and start time."""

    pid: int
    host: str
    started: float


@dataclass(frozen=True)
class DoneCell:
    """What a run already holds for a cell: the configuration it was measured at and
    how it ended (the failure kind is the reason's first word)."""

    config_hash: str
    status: str
    reason: str | None

    @property
    def failure_kind(self) -> str | None:
        if self.status == "ok" or not self.reason:
            return None
        return self.reason.split(":", 1)[0].strip()


@dataclass(frozen=True)
class CellRecord:
    """One cell's outcome. ``result`` holds the measurements and everything else that
    reports show (latency stats, memory, quality, lineage, export notes)."""

    model: str
    variant: str
    runtime: str
    device: str
    config_hash: str
    status: str  # "ok" | "failed"
    reason: str | None = None
    emulated: bool = False
    artifact_hash: str | None = None
    size_bytes: int | None = None
    # A dict given here (as the walker builds it) is read into a CellResult.
    result: CellResult = field(default_factory=lambda: CellResult.from_dict({}))
    id: int | None = None
    run_id: int | None = None
    finished_at: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.result, CellResult):
            object.__setattr__(self, "result", CellResult.from_dict(self.result))

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.variant, self.runtime, self.device)


@dataclass(frozen=True)
class InterleaveTurn:
    """One runner process of an interleaved comparison: which side, in which round,
    whether it ran first (``position`` 0) or second in that round, and its samples."""

    round: int
    side: str  # "base" | "new"
    position: int
    p50_ms: float
    samples_ms: tuple[float, ...] = ()


@dataclass(frozen=True)
class InterleaveCellRecord:
    key: tuple[str, str, str, str]
    base_artifact_hash: str
    new_artifact_hash: str
    status: str  # "ok" | "failed"
    reason: str | None
    measure: dict[str, Any]
    turns: tuple[InterleaveTurn, ...]


@dataclass(frozen=True)
class InterleaveRecord:
    id: int
    base_run_id: int
    new_run_id: int
    started_at: str
    finished_at: str | None
    status: str
    min_rounds: int
    max_rounds: int
    target_half_width: float | None  # stop a cell's rounds once its ratio is this precise
    git_commit: str | None
    machine_fingerprint: str


class StoreError(HarnessError):
    pass


def _truncated(path: Path) -> str | None:
    """Why an SQLite file is shorter than its own header says (a copy cut short), or
    None. SQLite would open it and fail on the first page past the end, mid-report."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except OSError:
        return None  # not there yet, or not a file: sqlite3 says what is wrong
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid only when the change counter matches "version valid for".
    if pages and header[24:28] == header[92:96] and size < pages * page_size:
        return f"truncated: its header says {pages * page_size} bytes, the file has {size}"
    return None


def _tables_through(version: int) -> set[str]:
    """The tables a store at ``version`` has (those its migrations create)."""
    tables: set[str] = set()
    for v in range(1, version + 1):
        for statement in MIGRATIONS.get(v, []):
            created = re.match(r"\s*CREATE TABLE (\w+)", statement)
            if created:
                tables.add(created[1])
    return tables


class ResultsStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncated = _truncated(self.path)
        if truncated:
            raise self._not_ours(truncated)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:  # a directory, no permission
            raise StoreError(f"{self.path}: cannot open the results store ({exc})") from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            # Before anything writes: someone else's database is left as it was.
            self._check_schema(self.schema_version)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except sqlite3.OperationalError as exc:  # locked past the timeout, read-only
            self._db.close()
            raise StoreError(f"{self.path}: cannot open the results store ({exc})") from None
        except sqlite3.DatabaseError as exc:
            # Random bytes, a truncated copy, a file that only looks like SQLite.
            self._db.close()
            raise self._not_ours(f"SQLite cannot read it: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    # --- schema -------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _not_ours(self, why: str) -> StoreError:
        return StoreError(
            f"{self.path}: not a harness results store ({why}); point --results at a "
            "directory the harness wrote, or move the file away to start a new store"
        )

    def _check_schema(self, version: int) -> None:
        """Refuse a database that is not one of ours, or one a newer harness wrote."""
        tables = {
            row[0]
            for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        expected = _tables_through(min(version, SCHEMA_VERSION))
        if version == 0 and tables:
            names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise self._not_ours(f"a SQLite database with other tables: {names}")
        missing = sorted(expected - tables)
        if missing:
            raise self._not_ours(
                f"a SQLite database at schema version {version} without the table(s) "
                f"{', '.join(missing)}"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} was written by a newer harness "
                f"(this one reads up to {SCHEMA_VERSION}); upgrade the harness"
            )

    def _migrate(self) -> None:
        current = self.schema_version
        if current == SCHEMA_VERSION:
            return
        # Two processes may open a fresh store at once: take the write lock first, then
        # read the version again, so only one of them migrates and the other sees it done.
        # (Python's sqlite3 would run each CREATE in a transaction of its own.)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            current = self.schema_version
            self._check_schema(current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- runs ---------------------------------------------------------------------

    def begin_run(
        self,
        suite_name: str,
        suite_path: str,
        harness_version: str,
        git_commit: str | None,
        machine: dict[str, Any],
        machine_fingerprint: str,
        runtime_versions: dict[str, str],
        owner: RunOwner | None = None,
    ) -> int:
        """A new run, ``running`` and owned by ``owner``."""
        with self._db:
            cur = self._db.execute(
                """INSERT INTO runs (suite_name, suite_path, started_at, status,
                    harness_version, git_commit, machine_fingerprint, machine_json,
                    runtime_versions_json, owner_pid, owner_host, owner_started)
                    VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    suite_name,
                    suite_path,
                    _now(),
                    harness_version,
                    git_commit,
                    machine_fingerprint,
                    json.dumps(machine),
                    json.dumps(runtime_versions),
                    owner.pid if owner else None,
                    owner.host if owner else None,
                    owner.started if owner else None,
                ),
            )
        return int(cur.lastrowid)

    def claim_run(
        self,
        run_id: int,
        owner: RunOwner,
        holder_alive: Callable[[RunRecord], bool],
    ) -> tuple[RunRecord, RunRecord | None]:
        """Take a run over for ``owner`` to resume it, in one write
        transaction so two processes cannot both take it.

        A run still ``running`` whose owner ``holder_alive`` says is alive is not taken:
        the pair returned is then (the run, itself as the holder). A ``running`` run
        whose owner is gone (killed with -9, a crash) is first marked ``interrupted``;
        the pair is then (the run before the claim, None).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            before = self.get_run(run_id)
            if before.status == "running" and holder_alive(before):
                self._db.execute("ROLLBACK")
                return before, before
            self._db.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, owner_pid = ?, "
                "owner_host = ?, owner_started = ? WHERE id = ?",
                (owner.pid, owner.host, owner.started, run_id),
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return before, None

    def set_run_status(self, run_id: int, status: str) -> None:
        finished = _now() if status == "complete" else None
        with self._db:
            self._db.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                (status, finished, run_id),
            )

    def update_run_context(
        self, run_id: int, git_commit: str | None, runtime_versions: dict[str, str]
    ) -> None:
        """A resumed run records the context of the session that finished it."""
        with self._db:
            self._db.execute(
                "UPDATE runs SET git_commit = ?, runtime_versions_json = ? WHERE id = ?",
                (git_commit, json.dumps(runtime_versions), run_id),
            )

    def _run_from_row(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"],
            suite_name=row["suite_name"],
            suite_path=row["suite_path"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            status=row["status"],
            harness_version=row["harness_version"],
            git_commit=row["git_commit"],
            machine_fingerprint=row["machine_fingerprint"],
            machine=json.loads(row["machine_json"]),
            runtime_versions=json.loads(row["runtime_versions_json"]),
            owner_pid=row["owner_pid"],
            owner_host=row["owner_host"],
            owner_started=row["owner_started"],
        )

    def abandoned_runs(self, holder_alive: Callable[[RunRecord], bool]) -> list[RunRecord]:
        """Runs still marked ``running`` whose owner is gone, now marked ``interrupted``
        (a harness killed with -9 or by a crash never got to say so itself)."""
        marked = []
        with self._db:
            rows = self._db.execute("SELECT * FROM runs WHERE status = 'running'").fetchall()
            for row in rows:
                run = self._run_from_row(row)
                if not holder_alive(run):
                    self._db.execute(
                        "UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = ?",
                        (run.id, "running"),
                    )
                    marked.append(run)
        return marked

    def runs(self) -> list[RunRecord]:
        rows = self._db.execute("SELECT * FROM runs ORDER BY id").fetchall()
        return [self._run_from_row(r) for r in rows]

    def get_run(self, run_id: int) -> RunRecord:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no run with id {run_id}")
        return self._run_from_row(row)

    def latest_run(self, suite_name: str | None = None) -> RunRecord | None:
        if suite_name is None:
            row = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        else:
            row = self._db.execute(
                "SELECT * FROM runs WHERE suite_name = ? ORDER BY id DESC LIMIT 1",
                (suite_name,),
            ).fetchone()
        return self._run_from_row(row) if row is not None else None

    def runs_at_commit(self, prefix: str) -> list[RunRecord]:
        """Runs whose git commit starts with ``prefix`` (a ``+dirty`` checkout included),
        oldest first."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE substr(git_commit, 1, ?) = ? ORDER BY id",
            (len(prefix), prefix),
        ).fetchall()
        return [self._run_from_row(r) for r in rows]

    # --- cells --------------------------------------------------------------------

    def record_cell(self, run_id: int, cell: CellRecord, samples_ms: list[float]) -> int:
        """Write one finished cell and its raw samples in a single transaction,
        replacing an earlier outcome of the same cell in this run."""
        with self._db:
            self._db.execute(
                """DELETE FROM cells WHERE run_id = ? AND model = ? AND variant = ?
                   AND runtime = ? AND device = ?""",
                (run_id, *cell.key),
            )
            cur = self._db.execute(
                """INSERT INTO cells (run_id, model, variant, runtime, device, config_hash,
                    status, reason, emulated, artifact_hash, size_bytes, result_json,
                    finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    run_id,
                    *cell.key,
                    cell.config_hash,
                    cell.status,
                    cell.reason,
                    int(cell.emulated),
                    cell.artifact_hash,
                    cell.size_bytes,
                    json.dumps(cell.result.to_stored()),
                    _now(),
                ),
            )
            cell_id = int(cur.lastrowid)
            self._db.executemany(
                "INSERT INTO samples (cell_id, seq, latency_ms) VALUES (?, ?, ?)",
                [(cell_id, i, float(v)) for i, v in enumerate(samples_ms)],
            )
        return cell_id

    def cells(self, run_id: int) -> list[CellRecord]:
        rows = self._db.execute(
            "SELECT * FROM cells WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
        return [
            CellRecord(
                model=r["model"],
                variant=r["variant"],
                runtime=r["runtime"],
                device=r["device"],
                config_hash=r["config_hash"],
                status=r["status"],
                reason=r["reason"],
                emulated=bool(r["emulated"]),
                artifact_hash=r["artifact_hash"],
                size_bytes=r["size_bytes"],
                result=self._result_from_row(r),
                id=r["id"],
                run_id=r["run_id"],
                finished_at=r["finished_at"],
            )
            for r in rows
        ]

    def _result_from_row(self, row: sqlite3.Row) -> CellResult:
        try:
            return CellResult.from_dict(json.loads(row["result_json"]))
        except CellResultError as exc:
            key = "/".join((row["model"], row["variant"], row["runtime"], row["device"]))
            raise StoreError(f"{self.path}: run {row['run_id']}, cell {key}: {exc}") from exc

    def done_cells(self, run_id: int) -> dict[tuple[str, str, str, str], DoneCell]:
        """Cells already recorded in a run: the config hash they were measured at and
        how they ended."""
        rows = self._db.execute(
            "SELECT model, variant, runtime, device, config_hash, status, reason FROM cells "
            "WHERE run_id = ?",
            (run_id,),
        ).fetchall()
        return {(r[0], r[1], r[2], r[3]): DoneCell(r[4], r[5], r[6]) for r in rows}

    def samples(self, cell_id: int) -> list[float]:
        rows = self._db.execute(
            "SELECT latency_ms FROM samples WHERE cell_id = ? ORDER BY seq", (cell_id,)
        ).fetchall()
        return [r[0] for r in rows]

    # --- interleaved comparisons ------------------------------------------------------

    def begin_interleave(
        self,
        base_run_id: int,
        new_run_id: int,
        min_rounds: int,
        max_rounds: int,
        target_half_width: float | None,
        git_commit: str | None,
        machine_fingerprint: str,
    ) -> int:
        with self._db:
            cur = self._db.execute(
                """INSERT INTO interleaves (base_run_id, new_run_id, started_at, status,
                    min_rounds, max_rounds, target_half_width, git_commit, machine_fingerprint)
                    VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)""",
                (
                    base_run_id,
                    new_run_id,
                    _now(),
                    min_rounds,
                    max_rounds,
                    target_half_width,
                    git_commit,
                    machine_fingerprint,
                ),
            )
        return int(cur.lastrowid)

    def set_interleave_status(self, interleave_id: int, status: str) -> None:
        finished = _now() if status == "complete" else None
        with self._db:
            self._db.execute(
                "UPDATE interleaves SET status = ?, finished_at = ? WHERE id = ?",
                (status, finished, interleave_id),
            )

    def record_interleave_cell(self, interleave_id: int, cell: InterleaveCellRecord) -> int:
        """One cell's interleaved turns, written in a single transaction."""
        with self._db:
            self._db.execute(
                """DELETE FROM interleave_cells WHERE interleave_id = ? AND model = ?
                   AND variant = ? AND runtime = ? AND device = ?""",
                (interleave_id, *cell.key),
            )
            cur = self._db.execute(
                """INSERT INTO interleave_cells (interleave_id, model, variant, runtime, device,
                    base_artifact_hash, new_artifact_hash, status, reason, measure_json)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    interleave_id,
                    *cell.key,
                    cell.base_artifact_hash,
                    cell.new_artifact_hash,
                    cell.status,
                    cell.reason,
                    json.dumps(cell.measure),
                ),
            )
            cell_id = int(cur.lastrowid)
            self._db.executemany(
                """INSERT INTO interleave_turns (cell_id, round, side, position, p50_ms,
                    samples_json) VALUES (?, ?, ?, ?, ?, ?)""",
                [
                    (cell_id, t.round, t.side, t.position, t.p50_ms, json.dumps(t.samples_ms))
                    for t in cell.turns
                ],
            )
        return cell_id

    def _interleave_from_row(self, row: sqlite3.Row) -> InterleaveRecord:
        return InterleaveRecord(
            id=row["id"],
            base_run_id=row["base_run_id"],
            new_run_id=row["new_run_id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            status=row["status"],
            min_rounds=row["min_rounds"],
            max_rounds=row["max_rounds"],
            target_half_width=row["target_half_width"],
            git_commit=row["git_commit"],
            machine_fingerprint=row["machine_fingerprint"],
        )

    def get_interleave(self, interleave_id: int) -> InterleaveRecord:
        row = self._db.execute(
            "SELECT * FROM interleaves WHERE id = ?", (interleave_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no interleaved comparison with id {interleave_id}")
        return self._interleave_from_row(row)

    def interleaves(self) -> list[InterleaveRecord]:
        rows = self._db.execute("SELECT * FROM interleaves ORDER BY id").fetchall()
        return [self._interleave_from_row(r) for r in rows]

    def interleave_cells(self, interleave_id: int) -> list[InterleaveCellRecord]:
        cells = self._db.execute(
            "SELECT * FROM interleave_cells WHERE interleave_id = ? ORDER BY id",
            (interleave_id,),
        ).fetchall()
        out = []
        for c in cells:
            turns = self._db.execute(
                "SELECT * FROM interleave_turns WHERE cell_id = ? ORDER BY round, position",
                (c["id"],),
            ).fetchall()
            out.append(
                InterleaveCellRecord(
                    key=(c["model"], c["variant"], c["runtime"], c["device"]),
                    base_artifact_hash=c["base_artifact_hash"],
                    new_artifact_hash=c["new_artifact_hash"],
                    status=c["status"],
                    reason=c["reason"],
                    measure=json.loads(c["measure_json"]),
                    turns=tuple(
                        InterleaveTurn(
                            round=t["round"],
                            side=t["side"],
                            position=t["position"],
                            p50_ms=t["p50_ms"],
                            samples_ms=tuple(json.loads(t["samples_json"])),
                        )
                        for t in turns
                    ),
                )
            )
        return out
