#!/usr/bin/env python3
"""The on-device benchmark runner: the one file that travels to a board.

It reads a JSON job, loads one artifact with the runtime the job names, measures it and
writes one JSON result. It uses only the standard library, the runtime it measures
(which brings numpy) and psutil when present, never imports the rest of the harness,
and runs on Python 3.8+ (Jetson images still ship 3.8), so local, emulated and remote
numbers come from the same code.

Usage: python bench_runner.py JOB.json RESULT.json

Exit codes: 0 measured, 2 bad job file, 3 the runtime failed (load or inference).
Raw latency samples are returned; statistics are computed by the host.
"""

import json
import os
import platform
import resource
import sys
import time

SCHEMA_VERSION = 1
_EXIT_BAD_JOB = 2
_EXIT_RUNTIME_FAILED = 3

_DEFAULTS = {
    "threads": 1,
    "seed": 0,
    "warmup": {"min_count": 10, "min_seconds": 0.2},
    "measure": {"min_count": 50, "min_seconds": 1.0, "max_seconds": 30.0},
    "eval_inputs": None,
    "outputs_out": None,
}
_RUNTIMES = ("onnxruntime", "executorch")


class JobError(Exception):
    """The job file is unreadable or does not describe a runnable job."""


def load_job(path):
    try:
        with open(path) as fh:
            job = json.load(fh)
    except OSError as exc:
        raise JobError("cannot read job file %s: %s" % (path, exc)) from None
    except ValueError as exc:
        raise JobError("job file %s is not valid JSON: %s" % (path, exc)) from None
    if not isinstance(job, dict):
        raise JobError("job file %s: expected a JSON object at the top level" % path)
    version = job.get("schema_version")
    if version != SCHEMA_VERSION:
        raise JobError(
            "job file %s: key 'schema_version': expected %d, got %r"
            % (path, SCHEMA_VERSION, version)
        )
    for key, kind in (("runtime", str), ("artifact", str), ("input_shape", list)):
        if not isinstance(job.get(key), kind):
            raise JobError(
                "job file %s: key '%s': expected %s, got %r"
                % (path, key, kind.__name__, job.get(key))
            )
    if job["runtime"] not in _RUNTIMES:
        raise JobError(
            "job file %s: key 'runtime': expected one of %s, got %r"
            % (path, ", ".join(_RUNTIMES), job["runtime"])
        )
    merged = dict(_DEFAULTS)
    merged.update(job)
    for section in ("warmup", "measure"):
        values = dict(_DEFAULTS[section])
        values.update(job.get(section) or {})
        merged[section] = values
    return merged


# --- measurement ------------------------------------------------------------------


def timed_loop(run, min_count, min_seconds, max_seconds=None, clock=time.perf_counter):
    """Call ``run`` until both ``min_count`` calls and ``min_seconds`` have passed.

    ``max_seconds`` caps the loop even when the count is not reached (the caller flags
    too few samples). Returns per-call durations in seconds. The clock is a parameter
    so the stopping rules can be tested with a fake one.
    """
    samples = []
    start = clock()
    while True:
        t0 = clock()
        run()
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - start
        if len(samples) >= min_count and elapsed >= min_seconds:
            break
        if max_seconds is not None and elapsed >= max_seconds:
            break
    return samples


def _proc_status_kb(field):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb():
    kb = _proc_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    try:
        import psutil

        return psutil.Process().memory_info().rss / (1024.0 * 1024.0)
    except Exception:  # psutil absent or unsupported: report unknown, never guess
        return None


