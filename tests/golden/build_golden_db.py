"""Build the golden results database that reports, compare, history and fit pin on.

It is written through the real :class:`~harness.results.store.ResultsStore` API
(``begin_run``, ``record_cell``, ``set_run_status``) with every value given: a seeded
numpy RNG per cell, fixed commits, machines and fingerprints. Each cell's
``result_json`` is built the way :class:`~harness.suite.walk.SuiteWalker` builds it: the
per-trial runner results go through :func:`harness.runner.trials.combine_trials`, then
lineage, export notes, measure settings and quality are added in the walker's order.
The store stamps the current time, so the timestamps are set to fixed ones afterwards
with UPDATEs; a rebuild gives the same table contents (``dump``), which a test checks.

    python tests/golden/build_golden_db.py              # rebuild tests/golden/golden.db
    python tests/golden/build_golden_db.py OUT.db       # build elsewhere
    python tests/golden/build_golden_db.py --expected   # rebuild it and regenerate the
                                                        # pinned reports in expected/

Tests open a copy (:func:`golden_copy`): opening a store may migrate its schema.

Contents (suite ``golden`` at ``suites/golden.toml``; 3 trials of 20-30 samples per cell,
samples of a trial stored one trial after the other as the walker does):

Models and variants
    digits-cnn: fp32, int8, prune-50, pruned-int8, fp16. fp16 always fails
    (``unsupported: fp16 is not supported by onnxruntime/executorch ...``).
    mlp: fp32, int8, prune-50, pruned-int8.
    Lineage: fp32 = [] (the baseline), int8 = [int8-static], prune-50 = [prune-channels
    ratio 0.5], pruned-int8 = [prune-channels, int8-static], fp16 = [fp16].
    Accuracy on 360 held-out digits (k/360), agreement with fp32 PyTorch, quality errors.
Runtimes: onnxruntime, executorch.
Devices
    local         the run's machine; power ``measured:rapl``.
    pi4-emulated  emulated=1, an ``emulation`` record (cgroup v2: cpuset 0-1, speed 0.25,
                  memory 3584 MB), power ``modelled`` by pi4's board model; p50 ~4.0x local.
    pi4           the real board (kind ssh), onnxruntime only, fp32 and int8 of both
                  models (BOARD_VARIANTS); power ``modelled``; p50 ~4.6x local for fp32 and
                  ~5.3x for int8 (no dot-product instructions), so emulated/real p50 is
                  ~0.87 for fp32 and ~0.75 for int8 (~0.78 and ~0.68 in run 4, whose host
                  is faster while the board is not).
    40 cells per run: 36 on local and pi4-emulated, 4 on pi4.
Runs (all ``complete``)
    1  COMMITS[0], machine A, 2026-03-02: the reference levels.
    2  COMMITS[1], machine A, 2026-03-03: the same levels (an A/A pair with run 1);
       UNSTABLE_CELL's trial medians are 0.82/1.0/1.3 of its level: validity ["unstable"].
    3  COMMITS[2], machine A, 2026-03-04: p50 x1.25 in REGRESSED_CELLS (digits-cnn,
       executorch, int8 and pruned-int8, local and pi4-emulated); peak memory +24 MB in
       MEMORY_RISE_CELLS (mlp, onnxruntime, local and pi4-emulated); TIMEOUT_CELL failed
       ``timeout: runner exceeded its 600 s time-out and was killed``.
    4  COMMITS[2] again, machine B (another fingerprint, onnxruntime 1.31.0 instead of
       1.31.1), 2026-03-05: local and pi4-emulated p50 x0.9 (a faster host), run 3's
       regression and memory rise kept (same commit); THROTTLED_CELL (pi4 board) ran
       hot: vcgencmd 0x0 -> 0x40004, trials 2-3 ~15-20% slower, validity ["throttled"].
Four runs are too few for harness.results.history to call run 3's regression a step (its
permutation test cannot go below p = 1/6 with two runs on either side); compare sees it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from harness.machine import machine_fingerprint
from harness.results.stats import median_ci, robust_cv
from harness.results.store import CellRecord, ResultsStore
from harness.runner.bench_runner import decode_throttled
from harness.runner.job import MeasureSettings, settings_dict
from harness.runner.trials import combine_trials

HERE = Path(__file__).resolve().parent
GOLDEN_DB = HERE / "golden.db"
EXPECTED_DIR = HERE / "expected"
# Budgets the fit pins (expected/fit-run-*.json) are checked against: chosen so that every
# verdict shows up (fits, breaks on each limit, failed cells, a tie broken by latency, a
# model with nothing that fits) and the pi4 budget is inherited by pi4-emulated.
GOLDEN_BUDGETS = """\
name = "golden-fit-budgets"

