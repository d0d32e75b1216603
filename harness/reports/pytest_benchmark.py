"""A run in pytest-benchmark's ``--benchmark-json`` format, for dashboards that read it.

The layout is pytest-benchmark's own (``machine_info``, ``commit_info``, ``benchmarks``,
``datetime``, ``version``) and each benchmark's ``stats`` are computed by
:class:`pytest_benchmark.stats.Stats` over the cell's raw samples, so ``min``, ``q1``,
``iqr_outliers`` and the rest mean exactly what they mean there. Times are in seconds,
as pytest-benchmark writes them; one round is one inference (``iterations`` 1).

A benchmark is a measured cell: ``name`` is ``model[variant/runtime/device]``, ``group``
is ``model/device`` (the table's grouping) and ``params`` names the four parts.
``extra_info`` carries what pytest-benchmark has no field for (p90, memory, size,
accuracy, energy and its source, validity). pytest-benchmark drops benchmarks that
errored; failed cells are listed with their reasons under the top-level ``harness`` key
instead, so they are not silently missing.
"""

from __future__ import annotations

from typing import Any

import pytest_benchmark
from pytest_benchmark.stats import Stats

from harness.reports.cells import verdict
from harness.results.store import CellRecord, RunRecord

PROJECT = "harness"


def cell_name(cell: CellRecord) -> str:
    return f"{cell.model}[{cell.variant}/{cell.runtime}/{cell.device}]"


def machine_info(run: RunRecord) -> dict[str, Any]:
    """pytest-benchmark's machine_info keys, filled from the run's machine record."""
    m = run.machine
    return {
        "node": m.get("hostname"),
        "processor": m.get("arch"),
        "machine": m.get("arch"),
        "python_compiler": None,
        "python_implementation": "CPython",
        "python_implementation_version": m.get("python"),
        "python_version": m.get("python"),
        "python_build": None,
        "release": m.get("kernel"),
        "system": "Linux",
        "cpu": {
            "brand_raw": m.get("cpu_model"),
            "arch": m.get("arch"),
            "count": m.get("cpu_count"),
            "flags": m.get("cpu_features", []),
        },
        # Not pytest-benchmark's: what the harness compares machines by.
        "harness_machine_fingerprint": run.machine_fingerprint,
        "mem_total_mb": m.get("mem_total_mb"),
    }


def commit_info(run: RunRecord) -> dict[str, Any]:
    commit = run.git_commit or "unknown"
    dirty = commit.endswith("+dirty")
    return {
        "id": commit.removesuffix("+dirty"),
        "time": None,
        "author_time": None,
        "dirty": dirty,
        "project": PROJECT,
        "branch": "(unknown)",
    }


def _options(cell: CellRecord) -> dict[str, Any]:
    measure = cell.result.measure
    return {
        "disable_gc": False,
        "timer": "perf_counter",
        "min_rounds": measure.get("min_count"),
        "max_time": measure.get("max_seconds"),
        "min_time": measure.get("min_seconds"),
        "precision": None,
        "confidence": None,
        "warmup": bool(measure.get("warmup_count")),
    }


def _extra_info(cell: CellRecord, run: RunRecord) -> dict[str, Any]:
    r = cell.result
    latency = r.latency
    return {
        "harness_run": run.id,
        "verdict": verdict(cell),
        "validity": r.validity,
        "emulated": cell.emulated,
        "p90_ms": latency.stat("p90"),
        "p99_ms": latency.stat("p99"),
        "ci95_ms": latency.stat("ci95"),
        "ci_basis": latency.ci_basis,
        "trials": latency.stat("trials"),
        "size_bytes": cell.size_bytes,
        "peak_memory_mb": r.peak_memory_mb,
        "accuracy": r.accuracy,
        "agreement": r.agreement,
        "energy_mj": r.energy_mj,
        "power_source": r.power_source,
        "throughput_ips": r.get("throughput_ips"),
    }


def benchmark_entry(cell: CellRecord, samples_ms: list[float], run: RunRecord) -> dict[str, Any]:
    """One measured cell as a pytest-benchmark benchmark (``stats`` with ``data``)."""
    stats = Stats()
    for sample in samples_ms:
        stats.update(sample / 1e3)
    stats_dict = stats.as_dict()
    stats_dict["data"] = list(stats.data)
    stats_dict["iterations"] = 1
    param = f"{cell.variant}/{cell.runtime}/{cell.device}"
    return {
        "group": f"{cell.model}/{cell.device}",
        "name": cell_name(cell),
        "fullname": f"{run.suite_name}::{cell_name(cell)}",
        "params": {
            "model": cell.model,
            "variant": cell.variant,
            "runtime": cell.runtime,
            "device": cell.device,
        },
        "param": param,
        "extra_info": _extra_info(cell, run),
        "options": _options(cell),
        "stats": stats_dict,
    }


def to_pytest_benchmark(
    run: RunRecord, cells: list[CellRecord], samples_ms: dict[int, list[float]]
) -> dict[str, Any]:
    """The run as pytest-benchmark JSON. ``samples_ms`` maps a cell's id to its raw
    samples; a measured cell with none stored is reported as failed here, not faked."""
    benchmarks = []
    not_measured = []
    for cell in cells:
        samples = samples_ms.get(cell.id or -1) or []
        if cell.status == "ok" and samples:
            benchmarks.append(benchmark_entry(cell, samples, run))
        else:
            not_measured.append(
                {
                    "name": cell_name(cell),
                    "reason": cell.reason if cell.status != "ok" else "no raw samples stored",
                }
            )
    return {
        "machine_info": machine_info(run),
        "commit_info": commit_info(run),
        "benchmarks": benchmarks,
        "datetime": run.finished_at or run.started_at,
        "version": pytest_benchmark.__version__,
        "harness": {
            "run_id": run.id,
            "suite": run.suite_name,
            "status": run.status,
            "machine_fingerprint": run.machine_fingerprint,
            "runtime_versions": run.runtime_versions,
            "failed": not_measured,
        },
    }
