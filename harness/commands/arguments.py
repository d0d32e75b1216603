"""Arguments several commands take, and the things they name: the results store and a
run in it, a suite file, the directories profiles and presets are searched in."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.builtin import Kind
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.results.store import ResultsStore

DEFAULT_RESULTS = Path("results")


def add_results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help="results directory holding harness.db, artifacts/ and cache/ (default: results)",
    )


def open_store(results: Path) -> ResultsStore:
    from harness.results.store import ResultsStore

    db = Path(results) / "harness.db"
    if not db.is_file():
        raise HarnessError(f"{db}: no results store here (run 'harness run SUITE' first)")
    return ResultsStore(db)


def resolve_run(store: ResultsStore, spec: str | None) -> int:
    """A run named as compare names one: an id, latest, latest~N or a git commit."""
    from harness.results.selection import resolve_run

    if spec is None or spec.strip() == "latest":
        latest = store.latest_run()
        if latest is None:
            raise HarnessError(f"{store.path}: the store has no runs yet")
        return latest.id
    return resolve_run(store, spec).id


def locate_suite(path: Path) -> Path:
    """``path`` itself, or the shipped suite of that name (``harness run quickstart``)
    when there is no such file: a file of the user's always wins."""
    from harness.builtin import builtin_suite

    if path.exists():
        return path
    return builtin_suite(str(path)) or path


def search_dirs(kind: Kind, extra: list[str] | None) -> list[Path]:
    from harness.suite.config import default_dirs

    return [*(Path(d) for d in (extra or [])), *default_dirs(None, kind, [])]
