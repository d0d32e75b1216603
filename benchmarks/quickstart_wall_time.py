"""Wall time of the quickstart suite, cold (empty results directory) and warm (re-run).

Targets on the 2-core reference machine: <= 5 min cold, <= 10 s warm.

    .venv/bin/python benchmarks/quickstart_wall_time.py [--results DIR] [--suite FILE]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_run(suite: Path, results: Path) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--results", str(results), "-q"],
        cwd=REPO,
        check=False,
    )
    return time.perf_counter() - started, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=REPO / "suites" / "quickstart.toml")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results directory (default: a new temporary one, removed after)",
    )
    args = parser.parse_args()
    results = args.results or Path(tempfile.mkdtemp(prefix="harness-quickstart-"))
    try:
        cold, cold_rc = timed_run(args.suite, results)
        warm, warm_rc = timed_run(args.suite, results)
    finally:
        if args.results is None:
            shutil.rmtree(results, ignore_errors=True)
    print(f"cold: {cold:7.1f} s (exit {cold_rc})   target <= 300 s")
    print(f"warm: {warm:7.1f} s (exit {warm_rc})   target <= 10 s")
    return 0 if cold_rc == warm_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