[budgets.local]
p90_ms = 0.05
energy_mj = 0.3
max_size_bytes = 100000

[budgets.pi4]
p90_ms = 0.2
peak_memory_mb = 80
min_accuracy = 0.96
"""
SEED = 20260302

SUITE_NAME = "golden"
SUITE_PATH = "suites/golden.toml"
HARNESS_VERSION = "0.1.0"
COMMITS = (
    "3f1c2a9e5b7d4c6a8e0f1b2c3d4e5f60718293a4",
    "8b0e4d2c6a1f3e5b7c9d0a2b4c6e8f1a3b5c7d9e",
    "c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3",
)
MACHINE_A: dict[str, Any] = {
    "hostname": "bench-a",
    "arch": "x86_64",
    "cpu_model": "AMD EPYC 7B13",
    "cpu_count": 2,
    "cpu_features": ["avx2", "avx512_bf16", "avx512_vnni", "avx512f", "f16c", "fma"],
    "mem_total_mb": 24105,
    "kernel": "6.8.0-45-generic",
    "python": "3.11.7",
}
MACHINE_B: dict[str, Any] = {
    "hostname": "bench-b",
    "arch": "x86_64",
    "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
    "cpu_count": 4,
    "cpu_features": ["avx2", "avx512_vnni", "avx512f", "f16c", "fma"],
    "mem_total_mb": 32012,
    "kernel": "6.8.0-49-generic",
    "python": "3.11.7",
}
RUNTIME_VERSIONS: dict[str, str] = {
    "harness": "0.1.0",
    "torch": "2.13.0+cpu",
    "onnxruntime": "1.31.1",
    "onnx": "1.23.2",
    "onnxscript": "0.7.2",
    "executorch": "1.5.1",
    "torchao": "0.18.0",
    "torch-pruning": "1.6.1",
    "numpy": "2.4.6",
    "scikit-learn": "1.9.1",
}
BOARD_ORT_VERSION = "1.31.1"  # the pi4's own onnxruntime, whatever the host has

SETTINGS = MeasureSettings(
    warmup_count=10, min_count=20, min_seconds=0.2, max_seconds=10.0, trials=3
)
TIMEOUT_SECONDS = 600

MODEL_VARIANTS: dict[str, tuple[str, ...]] = {
    "digits-cnn": ("fp32", "int8", "prune-50", "pruned-int8", "fp16"),
    "mlp": ("fp32", "int8", "prune-50", "pruned-int8"),
}
RUNTIMES = ("onnxruntime", "executorch")
DEVICES = ("local", "pi4-emulated", "pi4")
BOARD = "pi4"
EMULATED = "pi4-emulated"
BOARD_VARIANTS = ("fp32", "int8")  # the pi4 board runs these, on onnxruntime only
FAILING_VARIANT = "fp16"

Key = tuple[str, str, str, str]  # (model, variant, runtime, device)
REGRESSED_CELLS: tuple[Key, ...] = tuple(
    ("digits-cnn", v, "executorch", d) for v in ("int8", "pruned-int8") for d in ("local", EMULATED)
)
REGRESSION_FACTOR = 1.25
MEMORY_RISE_CELLS: tuple[Key, ...] = tuple(
    ("mlp", v, "onnxruntime", d)
    for v in ("fp32", "int8", "prune-50", "pruned-int8")
    for d in ("local", EMULATED)
)
MEMORY_RISE_MB = 24.0
TIMEOUT_CELL: Key = ("mlp", "prune-50", "executorch", EMULATED)
UNSTABLE_CELL: Key = ("digits-cnn", "prune-50", "executorch", "local")
THROTTLED_CELL: Key = ("mlp", "int8", "onnxruntime", BOARD)

_STEPS: dict[str, dict[str, Any]] = {
    "int8-static": {
        "recipe": "int8-static",
        "params": {"calibration_samples": 128, "per_channel": True, "activation_dtype": "auto"},
        "source": "recipes/int8-static.toml",
    },
    "prune-channels-50": {
        "recipe": "prune-channels",
        "params": {
            "ratio": 0.5,
            "importance": "l1",
            "global_pruning": False,
            "finetune_epochs": 5,
            "lr": 0.001,
            "round_to": None,
        },
        "source": "recipes/prune-channels-50.toml",
    },
    "fp16": {"recipe": "fp16", "params": {}, "source": "recipes/fp16.toml"},
}
VARIANT_STEPS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "int8": ("int8-static",),
    "prune-50": ("prune-channels-50",),
    "pruned-int8": ("prune-channels-50", "int8-static"),
    "fp16": ("fp16",),
}

# p50 on machine A's local device, ms.
LOCAL_P50_MS: dict[tuple[str, str], dict[str, float]] = {
    ("digits-cnn", "onnxruntime"): {"fp32": 0.060, "int8": 0.041, "prune-50": 0.034,
                                    "pruned-int8": 0.030},
    ("digits-cnn", "executorch"): {"fp32": 0.085, "int8": 0.048, "prune-50": 0.050,
                                   "pruned-int8": 0.036},
    ("mlp", "onnxruntime"): {"fp32": 0.018, "int8": 0.016, "prune-50": 0.011,
                             "pruned-int8": 0.012},
    ("mlp", "executorch"): {"fp32": 0.024, "int8": 0.019, "prune-50": 0.015,
                            "pruned-int8": 0.014},
}  # fmt: skip
DEVICE_SLOWDOWN = {"local": 1.0, EMULATED: 4.0, BOARD: 4.6}
BOARD_INT8_SLOWDOWN = 1.15  # the A72 has no int8 dot product: int8 gains less there
SIZE_BYTES: dict[tuple[str, str], dict[str, int]] = {
    ("digits-cnn", "onnxruntime"): {"fp32": 99_412, "int8": 31_208, "prune-50": 28_644,
                                    "pruned-int8": 11_876},
    ("digits-cnn", "executorch"): {"fp32": 104_896, "int8": 35_360, "prune-50": 33_072,
                                   "pruned-int8": 15_488},
    ("mlp", "onnxruntime"): {"fp32": 205_790, "int8": 55_530, "prune-50": 71_270,
                             "pruned-int8": 21_118},
    ("mlp", "executorch"): {"fp32": 209_216, "int8": 58_944, "prune-50": 74_752,
                            "pruned-int8": 24_576},
}  # fmt: skip
EVAL_COUNT = 360
CORRECT: dict[tuple[str, str], dict[str, int]] = {
    ("digits-cnn", "onnxruntime"): {"fp32": 351, "int8": 350, "prune-50": 346, "pruned-int8": 344},
    ("digits-cnn", "executorch"): {"fp32": 351, "int8": 349, "prune-50": 346, "pruned-int8": 343},
    ("mlp", "onnxruntime"): {"fp32": 347, "int8": 346, "prune-50": 341, "pruned-int8": 339},
    ("mlp", "executorch"): {"fp32": 347, "int8": 345, "prune-50": 341, "pruned-int8": 338},
}
AGREEING = {"fp32": 360, "int8": 356, "prune-50": 349, "pruned-int8": 345}
QUALITY_ERRORS = {  # max_abs_error, mean_abs_error, cosine against fp32 PyTorch
    "fp32": (2.4e-07, 3.1e-08, 1.0),
    "int8": (0.083, 0.0112, 0.9991),
    "prune-50": (0.61, 0.142, 0.9714),
    "pruned-int8": (0.67, 0.151, 0.9683),
}
MODEL_INFO = {  # (params, MACs) before and after channel pruning
    "digits-cnn": ((24_330, 411_136), (6_474, 108_288)),
    "mlp": ((50_698, 50_432), (17_034, 16_896)),
}


@dataclass(frozen=True)
class RunSpec:
    number: int
    commit: str
    machine: dict[str, Any]
    started_at: str
    host_speed: float  # p50 multiplier of the run's machine (local and emulated cells)
    onnxruntime_version: str


RUNS = (
    RunSpec(1, COMMITS[0], MACHINE_A, "2026-03-02T09:00:00+00:00", 1.0, "1.31.1"),
    RunSpec(2, COMMITS[1], MACHINE_A, "2026-03-03T09:00:00+00:00", 1.0, "1.31.1"),
    RunSpec(3, COMMITS[2], MACHINE_A, "2026-03-04T09:00:00+00:00", 1.0, "1.31.1"),
    RunSpec(4, COMMITS[2], MACHINE_B, "2026-03-05T09:00:00+00:00", 0.9, "1.31.0"),
)


def cell_keys() -> list[Key]:
    """The suite's matrix in the walker's order: model, variant, runtime, device."""
    keys = []
    for model, variants in MODEL_VARIANTS.items():
        for variant in variants:
            for runtime in RUNTIMES:
                for device in DEVICES:
                    on_board = runtime == "onnxruntime" and variant in BOARD_VARIANTS
                    if device != BOARD or on_board:
                        keys.append((model, variant, runtime, device))
    return keys


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _lineage(variant: str) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(_STEPS[s])) for s in VARIANT_STEPS[variant]]


def _transform_notes(model: str, variant: str) -> list[dict[str, Any]]:
    if "prune-channels-50" not in VARIANT_STEPS[variant]:
        return []
    (params, macs), (params_after, macs_after) = MODEL_INFO[model]
    return [
        {
            "recipe": "prune-channels",
            "seconds": 2.14,
            "ratio": 0.5,
            "importance": "l1",
            "global_pruning": False,
            "round_to": None,
            "agreement_before": 1.0,
            "agreement_pruned": 0.4125,
            "finetune": "self-distillation on calibration inputs (no labels)",
            "finetune_epochs": 5,
            "agreement_after": 0.9694,
            "params_before": params,
            "params_after": params_after,
            "macs_before": macs,
            "macs_after": macs_after,
            "params_reduction": round(1 - params_after / params, 4),
            "macs_reduction": round(1 - macs_after / macs, 4),
            "tensors_shrunk": 12,
        }
    ]


def _export_notes(variant: str, runtime: str, size: int, on_board: bool) -> dict[str, Any]:
    quantized = "int8-static" in VARIANT_STEPS[variant]
    gzip_bytes = int(size * (0.78 if quantized else 0.93))
    if runtime == "onnxruntime":
        notes: dict[str, Any] = {
            "onnx_exporter": "torch.onnx.export(dynamo=True)",
            "opset": 20,
            "quant_format": "fp32",
        }
        if quantized and on_board:
            notes["quant_format"] = "QDQ S8S8 per-channel"
            notes["quant_reason"] = (
                "ARM: onnxruntime's int8 kernels take symmetric S8 activations/S8 weights"
            )
        elif quantized:
            notes["quant_format"] = "QDQ U8S8 per-channel"
            notes["quant_reason"] = (
                "x86 with AVX512-VNNI: U8 activations/S8 weights use VNNI kernels"
            )
        if quantized:
            notes["calibration_samples"] = 128
        notes["debug_metadata_stripped"] = 15
    else:
        notes = {"quant_format": "fp32"}
        if quantized:
            notes["quant_format"] = "XNNPACK pt2e int8 symmetric per-channel"
            notes["quant_reason"] = (
                "XNNPACKQuantizer: int8 activations (static, histogram-calibrated) and "
                "symmetric int8 weights, the layout XNNPACK's QS8 kernels run on ARM and x86"
            )
            notes["calibration_samples"] = 128
        notes.update(
            {
                "xnnpack_subgraphs": 1,
                "xnnpack_delegated_ops": 14 if quantized else 9,
                "non_delegated_ops": 0,
                "non_delegated_by_op": {},
            }
        )
    notes["gzip_bytes"] = gzip_bytes
    return notes


def _model_info(model: str, variant: str) -> dict[str, int]:
    pruned = "prune-channels-50" in VARIANT_STEPS[variant]
    params, macs = MODEL_INFO[model][1 if pruned else 0]
    return {"params_count": params, "macs": macs}


def _env(run: RunSpec, runtime: str, device: str) -> dict[str, Any]:
    if device == BOARD:
        version = BOARD_ORT_VERSION
        return {
            "python": "3.11.2",
            "machine": "aarch64",
            "kernel": "6.6.51+rpt-rpi-v8",
            "cpu_model": "Raspberry Pi 4 Model B Rev 1.4",
            "cpu_flags": ["asimd"],
            "cpu_count": 4,
            "cpu_usable": 4,
            "governor": "ondemand",
            "mem_available_mb": 3412.5,
            "hostname": "pi4",
            "psutil": True,
            "runtime": {"name": runtime, "version": version},
        }
    machine = run.machine
    version = run.onnxruntime_version if runtime == "onnxruntime" else "1.5.1"
    return {
        "python": machine["python"],
        "machine": machine["arch"],
        "kernel": machine["kernel"],
        "cpu_model": machine["cpu_model"],
        "cpu_flags": list(machine["cpu_features"]),
        "cpu_count": machine["cpu_count"],
        "cpu_usable": 2 if device == EMULATED else machine["cpu_count"],
        "governor": None,
        "mem_available_mb": float(machine["mem_total_mb"] - 1180),
        "hostname": machine["hostname"],
        "psutil": True,
        "runtime": {"name": runtime, "version": version},
    }


def _thermal(run: RunSpec, device: str, hot: bool, first: bool, last: bool) -> dict[str, Any]:
    """Thermal snapshots around one trial's loop; the board's vcgencmd reports throttling
    in the throttled cell's later trials."""
    if device == BOARD:
        cores = [f"cpu{i}" for i in range(4)]

        def snap(temp: float, mhz: float, code: str) -> dict[str, Any]:
            return {
                "temps_c": {"cpu-thermal": temp},
                "freq_mhz": dict.fromkeys(cores, mhz),
                "throttled": decode_throttled(f"throttled={code}"),
                "throttle_count": None,
            }

        if hot and not first:
            return {"before": snap(79.4, 1000.0, "0x40004"), "after": snap(82.5, 1000.0, "0x40004")}
        if hot:
            return {"before": snap(71.1, 1500.0, "0x0"), "after": snap(80.9, 1000.0, "0x40004")}
        return {
            "before": snap(52.6, 1500.0, "0x0"),
            "after": snap(55.3 if last else 54.8, 1500.0, "0x0"),
        }
    sensor = "k10temp" if run.machine is MACHINE_A else "x86_pkg_temp"
    mhz = 2450.0 if run.machine is MACHINE_A else 2900.0
    cores = [f"cpu{i}" for i in range(run.machine["cpu_count"])]

    def host_snap(temp: float) -> dict[str, Any]:
        return {
            "temps_c": {sensor: temp},
            "freq_mhz": dict.fromkeys(cores, mhz),
            "throttled": None,
            "throttle_count": 0,
        }

    return {"before": host_snap(48.0), "after": host_snap(49.5)}


