#!/usr/bin/env python3
"""The on-device benchmark runner: the one file that travels to a board.

It reads a JSON job, loads one artifact with the runtime the job names, measures it and
writes one JSON result. It uses only the standard library, the runtime it measures
(which brings numpy) and psutil when present, never imports the rest of the harness,
and runs on Python 3.8+ (Jetson images still ship 3.8), so local, emulated and remote
numbers come from the same code.

Usage: python bench_runner.py JOB.json RESULT.json
       python bench_runner.py --probe WORKDIR   (what ``harness devices check`` asks a
       board: Python, arch, runtimes (their metadata, and each imported in a child
       process, timed), free disk under WORKDIR, memory, governor, temperature; one
       JSON object on stdout)

Exit codes: 0 measured, 2 bad job file (or a job the artifact cannot run, such as a
batch size its static shape does not allow), 3 the runtime failed (load or inference).

What one run measures, in this order (so nothing disturbs the timed loop):

1. environment (CPU, flags, governor, free memory) and the RSS baseline;
2. load time, RSS after load, first-inference time;
3. optional cool-down gate (wait, sleeping, until the hottest thermal zone is cool);
4. idle power (about half a second, only when a real power sensor exists);
5. warm-up by count and time;
6. thermal snapshot, then the timed loop (count and time, or adaptive CI; one sample per
   inference, or per block of inferences when the job asks for ``measure.block_seconds``,
   as an emulated device under a CPU quota does), with the power source read at its
   start, at a low rate while it runs and at its end, and ``proc/stat`` at both ends
   (what else the host ran: ``host_load``); then the thermal snapshot after it and the
   RSS peak;
7. accuracy outputs (when asked) and a per-op profile in a separate pass (when asked).

Raw latency samples are returned; the runner also reports its own within-run median CI
(needed for the adaptive stopping rule), but the host builds the reported statistics,
over several runner processes (trials).
"""

import collections
import glob
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SCHEMA_VERSION = 2
# A version-1 job is a version-2 job with every new key defaulted; both describe one
# input by "input_shape" and "input_dtype". Version 3 describes every input ("inputs").
_JOB_VERSIONS = (1, 2, 3)
_EXIT_BAD_JOB = 2
_EXIT_RUNTIME_FAILED = 3

_DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")
_FLOAT_DTYPES = ("float32", "float16")

# What a job may say beyond its runtime, artifact and inputs: one rule per key the runner
# reads, in the order they are checked. Each gives the key's path in the job, its kind
# ("integer", "number", "bool", "path", "choice", or "power_model", an object checked
# field by field), its default (a key the job leaves out), its bounds (``minimum``: >=,
# ``above``: >, ``below``: <), its ``choices`` and whether it may be null. The host's
# measure settings (harness.runner.settings) must agree with these, which
# tests/runner/test_measure_settings.py checks.
_Rule = collections.namedtuple(
    "_Rule",
    "key kind default minimum above below choices nullable",
    defaults=(None, None, None, None, False),
)
_RULES = (
    _Rule("threads", "integer", 1, minimum=1),
    _Rule("seed", "integer", 0, minimum=0),
    _Rule("batch", "integer", 1, minimum=1),
    # Only a schema 1-2 job gives it; a schema-3 job's dtypes are in "inputs".
    _Rule("input_dtype", "choice", "float32", choices=_DTYPES),
    _Rule("warmup.min_count", "integer", 10, minimum=0),
    _Rule("warmup.min_seconds", "number", 0.2, minimum=0),
    _Rule("measure.min_count", "integer", 50, minimum=1),
    _Rule("measure.min_seconds", "number", 1.0, minimum=0),
    _Rule("measure.max_seconds", "number", 30.0, above=0, nullable=True),
    _Rule("measure.adaptive_ci", "number", None, above=0, below=1, nullable=True),
    _Rule("measure.check_every", "integer", 20, minimum=1),
    _Rule("measure.max_cv", "number", 0.20, above=0),
    # Block sampling (emulated devices under a CPU quota): each sample is the mean of
    # the inferences in a window of at least this many seconds; null: per inference.
    _Rule("measure.block_seconds", "number", None, above=0, below=60, nullable=True),
    _Rule("cooldown.max_c", "number", None, above=0, below=200, nullable=True),
    _Rule("cooldown.timeout_s", "number", 60.0, minimum=0),
    _Rule("cooldown.poll_s", "number", 1.0, above=0),
    _Rule("power.model", "power_model", None, nullable=True),
    _Rule("power.idle_seconds", "number", 0.5, minimum=0),
    _Rule("power.interval_s", "number", 0.1, above=0),
    _Rule("profile.enabled", "bool", False),
    _Rule("profile.count", "integer", 20, minimum=1),
    _Rule("profile.top", "integer", 10, minimum=1),
    _Rule("sysfs_root", "path", "/"),
    _Rule("vcgencmd", "path", "auto", nullable=True),
    _Rule("eval_inputs", "path", None, nullable=True),
    _Rule("outputs_out", "path", None, nullable=True),
    _Rule("profile.dir", "path", None, nullable=True),
)


def _defaults(rules):
    """The job a missing key is read from: each rule's default at its path."""
    out = {}
    for rule in rules:
        parts = rule.key.split(".")
        section = out
        for part in parts[:-1]:
            section = section.setdefault(part, {})
        section[parts[-1]] = rule.default
    return out


_DEFAULTS = _defaults(_RULES)


class RuntimeMissing(Exception):
    """The job's runtime does not import in this Python."""


class JobError(Exception):
    """The job file is unreadable or does not describe a runnable job."""


# --- job validation ---------------------------------------------------------------


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(
    where, key, value, integer=False, minimum=None, above=None, below=None, allow_none=False
):
    """Raise JobError naming ``key`` unless ``value`` is a number within the bounds."""
    if value is None and allow_none:
        return
    bad = not _is_number(value) or (integer and not isinstance(value, int))
    if not bad and isinstance(value, float) and not math.isfinite(value):
        bad = True
    if not bad and minimum is not None and value < minimum:
        bad = True
    if not bad and above is not None and value <= above:
        bad = True
    if not bad and below is not None and value >= below:
        bad = True
    if bad:
        parts = ["an integer" if integer else "a number"]
        if minimum is not None:
            parts.append(">= %s" % minimum)
        if above is not None:
            parts.append("> %s" % above)
        if below is not None:
            parts.append("< %s" % below)
        if allow_none:
            parts.append("or null")
        raise JobError("%s: key '%s': expected %s, got %r" % (where, key, " ".join(parts), value))


def _section(where, job, name):
    given = job.get(name)
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise JobError("%s: key '%s': expected an object, got %r" % (where, name, given))
    unknown = sorted(set(given) - set(_DEFAULTS[name]))
    if unknown:
        raise JobError(
            "%s: key '%s.%s': unknown (known: %s)"
            % (where, name, unknown[0], ", ".join(sorted(_DEFAULTS[name])))
        )
    values = dict(_DEFAULTS[name])
    values.update(given)
    return values


def _check_shape(where, key, shape):
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    ):
        raise JobError(
            "%s: key '%s': expected a non-empty list of positive integers, got %r"
            % (where, key, shape)
        )


def _validate_inputs(where, given):
    """A schema-3 job's ``inputs``: one object per model input, in the artifact's order,
    ``{"name", "shape" (batch first), "dtype", "range": [low, high) or null}``."""
    if not given:
        raise JobError("%s: key 'inputs': expected a non-empty list, got %r" % (where, given))
    out, names = [], set()
    for i, spec in enumerate(given):
        key = "inputs[%d]" % i
        if not isinstance(spec, dict):
            raise JobError("%s: key '%s': expected an object, got %r" % (where, key, spec))
        unknown = sorted(set(spec) - {"name", "shape", "dtype", "range", "range_source"})
        if unknown:
            raise JobError("%s: key '%s.%s': unknown" % (where, key, unknown[0]))
        name = spec.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise JobError(
                "%s: key '%s.name': expected a unique non-empty string, got %r" % (where, key, name)
            )
        names.add(name)
        _check_shape(where, key + ".shape", spec.get("shape"))
        dtype = spec.get("dtype")
        if dtype not in _DTYPES:
            raise JobError(
                "%s: key '%s.dtype': expected one of %s, got %r"
                % (where, key, ", ".join(_DTYPES), dtype)
            )
        rng = spec.get("range")
        if rng is not None:
            ok = (
                isinstance(rng, list)
                and len(rng) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in rng)
                and rng[1] > rng[0]
                and dtype not in _FLOAT_DTYPES
            )
            if not ok:
                raise JobError(
                    "%s: key '%s.range': expected null or [low, high) integers with high > low "
                    "on an integer input, got %r" % (where, key, rng)
                )
        out.append({"name": name, "shape": list(spec["shape"]), "dtype": dtype, "range": rng})
    return out


def _check_power_model(where, model):
    """The device profile's power model: ``idle_w`` <= ``max_w`` (``source`` says where
    the figures came from)."""
    if not isinstance(model, dict) or set(model) - {"idle_w", "max_w", "source"}:
        raise JobError(
            "%s: key 'power.model': expected null or an object with idle_w and max_w, "
            "got %r" % (where, model)
        )
    _check_number(where, "power.model.idle_w", model.get("idle_w"), minimum=0)
    _check_number(where, "power.model.max_w", model.get("max_w"), above=0)
    if model["max_w"] < model["idle_w"]:
        raise JobError(
            "%s: key 'power.model.max_w': expected >= idle_w (%s), got %r"
            % (where, model["idle_w"], model["max_w"])
        )


def _check_rule(where, rule, value):
    """Raise JobError naming the rule's key unless ``value`` satisfies the rule."""
    if rule.kind in ("integer", "number"):
        _check_number(
            where,
            rule.key,
            value,
            integer=rule.kind == "integer",
            minimum=rule.minimum,
            above=rule.above,
            below=rule.below,
            allow_none=rule.nullable,
        )
        return
    if value is None and rule.nullable:
        return
    if rule.kind == "power_model":
        _check_power_model(where, value)
    elif rule.kind == "choice" and value not in rule.choices:
        raise JobError(
            "%s: key '%s': expected one of %s, got %r"
            % (where, rule.key, ", ".join(rule.choices), value)
        )
    elif rule.kind == "bool" and not isinstance(value, bool):
        raise JobError("%s: key '%s': expected true or false, got %r" % (where, rule.key, value))
    # A nullable path may be empty: it then means the same as null.
    elif rule.kind == "path" and (not isinstance(value, str) or not (value or rule.nullable)):
        raise JobError(
            "%s: key '%s': expected a path%s, got %r"
            % (where, rule.key, " or null" if rule.nullable else "", value)
        )


