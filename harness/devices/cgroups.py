"""Holding one runner process to a board's caps: cgroups where writable, else a fallback.

Why cgroups: a cpuset pins the runner to N cores, a CFS quota limits how much CPU time
it gets (the only way to make a fast core behave like a slower one without touching
its frequency), and a memory limit makes a model that would not fit in the board's RAM
fail the way it would there (killed by the OOM killer).

One group per run, ``<root>/<controller>/<own cgroup>/harness/<name>`` (v1) or
``<root>/harness/<name>`` (v2), removed afterwards. The runner enters it through a tiny
Python wrapper that writes its own pid into ``cgroup.procs`` and then ``exec``s the
runner, so the runner is the same interpreter and file as on the local device.

Where cgroups are not available or not writable, each cap falls back on its own:
cores through ``sched_setaffinity``, memory through ``RLIMIT_AS`` (address space, which
overstates RSS), and speed not at all: there is no unprivileged equivalent of a CPU
quota. What was enforced, how, and what was not is returned as a record for the result.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

V1_DIRS = {"cpu": ("cpu", "cpu,cpuacct"), "cpuset": ("cpuset",), "memory": ("memory",)}
_COUNTER = itertools.count()
_LOGGED: set[tuple[str, str]] = set()

# Run by ``python -c`` before the runner: join the groups, apply the fallbacks, exec.
WRAPPER = """\
import json, os, sys
spec = json.loads(sys.argv[1])
for path in spec["procs"]:
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
if spec["cpus"] is not None:
    os.sched_setaffinity(0, spec["cpus"])
if spec["rlimit_as"] is not None:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (spec["rlimit_as"], spec["rlimit_as"]))
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass(frozen=True)
class Caps:
    """What to enforce on one run. ``None`` means not asked for."""

    cores: int | None = None
    # CPU time per period, in CPUs (0.5: half of one core), from speed x busy cores.
    cpu_fraction: float | None = None
    period_us: int | None = None
    memory_mb: int | None = None


@dataclass
class Sandbox:
    """One run's groups (if any), its command prefix and the record of what holds."""

    prefix: list[str]
    record: dict[str, Any]
    version: int | None = None  # 1, 2 or None (fallback only)
    dirs: dict[str, Path] = field(default_factory=dict)
    memory_fallback: bool = False

    def stats(self) -> dict[str, Any]:
        """Counters read from the groups after the run: OOM kills, peak, throttling."""
        out: dict[str, Any] = {}
        mem = self.dirs.get("memory")
        if mem is not None:
            if self.version == 1:
                out["memory_failcnt"] = _read_int(mem / "memory.failcnt")
                peak = _read_int(mem / "memory.max_usage_in_bytes")
                out["memory_peak_mb"] = round(peak / 2**20, 1) if peak is not None else None
                oom = _read_keyed(mem / "memory.oom_control")
                out["oom_kills"] = oom.get("oom_kill")
                out["under_oom"] = oom.get("under_oom")
            else:
                events = _read_keyed(mem / "memory.events")
                out["oom_kills"] = events.get("oom_kill")
                out["memory_max_events"] = events.get("max")
                peak = _read_int(mem / "memory.peak")
                out["memory_peak_mb"] = round(peak / 2**20, 1) if peak is not None else None
        cpu = self.dirs.get("cpu")
        if cpu is not None:
            stat = _read_keyed(cpu / "cpu.stat")
            out["cpu_periods"] = stat.get("nr_periods")
            out["cpu_throttled_periods"] = stat.get("nr_throttled")
            if "throttled_time" in stat:  # v1, ns
                out["cpu_throttled_ms"] = round(stat["throttled_time"] / 1e6, 1)
            elif "throttled_usec" in stat:  # v2
                out["cpu_throttled_ms"] = round(stat["throttled_usec"] / 1e3, 1)
        return out

    def killed_by_memory_cap(self, stats: dict[str, Any], sigkilled: bool) -> bool:
        """Whether the memory cgroup ended the run: an OOM kill counted, or a SIGKILL
        while the limit was being hit (older v1 kernels count no ``oom_kill``)."""
        if "memory" not in self.dirs:
            return False
        if (stats.get("oom_kills") or 0) > 0 or stats.get("under_oom"):
            return True
        hit = (stats.get("memory_failcnt") or 0) > 0 or (stats.get("memory_max_events") or 0) > 0
        return sigkilled and hit


# --- small file helpers -------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def parse_cpulist(text: str) -> list[int]:
    """``"0-2,4"`` -> ``[0, 1, 2, 4]`` (the kernel's cpu list format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def format_cpulist(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def own_cgroup(controller: str | None, proc_cgroup: Path = Path("/proc/self/cgroup")) -> str:
    """This process's cgroup path for a v1 controller (``None``: the v2 line)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else []
        if (controller is None and not controllers) or (controller in names):
            return path or "/"
    return "/"