def _memory(runtime: str, device: str, size: int, rise: bool, trial: int) -> dict[str, Any]:
    size_mb = size / 2**20
    if device == BOARD:
        before, baseline = 12.5, 38.9
    else:
        before, baseline = 34.0, (56.2 if runtime == "onnxruntime" else 88.4)
    after_load = baseline + 1.5 + size_mb * (2.0 if runtime == "onnxruntime" else 1.0)
    peak = after_load + (4.5 if runtime == "onnxruntime" else 2.0) + 0.125 * trial
    if rise:
        peak += MEMORY_RISE_MB
    return {
        "before_import": before,
        "baseline": baseline,
        "after_load": round(after_load, 4),
        "peak": round(peak, 4),
        "peak_includes_load": False,
    }


def _power(device: str, run: RunSpec, rng: np.random.Generator, p50: float) -> dict[str, Any]:
    """The trial's ``power`` object as the runner (local, board) or the emulated device's
    board model writes it."""
    if device == "local":
        idle = 6.1 if run.machine is MACHINE_A else 9.8
        power_w = round(idle + 8.2 + float(rng.normal(0, 0.15)), 4)
        active = power_w - idle
        return {
            "source": "measured:rapl",
            "power_w": power_w,
            "idle_w": idle,
            "idle_source": "measured",
            "energy_mj": max(active, 0.0) * p50,
            "cpu_util": 0.99,
            "readings": 12,
            "domains": ["package-0"],
            "active_w": active,
        }
    util = round(0.2475 + float(rng.normal(0, 0.001)), 4) if device == EMULATED else 0.99
    board_util = min(util / 0.25, 1.0) if device == EMULATED else util
    power_w = 2.7 + (6.4 - 2.7) * board_util
    active = power_w - 2.7
    out: dict[str, Any] = {
        "cpu_util": util,
        "readings": 0,
        "source": "modelled",
        "power_w": power_w,
        "idle_w": 2.7,
        "idle_source": "model",
        "active_w": active,
        "energy_mj": max(active, 0.0) * p50,
    }
    if device == EMULATED:
        out["note"] = (
            f"emulated: {EMULATED}'s power model at a board CPU use of {board_util:.2f} "
            f"(measured {util:.2f} under a 0.25 speed cap)"
        )
    return out