def _value_at(job, key):
    value = job
    for part in key.split("."):
        value = value[part]
    return value


def _check_header(where, job):
    """The keys that say what the rest of the job means: its schema version, runtime,
    artifact and inputs. Returns the version."""
    if not isinstance(job, dict):
        raise JobError("%s: expected a JSON object at the top level" % where)
    version = job.get("schema_version")
    if version not in _JOB_VERSIONS or isinstance(version, bool):
        raise JobError(
            "%s: key 'schema_version': expected one of %s, got %r"
            % (where, ", ".join(str(v) for v in _JOB_VERSIONS), version)
        )
    if version >= 3:
        for old in ("input_shape", "input_dtype"):
            if old in job:
                raise JobError(
                    "%s: key '%s': a schema-3 job describes its inputs in 'inputs' only"
                    % (where, old)
                )
    shape_key = "inputs" if version >= 3 else "input_shape"
    for key, kind in (("runtime", str), ("artifact", str), (shape_key, list)):
        if not isinstance(job.get(key), kind):
            raise JobError(
                "%s: key '%s': expected %s, got %r" % (where, key, kind.__name__, job.get(key))
            )
    if job["runtime"] not in SESSIONS:
        raise JobError(
            "%s: key 'runtime': expected one of %s, got %r"
            % (where, ", ".join(SESSIONS), job["runtime"])
        )
    return version


def validate_job(job, where="job"):
    """Check every key the runner reads; return the job with defaults filled in.

    Raises :class:`JobError` with a message naming the offending key.
    """
    version = _check_header(where, job)
    if version >= 3:
        inputs = _validate_inputs(where, job["inputs"])
    else:
        _check_shape(where, "input_shape", job["input_shape"])
    merged = dict(_DEFAULTS)
    merged.update(job)
    for name, default in _DEFAULTS.items():
        if isinstance(default, dict):
            merged[name] = _section(where, job, name)
    for rule in _RULES:
        _check_rule(where, rule, _value_at(merged, rule.key))
    meas = merged["measure"]
    if meas["adaptive_ci"] is not None and meas["max_seconds"] is None:
        raise JobError(
            "%s: key 'measure.max_seconds': the adaptive rule needs a hard cap, got null" % where
        )
    if version < 3:
        # The one input of an old job, named by the artifact (None: its first input).
        inputs = [
            {"name": None, "shape": list(job["input_shape"]), "dtype": merged["input_dtype"],
             "range": None}
        ]  # fmt: skip
    merged["inputs"] = inputs
    merged["runtime_options"] = _runtime_options(where, job.get("runtime_options"))
    return merged