def reset_peak_rss():
    """Reset the kernel's RSS high-water mark so the peak covers inference only.

    Writing 5 to clear_refs resets VmHWM (Linux >= 4.0). Returns False where that is
    not possible; the peak then includes model loading, and the result says so.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    kb = _proc_status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and bytes on macOS.
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


# --- runtimes ---------------------------------------------------------------------


class OrtSession:
    def __init__(self, artifact, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn the other core between runs and distort timings.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            artifact, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_name = self._session.get_inputs()[0].name
        self.version = ort.__version__

    def bind(self, array):
        """Return a zero-argument callable that runs one inference on ``array``."""
        session_run = self._session.run
        feed = {self._input_name: array}
        return lambda: session_run(None, feed)

    def infer(self, array):
        return self._session.run(None, {self._input_name: array})[0]


class ExecuTorchSession:
    def __init__(self, artifact, threads):
        import executorch
        from executorch.runtime import Runtime

        try:
            from executorch.extension.pybindings.portable_lib import (
                _unsafe_reset_threadpool,
            )

            _unsafe_reset_threadpool(threads)
        except ImportError:  # older wheels: the pool keeps its default size
            pass
        program = Runtime.get().load_program(artifact)
        self._method = program.load_method("forward")
        self.version = getattr(executorch, "__version__", "unknown")

    def bind(self, array):
        import torch

        execute = self._method.execute
        inputs = (torch.from_numpy(array),)
        return lambda: execute(inputs)

    def infer(self, array):
        import torch

        return self._method.execute((torch.from_numpy(array),))[0].numpy()


def open_session(runtime, artifact, threads):
    if runtime == "onnxruntime":
        return OrtSession(artifact, threads)
    return ExecuTorchSession(artifact, threads)


# --- environment ------------------------------------------------------------------


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "Model", "Hardware"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment():
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }


# --- main -------------------------------------------------------------------------


def run_job(job):
    import numpy as np

    threads = int(job["threads"])
    result = {"schema_version": SCHEMA_VERSION, "status": "ok", "env": environment()}
    memory = {"baseline": rss_mb()}

    t0 = time.perf_counter()
    session = open_session(job["runtime"], job["artifact"], threads)
    result["load_ms"] = (time.perf_counter() - t0) * 1e3
    memory["after_load"] = rss_mb()
    result["runtime_version"] = session.version

    rng = np.random.RandomState(int(job["seed"]))
    array = rng.standard_normal(job["input_shape"]).astype(job.get("input_dtype", "float32"))
    peak_reset = reset_peak_rss()
    run_once = session.bind(array)

    t0 = time.perf_counter()
    run_once()
    result["first_inference_ms"] = (time.perf_counter() - t0) * 1e3

    warm = job["warmup"]
    timed_loop(run_once, int(warm["min_count"]), float(warm["min_seconds"]))
    meas = job["measure"]
    samples = timed_loop(
        run_once, int(meas["min_count"]), float(meas["min_seconds"]), meas.get("max_seconds")
    )
    result["samples_ms"] = [s * 1e3 for s in samples]
    result["min_count"] = int(meas["min_count"])

    memory["peak"] = peak_rss_mb()
    memory["peak_includes_load"] = not peak_reset
    result["memory_mb"] = memory

    # Accuracy scoring runs after timing so it cannot disturb the timed loop.
    if job.get("eval_inputs") and job.get("outputs_out"):
        inputs = np.load(job["eval_inputs"])
        outputs = [session.infer(np.ascontiguousarray(x[None, ...])) for x in inputs]
        np.save(job["outputs_out"], np.concatenate(outputs, axis=0))
        result["outputs"] = job["outputs_out"]
    return result


def write_result(path, result):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: bench_runner.py JOB.json RESULT.json\n")
        return _EXIT_BAD_JOB
    job_path, result_path = argv
    try:
        job = load_job(job_path)
    except JobError as exc:
        sys.stderr.write("bench_runner: %s\n" % exc)
        write_result(
            result_path,
            {
                "schema_version": SCHEMA_VERSION,
                "status": "error",
                "kind": "bad_job",
                "error": str(exc),
            },
        )
        return _EXIT_BAD_JOB
    try:
        result = run_job(job)
    except Exception as exc:  # report the runtime's own message to the host
        import traceback

        traceback.print_exc()
        write_result(
            result_path,
            {
                "schema_version": SCHEMA_VERSION,
                "status": "error",
                "kind": "runtime_error",
                "error": "%s: %s" % (type(exc).__name__, exc),
            },
        )
        return _EXIT_RUNTIME_FAILED
    write_result(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