def _emulation(peak_mb: float, count: int) -> dict[str, Any]:
    return {
        "method": "cgroup v2",
        "cores": "cpuset 0-1",
        "speed": "cpu.max 25% (0.25 CPU: 25000 us per 100000 us)",
        "memory": "memory.max 3584 MB, memory.swap.max 0",
        "not_enforced": [],
        "warnings": ["cores: the board has 4, this machine lets us use 2; capped to 2"],
        "caps": {"cores": 4, "speed_factor": 0.25, "memory_mb": 3584, "threads": 1},
        "cgroup": {
            "oom_kills": 0,
            "memory_max_events": 0,
            "memory_peak_mb": round(peak_mb + 3.2, 1),
            "cpu_throttled_periods": 3 + count // 8,
        },
    }


def _trial_factors(run: RunSpec, key: Key, rng: np.random.Generator) -> list[float]:
    """Each trial's level against the cell's, as independent processes drift."""
    if run.number == 2 and key == UNSTABLE_CELL:
        return [0.82, 1.0, 1.3]
    if run.number == 4 and key == THROTTLED_CELL:
        return [1.0, 1.15, 1.2]
    return [float(np.exp(rng.normal(0.0, 0.025))) for _ in range(SETTINGS.trials)]


def _samples(rng: np.random.Generator, level_ms: float, count: int) -> list[float]:
    """Right-skewed latencies around ``level_ms`` with a few preemption spikes."""
    values = level_ms * np.exp(rng.normal(0.0, 0.05, count))
    spikes = rng.random(count) < 0.03
    values[spikes] *= rng.uniform(1.5, 3.0, int(spikes.sum()))
    return [round(float(v), 6) for v in values]


