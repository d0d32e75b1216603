"""The on-device runner (``bench_runner.py``) and the host-side job/result helpers."""

from __future__ import annotations

from pathlib import Path

RUNNER_PATH = Path(__file__).with_name("bench_runner.py")
