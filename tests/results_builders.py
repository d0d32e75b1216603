"""Results stores built through the real ResultsStore API for compare, history and fit
tests: runs with chosen commits and machines, cells with per-trial latency levels, and
whole cells with the figures fit budgets look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.results.stats import summarize_trials
from harness.results.store import CellRecord, ResultsStore

KEY = ("net", "fp32", "onnxruntime", "local")
VERSIONS = {"harness": "0.1.0", "harness_code": "c0de", "onnxruntime": "1.31.1", "torch": "2"}


def new_run(
    store: ResultsStore,
    *,
    commit: str | None = "aaaa1111",
    fingerprint: str = "machine-a",
    versions: dict[str, str] | None = None,
    suite: str = "s",
    suite_path: str = "/nowhere/s.toml",
    status: str = "complete",
) -> int:
    run = store.begin_run(
        suite, suite_path, "0.1.0", commit, {"cpu": "x"}, fingerprint, versions or VERSIONS
    )
    store.set_run_status(run, status)
    return run


def trial_samples(
    levels: Sequence[float], rng: np.random.Generator, per_trial: int = 30, noise: float = 0.01
) -> list[list[float]]:
    """Samples around each trial's level (multiplicative noise, a few slow outliers as a
    busy machine shows)."""
    out = []
    for level in levels:
        values = level * (1 + noise * rng.standard_normal(per_trial))
        values[rng.random(per_trial) < 0.05] *= 1.5
        out.append([float(v) for v in values])
    return out


def add_cell(
    store: ResultsStore,
    run: int,
    key: tuple[str, str, str, str] = KEY,
    *,
    levels: Sequence[float] = (1.0, 1.0, 1.0),
    rng: np.random.Generator | None = None,
    noise: float = 0.01,
    peak_mb: float | None = 100.0,
    size_bytes: int | None = 1000,
    accuracy: float | None = 0.9,
    artifact_hash: str = "art-1",
    status: str = "ok",
    reason: str | None = None,
    validity: Any = "ok",
    measure: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """One cell; ``extra`` is merged into its result (e.g. a ``deploy`` record)."""
    rng = rng or np.random.default_rng(0)
    if status != "ok":
        result = {"failure_kind": "x", **(extra or {})}
        cell = CellRecord(*key, "cfg", status, reason=reason, result=result)
        return store.record_cell(run, cell, [])
    trials = trial_samples(levels, rng, noise=noise)
    stats = summarize_trials(trials)
    result = {
        "latency_ms": stats.to_dict(),
        "trials": stats.trials,
        "ci_basis": stats.ci_basis,
        "memory_mb": {"baseline": 50.0, "after_load": 60.0, "peak": peak_mb},
        "accuracy": accuracy,
        "validity": validity,
        "measure": measure or {"trials": len(levels), "min_count": 30},
        "runtime_version": "1.31.1",
        **(extra or {}),
    }
    cell = CellRecord(
        *key,
        "cfg",
        "ok",
        artifact_hash=artifact_hash,
        size_bytes=size_bytes,
        result=result,
    )
    return store.record_cell(run, cell, [v for t in trials for v in t])


def two_runs(
    path: Path,
    base_levels: Sequence[float],
    new_levels: Sequence[float],
    *,
    noise: float = 0.01,
    seed: int = 0,
    **new_cell: Any,
) -> tuple[ResultsStore, int, int]:
    """A store with one cell measured in two runs."""
    store = ResultsStore(path)
    rng = np.random.default_rng(seed)
    base = new_run(store, commit="aaaa1111")
    add_cell(store, base, levels=base_levels, rng=rng, noise=noise)
    new = new_run(store, commit="bbbb2222")
    add_cell(store, new, levels=new_levels, rng=rng, noise=noise, **new_cell)
    return store, base, new


# --- hand-built cells and runs, as the fit tests give them -----------------------------


def ok_cell(
    variant: str = "fp32",
    runtime: str = "onnxruntime",
    device: str = "local",
    *,
    model: str = "digits-cnn",
    p50: float = 1.0,
    p90: float | None = None,
    peak: float | None = 100.0,
    accuracy: float | None = 0.99,
    agreement: float | None = 1.0,
    energy: float | None = 1.0,
    size: int | None = 100_000,
    emulated: bool = False,
    **extra: Any,
) -> CellRecord:
    result: dict[str, Any] = {
        "latency_ms": {"p50": p50, "p90": p50 * 1.2 if p90 is None else p90},
        "memory_mb": {"baseline": 50.0, "after_load": 60.0, "peak": peak},
        "accuracy": accuracy,
        "agreement": agreement,
        "energy_mj": energy,
        "power_source": "modelled" if energy is not None else "none",
        "validity": "ok",
        **extra,
    }
    return CellRecord(
        model=model,
        variant=variant,
        runtime=runtime,
        device=device,
        config_hash="h",
        status="ok",
        emulated=emulated,
        size_bytes=size,
        result=result,
    )


def failed_cell(
    variant: str = "fp16",
    runtime: str = "onnxruntime",
    device: str = "local",
    *,
    model: str = "digits-cnn",
    reason: str = "unsupported: no fp16 kernels",
    emulated: bool = False,
) -> CellRecord:
    return CellRecord(
        model=model,
        variant=variant,
        runtime=runtime,
        device=device,
        config_hash="h",
        status="failed",
        reason=reason,
        emulated=emulated,
        result={"failure_kind": reason.split(":")[0]},
    )


def add_run(
    store: ResultsStore,
    cells: list[CellRecord],
    suite_path: str | Path = "/nonexistent/suite.toml",
    suite_name: str = "fit-test",
) -> int:
    run_id = store.begin_run(suite_name, str(suite_path), "0.1.0", None, {}, "fp", {})
    for cell in cells:
        store.record_cell(run_id, cell, [])
    store.set_run_status(run_id, "complete")
    return run_id