def _level_ms(run: RunSpec, key: Key) -> float:
    model, variant, runtime, device = key
    level = LOCAL_P50_MS[(model, runtime)][variant] * DEVICE_SLOWDOWN[device]
    if device == BOARD and "int8-static" in VARIANT_STEPS[variant]:
        level *= BOARD_INT8_SLOWDOWN
    if device != BOARD:
        level *= run.host_speed
    if run.number >= 3 and key in REGRESSED_CELLS:
        level *= REGRESSION_FACTOR
    return level


def _failed(
    key: Key, config_hash: str, result: dict[str, Any], kind: str, message: str, wall: float
) -> CellRecord:
    model, variant, runtime, device = key
    result = {**result, "failure_kind": kind, "error": message, "wall_seconds": wall}
    return CellRecord(
        model=model,
        variant=variant,
        runtime=runtime,
        device=device,
        config_hash=config_hash,
        status="failed",
        reason=f"{kind}: {message}"[:500],
        emulated=device == EMULATED,
        result=result,
    )


def _fp16_message(runtime: str) -> str:
    if runtime == "onnxruntime":
        return (
            "fp16 is not supported by onnxruntime on x86_64: the CPU execution provider has "
            "no fp16 kernels for Conv/Gemm/MatMul on x86, so an fp16 model would run through "
            "inserted casts (or fail to load) instead of measuring fp16 inference"
        )
    return (
        "fp16 is not supported by executorch/XNNPACK on x86 (x86_64): XNNPACK has no native "
        "fp16 kernels for this CPU (they need ARM half-precision arithmetic, asimdhp/fphp); "
        "here fp16 would only be emulated through conversions"
    )


