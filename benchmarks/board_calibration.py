"""Emulated boards against published board figures: estimate / published per board and
precision, and the speed factor that would make them equal.

Runs the emulated profiles (``devices/<board>-emulated.toml``, through
:class:`harness.devices.emulated.EmulatedDevice`, the path a suite cell takes) on the
models of published figures: MobileNetV2 and ResNet-18 (harness/models/architectures.py,
torchvision layouts, width 1.0, 1000 classes, 224 px, random weights with calibrated
BatchNorm: latency does not depend on the weights), exported with the harness's own
exporters (ExecuTorch XNNPACK fp32 and pt2e int8, ONNX Runtime fp32 and static int8),
at the published figure's thread count.

Emulated latency scales as 1 / speed_factor, so the factor that would make a point's
estimate equal the published figure is ``current x estimate / published``. Per board
and precision the suggestion is the geometric mean over the *primary* points (the
runtime family we run: XNNPACK / ExecuTorch XNNPACK); ncnn points (a different runtime,
with its own kernels) are printed as a check and used only where no primary point
exists.

This machine has fewer cores than the boards: a cell with more threads than cores here
gets the quota of the cores here (see EmulatedDevice.caps), so a 4-thread figure is
estimated with 2 cores' worth of board speed. The output says so per point.

    .venv/bin/python benchmarks/board_calibration.py [--quick] [--cache DIR]
        [--boards pi4 pi5 ...] [--ncnn-runtimes executorch onnxruntime] [--seconds 1.0]

Artifacts are cached in ``--cache`` (default ``results/board-calibration-cache``), keyed
by model, runtime, precision and the exporter's library versions. Needs root and
writable cgroups (else the speed cap is not enforced and every point says so). No
assertions: read the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.devices.config import load_profile  # noqa: E402
from harness.devices.emulated import EmulatedDevice  # noqa: E402
from harness.runner.job import MeasureSettings, make_job  # noqa: E402

# ------------------------------------------------------------------ published figures

XNNPACK_2020 = (
    "google/XNNPACK README.md, 'Raspberry Pi' table as of commit 5b5a0624 (2020-02-13, "
    "'Benchmarked on February 12, 2020 with end2end-bench --benchmark_min_time=5 on a "
    "Raspbian Buster build'): **multi-threaded**, RPi 4 (BCM2711) FP32 MobileNet v2 1.0X "
    "44 ms. end2end-bench runs T=1..cores; the multi-threaded figure is taken as T=4. "
    "32-bit (armv7) Raspbian, random weights; clock not stated (1.5 GHz on boards of "
    "that time)"
)
XNNPACK_2022 = (
    "google/XNNPACK README.md, 'Raspberry Pi' table (commit fd2d933b, 2022-02-08, "
    "'Benchmarked on Feb 8, 2022 ... Raspbian Buster build', per-channel int8): "
    "**multi-threaded**, RPi 4 (BCM2711, ARM64) INT8 MobileNet v2 1.0X 17 ms (FP32 "
    "46 ms in the same column); threads taken as 4; clock not stated"
)
ARM_CARD = (
    "Arm's model card huggingface.co/Arm/resnet-18-int8-xnnpack-executorch: Raspberry Pi 5 "
    "(Cortex-A76, Raspberry Pi OS 64-bit, Debian 13), ExecuTorch XNNPACK, static PTQ "
    "int8 (per-channel symmetric weights, per-tensor affine activations), 224 px: p50 "
    "8.751 ms. Thread count not stated on the card: assumed 4 (all cores, ExecuTorch's "
    "default threadpool size on a 4-core CPU)"
)
ARM_CARD_BASELINE = (
    "Derived from Arm's model card huggingface.co/Arm/resnet-18-int8-xnnpack-executorch: "
    "'p50 latency 8.751 ms (3.61x faster than baseline)' and '11.239 MB (3.97x smaller)', "
    "so a baseline of 8.751 x 3.61 = 31.6 ms, the size of fp32 weights: taken as the fp32 "
    "model on the same Pi 5 with ExecuTorch XNNPACK (the card does not name the "
    "baseline's runtime), 4 threads assumed as for the int8 figure"
)
NCNN = (
    "Tencent/ncnn benchmark/README.md (commit a4d2ea1d), benchncnn avg of {loops} loops, "
    "{section}, num_threads={threads}, gpu_device=-1 (CPU)"
)
NCNN_SECTIONS = {
    "pi4": ("'Raspberry Pi 4 Model B Broadcom BCM2711B0, Cortex-A72 (ARMv8) (1.8GHz x 4)'", 10),
    "pi5": ("'Raspberry Pi 5 Broadcom BCM2712, Cortex-A76 (ARMv8) (2.4GHz x 4)'", 10),
    "jetson-orin-nano": ("'NVIDIA Jetson Orin Nano' (clock and power mode not stated)", 8),
    "jetson-nano": ("'NVIDIA Jetson Nano' (clock and power mode not stated)", 8),
}
# (board, model, precision, threads) -> avg ms, read from the sections above.
NCNN_FIGURES = {
    ("pi4", "resnet18", "fp32", 1): 191.10,
    ("pi4", "resnet18", "int8", 1): 158.50,
    ("pi4", "mobilenet_v2", "fp32", 1): 93.48,
    ("pi4", "resnet18", "fp32", 4): 123.12,
    ("pi4", "resnet18", "int8", 4): 83.92,
    ("pi4", "mobilenet_v2", "fp32", 4): 61.88,
    ("pi5", "resnet18", "fp32", 1): 29.68,
    ("pi5", "resnet18", "int8", 1): 36.42,
    ("pi5", "mobilenet_v2", "fp32", 1): 16.38,
    ("pi5", "resnet18", "fp32", 4): 19.96,
    ("pi5", "resnet18", "int8", 4): 16.74,
    ("pi5", "mobilenet_v2", "fp32", 4): 10.52,
    ("jetson-orin-nano", "resnet18", "fp32", 1): 48.83,
    ("jetson-orin-nano", "resnet18", "int8", 1): 50.92,
    ("jetson-orin-nano", "mobilenet_v2", "fp32", 1): 19.37,
    ("jetson-orin-nano", "resnet18", "fp32", 6): 15.13,
    ("jetson-orin-nano", "resnet18", "int8", 6): 13.86,
    ("jetson-orin-nano", "mobilenet_v2", "fp32", 6): 6.51,
    ("jetson-nano", "resnet18", "fp32", 1): 221.60,
    ("jetson-nano", "resnet18", "int8", 1): 190.74,
    ("jetson-nano", "mobilenet_v2", "fp32", 1): 93.99,
    ("jetson-nano", "resnet18", "fp32", 4): 83.44,
    ("jetson-nano", "resnet18", "int8", 4): 60.70,
    ("jetson-nano", "mobilenet_v2", "fp32", 4): 33.83,
}
# ncnn's default options (src/option.cpp: use_fp16_arithmetic = true) run its "fp32"
# models in fp16 arithmetic where the CPU has it (asimdhp): the Pi 5's A76 and the Orin's
# A78AE. Their ncnn fp32 figures are fp16 speed, not fp32.
FP16_BOARDS = {"pi5", "jetson-orin-nano"}
# Boards without an XNNPACK/ExecuTorch figure, and the calibrated board they are scaled
# from (same ISA level: ARMv8.2 with dot product; ARMv8.0 without).
ANCHORS = {"jetson-orin-nano": "pi5", "jetson-nano": "pi4"}
# ncnn has no mobilenet_v2_int8 in its benchmark list (only mobilenet_int8, MobileNet v1).


@dataclass(frozen=True)
class Point:
    board: str
    model: str
    precision: str
    threads: int
    published_ms: float
    stat: str  # what the figure is: p50, avg, ...
    kind: str  # "primary" (XNNPACK / ExecuTorch), "derived" (from a primary source), "ncnn"
    runtime: str  # ours
    source: str


def points(ncnn_runtimes: list[str], quick: bool) -> list[Point]:
    out = [
        Point("pi5", "resnet18", "int8", 4, 8.751, "p50", "primary", "executorch", ARM_CARD),
        Point(
            "pi5", "resnet18", "fp32", 4, 31.6, "p50", "derived", "executorch", ARM_CARD_BASELINE
        ),
        Point(
            "pi4", "mobilenet_v2", "fp32", 4, 44.0, "mean", "primary", "executorch", XNNPACK_2020
        ),
        Point(
            "pi4", "mobilenet_v2", "int8", 4, 17.0, "mean", "primary", "executorch", XNNPACK_2022
        ),
    ]
    for (board, model, precision, threads), ms in NCNN_FIGURES.items():
        if quick and (threads != 1 or model != "resnet18"):
            continue
        section, loops = NCNN_SECTIONS[board]
        source = NCNN.format(loops=loops, section=section, threads=threads)
        for runtime in ncnn_runtimes:
            out.append(Point(board, model, precision, threads, ms, "avg", "ncnn", runtime, source))
    return out


# ------------------------------------------------------------------------ artifacts

MODEL_PARAMS = {"input_size": 224, "num_classes": 1000, "width_mult": 1.0}
CALIBRATION_SAMPLES = 32


def artifact(cache: Path, model: str, runtime: str, precision: str) -> tuple[Path, dict, Any]:
    """The exported artifact (cached), its export notes and input specs."""
    from harness.export import get_exporter
    from harness.models.zoo import build_model
    from harness.recipes.base import QuantRequest
    from harness.target import local_target

    exporter = get_exporter(runtime)
    key = json.dumps(
        [model, MODEL_PARAMS, runtime, precision, CALIBRATION_SAMPLES, exporter.versions()],
        sort_keys=True,
    )
    stem = f"{model}-{runtime}-{precision}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    path = cache / f"{stem}{exporter.suffix}"
    meta_path = cache / f"{stem}.json"
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        from harness.models.inputs import InputSpec

        return path, meta["notes"], [InputSpec.from_dict(d) for d in meta["inputs"]]
    bundle = build_model(model, MODEL_PARAMS, None)
    quant = (
        QuantRequest(mode="static", calibration_samples=CALIBRATION_SAMPLES)
        if precision == "int8"
        else None
    )
    started = time.perf_counter()
    result = exporter.export(bundle, path, quant, local_target())
    print(
        f"  exported {stem} in {time.perf_counter() - started:.0f} s "
        f"({result.notes.get('quant_format')})",
        file=sys.stderr,
    )
    inputs = list(bundle.input_specs)
    notes = json.loads(json.dumps(result.notes, default=str))
    meta_path.write_text(json.dumps({"notes": notes, "inputs": [s.to_dict() for s in inputs]}))
    return path, notes, inputs


# --------------------------------------------------------------------------- running


def run_point(point: Point, device: EmulatedDevice, cache: Path, seconds: float) -> dict[str, Any]:
    from harness.export.precision import precision_of

    path, notes, inputs = artifact(cache, point.model, point.runtime, point.precision)
    settings = MeasureSettings(
        threads=point.threads,
        warmup_count=3,
        warmup_seconds=0.3,
        min_count=10,
        min_seconds=seconds,
        max_seconds=60.0,
        trials=1,
    )
    precision = precision_of(notes, "static" if point.precision == "int8" else None)
    job = make_job(point.runtime, str(path), inputs, settings, precision=precision.to_job())
    result = device.run(job, path, None, 600).result
    emu = result["emulation"]
    samples = result["samples_ms"]
    return {
        "p50": statistics.median(samples),
        "speed_factor": emu["caps"]["speed_factor"],
        "basis": emu["caps"]["speed_factor_basis"],
        "precision_run": emu["caps"]["precision"],
        "cores": emu["caps"]["cores"],
        "speed": emu.get("speed"),
        "validity": result.get("validity"),
        "warnings": list(emu.get("warnings") or []) + list(emu.get("not_enforced") or []),
        "estimate": emu["estimate"]["method"],
        "quant_format": notes.get("quant_format"),
    }


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="primary points + 1-thread ncnn resnet18"
    )
    parser.add_argument("--cache", type=Path, default=REPO / "results" / "board-calibration-cache")
    parser.add_argument("--boards", nargs="+", default=None, help="only these boards")
    parser.add_argument(
        "--ncnn-runtimes",
        nargs="+",
        default=["executorch", "onnxruntime"],
        help="ours, for ncnn points",
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="min_seconds per point")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    args.cache.mkdir(parents=True, exist_ok=True)
    todo = [
        p
        for p in points(args.ncnn_runtimes, args.quick)
        if not args.boards or p.board in args.boards
    ]
    devices: dict[str, EmulatedDevice] = {}
    rows: list[tuple[Point, dict[str, Any]]] = []
    started = time.perf_counter()
    for i, point in enumerate(todo, 1):
        if point.board not in devices:
            profile = load_profile(REPO / "devices" / f"{point.board}-emulated.toml")
            devices[point.board] = EmulatedDevice(profile)
        got = run_point(point, devices[point.board], args.cache, args.seconds)
        rows.append((point, got))
        print(
            f"[{i}/{len(todo)}] {point.board} {point.model} {point.precision} {point.runtime} "
            f"T={point.threads}: {got['p50']:.2f} ms / {point.published_ms:g} ms",
            file=sys.stderr,
        )
    elapsed = time.perf_counter() - started

    import os

    here = len(os.sched_getaffinity(0))
    print(f"board calibration: {len(rows)} points in {elapsed:.0f} s; this machine: {here} cores")
    print(
        "estimate = emulated p50 (block means under the quota); published = the figure's "
        "statistic; suggested = current factor x estimate / published"
    )
    print()
    header = (
        f"{'board':17} {'prec':4} {'model':12} {'ours':11} {'T':>2} {'cores':>5} "
        f"{'est ms':>8} {'pub ms':>8} {'stat':4} {'est/pub':>7} {'factor':>6} {'sugg':>6}  source"
    )
    print(header)
    for point, got in rows:
        ratio = got["p50"] / point.published_ms
        cores = min(point.threads, here)
        tag = point.kind
        if point.kind == "ncnn" and point.precision == "fp32" and point.board in FP16_BOARDS:
            tag += " (fp16 arith.)"
        flags = ""
        if got["validity"] not in ("ok", None):
            flags += f" validity={got['validity']}"
        if got["precision_run"] != point.precision:
            flags += f" RAN AS {got['precision_run']}"
        print(
            f"{point.board:17} {point.precision:4} {point.model:12} {point.runtime:11} "
            f"{point.threads:>2} {cores:>5} {got['p50']:8.2f} {point.published_ms:8.2f} "
            f"{point.stat:4} {ratio:7.2f} {got['speed_factor']:6.3f} "
            f"{got['speed_factor'] * ratio:6.3f}  {tag}{flags}"
        )
    print()
    print("per board and precision (geometric means of est/pub; suggested from primary points")
    print("where there are any, else from the ncnn points, which are a different runtime):")
    groups: dict[tuple[str, str], list[tuple[Point, dict[str, Any]]]] = {}
    for point, got in rows:
        groups.setdefault((point.board, point.precision), []).append((point, got))
    summary = []
    for (board, precision), members in groups.items():
        factor = members[0][1]["speed_factor"]
        prim = [g["p50"] / p.published_ms for p, g in members if p.kind != "ncnn"]
        ncnn = [g["p50"] / p.published_ms for p, g in members if p.kind == "ncnn"]
        ncnn1 = [
            g["p50"] / p.published_ms for p, g in members if p.kind == "ncnn" and p.threads == 1
        ]
        basis = prim or ncnn
        suggested = factor * geomean(basis)
        line = f"  {board:17} {precision:4} factor {factor:5.3f}"
        line += f"  primary {geomean(prim):5.2f}" if prim else "  primary   -  "
        line += (
            f"  ncnn {geomean(ncnn):5.2f} (1-thread {geomean(ncnn1):5.2f})"
            if ncnn1
            else (f"  ncnn {geomean(ncnn):5.2f}" if ncnn else "  ncnn   -  ")
        )
        line += f"  -> suggested {suggested:.3f} ({'primary' if prim else 'ncnn only'})"
        print(line)
        summary.append(
            {
                "board": board,
                "precision": precision,
                "factor": factor,
                "primary": geomean(prim) if prim else None,
                "ncnn": geomean(ncnn) if ncnn else None,
                "ncnn_1_thread": geomean(ncnn1) if ncnn1 else None,
                "suggested": suggested,
            }
        )
    print()
    print("boards without a primary point, scaled from a calibrated one by ncnn's 1-thread")
    print("figures on both (the same runtime on both boards, so its bias cancels):")
    for board, anchor in ANCHORS.items():
        for precision in ("fp32", "int8"):
            ratios = [
                NCNN_FIGURES[(anchor, m, precision, 1)] / NCNN_FIGURES[(board, m, precision, 1)]
                for m in ("resnet18", "mobilenet_v2")
                if (board, m, precision, 1) in NCNN_FIGURES
            ]
            base = next(
                (s for s in summary if s["board"] == anchor and s["precision"] == precision), None
            )
            if not ratios or base is None or base["primary"] is None:
                continue
            scale = geomean(ratios)
            print(
                f"  {board:17} {precision:4} = {anchor} {base['suggested']:.3f} x {scale:.3f} "
                f"(ncnn {anchor} / {board}) = {base['suggested'] * scale:.3f}"
            )
    notes = sorted({w for _, g in rows for w in g["warnings"]})
    if notes:
        print("emulation notes:")
        for w in notes:
            print(f"  {w}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": [{**p.__dict__, **g} for p, g in rows],
                    "summary": summary,
                    "seconds": elapsed,
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
