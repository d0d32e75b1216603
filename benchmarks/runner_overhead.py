"""How much the runner's timing loop adds: its p50 against a bare loop, same session.

For each runtime (onnxruntime, executorch) and model (an MLP of about 1 ms, a conv net of
about 20 ms) the script loads one session with the runner's own code, then alternates
``rounds`` times between

* bare: ``sess.run(None, feed)`` / ``method.execute(inputs)`` called directly, with
  ``time.perf_counter()`` around each call;
* runner: ``bench_runner.run_loop`` on ``session.bind(array)`` (exactly what the runner
  times), its p50 computed as the runner does;

in short rounds, alternating which goes first, so drift on the shared machine hits both
alike. It prints both medians and the median of the per-round ratios runner / bare
(target: within 1%), with its quartiles to show how much the machine's noise blurs it.
With ``--subprocess`` it also runs the whole runner program once per model (a different
process, so process-to-process drift, which trials exist for, is in that number too).

    .venv/bin/python benchmarks/runner_overhead.py [--rounds 20] [--seconds 0.3]
        [--runtimes onnxruntime executorch] [--models mlp convnet] [--subprocess]

No timing assertions: the machine is shared; read the ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _runner_models import SIZES, export  # noqa: E402

from harness.runner import RUNNER_PATH, bench_runner  # noqa: E402
from harness.runner.job import MeasureSettings, make_job  # noqa: E402


def bare_callable(session: object, array: np.ndarray):
    """The runtime's own call and its argument(s), with nothing of the runner around."""
    if isinstance(session, bench_runner.OrtSession):
        sess = session._session
        return sess.run, (None, {sess.get_inputs()[0].name: array})
    import torch

    return session._method.execute, ((torch.from_numpy(array),),)


def bare_loop(call, count: int) -> list[float]:
    """``call = (fn, args)``: the timed span holds only ``fn(*args)``, the runtime's own
    entry point (two arguments for ``sess.run``, one for ``method.execute``)."""
    fn, args = call
    samples = []
    clock = time.perf_counter
    if len(args) == 2:
        a, b = args
        for _ in range(count):
            t0 = clock()
            fn(a, b)
            samples.append(clock() - t0)
    else:
        (a,) = args
        for _ in range(count):
            t0 = clock()
            fn(a)
            samples.append(clock() - t0)
    return samples


def p50_ms(samples_s: list[float]) -> float:
    return bench_runner.median_and_ci(sorted(s * 1e3 for s in samples_s))[0]


def count_for(call, target_s: float, cap: int) -> int:
    fn, args = call
    t0 = time.perf_counter()
    for _ in range(3):
        fn(*args)
    per = (time.perf_counter() - t0) / 3
    return max(20, min(cap, int(target_s / max(per, 1e-6))))


def subprocess_p50(runtime: str, artifact: Path, shape: list[int], threads: int) -> float:
    settings = MeasureSettings(threads=threads, min_count=50, min_seconds=1.0)
    job = make_job(runtime, str(artifact), shape, settings, vcgencmd=None)
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        subprocess.run(
            [sys.executable, str(RUNNER_PATH), str(job_path), str(out)],
            check=True,
            capture_output=True,
        )
        return json.loads(out.read_text())["within_trial"]["p50"]


def noop(_arg: object) -> None:
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "executorch"])
    parser.add_argument("--models", nargs="+", default=list(SIZES))
    parser.add_argument("--rounds", type=int, default=20, help="bare/runner pairs per model")
    parser.add_argument("--seconds", type=float, default=0.3, help="per loop (sets count)")
    parser.add_argument("--max-count", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--subprocess", action="store_true", help="also run the runner program")
    args = parser.parse_args()

    # The loops' own cost, measurable even on a noisy machine: a call that does nothing.
    noop_bare, noop_runner = [], []
    for _ in range(9):
        noop_bare.append(p50_ms(bare_loop((noop, (None,)), 100_000)) * 1e6)
        bound = functools.partial(noop, None)  # what session.bind adds: one call layer
        noop_runner.append(p50_ms(bench_runner.run_loop(bound, 100_000, 0.0)[0]) * 1e6)
    extra_ns = statistics.median(noop_runner) - statistics.median(noop_bare)
    print(
        f"loop mechanics on a no-op call: bare p50 {statistics.median(noop_bare):.0f} ns, "
        f"runner p50 {statistics.median(noop_runner):.0f} ns per call "
        f"(difference {extra_ns:+.0f} ns = {extra_ns / 1e4:+.4f}% of a 1 ms inference)"
    )
    with tempfile.TemporaryDirectory(prefix="runner-overhead-") as tmp:
        for runtime in args.runtimes:
            for name in args.models:
                artifact, shape = export(name, runtime, Path(tmp) / runtime)
                bench_runner.import_runtime(runtime)
                session = bench_runner.open_session(runtime, str(artifact), args.threads)
                array = np.random.RandomState(0).standard_normal(shape).astype("float32")
                bare, timed = bare_callable(session, array), session.bind(array)
                count = count_for(bare, args.seconds, args.max_count)
                bench_runner.run_loop(timed, 10, 0.2)  # warm-up, as the runner does
                bare_p50s, runner_p50s = [], []
                for index in range(args.rounds):
                    # Alternate which goes first, so neither always gets the warmer turn.
                    for kind in ("bare", "runner") if index % 2 == 0 else ("runner", "bare"):
                        if kind == "bare":
                            bare_p50s.append(p50_ms(bare_loop(bare, count)))
                        else:
                            samples, _ = bench_runner.run_loop(timed, count, 0.0)
                            runner_p50s.append(p50_ms(samples))
                ratios = [r / b for b, r in zip(bare_p50s, runner_p50s, strict=True)]
                bare_med = statistics.median(bare_p50s)
                runner_med = statistics.median(runner_p50s)
                spread = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else ratios
                print(
                    f"{runtime:12s} {name:8s} ({SIZES[name]:>6s}) {args.rounds} rounds x "
                    f"{count} calls  bare p50 {bare_med:8.4f} ms  runner p50 "
                    f"{runner_med:8.4f} ms  paired ratio (median) "
                    f"{statistics.median(ratios):.4f}  [quartiles {spread[0]:.4f}, "
                    f"{spread[-1]:.4f}]"
                )
                if args.subprocess:
                    sub = subprocess_p50(runtime, artifact, shape, args.threads)
                    print(
                        f"    runner program (own process) p50 {sub:.4f} ms, "
                        f"ratio to in-process bare {sub / bare_med:.4f}"
                    )
                del session
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