def make_cell(run: RunSpec, key: Key, index: int) -> tuple[CellRecord, list[float]]:
    """One cell's record and raw samples, as the walker would store them."""
    model, variant, runtime, device = key
    on_board = device == BOARD
    rng = np.random.default_rng([SEED, run.number, index])
    config_hash = _hash("config", key, settings_dict(SETTINGS))
    result: dict[str, Any] = {"lineage": _lineage(variant)}
    if variant == FAILING_VARIANT:
        return _failed(key, config_hash, result, "unsupported", _fp16_message(runtime), 0.41), []
    size = SIZE_BYTES[(model, runtime)][variant]
    result["transform_notes"] = _transform_notes(model, variant)
    result["export_notes"] = _export_notes(variant, runtime, size, on_board)
    result["model_info"] = _model_info(model, variant)
    if run.number == 3 and key == TIMEOUT_CELL:
        result["stderr"] = ""
        message = f"runner exceeded its {TIMEOUT_SECONDS} s time-out and was killed"
        return _failed(key, config_hash, result, "timeout", message, 600.84), []

    level = _level_ms(run, key)
    rise = run.number >= 3 and key in MEMORY_RISE_CELLS
    hot = run.number == 4 and key == THROTTLED_CELL
    trials = []
    for trial, factor in enumerate(_trial_factors(run, key, rng)):
        count = int(rng.integers(20, 31))
        samples = _samples(rng, level * factor, count)
        ordered = sorted(samples)
        lo, hi = median_ci(ordered)
        p50 = float(np.median(ordered))
        rcv = robust_cv(ordered)
        memory = _memory(runtime, device, size, rise, trial)
        reasons = []
        if hot and trial > 0:
            reasons.append("throttled")
        if rcv > SETTINGS.max_cv:
            reasons.append("unstable")
        slow = 5.0 if on_board else 1.0
        trial_result: dict[str, Any] = {
            "schema_version": 2,
            "status": "ok",
            "env": _env(run, runtime, device),
            "import_ms": round(
                (180.0 if runtime == "onnxruntime" else 420.0) * slow + float(rng.normal(0, 4)), 3
            ),
            "load_ms": round(
                (3.5 if runtime == "onnxruntime" else 4.2) * slow + float(rng.normal(0, 0.1)), 3
            ),
            "first_inference_ms": round(level * 6.5 + float(rng.uniform(0, 0.05)), 4),
            "runtime_version": _env(run, runtime, device)["runtime"]["version"],
            "memory_mb": memory,
            "samples_ms": samples,
            "stop_reason": "count_and_time",
            "within_trial": {"p50": p50, "ci95": [lo, hi], "cv_robust": rcv, "count": count},
            "power": _power(device, run, rng, p50),
            "thermal": _thermal(run, device, hot, trial == 0, trial == SETTINGS.trials - 1),
            "cooldown": None,
            "validity": reasons or "ok",
            "profile": None,
        }
        if device == EMULATED:
            trial_result["emulation"] = _emulation(memory["peak"], count)
        trials.append(trial_result)
    fields, samples = combine_trials(trials, SETTINGS)
    result.update(fields)
    result.update({"measure": settings_dict(SETTINGS), "accuracy": None, "agreement": None})
    correct = CORRECT[(model, runtime)][variant] - (1 if on_board and variant == "int8" else 0)
    max_err, mean_err, cosine = QUALITY_ERRORS[variant]
    result.update(
        {
            "accuracy": correct / EVAL_COUNT,
            "agreement": AGREEING[variant] / EVAL_COUNT,
            "max_abs_error": max_err,
            "mean_abs_error": mean_err,
            "cosine": cosine,
        }
    )
    loop_s = sum(samples) / 1e3 + SETTINGS.trials * (SETTINGS.idle_seconds + 0.9 * slow)
    result["wall_seconds"] = round(loop_s, 2)
    record = CellRecord(
        model=model,
        variant=variant,
        runtime=runtime,
        device=device,
        config_hash=config_hash,
        status="ok",
        emulated=device == EMULATED,
        artifact_hash=_hash("artifact", model, variant, runtime, "aarch64" if on_board else "x86"),
        size_bytes=size,
        result=result,
    )
    return record, samples