def quota_us(cpu_fraction: float, period_us: int | None) -> tuple[int, int]:
    """(quota, period) in µs for a fraction of CPUs.

    The default period gives a 2 ms quota (4 ms period at 50%, 8 ms at 25%): short, so
    the emulated device's sampling blocks of 10 periods (which hold the throttling of
    inferences shorter than a period, see bench_runner.run_blocks) stay short. Not
    shorter, because the kernel checks the quota at scheduler ticks (4 ms at HZ=250) and
    a 1 ms quota overshoots: measured here, 50% gave 2.75-2.9x with a 1 ms quota and
    2.0-2.4x with 2 ms (docs/emulation-speed-cap.md).

    The kernel refuses a quota under 1 ms: a given period too short for the fraction is
    lengthened to hold a 1 ms quota (raising the quota instead would grant more than
    the fraction: 1 ms per 2 ms is 50%, not the 10% asked).
    """
    if period_us is None:
        period_us = min(max(2000, math.ceil(2000 / cpu_fraction)), 1_000_000)
    elif period_us * cpu_fraction < 1000:
        period_us = min(math.ceil(1000 / cpu_fraction), 1_000_000)
    return max(1000, round(period_us * cpu_fraction)), period_us


# --- plans: which files get which values ---------------------------------------------


def plan_v1(
    caps: Caps, cpus: list[int] | None, mems: str, memsw: bool
) -> dict[str, list[tuple[str, str]]]:
    """Files to write per v1 controller, in order (cpuset needs cpus/mems before tasks;
    memsw may not go below the memory limit, so the memory limit comes first)."""
    plan: dict[str, list[tuple[str, str]]] = {}
    if cpus is not None:
        plan["cpuset"] = [("cpuset.cpus", format_cpulist(cpus)), ("cpuset.mems", mems)]
    if caps.cpu_fraction is not None:
        quota, period = quota_us(caps.cpu_fraction, caps.period_us)
        plan["cpu"] = [("cpu.cfs_period_us", str(period)), ("cpu.cfs_quota_us", str(quota))]
    if caps.memory_mb is not None:
        limit = str(caps.memory_mb * 2**20)
        plan["memory"] = [("memory.limit_in_bytes", limit)]
        if memsw:
            plan["memory"].append(("memory.memsw.limit_in_bytes", limit))
        else:
            plan["memory"].append(("memory.swappiness", "0"))
    return plan


def plan_v2(caps: Caps, cpus: list[int] | None, mems: str) -> dict[str, list[tuple[str, str]]]:
    """Files to write in the one v2 group, per controller."""
    plan: dict[str, list[tuple[str, str]]] = {}
    if cpus is not None:
        plan["cpuset"] = [("cpuset.cpus", format_cpulist(cpus)), ("cpuset.mems", mems)]
    if caps.cpu_fraction is not None:
        quota, period = quota_us(caps.cpu_fraction, caps.period_us)
        plan["cpu"] = [("cpu.max", f"{quota} {period}")]
    if caps.memory_mb is not None:
        limit = str(caps.memory_mb * 2**20)
        plan["memory"] = [("memory.max", limit), ("memory.swap.max", "0")]
    return plan


def describe(controller: str, version: int, caps: Caps, cpus: list[int] | None, memsw: bool) -> str:
    """The record's words for a cap enforced by a cgroup."""
    if controller == "cpuset":
        return f"cpuset {format_cpulist(cpus or [])}"
    if controller == "cpu":
        assert caps.cpu_fraction is not None
        quota, period = quota_us(caps.cpu_fraction, caps.period_us)
        name = "cfs_quota" if version == 1 else "cpu.max"
        return (
            f"{name} {caps.cpu_fraction * 100:g}% ({caps.cpu_fraction:g} CPU: "
            f"{quota} us per {period} us)"
        )
    if version == 1:
        extra = " + memsw" if memsw else " (no memsw: swappiness 0)"
        return f"memory.limit_in_bytes {caps.memory_mb} MB{extra}"
    return f"memory.max {caps.memory_mb} MB, memory.swap.max 0"


# --- setting up a run ----------------------------------------------------------------


class _Unavailable(Exception):
    """A controller cannot be used here; the message says why."""


def _allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _v1_controller_dir(root: Path, controller: str) -> Path:
    for name in V1_DIRS[controller]:
        mount = root / name
        if (mount / "cgroup.procs").is_file():
            own = mount / own_cgroup(controller).lstrip("/")
            # Nest under our own group, so limits set above us still hold.
            return own if (own / "cgroup.procs").is_file() else mount
    raise _Unavailable(f"no cgroup v1 '{controller}' hierarchy at {root}")


