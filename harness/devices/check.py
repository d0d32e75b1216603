"""``harness devices check``: can this device run a suite, and if not, what to do.

The board is asked by the runner itself (``bench_runner.py --probe``), pushed the same
way a benchmark pushes it, so a check that passes means the real path works: the
connection, the host key, the login, the SFTP cache, the remote Python and the runtimes.
Each finding is ``ok``, ``warn`` (numbers may suffer) or ``fail`` (the suite cannot run).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.devices.config import (
    DeviceProfile,
    EmulatedProfile,
    LocalProfile,
    QemuProfile,
    SshProfile,
)
from harness.errors import RunnerError
from harness.export.registry import RUNTIMES, RuntimeSpec
from harness.runner import RUNNER_PATH
from harness.runner.bench_runner import (
    PROBE_IMPORT_TIMEOUT_S,
    PROBED_IMPORTS,
    PYTHON_COMMAND_ENV,
)

if TYPE_CHECKING:  # paramiko is imported only when a board is checked
    from harness.devices.ssh import SshDevice

Level = Literal["ok", "warn", "fail"]

_MIN_PYTHON = (3, 8)
_DISK_FAIL_MB = 200
_DISK_WARN_MB = 1000
_MEMORY_WARN_MB = 256
_HOT_C = 70.0
# The probe imports each runtime in turn, each under its own deadline.
_PROBE_TIMEOUT_S = 60 + len(PROBED_IMPORTS) * PROBE_IMPORT_TIMEOUT_S


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    detail: str
    advice: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "level": self.level,
            "topic": self.topic,
            "detail": self.detail,
            "advice": self.advice,
        }


@dataclass(frozen=True)
class CheckReport:
    device: str
    findings: tuple[Finding, ...]
    probe: dict[str, Any] | None

    @property
    def can_run(self) -> bool:
        return not any(f.level == "fail" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "can_run": self.can_run,
            "findings": [f.to_dict() for f in self.findings],
            "probe": self.probe,
        }


def check_device(profile: DeviceProfile, runtimes: list[str] | None = None) -> CheckReport:
    """Probe the device; ``runtimes`` (a suite's) must all be installed, else one is."""
    findings: list[Finding] = []
    probe = probe_for(profile)(profile, findings)
    if probe is not None:
        findings.extend(judge_probe(profile, probe, runtimes))
    return CheckReport(profile.name, tuple(findings), probe)


Probe = Callable[[DeviceProfile, list[Finding]], dict[str, Any] | None]


def probe_for(profile: DeviceProfile) -> Probe:
    """How the profile's kind is probed (:data:`PROBES`, by its class or the nearest
    base class listed)."""
    for cls in type(profile).__mro__:
        if cls in PROBES:
            return PROBES[cls]
    raise TypeError(f"{type(profile).__name__} is no DeviceProfile")


def _probe_this_machine(profile: DeviceProfile, findings: list[Finding]) -> dict[str, Any] | None:
    """The runner's probe run here (an emulated device is probed without its caps)."""
    return _probe_here(findings)


def _probe_here(
    findings: list[Finding], prefix: list[str] | None = None, where: str = "this machine"
) -> dict[str, Any] | None:
    workdir = str(Path.cwd())
    # Under qemu, Python's start-up and each import are emulated too.
    timeout_s = _PROBE_TIMEOUT_S * (3 if prefix else 1)
    env = dict(os.environ)
    if prefix:  # the probe's import checks start their Pythons the same way
        env[PYTHON_COMMAND_ENV] = json.dumps(prefix)
    try:
        proc = subprocess.run(
            [*(prefix or [sys.executable]), str(RUNNER_PATH), "--probe", workdir],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        findings.append(
            Finding("fail", "runner", f"the runner's probe did not finish in {timeout_s} s")
        )
        return None
    if proc.returncode != 0:
        findings.append(
            Finding("fail", "runner", f"the runner's probe failed: {proc.stderr.strip()[-500:]}")
        )
        return None
    findings.append(Finding("ok", "reachable", where))
    return _probe_json(proc.stdout, findings)


def _probe_qemu(profile: DeviceProfile, findings: list[Finding]) -> dict[str, Any] | None:
    """The runner's probe run the way a cell runs it: the root's Python under qemu."""
    from harness.devices.qemu_root import SetupError, root_status, runner_prefix, settings_of

    status = root_status(profile)
    if not status.ready:
        findings.append(
            Finding(
                "fail",
                "root",
                status.problem,
                f"harness devices setup {profile.name} (as root, once; a few minutes)",
            )
        )
        return None
    try:
        prefix = runner_prefix(profile)
    except SetupError as exc:
        findings.append(Finding("fail", "qemu", str(exc)))
        return None
    cpu = settings_of(profile).cpu
    findings.append(Finding("ok", "root", f"{status.layout.root}, emulating a {cpu}"))
    findings.append(
        Finding("warn", "timing", "not meaningful under qemu: cells report outputs, not speed")
    )
    return _probe_here(findings, prefix, f"qemu-aarch64 ({prefix[0]})")


def _probe_json(text: str, findings: list[Finding]) -> dict[str, Any] | None:
    """The probe's JSON, or None with a finding that says what came back instead
    (e.g. a shell profile on the board that prints a banner into every command)."""
    try:
        probe = json.loads(text)
    except ValueError as exc:
        probe, why = None, f"not JSON ({exc})"
    else:
        why = f"a JSON {type(probe).__name__}, not an object"
    if isinstance(probe, dict):
        return probe
    findings.append(
        Finding(
            "fail",
            "runner",
            f"the runner's probe printed {why}: {text.strip()[:300]!r}",
            "run the probe by hand (`python3 bench_runner.py --probe DIR`) and see what "
            "else prints to stdout (a shell profile, a sitecustomize)",
        )
    )
    return None


def _probe_ssh(profile: DeviceProfile, findings: list[Finding]) -> dict[str, Any] | None:
    import paramiko

    from harness.devices.ssh import SshDevice

    device = SshDevice(profile)
    conn = profile.connection
    assert conn is not None
    try:
        try:
            target = device.target
            session = device.session()
        except RunnerError as exc:
            findings.append(Finding("fail", _TOPIC.get(exc.kind, "reachable"), str(exc)))
            return None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            # Refused, unreachable, or something that is not an sshd on that port.
            findings.append(
                Finding(
                    "fail",
                    "reachable",
                    f"cannot reach {target.host}:{target.port}: {type(exc).__name__}: {exc}",
                    f"check the board is on and on the network, and connection.host/port in "
                    f"its profile; `ssh -p {target.port} {target.user}@{target.host}` "
                    "should log in",
                )
            )
            return None
        findings.append(Finding("ok", "reachable", f"logged in as {target.where}"))
        findings.append(Finding("ok", "host key", f"matches {target.known_hosts}"))
        try:
            return _probe_session(device, conn.python, session.workdir, findings)
        except (RunnerError, OSError, EOFError, paramiko.SSHException) as exc:
            # The connection dropped, or the SFTP cache could not be written, mid-probe.
            findings.append(
                Finding(
                    "fail",
                    "runner",
                    f"the probe failed on the board: {type(exc).__name__}: {exc}",
                    f"check free space and permissions under connection.workdir "
                    f"({conn.workdir}), then run the check again",
                )
            )
            return None
    finally:
        device.close()


def _probe_session(
    device: SshDevice, python_path: str, workdir: str, findings: list[Finding]
) -> dict[str, Any] | None:
    from harness.devices.ssh import DeployStats

    python = shlex.quote(python_path)
    version = device.execute(
        f"{python} -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'"
    )
    if version.exit_status != 0:
        findings.append(
            Finding(
                "fail",
                "python",
                f"{python_path!r} does not run on the board: {version.stderr.strip()[-300:]}",
                "install Python 3.8+ or point connection.python at it",
            )
        )
        return None
    found = _version_tuple(version.stdout.strip())
    if found is None or found < _MIN_PYTHON:
        findings.append(_old_python(f"{python_path} is {version.stdout.strip()!r}"))
        return None
    runner = device.push(RUNNER_PATH, DeployStats())
    probe = device.execute(
        f"{python} {shlex.quote(runner)} --probe {shlex.quote(workdir)}",
        timeout_s=_PROBE_TIMEOUT_S,
    )
    if probe.exit_status != 0:
        findings.append(
            Finding(
                "fail",
                "runner",
                f"the runner's probe failed: {probe.stderr[-500:]}",
                "run it by hand on the board to see why: "
                f"`{python_path} {runner} --probe {workdir}`",
            )
        )
        return None
    return _probe_json(probe.stdout, findings)


# How each kind's device is probed; a kind of its own that is not listed gets its
# nearest listed base class's probe (this machine's for a DeviceProfile).
PROBES: dict[type[DeviceProfile], Probe] = {
    DeviceProfile: _probe_this_machine,
    LocalProfile: _probe_this_machine,
    EmulatedProfile: _probe_this_machine,
    SshProfile: _probe_ssh,
    QemuProfile: _probe_qemu,
}


def _old_python(what: str) -> Finding:
    return Finding(
        "fail",
        "python",
        f"{what}; the runner needs 3.8+",
        "install a newer Python and set connection.python to it",
    )


def _version_tuple(text: str) -> tuple[int, int] | None:
    """``"3.8.10"`` -> ``(3, 8)`` (``"3.13.0rc1"`` too); None when it is no version."""
    match = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


_TOPIC = {
    "host_key_unknown": "host key",
    "host_key_changed": "host key",
    "auth_failed": "login",
    "device_unavailable": "reachable",
}


def judge_probe(
    profile: DeviceProfile, probe: dict[str, Any], runtimes: list[str] | None
) -> list[Finding]:
    """Findings from the probe's facts (pure: tested with made-up probes too)."""
    out: list[Finding] = []
    python = str(probe.get("python"))
    found = _version_tuple(python)
    if found is not None and found < _MIN_PYTHON:
        out.append(_old_python(f"Python {python}"))
    else:
        out.append(Finding("ok", "python", f"Python {python}"))
    # Only a board's probe runs on the CPU its hardware facts describe.
    on_board = profile.is_remote_board
    arch, expected = probe.get("machine"), profile.hardware.arch
    if on_board and expected and arch != expected:
        out.append(
            Finding(
                "fail",
                "arch",
                f"the board is {arch}, its profile says {expected}: artifacts would be "
                "built for the wrong CPU",
                f'set hardware.arch = "{arch}" in the profile',
            )
        )
    else:
        out.append(Finding("ok", "arch", f"{arch}, {probe.get('cpu_model')}"))
    cores = profile.hardware.cores
    if on_board and cores and probe.get("cpu_count") not in (None, cores):
        out.append(
            Finding(
                "warn",
                "cores",
                f"{probe.get('cpu_count')} cores, the profile says {cores}",
                "fix hardware.cores in the profile",
            )
        )
    packages = probe.get("packages") or {}
    specs = list(RUNTIMES.values())
    install = {spec.name: spec.install_hint for spec in specs}
    if isinstance(profile, QemuProfile):  # its runtimes come with its root
        install = {
            **install,
            "onnxruntime": f"harness devices setup {profile.name} --rebuild",
            "executorch": f"harness devices setup {profile.name} --executorch (about 2.7 GB)",
        }
    imports = probe.get("imports")  # None from a probe that only read the metadata
    executable = str(probe.get("executable") or _python_of(profile))
    wanted = runtimes or []
    usable: dict[str, bool] = {}
    for spec in specs:
        finding = _package_finding(
            spec.name, packages, imports, executable, spec.name in wanted, install, spec
        )
        out.append(finding)
        usable[spec.name] = finding.level == "ok" and not finding.detail.startswith("not ")
    if not wanted and not any(usable.values()):
        installed = [s.name for s in specs if packages.get(s.packages[0])]
        out.append(
            Finding(
                "fail",
                "runtimes",
                (
                    f"no runtime imports ({' and '.join(installed)} installed but broken, "
                    "see above): nothing can run"
                    if installed
                    else f"no runtime is installed ({', '.join(s.name for s in specs)}): "
                    "nothing can run"
                ),
                install["onnxruntime"],
            )
        )
    out.append(_package_finding("numpy", packages, imports, executable, True))
    if not packages.get("psutil"):
        out.append(
            Finding(
                "warn",
                "psutil",
                "psutil is not installed: CPU use (for modelled power) is read from /proc",
                "pip install psutil",
            )
        )
    if on_board and not probe.get("has_timeout"):
        out.append(
            Finding(
                "fail",
                "timeout",
                "no `timeout` command: a hung run could not be stopped on the board",
                "install coreutils (or busybox)",
            )
        )
    out.extend(_resources(probe))
    return out


def _python_of(profile: DeviceProfile) -> str:
    return profile.connection.python if profile.connection is not None else "python3"


def _package_finding(
    name: str,
    packages: dict[str, Any],
    imports: dict[str, Any] | None,
    python: str,
    needed: bool,
    installs: dict[str, str] | None = None,
    spec: RuntimeSpec | None = None,
) -> Finding:
    """One package: installed (its metadata) and loadable (the probe's import of it).

    Metadata without a working import is a broken install (a wheel for another CPU or
    Python, a missing shared library, a numpy it was not built against): a ``fail`` when
    the suite needs the package, a ``warn`` otherwise. ``name`` is a runtime's (its
    ``spec`` says which package and module it is) or a plain package's.
    """
    package = spec.packages[0] if spec is not None else name
    module = spec.import_name if spec is not None else name
    version = packages.get(package)
    install = (installs or {}).get(name, f"pip install {package}")
    imported = (imports or {}).get(name)
    if imported is not None and imported.get("ok"):
        seconds = imported.get("seconds")
        took = f", imports in {seconds:.2f} s" if isinstance(seconds, int | float) else ""
        if version:
            return Finding("ok", name, f"{name} {version}{took}")
        return Finding("ok", name, f"{name} imports (no package metadata, version unknown){took}")
    error = _last_line(str((imported or {}).get("error") or ""))
    missing = imported is None or (
        error.startswith("ModuleNotFoundError")
        and any(f"'{m}'" in error or f"'{m}." in error for m in {name, module.split(".")[0]})
    )
    if not version and missing:
        # Not there at all (or a probe that only read the metadata, which says so).
        if name == "numpy":
            return Finding("fail", name, "numpy is not installed", install)
        if needed:
            return Finding("fail", name, "not installed; the suite uses it", install)
        if spec is not None and spec.optional:
            return Finding("ok", name, "not installed (an optional runtime)", install)
        return Finding("warn", name, "not installed", install)
    if imported is None:  # installed, and the probe did not try the import
        return Finding("ok", name, f"{name} {version}")
    what = f"{name} {version} is installed but" if version else name
    detail = f"{what} does not import: {error or 'the import failed'}"
    if needed and name != "numpy":
        detail += "; the suite uses it"
    advice = (
        f"see the whole error with `{python} -c 'import {module}'` on "
        f"the device; reinstall it for that Python and CPU (`{python} -m pip install "
        f"--force-reinstall {package}`)"
    )
    return Finding("fail" if needed else "warn", name, detail, advice)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


def _resources(probe: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    disk = probe.get("disk_free_mb")
    where = probe.get("workdir")
    if disk is not None:
        level: Level = "ok"
        if disk < _DISK_FAIL_MB:
            level = "fail"
        elif disk < _DISK_WARN_MB:
            level = "warn"
        out.append(
            Finding(
                level,
                "disk",
                f"{disk:.0f} MB free under {where}",
                "" if level == "ok" else "free space, or point connection.workdir elsewhere",
            )
        )
    memory = probe.get("mem_available_mb")
    if memory is not None:
        low = memory < _MEMORY_WARN_MB
        out.append(
            Finding(
                "warn" if low else "ok",
                "memory",
                f"{memory:.0f} MB available",
                "stop other programs on the board: large variants may not fit" if low else "",
            )
        )
    governor = probe.get("governor")
    if governor is None:
        out.append(Finding("ok", "governor", "not exposed (no cpufreq)"))
    elif governor != "performance":
        out.append(
            Finding(
                "warn",
                "governor",
                f"{governor}: clocks change under load, so latency drifts",
                "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
            )
        )
    else:
        out.append(Finding("ok", "governor", governor))
    temp = probe.get("temp_c")
    if temp is None:
        out.append(Finding("ok", "temperature", "no thermal zone exposed"))
    elif temp >= _HOT_C:
        out.append(
            Finding(
                "warn",
                "temperature",
                f"{temp:.0f} °C: near throttling",
                "let it cool, add a heatsink or fan, or set measure.cooldown in the suite",
            )
        )
    else:
        out.append(Finding("ok", "temperature", f"{temp:.0f} °C"))
    return out