def _at(start: str, seconds: float) -> str:
    return (datetime.fromisoformat(start) + timedelta(seconds=round(seconds))).isoformat()


def build(path: Path) -> Path:
    """Write the golden database to ``path`` (replacing any file there) and return it."""
    path = Path(path)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    finished: dict[int, list[str]] = {}
    with ResultsStore(path) as store:
        for run in RUNS:
            versions = {**RUNTIME_VERSIONS, "onnxruntime": run.onnxruntime_version}
            run_id = store.begin_run(
                suite_name=SUITE_NAME,
                suite_path=SUITE_PATH,
                harness_version=HARNESS_VERSION,
                git_commit=run.commit,
                machine=run.machine,
                machine_fingerprint=machine_fingerprint(run.machine),
                runtime_versions=versions,
            )
            assert run_id == run.number, "the golden store must start empty"
            elapsed = 5.0
            stamps = []
            for index, key in enumerate(cell_keys()):
                record, samples = make_cell(run, key, index)
                store.record_cell(run_id, record, samples)
                elapsed += float(record.result.get("wall_seconds") or 0.0)
                stamps.append(_at(run.started_at, elapsed))
            store.set_run_status(run_id, "complete")
            finished[run_id] = stamps
    # The store stamps the current time: set every timestamp to the run's fixed ones.
    db = sqlite3.connect(str(path))
    with db:
        for run in RUNS:
            stamps = finished[run.number]
            db.execute(
                "UPDATE runs SET started_at = ?, finished_at = ? WHERE id = ?",
                (run.started_at, _at(stamps[-1], 1), run.number),
            )
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM cells WHERE run_id = ? ORDER BY id", (run.number,)
                )
            ]
            for cell_id, stamp in zip(ids, stamps, strict=True):
                db.execute("UPDATE cells SET finished_at = ? WHERE id = ?", (stamp, cell_id))
    # One self-contained file (no -wal beside it) that opens read-only as well.
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("VACUUM")
    db.close()
    return path


