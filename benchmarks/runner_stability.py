"""Do the reported CIs hold up? Back-to-back measurements of the same cell, compared.

Runs ``--pairs`` pairs of back-to-back measurements of one cell (the benchmark's MLP of
about 1 ms, or the conv net) on this machine, each measurement being ``--trials``
runner processes combined as the matrix walk combines them (CI over the trials'
medians). For each pair it checks whether the two p50s differ by no more than their
CIs allow, and prints how often that holds, next to the same check with the
within-trial CI of a single process (what a one-trial measurement would report), plus
the median relative difference of the p50s.

    .venv/bin/python benchmarks/runner_stability.py [--pairs 20] [--trials 3]
        [--runtime onnxruntime] [--model mlp] [--threads 1] [--min-seconds 0.5]

About 12 s per pair at the defaults with onnxruntime (20 pairs: 4 min); ExecuTorch
processes start slower (about 3 s each). No assertions: read the rates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _runner_models import SIZES, export  # noqa: E402

from harness.devices.config import LocalProfile  # noqa: E402
from harness.devices.local import LocalDevice  # noqa: E402
from harness.results.stats import median_ci, percentile  # noqa: E402
from harness.runner.job import MeasureSettings, make_job  # noqa: E402
from harness.runner.trials import combine_trials, run_trials  # noqa: E402


def measure(device, job, artifact, settings) -> dict:
    run = run_trials(device, job, artifact, None, 600.0, settings.trials)
    fields, _ = combine_trials(run.results, settings)
    first = sorted(run.results[0]["samples_ms"])
    return {
        "p50": fields["latency_ms"]["p50"],
        "ci": tuple(fields["latency_ms"]["ci95"]),
        "trial_p50s": fields["latency_ms"]["trial_p50s"],
        "one_p50": percentile(first, 50),
        "one_ci": median_ci(first),
        "validity": fields["validity"],
    }


def consistent(a: float, ci_a: tuple, b: float, ci_b: tuple) -> tuple[bool, bool]:
    """(the CIs overlap, |a - b| within the half-widths combined in quadrature)."""
    overlap = ci_a[0] <= ci_b[1] and ci_b[0] <= ci_a[1]
    half_a, half_b = (ci_a[1] - ci_a[0]) / 2, (ci_b[1] - ci_b[0]) / 2
    return overlap, abs(a - b) <= (half_a**2 + half_b**2) ** 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--model", default="mlp", choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-count", type=int, default=50)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    args = parser.parse_args()

    settings = MeasureSettings(
        threads=args.threads,
        min_count=args.min_count,
        min_seconds=args.min_seconds,
        warmup_seconds=0.2,
        trials=args.trials,
    )
    device = LocalDevice(LocalProfile(name="local"))
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="runner-stability-") as tmp:
        artifact, shape = export(args.model, args.runtime, Path(tmp))
        job = make_job(args.runtime, str(artifact), shape, settings, vcgencmd=None)
        print(
            f"{args.runtime} {args.model} ({SIZES[args.model]}), {args.threads} thread(s), "
            f"{args.pairs} pairs x 2 measurements x {args.trials} trials"
        )
        for i in range(args.pairs):
            a = measure(device, job, artifact, settings)
            b = measure(device, job, artifact, settings)
            trials_ok = consistent(a["p50"], a["ci"], b["p50"], b["ci"])
            one_ok = consistent(a["one_p50"], a["one_ci"], b["one_p50"], b["one_ci"])
            rel = abs(a["p50"] - b["p50"]) / ((a["p50"] + b["p50"]) / 2)
            one_rel = abs(a["one_p50"] - b["one_p50"]) / ((a["one_p50"] + b["one_p50"]) / 2)
            rows.append((trials_ok, one_ok, rel, one_rel, a, b))
            half = (a["ci"][1] - a["ci"][0]) / 2 / a["p50"]
            print(
                f"  pair {i + 1:2d}: p50 {a['p50']:.4f} / {b['p50']:.4f} ms "
                f"(diff {rel * 100:5.1f}%, CI +-{half * 100:5.1f}%)  "
                f"overlap {'yes' if trials_ok[0] else 'NO '}  "
                f"one-process CIs overlap {'yes' if one_ok[0] else 'NO '}"
            )
            sys.stdout.flush()
    n = len(rows)
    elapsed = time.perf_counter() - started

    def rate(values) -> str:
        return f"{sum(values)}/{n} ({100 * sum(values) / n:.0f}%)"

    half_widths = [(r[4]["ci"][1] - r[4]["ci"][0]) / 2 / r[4]["p50"] for r in rows]
    one_half = [(r[4]["one_ci"][1] - r[4]["one_ci"][0]) / 2 / r[4]["one_p50"] for r in rows]
    unstable = sum(1 for r in rows for m in (r[4], r[5]) if m["validity"] != "ok")
    print(f"\n{n} pairs in {elapsed:.0f} s")
    print(
        f"CI over {args.trials} trials:  CIs overlap {rate([r[0][0] for r in rows])}, "
        f"|diff| <= combined half-widths {rate([r[0][1] for r in rows])}, "
        f"median CI half-width {statistics.median(half_widths) * 100:.1f}%"
    )
    print(
        f"one process, within-trial CI:  CIs overlap {rate([r[1][0] for r in rows])}, "
        f"|diff| <= combined half-widths {rate([r[1][1] for r in rows])}, "
        f"median CI half-width {statistics.median(one_half) * 100:.2f}%"
    )
    print(
        f"median relative p50 difference: {statistics.median(r[2] for r in rows) * 100:.1f}% "
        f"({args.trials} trials pooled), "
        f"{statistics.median(r[3] for r in rows) * 100:.1f}% (one process)"
    )
    print(f"measurements not 'ok' by the validity verdict: {unstable}/{2 * n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
