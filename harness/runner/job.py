"""Host side of the runner contract: the job we send and the checks on what comes back.

Version 2 of the job adds batch size, the adaptive stopping rule, the cool-down gate,
the power model and sensor locations, and the per-op profile; a version-1 runner would
silently ignore those keys, so the version is bumped and such a runner refuses the job.
Version 2 of the result adds power, thermals, validity and the profile, which the host
now reports, so a version-1 result is refused with a message to update the runner.
Version 3 of the job replaces the one float ``input_shape`` by ``inputs``, one
:class:`~harness.models.inputs.InputSpec` per model input (name, shape, dtype, id range),
so token ids and several inputs reach the runner; the runner still reads version 1-2
jobs (stored ones) as one input of ``input_shape`` and ``input_dtype``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from harness.errors import RunnerError
from harness.models.inputs import SINGLE_INPUT_NAME, InputSpec
from harness.runner.settings import MeasureSettings, job_settings

JOB_SCHEMA_VERSION = 3
RESULT_SCHEMA_VERSION = 2
ACCEPTED_RESULT_VERSIONS = (2,)


def job_inputs(inputs: Sequence[InputSpec] | Sequence[int]) -> list[dict[str, Any]]:
    """The job's ``inputs``: from input specs, or from a bare shape (one float32 input,
    what callers that predate input specs pass)."""
    if inputs and all(isinstance(d, int) for d in inputs):
        shape = tuple(int(d) for d in inputs)  # type: ignore[arg-type]
        inputs = [InputSpec(SINGLE_INPUT_NAME, shape, "float32")]
    out = []
    for spec in inputs:
        assert isinstance(spec, InputSpec)
        d = spec.to_dict()
        d.setdefault("range", None)
        d.pop("range_source", None)
        out.append(d)
    return out


def make_job(
    runtime: str,
    artifact: str,
    inputs: Sequence[InputSpec] | Sequence[int],
    settings: MeasureSettings,
    eval_inputs: str | None = None,
    outputs_out: str | None = None,
    *,
    power_model: dict[str, float] | None = None,
    sysfs_root: str = "/",
    vcgencmd: str | None = "auto",
    profile: bool | None = None,
    profile_dir: str | None = None,
    precision: dict[str, Any] | None = None,
    runtime_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON job for one runner process.

    Each measure setting goes to its job key (``job_key`` in
    :data:`~harness.runner.settings.MEASURE_SETTINGS`). ``inputs`` are the artifact's
    input specs (shapes batch first; a bare shape means one float32 input); the runner
    replaces every input's first dimension with ``settings.batch``. ``power_model``
    (``idle_w``, ``max_w``) is the device profile's, used when no real sensor exists and for the
    idle figure. ``sysfs_root`` and ``vcgencmd`` say where sensors are read (tests point
    them at fixture trees; ``"auto"`` finds vcgencmd on PATH when reading the real
    ``/``). ``profile`` overrides ``settings.profile`` (the host profiles one trial).
    ``precision`` (``{"name": "int8", "from": ...}``, see
    :func:`harness.export.precision.precision_of`) is for the device, not the runner: an
    emulated device picks the board's speed factor for it, and
    :func:`harness.devices.base.job_for` leaves it out of what the runner gets.
    ``runtime_options`` go to the runtime's session (e.g. OpenVINO's
    ``inference_precision``); the job has the key only when there are some.
    """
    job = {
        "schema_version": JOB_SCHEMA_VERSION,
        "runtime": runtime,
        "artifact": artifact,
        "inputs": job_inputs(inputs),
        **job_settings(settings),
    }
    job["power"] = {"model": dict(power_model) if power_model else None, **job["power"]}
    if profile is not None:
        job["profile"]["enabled"] = profile
    job["profile"]["dir"] = profile_dir
    job.update(
        sysfs_root=sysfs_root,
        vcgencmd=vcgencmd,
        eval_inputs=eval_inputs,
        outputs_out=outputs_out,
        precision=dict(precision) if precision else None,
    )
    if runtime_options:
        job["runtime_options"] = dict(runtime_options)
    return job


def check_result(result: Any, origin: str) -> dict[str, Any]:
    """Validate a runner result; a failed run becomes a :class:`RunnerError`."""
    if not isinstance(result, dict):
        raise RunnerError(f"{origin}: runner result is not a JSON object")
    version = result.get("schema_version")
    if version not in ACCEPTED_RESULT_VERSIONS:
        raise RunnerError(
            f"{origin}: runner result schema_version {version!r}, "
            f"this harness reads {', '.join(map(str, ACCEPTED_RESULT_VERSIONS))} "
            "(is an old bench_runner.py left on the device?)"
        )
    if result.get("status") != "ok":
        raise RunnerError(
            str(result.get("error", "runner failed without a message")),
            kind=str(result.get("kind", "runner_error")),
        )
    samples = result.get("samples_ms")
    if not isinstance(samples, list) or not samples:
        raise RunnerError(f"{origin}: runner result has no latency samples")
    if not all(isinstance(s, (int, float)) and s >= 0 for s in samples):
        raise RunnerError(f"{origin}: runner result has non-numeric or negative samples")
    return result


def settings_dict(settings: MeasureSettings) -> dict[str, Any]:
    return asdict(settings)