def dump(path: Path) -> dict[str, Any]:
    """Every table's rows in rowid order, and the schema version: what "the same
    database" means (the bytes differ with SQLite's page layout)."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        out: dict[str, Any] = {"user_version": db.execute("PRAGMA user_version").fetchone()[0]}
        for table in tables:
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            order = ", ".join(columns)
            out[table] = {
                "columns": columns,
                "rows": db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall(),
            }
        return out
    finally:
        db.close()


def golden_copy(directory: Path) -> Path:
    """A copy of golden.db as ``directory/harness.db`` (what ``--results directory``
    opens), so that opening it (WAL files, a schema migration) leaves the original alone."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "harness.db"
    shutil.copyfile(GOLDEN_DB, target)
    return target


# The report outputs pinned in expected/: (run, format, file name).
EXPECTED_REPORTS: tuple[tuple[str, str, str], ...] = (
    ("4", "table", "run-4-table.txt"),
    ("4", "markdown", "run-4.md"),
    ("4", "csv", "run-4.csv"),
    ("4", "json", "run-4.json"),
    ("4", "pytest-benchmark", "run-4-pytest-benchmark.json"),
    ("3", "markdown", "run-3.md"),
    ("1", "markdown", "run-1.md"),
)


def render_report(results_dir: Path, run: str, fmt: str, out: Path) -> Path:
    """``harness report RUN --format FMT -o OUT`` against ``results_dir``."""
    from harness.cli import main

    code = main(["report", run, "--results", str(results_dir), "--format", fmt, "-o", str(out)])
    if code != 0:
        raise RuntimeError(f"harness report {run} --format {fmt} exited {code}")
    return out


def write_expected() -> list[Path]:
    """Regenerate expected/ from golden.db through the CLI (never edit those by hand)."""
    EXPECTED_DIR.mkdir(exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        golden_copy(results)
        for run, fmt, name in EXPECTED_REPORTS:
            written.append(render_report(results, run, fmt, EXPECTED_DIR / name))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=GOLDEN_DB)
    parser.add_argument(
        "--expected",
        action="store_true",
        help="also regenerate tests/golden/expected/ from the rebuilt golden.db",
    )
    args = parser.parse_args(argv)
    path = build(args.out)
    print(f"wrote {path}")
    if args.expected:
        if path.resolve() != GOLDEN_DB:
            parser.error("--expected renders from tests/golden/golden.db: give no OUT")
        for written in write_expected():
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
