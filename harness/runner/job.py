"""Host side of the runner contract: the job we send and the checks on what comes back."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import RunnerError

JOB_SCHEMA_VERSION = 1
RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MeasureSettings:
    threads: int = 1
    warmup_count: int = 10
    warmup_seconds: float = 0.2
    min_count: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    seed: int = 0


def make_job(
    runtime: str,
    artifact: str,
    input_shape: list[int],
    settings: MeasureSettings,
    eval_inputs: str | None = None,
    outputs_out: str | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": JOB_SCHEMA_VERSION,
        "runtime": runtime,
        "artifact": artifact,
        "input_shape": list(input_shape),
        "input_dtype": "float32",
        "threads": settings.threads,
        "seed": settings.seed,
        "warmup": {"min_count": settings.warmup_count, "min_seconds": settings.warmup_seconds},
        "measure": {
            "min_count": settings.min_count,
            "min_seconds": settings.min_seconds,
            "max_seconds": settings.max_seconds,
        },
        "eval_inputs": eval_inputs,
        "outputs_out": outputs_out,
    }


def check_result(result: Any, origin: str) -> dict[str, Any]:
    """Validate a runner result; a failed run becomes a :class:`RunnerError`."""
    if not isinstance(result, dict):
        raise RunnerError(f"{origin}: runner result is not a JSON object")
    version = result.get("schema_version")
    if version != RESULT_SCHEMA_VERSION:
        raise RunnerError(
            f"{origin}: runner result schema_version {version!r}, "
            f"this harness reads {RESULT_SCHEMA_VERSION}"
        )
    if result.get("status") != "ok":
        raise RunnerError(
            str(result.get("error", "runner failed without a message")),
            kind=str(result.get("kind", "runner_error")),
        )
    samples = result.get("samples_ms")
    if not isinstance(samples, list) or not samples:
        raise RunnerError(f"{origin}: runner result has no latency samples")
    return result


def settings_dict(settings: MeasureSettings) -> dict[str, Any]:
    return asdict(settings)
