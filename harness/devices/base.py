"""The device contract: run the runner on a job and hand back its result."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.devices.config import DeviceProfile


@dataclass(frozen=True)
class DeviceRun:
    """A checked runner result and the variant's outputs on the eval inputs (if asked)."""

    result: dict[str, Any]
    outputs: np.ndarray | None


# Keys of a job that are for the device, not the runner (see harness.runner.job.make_job).
HOST_ONLY_KEYS = ("precision",)


def job_for(job: dict[str, Any], artifact: Path | str, eval_inputs: Path | None) -> dict[str, Any]:
    """The job with this run's artifact and evaluation inputs filled in, as every device
    hands it to the runner (paths as the runner will see them; no host-only keys)."""
    return {
        **{k: v for k, v in job.items() if k not in HOST_ONLY_KEYS},
        "artifact": str(artifact),
        "eval_inputs": str(eval_inputs) if eval_inputs else None,
    }


class Device(ABC):
    def __init__(self, profile: DeviceProfile):
        self.profile = profile

    @property
    def name(self) -> str:
        return self.profile.name

    @abstractmethod
    def run(
        self,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
    ) -> DeviceRun:
        """Run one job; raise :class:`harness.errors.RunnerError` (with ``kind`` such as
        ``timeout``, ``out_of_memory`` or ``runtime_error``) when it does not succeed."""

    def abort(self) -> None:
        """Stop whatever this device is running now, in bounded time, and refuse new
        runs (an interrupt: Ctrl-C, SIGTERM). Called from another thread than the one
        running the cell."""
        return None

    def close(self) -> None:
        """Release connections; the device may be used again afterwards."""
        return None  # devices on this machine hold nothing open