def _make_group(parent: Path, name: str) -> Path:
    """``parent/harness/name``; raises :class:`_Unavailable` when it is not a cgroup."""
    try:
        base = parent / "harness"
        base.mkdir(exist_ok=True)
        group = base / name
        group.mkdir()
    except OSError as exc:
        raise _Unavailable(
            f"cannot create a cgroup under {parent}: {exc.strerror or exc}"
        ) from None
    if not (group / "cgroup.procs").is_file():
        with contextlib.suppress(OSError):
            group.rmdir()
        raise _Unavailable(f"{parent} is not a cgroup filesystem")
    return group


def _remove_group(group: Path) -> None:
    """Kill what is left of the run in the group (only our runner's own children can
    be), then remove it and, when no other run uses it, its ``harness`` parent."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    for _ in range(50):
        try:
            group.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.02)
    else:
        log.warning("could not remove cgroup %s", group)
    with contextlib.suppress(OSError):
        group.parent.rmdir()


def _setup_v1(
    root: Path,
    name: str,
    caps: Caps,
    cpus: list[int] | None,
    record: dict[str, Any],
    dirs: dict[str, Path],
) -> set[str]:
    """Create and fill one group per v1 controller asked for; return those that hold."""
    done: set[str] = set()
    memsw = False
    mems = "0"
    wanted = []
    if cpus is not None:
        wanted.append("cpuset")
    if caps.cpu_fraction is not None:
        wanted.append("cpu")
    if caps.memory_mb is not None:
        wanted.append("memory")
    for controller in wanted:
        try:
            parent = _v1_controller_dir(root, controller)
            if controller == "memory":
                memsw = (parent / "memory.memsw.limit_in_bytes").is_file()
            if controller == "cpuset":
                mems = (parent / "cpuset.mems").read_text().strip() or "0"
                mems = mems.split(",")[0].split("-")[0]  # the first node, as a board has one
            group = _make_group(parent, name)
        except (_Unavailable, OSError) as exc:
            record["warnings"].append(f"{controller}: {exc}")
            continue
        dirs[controller] = group
        try:
            if controller == "cpuset":
                # A new v1 cpuset group starts empty; so does our ``harness`` parent.
                parent_cpus = (parent / "cpuset.cpus").read_text().strip()
                if not (group.parent / "cpuset.cpus").read_text().strip():
                    _write(group.parent / "cpuset.cpus", parent_cpus)
                    _write(
                        group.parent / "cpuset.mems", (parent / "cpuset.mems").read_text().strip()
                    )
            for fname, value in plan_v1(caps, cpus, mems, memsw)[controller]:
                _write(group / fname, value)
        except OSError as exc:
            record["warnings"].append(
                f"{controller}: cannot write its cgroup files: {exc.strerror or exc}"
            )
            _remove_group(group)
            del dirs[controller]
            continue
        done.add(controller)
        record[_CAP_OF[controller]] = describe(controller, 1, caps, cpus, memsw)
    return done


def _setup_v2(
    root: Path,
    name: str,
    caps: Caps,
    cpus: list[int] | None,
    record: dict[str, Any],
    dirs: dict[str, Path],
) -> set[str]:
    """One v2 group directly under ``<root>/harness`` (the root cgroup is exempt from the
    no-internal-processes rule, so controllers can be enabled down to it)."""
    plan = plan_v2(caps, cpus, "0")
    if not plan:
        return set()
    available = set((root / "cgroup.controllers").read_text().split())
    wanted = [c for c in plan if c in available]
    for c in plan:
        if c not in available:
            record["warnings"].append(f"{c}: controller not available in cgroup v2 at {root}")
    if not wanted:
        return set()
    try:
        enable = " ".join(f"+{c}" for c in wanted)
        _write(root / "cgroup.subtree_control", enable)
        (root / "harness").mkdir(exist_ok=True)
        _write(root / "harness" / "cgroup.subtree_control", enable)
        group = _make_group(root, name)
    except (_Unavailable, OSError) as exc:
        record["warnings"].append(f"cgroup v2: {exc}")
        return set()
    done: set[str] = set()
    for controller in wanted:
        try:
            for fname, value in plan[controller]:
                if fname == "memory.swap.max" and not (group / fname).exists():
                    continue
                _write(group / fname, value)
        except OSError as exc:
            record["warnings"].append(
                f"{controller}: cannot write its cgroup v2 files: {exc.strerror or exc}"
            )
            continue
        done.add(controller)
        dirs[controller] = group
        record[_CAP_OF[controller]] = describe(controller, 2, caps, cpus, False)
    if not done:
        _remove_group(group)
    return done


_CAP_OF = {"cpuset": "cores", "cpu": "speed", "memory": "memory"}


def detect_version(root: Path) -> int | None:
    """1 when v1 controllers are mounted under ``root``, 2 for a unified mount at
    ``root`` itself, else None (not a cgroup tree: fall back)."""
    if any((root / n / "cgroup.procs").is_file() for names in V1_DIRS.values() for n in names):
        return 1
    if (root / "cgroup.controllers").is_file():
        return 2
    return None


@contextlib.contextmanager
def sandbox(name: str, caps: Caps, cgroup_root: Path | str = "/sys/fs/cgroup") -> Iterator[Sandbox]:
    """Groups for one run (removed on exit) and the prefix that puts the runner in them.

    ``caps.cores`` is taken as the first N of the CPUs this process may use.
    """
    root = Path(cgroup_root)
    record: dict[str, Any] = {
        "method": None,
        "cores": None,
        "speed": None,
        # None: no speed cap asked for; "not_needed": the board is not slower than the
        # cores it gets here; "enforced" (a CFS quota) or "not_enforced" (no writable
        # cpu controller: the run is at full speed).
        "speed_cap": None,
        "memory": None,
        "not_enforced": [],
        "warnings": [],
    }
    allowed = _allowed_cpus()
    cpus = None
    if caps.cores is not None:
        if caps.cores > len(allowed):
            record["warnings"].append(
                f"cores: the board has {caps.cores}, this machine lets us use {len(allowed)}; "
                f"capped to {len(allowed)}"
            )
        cpus = allowed[: caps.cores]
    fraction = caps.cpu_fraction
    usable = len(cpus) if cpus is not None else len(allowed)
    if fraction is not None and fraction >= usable:
        record["speed_cap"] = "not_needed"
        record["not_enforced"].append(
            f"speed: the board is not slower than this machine ({fraction:g} CPUs of time "
            f"on {usable} cores is no cap)"
        )
        fraction = None
    caps = Caps(
        cores=caps.cores, cpu_fraction=fraction, period_us=caps.period_us, memory_mb=caps.memory_mb
    )
    version = detect_version(root)
    dirs: dict[str, Path] = {}
    done: set[str] = set()
    if version is None:
        if cpus is not None or caps.cpu_fraction is not None or caps.memory_mb is not None:
            record["warnings"].append(f"no writable cgroup tree at {root}: falling back")
    else:
        setup = _setup_v1 if version == 1 else _setup_v2
        try:
            done = setup(root, f"{name}-{os.getpid()}-{next(_COUNTER)}", caps, cpus, record, dirs)
        except OSError as exc:  # an unexpected layout: drop what was made, fall back
            record["warnings"].append(f"cgroup v{version} at {root}: {exc}")
            for group in {*dirs.values()}:
                _remove_group(group)
            dirs.clear()
            done = set()
    spec: dict[str, Any] = {"procs": [], "cpus": None, "rlimit_as": None}
    procs = {d / "cgroup.procs" for d in dirs.values()}
    spec["procs"] = sorted(str(p) for p in procs)
    memory_fallback = False
    if cpus is not None and "cpuset" not in done:
        spec["cpus"] = cpus
        record["cores"] = f"sched_setaffinity {format_cpulist(cpus)}"
    if caps.cpu_fraction is not None:
        record["speed_cap"] = "enforced" if "cpu" in done else "not_enforced"
    if caps.cpu_fraction is not None and "cpu" not in done:
        record["not_enforced"].append(
            "speed: needs a writable cgroup cpu controller (CFS quota); there is no "
            "unprivileged equivalent, so this run is at this machine's full speed"
        )
    if caps.memory_mb is not None and "memory" not in done:
        spec["rlimit_as"] = caps.memory_mb * 2**20
        memory_fallback = True
        record["memory"] = (
            f"RLIMIT_AS {caps.memory_mb} MB (address space, not RSS: stricter than the "
            "board, runtimes that reserve address space may fail below the cap)"
        )
    methods = [f"cgroup v{version}"] if done else []
    if spec["cpus"] is not None or memory_fallback:
        methods.append("fallback")
    record["method"] = " + ".join(methods) or "none"
    message = "; ".join(record["not_enforced"] + record["warnings"])
    if message and (name, message) not in _LOGGED:  # once per device, not per trial
        _LOGGED.add((name, message))
        log.warning("emulation of %s: %s", name, message)
    prefix = [sys.executable, "-c", WRAPPER, json.dumps(spec), sys.executable]
    box = Sandbox(
        prefix=prefix,
        record=record,
        version=version if done else None,
        dirs=dirs,
        memory_fallback=memory_fallback,
    )
    try:
        yield box
    finally:
        for group in {*dirs.values()}:
            _remove_group(group)
