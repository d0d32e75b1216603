"""Naming a run on the command line: a run id, ``latest``, ``latest~N`` or a git commit.

A commit is matched as a prefix of the commit each run recorded (a dirty checkout's
``+dirty`` suffix included) and picks the latest run at that commit; names git knows
(``HEAD~1``, a branch, a tag) are resolved through ``git rev-parse`` in the working
directory first. Digits alone always mean a run id.
"""

from __future__ import annotations

import re
import subprocess

from harness.errors import HarnessError
from harness.results.store import ResultsStore, RunRecord, StoreError

_LATEST_RE = re.compile(r"^latest(?:~(?P<back>\d+))?$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")
EXPECTED = "a run id, 'latest', 'latest~N' or a git commit (at least 4 hex digits, or a git ref)"


def _git_resolve(spec: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _at_commit(store: ResultsStore, spec: str, prefix: str) -> RunRecord:
    runs = store.runs_at_commit(prefix.lower())
    if not runs:
        raise StoreError(f"run {spec!r}: no run in {store.path} was made at commit {prefix}")
    commits = sorted({(r.git_commit or "").removesuffix("+dirty") for r in runs})
    if len(commits) > 1:
        raise StoreError(
            f"run {spec!r}: the commit prefix is ambiguous ({', '.join(c[:12] for c in commits)}); "
            "give more digits"
        )
    return runs[-1]


def resolve_run(store: ResultsStore, spec: str) -> RunRecord:
    """The run ``spec`` names; :class:`HarnessError` saying what is accepted otherwise."""
    spec = spec.strip()
    latest = _LATEST_RE.match(spec)
    if latest:
        runs = store.runs()
        back = int(latest["back"] or 0)
        if back >= len(runs):
            have = f"{len(runs)} run" + ("" if len(runs) == 1 else "s")
            raise StoreError(f"run {spec!r}: {store.path} holds only {have}")
        return runs[-1 - back]
    if spec.isdigit():
        return store.get_run(int(spec))
    if _HEX_RE.match(spec) and store.runs_at_commit(spec.lower()):
        return _at_commit(store, spec, spec)
    commit = _git_resolve(spec)
    if commit is not None:
        return _at_commit(store, spec, commit)
    if _HEX_RE.match(spec):
        raise StoreError(f"run {spec!r}: no run in {store.path} was made at a commit {spec}...")
    raise HarnessError(f"run {spec!r}: expected {EXPECTED}")


def select_pair(
    store: ResultsStore, base: str | None, new: str | None
) -> tuple[RunRecord, RunRecord]:
    """The (base, new) runs: both named, only the base named (new is the latest run), or
    neither (the two most recent runs of the store)."""
    if base is None and new is not None:
        raise HarnessError("name the base run before the new one")
    if base is None:
        runs = store.runs()
        if len(runs) < 2:
            raise StoreError(
                f"{store.path} holds {len(runs)} run(s); comparing needs two "
                "(run a suite again with --new-run)"
            )
        return runs[-2], runs[-1]
    return resolve_run(store, base), resolve_run(store, new or "latest")