def _runtime_options(where, options):
    """``runtime_options``: settings for the runtime's session (OpenVINO's inference
    precision), names to strings, numbers or booleans; the session checks the names."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise JobError("%s: key 'runtime_options': expected an object, got %r" % (where, options))
    for name, value in options.items():
        if not isinstance(value, (str, int, float, bool)) or value is None:
            raise JobError(
                "%s: key 'runtime_options.%s': expected a string, number or boolean, got %r"
                % (where, name, value)
            )
    return dict(options)


def load_job(path):
    try:
        with open(path) as fh:
            job = json.load(fh)
    except OSError as exc:
        raise JobError("cannot read job file %s: %s" % (path, exc)) from None
    except ValueError as exc:
        raise JobError("job file %s is not valid JSON: %s" % (path, exc)) from None
    return validate_job(job, "job file %s" % path)


# --- statistics the runner needs itself ---------------------------------------------


def median_ci_ranks(n, confidence=0.95):
    """1-based ranks (lo, hi) of the order statistics bracketing the median.

    Distribution-free: the count of samples below the median is Binomial(n, 1/2); ``lo``
    is the largest k with P(B <= k-1) <= alpha/2 and ``hi = n - lo + 1``. Exact up to
    5000 samples (the same pair as the host's scipy version), a normal approximation
    beyond. Returns (1, n) when no pair reaches the confidence (n < 6 at 95%).
    """
    if n < 1:
        raise ValueError("median CI of an empty sample")
    half_alpha = (1.0 - confidence) / 2.0
    if n <= 5000:
        log_half_n = n * math.log(0.5)
        log_binom = 0.0  # log C(n, 0)
        cdf = 0.0
        k = 0
        for j in range(n):
            cdf += math.exp(log_binom + log_half_n)
            if cdf > half_alpha:
                break
            k = j + 1
            log_binom += math.log(n - j) - math.log(j + 1)
    else:
        z = _normal_quantile(1.0 - half_alpha)
        k = math.floor((n - z * math.sqrt(n)) / 2.0)
    if k < 1:
        return 1, n
    return k, n - k + 1


def _normal_quantile(p):
    from statistics import NormalDist  # Python 3.8+

    return NormalDist().inv_cdf(p)


def median_and_ci(sorted_values, confidence=0.95):
    """(median, lo, hi) of an already sorted list (median linearly interpolated)."""
    n = len(sorted_values)
    mid = (n - 1) / 2.0
    lo_i, hi_i = math.floor(mid), math.ceil(mid)
    median = (sorted_values[lo_i] + sorted_values[hi_i]) / 2.0
    k_lo, k_hi = median_ci_ranks(n, confidence)
    return median, sorted_values[k_lo - 1], sorted_values[k_hi - 1]


def ci_is_narrow(sorted_values, rel):
    """True when the 95% CI of the median lies within +-``rel`` of the median."""
    median, lo, hi = median_and_ci(sorted_values)
    if median <= 0:
        return False
    return (median - lo) <= rel * median and (hi - median) <= rel * median


def _quantile(sorted_values, q):
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def robust_cv(sorted_values):
    """Interquartile range / (1.349 x median): the CV of a normal sample, but blind to
    the few preemption spikes that make the plain CV of a shared machine's samples
    exceed 1 while the median is stable to a fraction of a percent."""
    if len(sorted_values) < 4:
        return 0.0
    median = _quantile(sorted_values, 0.5)
    if median <= 0:
        return 0.0
    return (_quantile(sorted_values, 0.75) - _quantile(sorted_values, 0.25)) / (1.349 * median)


def _cv(values):
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    if mean <= 0:
        return 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(var) / mean


# --- measurement ------------------------------------------------------------------


def run_loop(
    run,
    min_count,
    min_seconds,
    max_seconds=None,
    clock=time.perf_counter,
    adaptive_ci=None,
    check_every=20,
):
    """Call ``run`` until a stopping rule holds; return (durations in s, stop reason).

    Fixed rule (``adaptive_ci`` None): both ``min_count`` calls and ``min_seconds``.
    Adaptive rule: the 95% CI of the median within +-``adaptive_ci`` of the median,
    checked every ``check_every`` samples (or every 5% of the samples taken, when that is
    more, so the sort stays cheap on long runs), never before ``min_count``; the
    ``min_seconds`` floor does not apply. ``max_seconds`` caps both (reason
    ``"max_seconds"``; the caller flags too few samples). The clock is a parameter so
    the rules can be tested with a fake one. Only ``run`` sits between the two clock
    reads; the checks happen outside the timed span.
    """
    samples = []
    append = samples.append
    start = clock()
    next_check = max(1, min_count)
    while True:
        t0 = clock()
        run()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - start
        n = len(samples)
        if adaptive_ci is None:
            if n >= min_count and elapsed >= min_seconds:
                return samples, "count_and_time"
        elif n >= next_check:
            if ci_is_narrow(sorted(samples), adaptive_ci):
                return samples, "adaptive_ci"
            next_check = n + max(check_every, n // 20)
        if max_seconds is not None and elapsed >= max_seconds:
            return samples, "max_seconds"


# Block sampling takes at least this many blocks: enough for a 95% CI of their median
# (ranks 2 and 9 of 10) and for the phase of the quota period to average out.
MIN_BLOCKS = 10


def run_blocks(
    run,
    block_seconds,
    min_count,
    min_seconds,
    max_seconds=None,
    clock=time.perf_counter,
    adaptive_ci=None,
    min_blocks=MIN_BLOCKS,
):
    """Call ``run`` back to back in blocks of at least ``block_seconds`` of wall time;
    return (each block's mean duration in s, inferences per block, stop reason).

    Why: a CFS quota throttles per period, so an inference shorter than the period
    mostly runs at full speed and the throttle falls between the spans ``run_loop``
    times: its p50 is this machine's, not the board's. Here the clock is read once per
    inference and each block starts where the last one ended, so no throttle falls
    outside a timed span, and a block of several periods holds its share of them. An
    inference longer than the block makes a block of one, timed as ``run_loop`` would
    (but contiguously).

    Stopping rules as in ``run_loop``, with ``min_count`` counting inferences and at
    least ``min_blocks`` blocks; the adaptive rule looks at the blocks' means (checked
    after every block once the floors hold, then every 5% of the blocks). The
    bookkeeping between blocks (a few appends, the sort of the adaptive check) falls
    inside the next block: it is microseconds against a block of milliseconds.
    """
    means = []
    counts = []
    start = block_start = clock()
    total = 0
    next_check = 0
    while True:
        n = 0
        while True:
            run()
            n += 1
            now = clock()
            if now - block_start >= block_seconds:
                break
        means.append((now - block_start) / n)
        counts.append(n)
        block_start = now
        total += n
        elapsed = now - start
        blocks = len(means)
        floors = total >= min_count and blocks >= min_blocks
        if adaptive_ci is None:
            if floors and elapsed >= min_seconds:
                return means, counts, "count_and_time"
        elif floors and blocks >= next_check:
            if ci_is_narrow(sorted(means), adaptive_ci):
                return means, counts, "adaptive_ci"
            next_check = blocks + max(1, blocks // 20)
        if max_seconds is not None and elapsed >= max_seconds:
            return means, counts, "max_seconds"


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


def cpu_seconds():
    """User + system CPU time of this process, all threads included (getrusage has
    microsecond resolution; os.times, the fallback, only clock ticks)."""
    try:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    except (AttributeError, OSError):
        t = os.times()
        return t[0] + t[1]


# --- sysfs helpers ----------------------------------------------------------------


def _under(root, relative):
    return os.path.join(root, relative)


def _read_text(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_float(path):
    text = _read_text(path)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def _natural_key(path):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def _sorted_glob(pattern):
    return sorted(glob.glob(pattern), key=_natural_key)


def run_command(argv, timeout=5.0):
    """stdout of a short command, or None when it cannot run or fails."""
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace")


def resolve_vcgencmd(setting, sysfs_root):
    """The vcgencmd executable to use: a given path, none, or (``"auto"``) the one on
    PATH, but only when reading the real system (a fixture root means a fixture)."""
    if setting is None or setting == "":
        return None
    if setting == "auto":
        if os.path.abspath(sysfs_root) != "/":
            return None
        return shutil.which("vcgencmd")
    return setting


# --- power sources ------------------------------------------------------------------

_BOARD_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "5V_IN")


def rapl_domains(root):
    """Top-level RAPL package domains under ``root``: [{path, name, max_energy_range_uj}].

    Subdomains (``intel-rapl:0:0`` core, dram) are inside their package, and the MMIO
    interface (``intel-rapl-mmio:*``) duplicates it, so both are left out. Unreadable
    counters (root-only since Linux 5.10) leave the domain out.
    """
    domains = []
    pattern = _under(root, "sys/class/powercap/intel-rapl*")
    for directory in _sorted_glob(pattern):
        if not re.match(r"^intel-rapl:\d+$", os.path.basename(directory)):
            continue
        name = _read_text(os.path.join(directory, "name")) or ""
        if not name.startswith("package"):
            continue
        energy_path = os.path.join(directory, "energy_uj")
        if _read_float(energy_path) is None:
            continue
        domains.append(
            {
                "path": energy_path,
                "name": name,
                "max_energy_range_uj": _read_float(os.path.join(directory, "max_energy_range_uj")),
            }
        )
    return domains


def rapl_delta_uj(before, after, max_range_uj):
    """Energy between two readings of one counter, across one wrap-around.

    The counter runs from 0 to ``max_energy_range_uj`` and wraps; a smaller second
    reading means it wrapped once (readings are far less than a wrap period apart).
    Returns None when it wrapped and the range is unknown.
    """
    if after >= before:
        return after - before
    if max_range_uj is None:
        return None
    return (max_range_uj - before) + after


def rapl_power_w(before, after, seconds, domains):
    """Average power (W) over ``seconds`` from per-domain readings (lists of uJ)."""
    if seconds <= 0:
        return None
    total = 0.0
    for b, a, domain in zip(before, after, domains):  # noqa: B905 (3.8: no strict=)
        if b is None or a is None:
            return None
        delta = rapl_delta_uj(b, a, domain["max_energy_range_uj"])
        if delta is None:
            return None
        total += delta
    return total / 1e6 / seconds


def ina3221_rails(root):
    """INA3221 channels under ``root``: [{name, kind, files}] for both Jetson layouts.

    JetPack 5+ (mainline hwmon driver): ``sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/``
    with ``inN_label``, ``inN_input`` (mV) and ``currN_input`` (mA), N = 1..3; a
    channel labelled ``NC`` is not connected. JetPack 4 (NVIDIA's iio driver):
    ``sys/bus/i2c/drivers/ina3221x/*/iio:device*/`` with ``rail_name_N``,
    ``in_powerN_input`` (mW), or ``in_voltageN_input`` (mV) and ``in_currentN_input``
    (mA), N = 0..2.
    """
    rails = []
    hwmon = _under(root, "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")
    for directory in _sorted_glob(hwmon):
        for label_path in _sorted_glob(os.path.join(directory, "in*_label")):
            match = re.match(r"^in(\d+)_label$", os.path.basename(label_path))
            label = _read_text(label_path)
            if not match or not label or label.upper() == "NC":
                continue
            idx = match.group(1)
            volt = os.path.join(directory, "in%s_input" % idx)
            curr = os.path.join(directory, "curr%s_input" % idx)
            if os.path.exists(volt) and os.path.exists(curr):
                rails.append({"name": label, "kind": "hwmon", "mv": volt, "ma": curr})
    iio = _under(root, "sys/bus/i2c/drivers/ina3221x/*/iio:device*")
    for directory in _sorted_glob(iio):
        for name_path in _sorted_glob(os.path.join(directory, "rail_name_*")):
            channel = name_path.rsplit("_", 1)[-1]
            label = _read_text(name_path)
            if not label or label.upper() == "NC":
                continue
            power = os.path.join(directory, "in_power%s_input" % channel)
            volt = os.path.join(directory, "in_voltage%s_input" % channel)
            curr = os.path.join(directory, "in_current%s_input" % channel)
            if os.path.exists(power):
                rails.append({"name": label, "kind": "iio", "mw": power})
            elif os.path.exists(volt) and os.path.exists(curr):
                rails.append({"name": label, "kind": "iio", "mv": volt, "ma": curr})
    return rails


def ina3221_rail_w(rail):
    """Instantaneous power of one rail in W, or None if unreadable."""
    if "mw" in rail:
        mw = _read_float(rail["mw"])
        return None if mw is None else mw / 1e3
    mv, ma = _read_float(rail["mv"]), _read_float(rail["ma"])
    if mv is None or ma is None:
        return None
    return mv * ma / 1e6


def ina3221_choose(rails):
    """The rails whose sum is the board's power: its input rail when one is labelled
    (VDD_IN, POM_5V_IN, 5V_IN), else every rail (which may overlap or miss consumers;
    the result lists the rails used)."""
    for wanted in _BOARD_INPUT_RAILS:
        chosen = [r for r in rails if r["name"].upper() == wanted]
        if chosen:
            return chosen[:1]
    return list(rails)


def parse_pmic_adc(text):
    """Per-rail power (W) from ``vcgencmd pmic_read_adc`` output (Raspberry Pi 5).

    Lines look like ``  VDD_CORE_A current(7)=2.31540000A`` and
    ``  VDD_CORE_V volt(15)=0.88090000V``; a rail counts when it has both a current
    and a voltage line (EXT5V_V and BATT_V have no current and are left out).
    """
    currents, volts = {}, {}
    for line in (text or "").splitlines():
        match = re.match(r"^\s*(\S+)_([AV])\s+(current|volt)\(\d+\)=([-+0-9.eE]+)[AV]?\s*$", line)
        if not match:
            continue
        name, suffix, _kind, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        (currents if suffix == "A" else volts)[name] = number
    return dict((name, currents[name] * volts[name]) for name in currents if name in volts)


class RaplSource(object):
    label = "measured:rapl"
    cumulative = True
    min_interval_s = 0.0

    def __init__(self, domains):
        self.domains = domains

    def read(self):
        return [_read_float(d["path"]) for d in self.domains]

    def power(self, before, after, seconds):
        return rapl_power_w(before, after, seconds, self.domains)

    def detail(self):
        return {"domains": [d["name"] for d in self.domains]}


class Ina3221Source(object):
    label = "measured:ina3221"
    cumulative = False
    min_interval_s = 0.0

    def __init__(self, rails):
        self.all_rails = rails
        self.rails = ina3221_choose(rails)

    def read(self):
        total = 0.0
        for rail in self.rails:
            watts = ina3221_rail_w(rail)
            if watts is None:
                return None
            total += watts
        return total

    def detail(self):
        return {
            "rails": [r["name"] for r in self.rails],
            "layout": self.rails[0]["kind"] if self.rails else None,
            "board_input": len(self.rails) == 1
            and self.rails[0]["name"].upper() in _BOARD_INPUT_RAILS,
        }


class PmicSource(object):
    label = "measured:pmic"
    cumulative = False
    # Each reading forks vcgencmd (about 0.1 s on a Pi 5): sample it less often.
    min_interval_s = 1.0

    def __init__(self, vcgencmd, rails):
        self.vcgencmd = vcgencmd
        self.rail_names = sorted(rails)

    def read(self):
        rails = parse_pmic_adc(run_command([self.vcgencmd, "pmic_read_adc"]))
        if not rails:
            return None
        return sum(rails.values())

    def detail(self):
        return {"rails": self.rail_names, "note": "sum of PMIC output rails (V*A)"}


def find_power_source(root, vcgencmd):
    """The first real power sensor present: RAPL, Jetson INA3221, Raspberry Pi PMIC."""
    domains = rapl_domains(root)
    if domains:
        return RaplSource(domains)
    rails = ina3221_rails(root)
    if rails:
        source = Ina3221Source(rails)
        if source.read() is not None:
            return source
    if vcgencmd:
        rails = parse_pmic_adc(run_command([vcgencmd, "pmic_read_adc"]))
        if rails:
            return PmicSource(vcgencmd, rails)
    return None


class PowerMeter(object):
    """Average power of one source between start() and stop().

    Energy counters (RAPL) are read at both ends. Instantaneous sensors are read at the
    start, by a timer thread that sleeps between readings (never busy-polls) while the
    loop runs, and at the end; the readings are averaged.
    """

    def __init__(self, source, interval_s):
        self.source = source
        self.interval_s = max(interval_s, source.min_interval_s)
        self._readings = []
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        value = self.source.read()
        if value is not None:
            self._readings.append(value)

    def _run(self):
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self):
        self._t0 = time.perf_counter()
        if self.source.cumulative:
            self._first = self.source.read()
            return
        self._readings = []
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="power-sampler")
        self._thread.daemon = True
        self._thread.start()

    def stop(self):
        """Return (average W or None, number of readings)."""
        seconds = time.perf_counter() - self._t0
        if self.source.cumulative:
            last = self.source.read()
            return self.source.power(self._first, last, seconds), 2
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if not self._readings:
            return None, 0
        return sum(self._readings) / len(self._readings), len(self._readings)


# --- thermals and throttling ------------------------------------------------------

_THROTTLE_BITS = (
    (0, "under_voltage"),
    (1, "arm_freq_capped"),
    (2, "throttled"),
    (3, "soft_temp_limit"),
    (16, "under_voltage_occurred"),
    (17, "arm_freq_capped_occurred"),
    (18, "throttled_occurred"),
    (19, "soft_temp_limit_occurred"),
)


def decode_throttled(text):
    """Decode ``vcgencmd get_throttled`` output (``throttled=0x50005``).

    Bits 0-3 are conditions now (under-voltage, ARM frequency capped, throttled, soft
    temperature limit), bits 16-19 say each has occurred since boot. Returns
    {raw, value, flags, now, occurred} or None when the text has no such value.
    """
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text or "")
    if not match:
        return None
    value = int(match.group(1), 0)
    flags = dict((name, bool(value >> bit & 1)) for bit, name in _THROTTLE_BITS)
    return {
        "raw": "0x%x" % value,
        "value": value,
        "flags": flags,
        "now": [name for bit, name in _THROTTLE_BITS if bit < 16 and flags[name]],
        "occurred": [name for bit, name in _THROTTLE_BITS if bit >= 16 and flags[name]],
    }


def thermal_zones_c(root):
    """Temperature of every thermal zone in degrees C, keyed by its ``type``."""
    temps = {}
    for zone in _sorted_glob(_under(root, "sys/class/thermal/thermal_zone*")):
        milli = _read_float(os.path.join(zone, "temp"))
        if milli is None:
            continue
        name = _read_text(os.path.join(zone, "type")) or os.path.basename(zone)
        if name in temps:
            name = "%s.%s" % (name, os.path.basename(zone).replace("thermal_zone", ""))
        temps[name] = milli / 1000.0
    return temps


def cpu_freqs_mhz(root):
    """Current frequency of each CPU (``scaling_cur_freq``, kHz) in MHz."""
    freqs = {}
    pattern = _under(root, "sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq")
    for path in _sorted_glob(pattern):
        khz = _read_float(path)
        if khz is not None:
            cpu = path.split(os.sep)[-3]
            freqs[cpu] = khz / 1000.0
    return freqs


def throttle_count(root):
    """Sum of the x86 thermal-throttle event counters, or None where there are none."""
    total, found = 0, False
    pattern = _under(root, "sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count")
    for path in _sorted_glob(pattern):
        value = _read_float(path)
        if value is not None:
            total += int(value)
            found = True
    return total if found else None


def thermal_snapshot(root, vcgencmd):
    snap = {
        "temps_c": thermal_zones_c(root),
        "freq_mhz": cpu_freqs_mhz(root),
        "throttled": None,
        "throttle_count": throttle_count(root),
    }
    if vcgencmd:
        snap["throttled"] = decode_throttled(run_command([vcgencmd, "get_throttled"]))
    return snap


def throttling_seen(before, after):
    """True when throttling is active now at either end, began during the loop
    (a 'has occurred' bit newly set) or the kernel counted throttle events."""
    for snap in (before, after):
        decoded = snap.get("throttled")
        if decoded and decoded["now"]:
            return True
    b, a = before.get("throttled"), after.get("throttled")
    if b and a and set(a["occurred"]) - set(b["occurred"]):
        return True
    cb, ca = before.get("throttle_count"), after.get("throttle_count")
    return cb is not None and ca is not None and ca > cb


def max_temp_c(root):
    temps = thermal_zones_c(root)
    return max(temps.values()) if temps else None


def cooldown_wait(
    max_c, timeout_s, read_max_temp, poll_s=1.0, clock=time.monotonic, sleep=time.sleep
):
    """Sleep until the hottest zone is under ``max_c`` or ``timeout_s`` passes.

    Returns {threshold_c, start_c, end_c, waited_s, timed_out} (``skipped`` when no
    zone can be read). The clock and sleep are parameters for tests.
    """
    start = clock()
    temp = read_max_temp()
    info = {
        "threshold_c": max_c,
        "start_c": temp,
        "end_c": temp,
        "waited_s": 0.0,
        "timed_out": False,
    }
    if temp is None:
        info["skipped"] = "no readable thermal zone"
        return info
    while temp >= max_c:
        waited = clock() - start
        if waited >= timeout_s:
            info["timed_out"] = True
            break
        sleep(min(poll_s, max(timeout_s - waited, 0.01)))
        value = read_max_temp()
        temp = value if value is not None else temp
    info["end_c"] = temp
    info["waited_s"] = clock() - start
    return info


# --- runtimes ---------------------------------------------------------------------


def _import_executorch_runtime():
    """Import ``executorch.runtime`` without the compiler behind it.

    The pip wheel's pybindings import ``executorch.exir._warnings`` (one small file),
    whose package ``__init__`` imports the whole export stack (about 8 s of start-up
    here, paid by every trial). Loading that one file under a placeholder package
    avoids it; the placeholders are removed afterwards, so a later ``import
    executorch.exir`` (the profiler's Inspector) gets the real package. Any problem
    falls back to the plain import.
    """
    if "executorch.runtime" not in sys.modules and "executorch.exir" not in sys.modules:
        try:
            import importlib.util
            import types

            spec = importlib.util.find_spec("executorch")
            roots = list(spec.submodule_search_locations) if spec else []
            exir_dir = os.path.join(roots[0], "exir") if roots else None
            warnings_file = os.path.join(exir_dir, "_warnings.py") if exir_dir else None
            if warnings_file and os.path.isfile(warnings_file):
                placeholder = types.ModuleType("executorch.exir")
                placeholder.__path__ = [exir_dir]
                sys.modules["executorch.exir"] = placeholder
                wspec = importlib.util.spec_from_file_location(
                    "executorch.exir._warnings", warnings_file
                )
                module = importlib.util.module_from_spec(wspec)
                sys.modules["executorch.exir._warnings"] = module
                try:
                    wspec.loader.exec_module(module)
                    from executorch.runtime import Runtime

                    return Runtime
                finally:
                    for name in ("executorch.exir._warnings", "executorch.exir"):
                        sys.modules.pop(name, None)
                    package = sys.modules.get("executorch")
                    if package is not None and getattr(package, "exir", None) is placeholder:
                        delattr(package, "exir")
        except Exception:  # fall back to the ordinary, slower import
            for name in ("executorch.runtime", "executorch.extension.pybindings.portable_lib"):
                sys.modules.pop(name, None)
    from executorch.runtime import Runtime

    return Runtime


def _package_version(name):
    try:
        from importlib import metadata

        return metadata.version(name)
    except Exception:
        return "unknown"


def _batch_error(batch, static, name=None):
    which = "input %r" % name if name else "input"
    return JobError(
        "key 'batch': the artifact's %s has a static batch dimension of %s, so "
        "measure.batch = %d cannot run on it; export the model with a dynamic batch "
        "dimension to measure other batch sizes" % (which, static, batch)
    )


# ExecuTorch ScalarType codes of the dtypes a job can feed.
_ET_DTYPES = {6: "float32", 5: "float16", 4: "int64", 3: "int32", 2: "int16", 1: "int8",
              0: "uint8", 11: "bool"}  # fmt: skip


class OrtSession(object):
    """onnxruntime on the CPU execution provider."""

    name = "onnxruntime"
    package = "onnxruntime"  # the distribution whose version the result reports
    module = "onnxruntime"  # the top-level module it imports

    @staticmethod
    def import_runtime():
        import onnxruntime  # noqa: F401

    def __init__(self, artifact, threads, options=None, profile_prefix=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn the other core between runs and distort timings.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self._session = ort.InferenceSession(
            artifact, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = self._session.get_inputs()
        self.input_names = [i.name for i in self._inputs]
        self.version = ort.__version__

    def input_dtypes(self):
        """The numpy dtype name each input must have ("tensor(int64)" -> "int64")."""
        out = []
        for i in self._inputs:
            name = i.type[len("tensor(") : -1] if i.type.startswith("tensor(") else None
            out.append({"float": "float32", "float16": "float16", "double": "float64"}.get(
                name, name))  # fmt: skip
        return out

    def check_batch(self, batch, arrays):
        for graph_input in self._inputs:
            dim = graph_input.shape[0] if graph_input.shape else None
            if isinstance(dim, int) and dim != batch:
                raise _batch_error(batch, dim, graph_input.name)

    def _feed(self, arrays):
        return dict(zip(self.input_names, arrays))  # noqa: B905 (3.8: no strict=)

    def bind(self, arrays):
        """Return a zero-argument callable that runs one inference on ``arrays`` (one
        array per input, in the artifact's input order)."""
        session_run = self._session.run
        feed = self._feed(arrays)
        return lambda: session_run(None, feed)

    def infer(self, arrays):
        """The first output (the one the host scores)."""
        return self._session.run(None, self._feed(arrays))[0]

    def end_profiling(self):
        return self._session.end_profiling()

    @classmethod
    def profile(cls, job, arrays, threads, workdir):
        """Per-op table from onnxruntime's profiler over ``count`` runs after a cold one."""
        prof = job["profile"]
        session = cls(
            job["artifact"],
            threads,
            job["runtime_options"],
            profile_prefix=os.path.join(workdir, "ort_profile"),
        )
        run_once = session.bind(arrays)
        for _ in range(int(prof["count"]) + 1):
            run_once()
        with open(session.end_profiling()) as fh:
            events = json.load(fh)
        table = ort_profile_table(events, int(prof["top"]))
        table["tool"] = "onnxruntime profiler"
        return table


class ExecuTorchSession(object):
    """ExecuTorch's runtime (``executorch.runtime``) on a .pte program."""

    name = "executorch"
    package = "executorch"
    module = "executorch"

    @staticmethod
    def import_runtime():
        _import_executorch_runtime()
        import torch  # noqa: F401  (inputs go in as tensors)

    def __init__(self, artifact, threads, options=None, etdump=False):
        Runtime = _import_executorch_runtime()
        try:
            from executorch.extension.pybindings.portable_lib import (
                _unsafe_reset_threadpool,
            )

            _unsafe_reset_threadpool(threads)
        except ImportError:  # older wheels: the pool keeps its default size
            pass
        if etdump:
            self._program = Runtime.get().load_program(
                artifact, enable_etdump=True, debug_buffer_size=0
            )
        else:
            self._program = Runtime.get().load_program(artifact)
        self._method = self._program.load_method("forward")
        self.version = _package_version("executorch")
        self.input_names = None  # a .pte keeps no input names: inputs are positional

    def _metas(self):
        try:
            meta = self._program.metadata("forward")
            return [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        except Exception:  # metadata API differs: the first inference will tell
            return None

    def input_count(self):
        metas = self._metas()
        return None if metas is None else len(metas)

    def input_dtypes(self):
        metas = self._metas()
        if metas is None:
            return None
        try:
            return [_ET_DTYPES.get(int(m.dtype())) for m in metas]
        except Exception:
            return None

    def check_batch(self, batch, arrays):
        metas = self._metas()
        if not metas:
            return
        for i, meta in enumerate(metas):
            static = meta.sizes()[0] if meta.sizes() else None
            if static is None or static == batch:
                continue
            if batch > static:
                raise _batch_error(batch, static, "input_%d" % i if len(metas) > 1 else None)
            try:  # a smaller batch works only when the dimension is dynamic
                self.infer(arrays)
            except Exception:
                raise _batch_error(batch, static) from None
            return

    def bind(self, arrays):
        import torch

        execute = self._method.execute
        inputs = tuple(torch.from_numpy(a) for a in arrays)
        return lambda: execute(inputs)

    def infer(self, arrays):
        """The first output (the one the host scores)."""
        import torch

        return self._method.execute(tuple(torch.from_numpy(a) for a in arrays))[0].numpy()

    def write_etdump(self, path):
        self._program.write_etdump_result_to_file(path, path + ".debug")

    @classmethod
    def profile(cls, job, arrays, threads, workdir):
        """Per-op table from an ETDump of ``count`` runs after a cold one."""
        prof = job["profile"]
        session = cls(job["artifact"], threads, job["runtime_options"], etdump=True)
        run_once = session.bind(arrays)
        for _ in range(int(prof["count"]) + 1):
            run_once()
        etdump = os.path.join(workdir, "profile.etdump")
        session.write_etdump(etdump)
        try:
            table = etdump_profile_table(etdump, int(prof["top"]))
        except ImportError as exc:
            # A runtime-only install: the host can build the table from the file, so the
            # profile directory is kept.
            return {
                "tool": "etdump",
                "etdump": etdump,
                "ops": None,
                "top": int(prof["top"]),
                "error": "executorch.devtools unavailable on the device: %s" % exc,
                "keep_dir": True,
            }
        table["tool"] = "etdump"
        return table


# OpenVINO element type names (ov.Type.get_type_name()) of the dtypes a job can feed.
_OV_DTYPES = {"f32": "float32", "f16": "float16", "i64": "int64", "i32": "int32",
              "i16": "int16", "i8": "int8", "u8": "uint8", "boolean": "bool"}  # fmt: skip
# runtime_options.inference_precision -> OpenVINO's INFERENCE_PRECISION_HINT. f32 unless
# asked: on CPUs with AMX or AVX512-BF16 OpenVINO's own default is bf16, which moved
# MobileNetV2's outputs by 0.23 from onnxruntime's.
_OV_PRECISIONS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}


class OpenVinoSession(object):
    """OpenVINO's CPU plugin on an ONNX file (QDQ int8 included), one stream, latency
    hint, with the inference precision pinned (``runtime_options.inference_precision``,
    default f32)."""

    name = "openvino"
    package = "openvino"
    module = "openvino"

    @staticmethod
    def import_runtime():
        import openvino  # noqa: F401

    def __init__(self, artifact, threads, options=None, perf_count=False):
        import openvino as ov

        options = dict(options or {})
        precision = options.pop("inference_precision", "f32")
        if precision not in _OV_PRECISIONS:
            raise JobError(
                "key 'runtime_options.inference_precision': expected one of %s, got %r"
                % (", ".join(_OV_PRECISIONS), precision)
            )
        if options:
            raise JobError(
                "key 'runtime_options.%s': not an OpenVINO option (known: inference_precision)"
                % sorted(options)[0]
            )
        self._ov = ov
        core = ov.Core()
        model = core.read_model(artifact)
        config = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISIONS[precision],
            "INFERENCE_NUM_THREADS": int(threads),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # Pinning threads to cores fights the emulated device's cpuset.
            "ENABLE_CPU_PINNING": False,
        }
        if perf_count:
            config["PERF_COUNT"] = True
        self._compiled = core.compile_model(model, "CPU", config)
        self._inputs = list(self._compiled.inputs)
        self.input_names = [i.get_any_name() for i in self._inputs]
        compiled = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = getattr(compiled, "get_type_name", lambda: str(compiled))()
        self.settings = {"inference_precision": self.precision}
        self.version = _package_version("openvino")

    def input_dtypes(self):
        return [_OV_DTYPES.get(i.get_element_type().get_type_name()) for i in self._inputs]

    def check_batch(self, batch, arrays):
        for graph_input in self._inputs:
            shape = graph_input.get_partial_shape()
            if shape.rank.is_static and len(shape) and shape[0].is_static:
                static = shape[0].get_length()
                if static != batch:
                    raise _batch_error(batch, static, graph_input.get_any_name())

    def _request(self, arrays):
        request = self._compiled.create_infer_request()
        for i, array in enumerate(arrays):
            request.set_input_tensor(i, self._ov.Tensor(array, shared_memory=True))
        return request

    def bind(self, arrays):
        """One inference per call on tensors set once (no copy of the inputs per call)."""
        request = self._request(arrays)
        self._keep = arrays  # the tensors share these arrays' memory
        return request.infer

    def infer(self, arrays):
        request = self._request(arrays)
        request.infer()
        return request.get_output_tensor(0).data.copy()

    @classmethod
    def profile(cls, job, arrays, threads, workdir):
        """Per-op table from OpenVINO's performance counters (``PERF_COUNT``): the
        executed nodes of each of ``count`` runs after a cold one, by node type, with
        the kernel that ran them (``exec_type``, e.g. ``brgconv_avx512_f32``)."""
        prof = job["profile"]
        session = cls(job["artifact"], threads, job["runtime_options"], perf_count=True)
        request = session._request(arrays)
        request.infer()  # cold
        per_node = {}
        runs = int(prof["count"])
        for _ in range(runs):
            request.infer()
            for info in request.get_profiling_info():
                if str(info.status).rsplit(".", 1)[-1] != "EXECUTED":
                    continue
                key = (info.node_name, info.node_type)
                ms = info.real_time.total_seconds() * 1e3
                per_node.setdefault(key, (info.exec_type, []))[1].append(ms)
        rows = [(node_type, None, durations) for (_, node_type), (_, durations) in per_node.items()]
        table = _op_table(rows, runs, int(prof["top"]))
        kernels = {}
        for (_, node_type), (exec_type, _) in per_node.items():
            kernels.setdefault(node_type, set()).add(exec_type)
        for row in table["ops"]:
            row["kernels"] = sorted(kernels.get(row["op"], ()))
        table["tool"] = "openvino perf counters"
        table["inference_precision"] = session.precision
        return table


_LITERT_NO_PROFILE = "ai-edge-litert's Python interpreter gives no per-op timings"


def _litert_scale(detail):
    """(scale, zero_point) of a quantized per-tensor input/output, None for a float one."""
    scale, zero_point = detail.get("quantization") or (0.0, 0)
    if not scale:
        return None
    return float(scale), int(zero_point)


class LiteRtSession(object):
    """LiteRT's interpreter (the former TensorFlow Lite) on a .tflite file, with its
    default delegate (XNNPACK) on ``threads`` threads.

    A pt2e int8 model has int8 inputs and outputs with per-tensor scales: the session
    reports such an input as float32, so the job feeds the floats a float model gets,
    quantizes them with the input's (scale, zero_point) and dequantizes the output it
    scores. Inputs are positional (``input_names`` None), as a .tflite's signature names
    (``args_0``) are the converter's, not the model's."""

    name = "litert"
    package = "ai-edge-litert"
    module = "ai_edge_litert"

    @staticmethod
    def import_runtime():
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401

    def __init__(self, artifact, threads, options=None):
        from ai_edge_litert.interpreter import Interpreter

        if options:
            raise JobError(
                "key 'runtime_options.%s': LiteRT takes no runtime options" % sorted(options)[0]
            )
        self._interpreter = Interpreter(model_path=artifact, num_threads=int(threads))
        self._interpreter.allocate_tensors()
        self._inputs = self._interpreter.get_input_details()
        self._outputs = self._interpreter.get_output_details()
        self.input_names = None
        self.version = _package_version("ai-edge-litert")

    def input_count(self):
        return len(self._inputs)

    def input_dtypes(self):
        """numpy dtype names; a quantized integer input is float32 (see the class)."""
        out = []
        for detail in self._inputs:
            dtype = detail["dtype"].__name__
            if _litert_scale(detail) is not None and dtype in ("int8", "uint8", "int16"):
                dtype = "float32"  # quantized here from the float the job feeds
            out.append(dtype)  # resolve_inputs refuses one the runner cannot feed
        return out

    def quantized_io(self):
        """Which inputs and outputs are quantized integers (for the export notes)."""

        def kinds(details):
            return [
                "%s scale=%.6g zero_point=%d" % (d["dtype"].__name__, *_litert_scale(d))
                if _litert_scale(d) is not None
                else d["dtype"].__name__
                for d in details
            ]

        return {"inputs": kinds(self._inputs), "outputs": kinds(self._outputs)}

    def check_batch(self, batch, arrays):
        resized = False
        for detail in self._inputs:
            signature = list(detail.get("shape_signature", detail["shape"]))
            static = int(detail["shape"][0]) if len(detail["shape"]) else None
            if not signature or static == batch:
                continue
            if signature[0] != -1:
                raise _batch_error(batch, static, detail["name"])
            self._interpreter.resize_tensor_input(
                detail["index"], [batch] + [int(d) for d in detail["shape"][1:]]
            )
            resized = True
        if resized:
            self._interpreter.allocate_tensors()
            self._inputs = self._interpreter.get_input_details()
            self._outputs = self._interpreter.get_output_details()

    def _set_inputs(self, arrays):
        import numpy as np

        if len(arrays) != len(self._inputs):
            raise JobError(
                "key 'inputs': the artifact takes %d inputs, the job gives %d"
                % (len(self._inputs), len(arrays))
            )
        for detail, array in zip(self._inputs, arrays):  # noqa: B905 (3.8: no strict=)
            dtype = detail["dtype"]
            quant = _litert_scale(detail)
            if quant is not None and np.issubdtype(dtype, np.integer):
                scale, zero_point = quant
                info = np.iinfo(dtype)
                q = np.round(np.asarray(array, dtype=np.float32) / scale) + zero_point
                array = np.clip(q, info.min, info.max).astype(dtype)
            else:
                array = np.asarray(array, dtype=dtype)
            self._interpreter.set_tensor(detail["index"], np.ascontiguousarray(array))

    def bind(self, arrays):
        """Inputs set (and quantized) once; each call runs one inference."""
        self._set_inputs(arrays)
        return self._interpreter.invoke

    def infer(self, arrays):
        """The first output as floats (dequantized when the model's output is int8)."""
        import numpy as np

        self._set_inputs(arrays)
        self._interpreter.invoke()
        detail = self._outputs[0]
        out = self._interpreter.get_tensor(detail["index"])
        quant = _litert_scale(detail)
        if quant is not None and np.issubdtype(out.dtype, np.integer):
            scale, zero_point = quant
            return (out.astype(np.float32) - zero_point) * np.float32(scale)
        return np.array(out)

    @classmethod
    def profile(cls, job, arrays, threads, workdir):
        """No per-op table: the Python interpreter has no profiler hook (only the C++
        benchmark tool does), so the profile says so instead of guessing."""
        return {"tool": "none", "ops": None, "top": int(job["profile"]["top"]),
                "error": _LITERT_NO_PROFILE}  # fmt: skip


# The runtimes this runner measures, by the job's "runtime". A session class gives its
# ``name`` and ``package``, ``import_runtime()`` (timed apart from loading), a constructor
# ``(artifact, threads, options)`` (``options``: the job's runtime_options), ``bind``,
# ``infer``, ``check_batch``, ``input_dtypes`` and a ``profile`` classmethod; the host's
# counterpart is harness.export.registry.
SESSIONS = collections.OrderedDict(
    (cls.name, cls) for cls in (OrtSession, ExecuTorchSession, OpenVinoSession, LiteRtSession)
)


def import_runtime(runtime):
    """Import the runtime's Python package (timed apart from loading the artifact)."""
    SESSIONS[runtime].import_runtime()


def open_session(runtime, artifact, threads, options=None):
    return SESSIONS[runtime](artifact, threads, options or {})


# --- per-op profiles ----------------------------------------------------------------


def _op_table(rows, runs, top):
    """Aggregate per-op durations into the profile table.

    ``rows`` is a list of (op, delegated or None, [durations in ms over the kept runs]),
    one per op instance in the graph. Times are per inference: ``count`` is how many
    instances of the op one inference runs, ``total_ms`` their summed mean time,
    ``mean_ms`` the mean time of one instance and ``share`` the fraction of the summed
    op time.
    """
    ops = {}
    for op, delegated, durations in rows:
        if not durations:
            continue
        key = (op, delegated)
        entry = ops.setdefault(key, {"op": op, "events": 0, "sum_ms": 0.0})
        if delegated is not None:
            entry["delegated"] = delegated
        entry["events"] += len(durations)
        entry["sum_ms"] += sum(durations)
    grand = sum(e["sum_ms"] for e in ops.values()) / runs if runs else 0.0
    table = []
    for entry in ops.values():
        total = entry["sum_ms"] / runs
        row = {
            "op": entry["op"],
            "count": round(entry["events"] / float(runs), 3),
            "total_ms": total,
            "mean_ms": entry["sum_ms"] / entry["events"],
            "share": total / grand if grand > 0 else 0.0,
        }
        if "delegated" in entry:
            row["delegated"] = entry["delegated"]
        table.append(row)
    table.sort(key=lambda r: -r["total_ms"])
    return {"runs": runs, "ops_total_ms": grand, "op_kinds": len(table), "ops": table[:top]}


def ort_profile_table(events, top, skip_runs=1):
    """Per-op table from an onnxruntime profile (the JSON list ``end_profiling`` writes).

    Kernel times are the ``Node`` events named ``*_kernel_time`` (``args.op_name``,
    ``dur`` in microseconds); the first ``skip_runs`` runs (``model_run`` events) are
    cold and left out.
    """
    runs = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    kept = runs[skip_runs:] if len(runs) > skip_runs else runs
    if not kept:
        return {"runs": 0, "ops_total_ms": 0.0, "op_kinds": 0, "ops": []}
    per_op = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        ts = e.get("ts", 0)
        if not any(lo <= ts <= hi for lo, hi in kept):
            continue
        op = (e.get("args") or {}).get("op_name") or e["name"]
        per_op.setdefault(op, []).append(e.get("dur", 0) / 1000.0)
    rows = [(op, None, durations) for op, durations in per_op.items()]
    return _op_table(rows, len(kept), top)


def _et_op_name(name):
    name = re.sub(r"\s+#\d+$", "", name)
    if name.startswith("native_call_"):
        name = name[len("native_call_") :]
    return name


def etdump_profile_table(etdump_path, top, skip_runs=1):
    """Per-op table from an ETDump via executorch.devtools' Inspector (no ETRecord
    needed: op names come from the runtime's own events).

    Operator events outside delegates are named ``native_call_<op>``; ops inside the
    XNNPACK delegate are named by XNNPACK (``Convolution (NHWC, F32) IGEMM #1``) and
    flagged delegated. Wrapper events (``OPERATOR_CALL``, ``Method::execute``) are left
    out, and ``DELEGATE_CALL`` too unless the delegate logged no ops of its own.
    """
    from executorch.devtools import Inspector

    inspector = Inspector(etdump_path=etdump_path)
    events = []
    for block in inspector.event_blocks:
        if block.name == "Execute":
            events.extend(block.events)
    has_delegated = any(ev.is_delegated_op for ev in events)
    rows, runs = [], 0
    for ev in events:
        name = ev.name or ""
        raw = list(ev.perf_data.raw) if ev.perf_data is not None else []
        if name == "Method::execute":
            runs = max(runs, len(raw))
            continue
        if name == "OPERATOR_CALL" or (name == "DELEGATE_CALL" and has_delegated):
            continue
        delegated = bool(ev.is_delegated_op) or name == "DELEGATE_CALL"
        kept = raw[skip_runs:] if len(raw) > skip_runs else raw
        rows.append((_et_op_name(name), delegated, [float(v) for v in kept]))
    runs = max(runs - skip_runs, 1) if runs > skip_runs else max(runs, 1)
    table = _op_table(rows, runs, top)
    delegated_ms = sum(r["total_ms"] for r in table["ops"] if r.get("delegated"))
    table["delegated_share_top"] = (
        delegated_ms / table["ops_total_ms"] if table["ops_total_ms"] > 0 else 0.0
    )
    return table


def profile_pass(job, arrays, threads):
    """Per-op profile in its own session, after the timed loop (so profiling cannot
    distort the latency numbers). Returns the result's ``profile`` object."""
    prof = job["profile"]
    workdir = prof["dir"] or tempfile.mkdtemp(prefix="bench-profile-")
    keep = bool(prof["dir"])
    if keep and not os.path.isdir(workdir):
        os.makedirs(workdir)
    try:
        table = SESSIONS[job["runtime"]].profile(job, arrays, threads, workdir)
        keep = keep or bool(table.pop("keep_dir", False))
        return table
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# --- environment ------------------------------------------------------------------

_INTERESTING_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "asimddp",
    "asimdhp",
    "fphp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)


def _cpuinfo():
    model, flags = None, []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if model is None and key in ("model name", "Model", "Hardware"):
                    model = value.strip()
                elif not flags and key in ("flags", "Features"):
                    flags = value.split()
    except OSError:
        pass
    return model or platform.processor() or "unknown", flags


def _mem_available_mb():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def environment(root="/"):
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        import psutil  # noqa: F401

        has_psutil = True
    except ImportError:
        has_psutil = False
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cpu_model": model,
        "cpu_flags": [f for f in _INTERESTING_FLAGS if f in flags],
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "governor": _read_text(
            _under(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
        ),
        "mem_available_mb": _mem_available_mb(),
        "hostname": platform.node(),
        "psutil": has_psutil,
    }


# --- host load ----------------------------------------------------------------------


def read_cpu_stat(root="/"):
    """``proc/stat`` under ``root``: per CPU (busy, idle, steal) in clock ticks, and
    ``procs_running`` (tasks runnable now, this one included); None when unreadable.

    Busy is user + nice + system + irq + softirq (guest time is inside user); idle
    includes iowait; steal is time the hypervisor gave this vCPU's slot to others.
    """
    text = _read_text(_under(root, "proc/stat"))
    if text is None:
        return None
    cpus = {}
    running = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        name = parts[0]
        try:
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in parts[1:9]]
                values += [0] * (8 - len(values))
                idle = values[3] + values[4]
                busy = values[0] + values[1] + values[2] + values[5] + values[6]
                cpus[int(name[3:])] = (busy, idle, values[7])
            elif name == "procs_running" and len(parts) > 1:
                running = int(parts[1])
        except ValueError:
            continue
    return {"cpus": cpus, "procs_running": running}


def read_loadavg(root="/"):
    """The 1, 5 and 15 minute load averages from ``proc/loadavg``, or None."""
    text = _read_text(_under(root, "proc/loadavg"))
    try:
        return [float(v) for v in text.split()[:3]] if text else None
    except ValueError:
        return None


def _ticks_per_second():
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100.0


def host_load(before, after, allowed_cpus, own_cpu_s, wall_s, ticks_per_s=None):
    """What else the machine ran while the loop ran (readings of ``read_cpu_stat``).

    ``others_runnable_per_cpu``: tasks runnable besides this one, per online CPU, the
    smaller of the counts at the loop's start and end (so one burst of runnable tasks
    at one end does not count); ``other_cpu``: CPUs' worth of busy time on the CPUs this
    process may use, less its own; ``steal_fraction``: the share of those CPUs' time the
    hypervisor took. Judging whether that is too much is the host's job (it knows the
    CPU quota); the runner only measures. None when ``proc/stat`` was not readable.
    """
    if before is None or after is None:
        return None
    ticks = float(ticks_per_s or _ticks_per_second())
    online = len(after["cpus"])
    mine = [c for c in sorted(allowed_cpus) if c in before["cpus"] and c in after["cpus"]]
    running = [r for r in (before["procs_running"], after["procs_running"]) if r is not None]
    out = {
        "cpus": mine,
        "online_cpus": online,
        "procs_running": [before["procs_running"], after["procs_running"]],
        "others_runnable_per_cpu": None,
        "other_cpu": None,
        "steal_fraction": None,
        "wall_s": wall_s,
    }
    if running and online:
        out["others_runnable_per_cpu"] = max(min(running) - 1, 0) / float(online)
    if mine and wall_s > 0:
        busy = sum(after["cpus"][c][0] - before["cpus"][c][0] for c in mine) / ticks
        steal = sum(after["cpus"][c][2] - before["cpus"][c][2] for c in mine) / ticks
        out["other_cpu"] = max(busy - own_cpu_s, 0.0) / wall_s
        out["steal_fraction"] = max(steal, 0.0) / (wall_s * len(mine))
    return out


def _allowed_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


# --- main -------------------------------------------------------------------------


def _power_result(meter_w, readings, idle_w, idle_source, source, model, cpu_util, p50_ms):
    """The result's ``power`` object: a real sensor's average, else the model's."""
    out = {
        "source": "none",
        "power_w": None,
        "idle_w": None,
        "idle_source": None,
        "energy_mj": None,
        "cpu_util": cpu_util,
        "readings": readings,
    }
    if source is not None and meter_w is not None:
        out.update(source.detail())
        out["source"], out["power_w"] = source.label, meter_w
        if idle_w is None and model is not None:
            idle_w, idle_source = float(model["idle_w"]), "model"
        out["idle_w"], out["idle_source"] = idle_w, idle_source
    elif model is not None and cpu_util is not None:
        idle, peak = float(model["idle_w"]), float(model["max_w"])
        out["source"] = "modelled"
        out["power_w"] = idle + (peak - idle) * cpu_util
        out["idle_w"], out["idle_source"] = idle, "model"
        if source is not None:
            out["sensor_error"] = "%s gave no reading" % source.label
    if out["power_w"] is not None and out["idle_w"] is not None and p50_ms is not None:
        active = out["power_w"] - out["idle_w"]
        out["active_w"] = active
        # Per inference (one call, of `batch` items); noise can make active < 0.
        out["energy_mj"] = max(active, 0.0) * p50_ms  # W x ms = mJ
    return out


def resolve_inputs(inputs, session):
    """The job's inputs checked against the artifact: the same count and (where the
    runtime keeps them) names, in the artifact's order, each in the dtype the runtime
    declares for it. An integer input the artifact wants wider or narrower (int32 ids
    for an int64 graph) is cast; a float fed to an integer input, or the reverse, is a
    bad job. An old job's one unnamed input takes the artifact's first input name."""
    names = session.input_names
    count = len(names) if names is not None else session.input_count()
    if count is not None and count != len(inputs):
        raise JobError(
            "key 'inputs': the artifact takes %d inputs%s, the job gives %d"
            % (count, " (%s)" % ", ".join(names) if names else "", len(inputs))
        )
    out = []
    for i, spec in enumerate(inputs):
        spec = dict(spec)
        if spec["name"] is None:
            spec["name"] = names[i] if names else "input_%d" % i
        elif names is not None and spec["name"] != names[i]:
            raise JobError(
                "key 'inputs[%d].name': the artifact's inputs are %s, the job's %s"
                % (i, names, [s["name"] for s in inputs])
            )
        out.append(spec)
    wanted = session.input_dtypes() or [None] * len(out)
    for spec, dtype in zip(out, wanted):  # noqa: B905 (3.8: no strict=)
        if dtype is None or dtype == spec["dtype"]:
            continue
        if dtype not in _DTYPES:
            raise JobError(
                "key 'inputs': the artifact's input %r is %s, which the runner cannot feed"
                % (spec["name"], dtype)
            )
        if (dtype in _FLOAT_DTYPES) != (spec["dtype"] in _FLOAT_DTYPES):
            raise JobError(
                "key 'inputs': the artifact's input %r is %s, the job gives %s"
                % (spec["name"], dtype, spec["dtype"])
            )
        spec["cast_from"], spec["dtype"] = spec["dtype"], dtype
    return out


def make_inputs(inputs, batch, seed):
    """One array per input with its first dimension set to ``batch``: standard normal
    floats (the same stream as before input specs), integer ids uniform in the input's
    ``range`` (id 0 when it has none)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    arrays = []
    for spec in inputs:
        shape = [batch, *spec["shape"][1:]]
        if spec["dtype"] in _FLOAT_DTYPES:
            arrays.append(rng.standard_normal(shape).astype(spec["dtype"]))
            continue
        low, high = spec["range"] if spec["range"] is not None else (0, 1)
        if spec["dtype"] == "bool":
            low, high = max(low, 0), min(high, 2)
        arrays.append(rng.randint(low, high, size=shape).astype(spec["dtype"]))
    return arrays


def load_eval_inputs(path, inputs):
    """The evaluation inputs as one array per input: a ``.npy`` holds the one input of a
    one-input model, a ``.npz`` one array per input name."""
    import numpy as np

    loaded = np.load(path)
    if hasattr(loaded, "files"):  # an .npz archive
        try:
            names = [spec["name"] for spec in inputs]
            missing = [n for n in names if n not in loaded.files]
            if missing:
                raise JobError(
                    "key 'eval_inputs': %s has no array for input(s) %s (it has %s)"
                    % (path, ", ".join(missing), ", ".join(loaded.files))
                )
            columns = [loaded[n] for n in names]
        finally:
            loaded.close()
    else:
        if len(inputs) != 1:
            raise JobError(
                "key 'eval_inputs': %s holds one array, the artifact takes %d inputs"
                % (path, len(inputs))
            )
        columns = [loaded]
    pairs = zip(columns, inputs)  # noqa: B905 (3.8: no strict=)
    return [c.astype(spec["dtype"], copy=False) for c, spec in pairs]


def _load_session(job, result, memory):
    """Phases 1-2: import the runtime and open the artifact, timing both and reading the
    RSS around them (the baseline is taken after the import, so the rise to after_load
    is the artifact's own cost)."""
    t0 = time.perf_counter()
    try:
        import_runtime(job["runtime"])
    except ImportError as exc:
        raise RuntimeMissing(
            "%s is not installed for %s (%s: %s)"
            % (job["runtime"], sys.executable, type(exc).__name__, exc)
        ) from exc
    result["import_ms"] = (time.perf_counter() - t0) * 1e3
    memory["baseline"] = rss_mb()

    t0 = time.perf_counter()
    session = open_session(
        job["runtime"], job["artifact"], int(job["threads"]), job["runtime_options"]
    )
    result["load_ms"] = (time.perf_counter() - t0) * 1e3
    memory["after_load"] = rss_mb()
    result["runtime_version"] = session.version
    result["env"]["runtime"] = {"name": session.name, "version": session.version}
    settings = getattr(session, "settings", None)
    if settings:  # what the session actually runs with (OpenVINO's inference precision)
        result["runtime_settings"] = settings
    return session


def _input_arrays(job, session, result):
    """The job's inputs fitted to the artifact and the arrays made for them."""
    batch = int(job["batch"])
    inputs = resolve_inputs(job["inputs"], session)
    arrays = make_inputs(inputs, batch, int(job["seed"]))
    result["batch"], result["input_shape"] = batch, list(arrays[0].shape)
    result["inputs"] = [
        {
            "name": spec["name"],
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            "range": spec["range"],
        }
        for spec, a in zip(inputs, arrays)  # noqa: B905 (3.8: no strict=)
    ]
    session.check_batch(batch, arrays)
    return inputs, arrays


def _cooldown_gate(cool, root):
    """Phase 3: wait until the hottest zone is below ``max_c`` (None: no gate asked)."""
    if cool["max_c"] is None:
        return None
    return cooldown_wait(
        float(cool["max_c"]),
        float(cool["timeout_s"]),
        lambda: max_temp_c(root),
        poll_s=float(cool["poll_s"]),
    )


def _idle_power(source, power_cfg):
    """Phase 4: the idle power and where it came from, when a real sensor exists."""
    if source is None or float(power_cfg["idle_seconds"]) <= 0:
        return None, None
    idle_meter = PowerMeter(source, float(power_cfg["interval_s"]))
    idle_meter.start()
    time.sleep(float(power_cfg["idle_seconds"]))
    idle_w = idle_meter.stop()[0]
    return idle_w, "measured" if idle_w is not None else None


# What the timed loop saw: its samples (seconds; per block when block_counts is not
# None), why it stopped, its wall and CPU seconds, the host's load, the power meter's
# mean and reading count, and the thermal snapshots either side.
_TimedLoop = collections.namedtuple(
    "_TimedLoop",
    "samples block_counts stop_reason wall_s cpu_s host_load meter_w readings before after",
)


def _timed_loop(job, run_once, root, vcgencmd, source):
    """Phase 6: the timed loop, with the thermal snapshots, power meter and CPU counters
    read at its ends (and the meter at a low rate while it runs)."""
    meas = job["measure"]
    before = thermal_snapshot(root, vcgencmd)
    interval_s = float(job["power"]["interval_s"])
    meter = PowerMeter(source, interval_s) if source is not None else None
    if meter is not None:
        meter.start()
    stat0 = read_cpu_stat(root)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    block_counts = None
    if meas["block_seconds"] is not None:
        samples, block_counts, stop_reason = run_blocks(
            run_once,
            float(meas["block_seconds"]),
            int(meas["min_count"]),
            float(meas["min_seconds"]),
            meas["max_seconds"],
            adaptive_ci=meas["adaptive_ci"],
        )
    else:
        samples, stop_reason = run_loop(
            run_once,
            int(meas["min_count"]),
            float(meas["min_seconds"]),
            meas["max_seconds"],
            adaptive_ci=meas["adaptive_ci"],
            check_every=int(meas["check_every"]),
        )
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    load = host_load(stat0, read_cpu_stat(root), _allowed_cpus(), cpu1 - cpu0, wall1 - wall0)
    if load is not None:
        load["loadavg"] = read_loadavg(root)
    meter_w, readings = meter.stop() if meter is not None else (None, 0)
    after = thermal_snapshot(root, vcgencmd)
    return _TimedLoop(
        samples, block_counts, stop_reason, wall1 - wall0, cpu1 - cpu0, load, meter_w, readings,
        before, after,
    )  # fmt: skip


def _sampling(block_counts, block_seconds):
    """How block samples were taken (None: one sample per inference)."""
    if block_counts is None:
        return None
    ordered_counts = sorted(block_counts)
    return {
        "estimate": "block_mean",
        "block_seconds": float(block_seconds),
        "blocks": len(block_counts),
        "min_blocks": MIN_BLOCKS,
        "inferences": sum(block_counts),
        "inferences_per_block": {
            "min": ordered_counts[0],
            "median": _quantile(ordered_counts, 0.5),
            "max": ordered_counts[-1],
        },
    }


def _validity(timed, meas, cv_robust, cooldown):
    """Why the samples may not mean what they seem ("ok": no reason)."""
    reasons = []
    if throttling_seen(timed.before, timed.after):
        reasons.append("throttled")
    if cv_robust > float(meas["max_cv"]):
        reasons.append("unstable")
    blocks = timed.block_counts
    inferences = sum(blocks) if blocks is not None else len(timed.samples)
    if inferences < int(meas["min_count"]) or (blocks is not None and len(blocks) < MIN_BLOCKS):
        reasons.append("too_few_samples")
    if cooldown is not None and cooldown["timed_out"]:
        reasons.append("cooldown_timeout")
    return reasons or "ok"


def _timing_fields(timed, job, cooldown, idle_w, idle_source, source):
    """The result's fields from the timed loop: samples, within-trial statistics, power,
    thermals and validity."""
    meas = job["measure"]
    samples_ms = [s * 1e3 for s in timed.samples]
    out = {
        "samples_ms": samples_ms,
        "min_count": int(meas["min_count"]),
        "stop_reason": timed.stop_reason,
        "loop_seconds": timed.wall_s,
    }
    sampling = _sampling(timed.block_counts, meas["block_seconds"])
    if sampling is not None:
        out["sampling"] = sampling
    ordered = sorted(samples_ms)
    median, lo, hi = median_and_ci(ordered)
    rcv = robust_cv(ordered)
    out["within_trial"] = {
        "p50": median,
        "ci95": [lo, hi],
        "cv": _cv(samples_ms),
        "cv_robust": rcv,
        "count": len(samples_ms),
    }
    threads = int(job["threads"])
    wall = timed.wall_s
    cpu_util = min(timed.cpu_s / wall / threads, 1.0) if wall > 0 else None
    out["power"] = _power_result(
        timed.meter_w,
        timed.readings,
        idle_w,
        idle_source,
        source,
        job["power"]["model"],
        cpu_util,
        median,
    )
    out["thermal"] = {"before": timed.before, "after": timed.after}
    out["validity"] = _validity(timed, meas, rcv, cooldown)
    return out


def _save_outputs(job, session, inputs):
    """Phase 7a: the model's outputs on the evaluation inputs, one inference per row,
    saved for the host to score."""
    import numpy as np

    columns = load_eval_inputs(job["eval_inputs"], inputs)
    outputs = [
        session.infer([np.ascontiguousarray(c[i : i + 1]) for c in columns])
        for i in range(len(columns[0]))
    ]
    np.save(job["outputs_out"], np.concatenate(outputs, axis=0))
    return job["outputs_out"]


def _profile(job, arrays):
    """Phase 7b: the per-op profile, or why there is none (a profile is extra: its
    failure keeps the timings)."""
    try:
        return profile_pass(job, arrays, int(job["threads"]))
    except Exception as exc:
        return {"error": "%s: %s" % (type(exc).__name__, exc), "ops": None}


def run_job(job):
    """Measure one validated job in the phases the module docstring lists; the result."""
    # numpy is loaded before the first RSS reading, so before_import counts it and the
    # rise to the baseline is the runtime's own import.
    import numpy  # noqa: F401

    root = job["sysfs_root"]
    vcgencmd = resolve_vcgencmd(job["vcgencmd"], root)
    result = {"schema_version": SCHEMA_VERSION, "status": "ok", "env": environment(root)}
    memory = {"before_import": rss_mb()}
    session = _load_session(job, result, memory)
    inputs, arrays = _input_arrays(job, session, result)
    peak_reset = reset_peak_rss()
    run_once = session.bind(arrays)
    t0 = time.perf_counter()
    run_once()
    result["first_inference_ms"] = (time.perf_counter() - t0) * 1e3

    cooldown = _cooldown_gate(job["cooldown"], root)
    result["cooldown"] = cooldown
    source = find_power_source(root, vcgencmd)
    idle_w, idle_source = _idle_power(source, job["power"])
    warm = job["warmup"]
    run_loop(run_once, int(warm["min_count"]), float(warm["min_seconds"]))
    timed = _timed_loop(job, run_once, root, vcgencmd, source)
    result["host_load"] = timed.host_load
    memory["peak"] = peak_rss_mb()
    memory["peak_includes_load"] = not peak_reset
    result["memory_mb"] = memory
    result.update(_timing_fields(timed, job, cooldown, idle_w, idle_source, source))

    # Accuracy outputs and the profile run after timing so they cannot disturb it.
    if job.get("eval_inputs") and job.get("outputs_out"):
        result["outputs"] = _save_outputs(job, session, inputs)
    result["profile"] = _profile(job, arrays) if job["profile"]["enabled"] else None
    return result


def write_result(path, result):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, path)


def _error_result(kind, message):
    return {"schema_version": SCHEMA_VERSION, "status": "error", "kind": kind, "error": message}


_PROBED_PACKAGES = (*(cls.package for cls in SESSIONS.values()), "torch", "numpy", "psutil")
# Imported by the probe as a run imports them: installed metadata says nothing about
# whether the package loads (a wheel for another CPU, a numpy it was not built for).
PROBED_IMPORTS = (*SESSIONS, "numpy")
# Each import runs in a child process with this deadline, so an import that hangs or
# crashes the interpreter is a finding, not a dead probe.
PROBE_IMPORT_TIMEOUT_S = 45


def _import_one(name):
    """``--import NAME``: import it as a run does; one JSON line with the time or error."""
    started = time.perf_counter()
    try:
        if name == "numpy":
            import numpy  # noqa: F401
        else:
            import_runtime(name)
    except BaseException as exc:  # SystemExit and the like from a broken package, too
        import traceback

        answer = {
            "ok": False,
            "seconds": None,
            "error": _last_line("%s: %s" % (type(exc).__name__, exc)),
            "traceback": traceback.format_exc()[-2000:],
        }
    else:
        answer = {"ok": True, "seconds": round(time.perf_counter() - started, 3), "error": None}
    # On its own line: a package may have printed to stdout while it loaded.
    sys.stdout.write("\n" + json.dumps(answer) + "\n")
    return 0 if answer["ok"] else 1


def _last_line(text):
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# How the probe starts a child Python like itself, as a JSON list, when that is not just
# sys.executable: under qemu-user (no binfmt_misc) the board's Python only runs through
# the emulator, e.g. ["qemu-aarch64-static", "-L", ROOT, ROOT + "/usr/bin/python3"].
PYTHON_COMMAND_ENV = "HARNESS_RUNNER_PYTHON"


def _python_command():
    given = os.environ.get(PYTHON_COMMAND_ENV)
    if given:
        command = json.loads(given)
        if isinstance(command, list) and command and all(isinstance(c, str) for c in command):
            return command
    return [sys.executable]


def probe_import(name, timeout_s=PROBE_IMPORT_TIMEOUT_S):
    """Import ``name`` in a child Python: ``{"ok", "seconds", "error", "traceback"}``."""
    command = [*_python_command(), os.path.abspath(__file__), "--import", name]
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            errors="replace",
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {
            "ok": False,
            "seconds": None,
            "error": "the import did not finish within %d s" % timeout_s,
            "traceback": "",
        }
    except OSError as exc:
        return {
            "ok": False,
            "seconds": None,
            "error": "could not start %s: %s" % (" ".join(command[:-3]), exc),
            "traceback": "",
        }
    for line in reversed(proc.stdout.splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict) and "ok" in answer:
            return answer
    # No answer: the interpreter died under the import (a bad wheel's illegal
    # instruction or segfault), or something killed it.
    if proc.returncode < 0:
        try:
            why = "the import killed Python (%s)" % signal.Signals(-proc.returncode).name
        except ValueError:
            why = "the import killed Python (signal %d)" % -proc.returncode
    else:
        why = "the import exited %d without an answer" % proc.returncode
    detail = _last_line(proc.stderr)
    return {
        "ok": False,
        "seconds": None,
        "error": "%s: %s" % (why, detail) if detail else why,
        "traceback": proc.stderr[-2000:],
    }


def _probe_if_present(name):
    """``probe_import(name)``, unless its module is not there at all: finding that out
    needs no child Python (each costs seconds on a small board, or under qemu)."""
    import importlib.util

    module = SESSIONS[name].module if name in SESSIONS else name
    try:
        present = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        present = True  # let the import itself say what is wrong
    if present:
        return probe_import(name)
    return {
        "ok": False,
        "seconds": None,
        "error": "ModuleNotFoundError: No module named %r" % module,
        "traceback": "",
    }


def probe(workdir, root="/"):
    """What a board offers the runner, for ``harness devices check``."""
    packages = {}
    for name in _PROBED_PACKAGES:
        try:
            from importlib import metadata

            packages[name] = metadata.version(name)
        except Exception:
            packages[name] = None
    disk_free_mb = None
    try:
        disk_free_mb = shutil.disk_usage(workdir).free / 1e6
    except OSError:
        pass
    env = environment(root)
    env.update(
        {
            "executable": sys.executable,
            "packages": packages,
            "imports": {name: _probe_if_present(name) for name in PROBED_IMPORTS},
            "workdir": workdir,
            "disk_free_mb": disk_free_mb,
            "temp_c": max_temp_c(root),
            "has_timeout": shutil.which("timeout") is not None,
            "runner_schema_version": SCHEMA_VERSION,
        }
    )
    return env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--probe":
        json.dump(probe(argv[1]), sys.stdout)
        sys.stdout.write("\n")
        return 0
    if len(argv) == 2 and argv[0] == "--import":
        return _import_one(argv[1])
    if len(argv) != 2:
        sys.stderr.write("usage: bench_runner.py JOB.json RESULT.json\n")
        return _EXIT_BAD_JOB
    job_path, result_path = argv
    try:
        job = load_job(job_path)
    except JobError as exc:
        sys.stderr.write("bench_runner: %s\n" % exc)
        write_result(result_path, _error_result("bad_job", str(exc)))
        return _EXIT_BAD_JOB
    try:
        result = run_job(job)
    except JobError as exc:  # the job does not fit the artifact (e.g. its batch size)
        sys.stderr.write("bench_runner: %s\n" % exc)
        write_result(result_path, _error_result("bad_job", str(exc)))
        return _EXIT_BAD_JOB
    except RuntimeMissing as exc:
        sys.stderr.write("bench_runner: %s\n" % exc)
        write_result(result_path, _error_result("runtime_missing", str(exc)))
        return _EXIT_RUNTIME_FAILED
    except Exception as exc:  # report the runtime's own message to the host
        import traceback

        traceback.print_exc()
        write_result(
            result_path, _error_result("runtime_error", "%s: %s" % (type(exc).__name__, exc))
        )
        return _EXIT_RUNTIME_FAILED
    write_result(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
