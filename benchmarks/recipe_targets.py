"""Check the compression targets of the recipes issue and print the measured figures.

Runs ``benchmarks/recipe_targets.toml`` through the harness (artifacts are cached in
the results directory, so a re-run only re-measures with ``--new-run``), then reads
the store and compares every variant with the fp32 variant of the same model and
runtime, measured in the same run.

    .venv/bin/python benchmarks/recipe_targets.py [--results DIR] [--new-run]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

from harness.artifacts import ArtifactStore
from harness.devices.local import run_runner_process
from harness.results.stats import median_ci
from harness.results.store import CellRecord, ResultsStore
from harness.runner.job import MeasureSettings, make_job

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "recipe_targets.toml"


@dataclass(frozen=True)
class Check:
    what: str
    measured: str
    target: str
    ok: bool | None  # None: informational


def _cells(results: Path) -> dict[tuple[str, str, str], CellRecord]:
    with ResultsStore(results / "harness.db") as store:
        run = store.latest_run("recipe-targets")
        if run is None:
            raise SystemExit(f"{results}: no recipe-targets run in the store")
        return {(c.model, c.variant, c.runtime): c for c in store.cells(run.id)}


def _p50(cell: CellRecord) -> float:
    return float(cell.result["latency_ms"]["p50"])


def interleaved_speedup(
    results: Path, base: CellRecord, cand: CellRecord, runtime: str, rounds: int = 8
) -> tuple[float, tuple[float, float]]:
    """Median over rounds of p50(base) / p50(candidate), each round running both
    artifacts in fresh runner processes in alternating order, with the order-statistic
    95% interval of that median."""
    artifacts = ArtifactStore(results / "artifacts")
    paths = {}
    for cell in (base, cand):
        artifact = artifacts.get(cell.artifact_hash or "")
        if artifact is None:
            raise SystemExit(f"{results}: the artifact of {cell.key} is gone; re-run the suite")
        paths[cell.variant] = artifact.path
    size = tomllib.loads(SUITE.read_text())["models"][0]["params"]["input_size"]
    shape = [1, 3, size, size]
    settings = MeasureSettings(warmup_count=20, warmup_seconds=0.2, min_count=100, min_seconds=1.0)
    ratios = []
    for i in range(rounds):
        order = [base, cand] if i % 2 == 0 else [cand, base]
        p50 = {}
        for cell in order:
            job = make_job(runtime, str(paths[cell.variant]), shape, settings)
            run = run_runner_process([sys.executable], job, 300, origin="interleave")
            p50[cell.variant] = statistics.median(run.result["samples_ms"])
        ratios.append(p50[base.variant] / p50[cand.variant])
    ordered = sorted(ratios)
    return statistics.median(ordered), median_ci(ordered)


def checks(results: Path, cells: dict[tuple[str, str, str], CellRecord]) -> list[Check]:
    out: list[Check] = []

    def get(model: str, variant: str, runtime: str) -> CellRecord | None:
        cell = cells.get((model, variant, runtime))
        if cell is None or cell.status != "ok":
            reason = "missing" if cell is None else cell.reason
            out.append(Check(f"{model}/{variant}/{runtime}", f"not measured: {reason}", "-", False))
            return None
        return cell

    for runtime in ("onnxruntime", "executorch"):
        base = get("resnet18", "fp32", runtime)
        if base is None:
            continue
        for variant, target in (("int8", 2.5), ("pruned", 2.5), ("pruned-int8", 7.0)):
            cell = get("resnet18", variant, runtime)
            if cell is None:
                continue
            speedup = _p50(base) / _p50(cell)
            out.append(
                Check(
                    f"resnet18 {variant} speedup ({runtime})",
                    f"{speedup:.2f}x ({_p50(base):.3f} -> {_p50(cell):.3f} ms p50)",
                    f">= {target}x",
                    speedup >= target,
                )
            )
        int8 = get("resnet18", "int8", runtime)
        if int8 is not None and base.size_bytes and int8.size_bytes:
            ratio = int8.size_bytes / base.size_bytes
            out.append(
                Check(
                    f"resnet18 int8 artifact size ({runtime})",
                    f"{ratio:.3f}x",
                    "<= 0.30x",
                    ratio <= 0.30,
                )
            )
        sparse = get("resnet18", "sparse", runtime)
        if sparse is not None:
            # Cells are measured minutes apart, and the machine drifts by more than the
            # effect in question; "within noise" is judged on base and candidate run
            # alternately (ABAB), so that drift hits both alike.
            speedup = _p50(base) / _p50(sparse)
            ratio, (low, high) = interleaved_speedup(results, base, sparse, runtime)
            out.append(
                Check(
                    f"resnet18 unstructured 50% speedup ({runtime})",
                    f"{ratio:.3f}x interleaved, 95% CI [{low:.3f}, {high:.3f}] "
                    f"(separate cells: {speedup:.2f}x)",
                    "within noise of 1.0x (no dense speedup)",
                    low <= 1.0 <= high or abs(ratio - 1.0) <= 0.05,
                )
            )

        dbase = get("digits-cnn", "fp32", runtime)
        if dbase is None:
            continue
        base_acc = dbase.result["accuracy"]
        for variant, max_loss in (("int8", 0.5), ("pruned", 1.5)):
            cell = get("digits-cnn", variant, runtime)
            if cell is None:
                continue
            acc = cell.result["accuracy"]
            loss = (base_acc - acc) * 100
            out.append(
                Check(
                    f"digits-cnn {variant} accuracy loss ({runtime})",
                    f"{loss:+.2f} points ({base_acc * 100:.2f}% -> {acc * 100:.2f}%)",
                    f"<= {max_loss} points",
                    loss <= max_loss,
                )
            )
        for variant in ("qat", "lowrank"):
            cell = get("digits-cnn", variant, runtime)
            if cell is not None:
                acc = cell.result["accuracy"]
                out.append(
                    Check(
                        f"digits-cnn {variant} accuracy ({runtime})",
                        f"{acc * 100:.2f}% (fp32 {base_acc * 100:.2f}%), "
                        f"{_p50(dbase) / _p50(cell):.2f}x speed, "
                        f"{cell.size_bytes / dbase.size_bytes:.2f}x size",
                        "no target (information)",
                        None,
                    )
                )
        student = get("digits-cnn", "distilled", runtime)
        if student is not None:
            steps = student.result.get("transform_notes", [])
            notes = next((n for n in steps if n.get("recipe") == "distill"), {})
            ratio = notes.get("param_ratio")
            alone = notes.get("student_alone_accuracy")
            acc = student.result["accuracy"]
            gap = (base_acc - acc) * 100
            out.append(
                Check(
                    f"distilled student params / teacher ({runtime})",
                    f"{ratio:.3f}" if ratio is not None else "unknown",
                    "<= 0.25",
                    ratio is not None and ratio <= 0.25,
                )
            )
            out.append(
                Check(
                    f"distilled vs same student trained alone ({runtime})",
                    f"{acc * 100:.2f}% vs {alone * 100:.2f}%" if alone is not None else "unknown",
                    "distilled > alone",
                    alone is not None and acc > alone,
                )
            )
            out.append(
                Check(
                    f"distilled within 1.5 points of teacher ({runtime})",
                    f"{gap:+.2f} points",
                    "<= 1.5 points",
                    gap <= 1.5,
                )
            )
    return out


def render(rows: list[Check]) -> str:
    width = max(len(r.what) for r in rows)
    lines = [f"{'check':<{width}}  {'verdict':<7}  {'target':<36}  measured"]
    for r in rows:
        verdict = "info" if r.ok is None else ("PASS" if r.ok else "FAIL")
        lines.append(f"{r.what:<{width}}  {verdict:<7}  {r.target:<36}  {r.measured}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "results" / "recipe-targets")
    parser.add_argument("--new-run", action="store_true", help="re-measure every cell")
    parser.add_argument("--report-only", action="store_true", help="do not run, only report")
    args = parser.parse_args()
    if not args.report_only:
        command = [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            str(SUITE),
            "--results",
            str(args.results),
            "-q",
        ]
        if args.new_run:
            command.append("--new-run")
        subprocess.run(command, cwd=REPO, check=False)
    rows = checks(args.results, _cells(args.results))
    print(render(rows))
    failed = [r for r in rows if r.ok is False]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
