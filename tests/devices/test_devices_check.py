"""``judge_probe``: what ``harness devices check`` makes of a board's probe.

The probes here are made up (the keys are those of ``bench_runner.probe``), so each
finding can be reached without a board that is hot, short of memory or on Python 3.7.
"""

from __future__ import annotations

import io
import json
import os
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.devices import check
from harness.devices.check import CheckReport, Finding, judge_probe
from harness.devices.config import Connection, HardwareFacts, SshProfile
from tests.site_dirs import HANG, MISSING_LIBRARY, SEGFAULT, broken_site
from tests.suite_files import FAST_MEASURE, REPO, write_suite

BOARD = SshProfile(
    name="pi",
    hardware=HardwareFacts(arch="aarch64", cores=4),
    connection=Connection(host="pi.local", user="pi", key_file="~/.ssh/id_ed25519"),
)


def healthy(**changes: Any) -> dict[str, Any]:
    """A probe of a board that can run anything, with ``changes`` applied."""
    probe: dict[str, Any] = {
        "python": "3.11.2",
        "machine": "aarch64",
        "cpu_model": "Cortex-A72",
        "cpu_count": 4,
        "governor": "performance",
        "mem_available_mb": 3000.0,
        "packages": {
            "onnxruntime": "1.17.1",
            "executorch": "0.4.0",
            "torch": None,
            "numpy": "1.26.4",
            "psutil": "5.9.8",
        },
        "workdir": "/home/pi/harness-work",
        "disk_free_mb": 20000.0,
        "temp_c": 48.0,
        "has_timeout": True,
    }
    probe.update(changes)
    return probe


def by_topic(findings: list[Finding]) -> dict[str, Finding]:
    topics = [f.topic for f in findings]
    assert len(topics) == len(set(topics)), topics  # one finding per topic
    return {f.topic: f for f in findings}


def can_run(findings: list[Finding]) -> bool:
    return CheckReport("pi", tuple(findings), None).can_run


def test_a_healthy_board_can_run_with_every_finding_ok() -> None:
    findings = judge_probe(BOARD, healthy(), ["onnxruntime", "executorch"])
    assert can_run(findings)
    assert [f for f in findings if f.level != "ok"] == []
    topics = by_topic(findings)
    assert {"python", "arch", "onnxruntime", "executorch", "disk", "memory"} <= set(topics)
    assert topics["governor"].detail == "performance"
    assert topics["temperature"].detail == "48 °C"


def test_a_governor_that_is_not_performance_is_a_warning_with_the_command() -> None:
    findings = judge_probe(BOARD, healthy(governor="powersave"), None)
    governor = by_topic(findings)["governor"]
    assert governor.level == "warn"
    assert governor.detail.startswith("powersave")
    assert "echo performance" in governor.advice and "scaling_governor" in governor.advice
    assert can_run(findings)  # numbers may drift, but it can run


def test_no_cpufreq_is_fine() -> None:
    assert by_topic(judge_probe(BOARD, healthy(governor=None), None))["governor"].level == "ok"


@pytest.mark.parametrize(("temp", "level"), [(69.9, "ok"), (70.0, "warn"), (85.0, "warn")])
def test_a_hot_board_is_a_warning(temp: float, level: str) -> None:
    finding = by_topic(judge_probe(BOARD, healthy(temp_c=temp), None))["temperature"]
    assert finding.level == level
    if level == "warn":
        assert "throttling" in finding.detail
        assert "cooldown" in finding.advice


def test_low_free_memory_is_a_warning() -> None:
    findings = judge_probe(BOARD, healthy(mem_available_mb=120.0), None)
    memory = by_topic(findings)["memory"]
    assert memory.level == "warn" and memory.detail == "120 MB available"
    assert "may not fit" in memory.advice
    assert can_run(findings)


@pytest.mark.parametrize(
    ("free_mb", "level"), [(150.0, "fail"), (199.0, "fail"), (500.0, "warn"), (1500.0, "ok")]
)
def test_low_free_disk_warns_then_fails(free_mb: float, level: str) -> None:
    findings = judge_probe(BOARD, healthy(disk_free_mb=free_mb), None)
    disk = by_topic(findings)["disk"]
    assert disk.level == level
    assert "/home/pi/harness-work" in disk.detail
    if level != "ok":
        assert "connection.workdir" in disk.advice
    assert can_run(findings) == (level != "fail")


@pytest.mark.parametrize(
    ("version", "level"),
    [("3.7.3", "fail"), ("2.7.18", "fail"), ("3.8.10", "ok"), ("3.13.0rc1", "ok")],
)
def test_python_older_than_3_8_fails(version: str, level: str) -> None:
    findings = judge_probe(BOARD, healthy(python=version), None)
    python = by_topic(findings)["python"]
    assert python.level == level
    assert version in python.detail
    if level == "fail":
        assert "3.8" in python.detail and "connection.python" in python.advice
    assert can_run(findings) == (level == "ok")


def test_a_runtime_the_suite_needs_but_the_board_lacks_fails() -> None:
    packages = {**healthy()["packages"], "executorch": None}
    probe = healthy(packages=packages)
    # Without a suite a missing runtime is only a warning: the other one can run.
    assert by_topic(judge_probe(BOARD, probe, None))["executorch"].level == "warn"
    assert can_run(judge_probe(BOARD, probe, None))
    findings = judge_probe(BOARD, probe, ["onnxruntime", "executorch"])
    executorch = by_topic(findings)["executorch"]
    assert executorch.level == "fail"
    assert "the suite uses it" in executorch.detail
    assert "pip install executorch" in executorch.advice
    assert not can_run(findings)


def test_no_runtime_at_all_fails_and_so_does_no_numpy() -> None:
    none = dict.fromkeys(healthy()["packages"])
    topics = by_topic(judge_probe(BOARD, healthy(packages=none), None))
    assert topics["runtimes"].level == "fail"
    assert topics["numpy"].level == "fail"
    assert topics["psutil"].level == "warn"


def test_a_board_without_timeout_or_with_other_cores_is_told_so() -> None:
    topics = by_topic(judge_probe(BOARD, healthy(has_timeout=False, cpu_count=8), None))
    assert topics["timeout"].level == "fail" and "coreutils" in topics["timeout"].advice
    assert topics["cores"].level == "warn" and "hardware.cores" in topics["cores"].advice


def test_devices_check_exits_1_when_the_suite_needs_a_missing_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local device, with this machine's probe replaced by one without executorch.
    packages = {**healthy()["packages"], "executorch": None}
    probe = healthy(packages=packages, machine="x86_64")

    def fake_probe(findings: list[Finding]) -> dict[str, Any]:
        findings.append(Finding("ok", "reachable", "this machine"))
        return probe

    monkeypatch.setattr(check, "_probe_here", fake_probe)
    suite = write_suite(
        tmp_path,
        """
        name = "needs-executorch"
        runtimes = ["executorch"]
        devices = ["local"]
        [[models]]
        name = "tiny"
        factory = "tinymodel:make"
        [variants]
        fp32 = []
        """
        + FAST_MEASURE,
    )
    devices = str(REPO / "devices")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["devices", "check", "local", "--dir", devices, "--suite", str(suite)])
    assert code == 1
    assert "executorch: not installed; the suite uses it" in out.getvalue()
    assert "cannot run" in out.getvalue()

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["devices", "check", "local", "--dir", devices, "--format", "json"])
    assert code == 0  # without the suite, onnxruntime is enough
    assert json.loads(out.getvalue())["can_run"] is True


def test_a_probe_that_is_not_json_is_a_finding_not_a_traceback() -> None:
    findings: list[Finding] = []
    assert check._probe_json("Welcome to the board!\n{", findings) is None
    assert check._probe_json("[1, 2]", findings) is None
    assert [f.level for f in findings] == ["fail", "fail"]
    assert "not JSON" in findings[0].detail and "Welcome" in findings[0].detail
    assert "not an object" in findings[1].detail
    assert check._probe_json(json.dumps(healthy()), []) == healthy()


# --- the runtimes' imports --------------------------------------------------------


def broken(name: str, error: str) -> dict[str, Any]:
    """A healthy probe in which ``name``'s import failed with ``error``."""
    imports = {
        n: {"ok": True, "seconds": 0.25, "error": None} for n in ("onnxruntime", "executorch")
    }
    imports["numpy"] = {"ok": True, "seconds": 0.05, "error": None}
    imports[name] = {"ok": False, "seconds": None, "error": error, "traceback": "..."}
    return healthy(imports=imports, executable="/usr/bin/python3")


def test_a_runtime_that_is_installed_but_does_not_import_fails_a_suite_that_needs_it() -> None:
    probe = broken("onnxruntime", "ImportError: libonnxruntime.so.1: cannot open shared object")
    finding = by_topic(judge_probe(BOARD, probe, ["onnxruntime"]))["onnxruntime"]
    assert finding.level == "fail"
    assert finding.detail == (
        "onnxruntime 1.17.1 is installed but does not import: ImportError: "
        "libonnxruntime.so.1: cannot open shared object; the suite uses it"
    )
    assert "/usr/bin/python3 -c 'import onnxruntime'" in finding.advice
    assert "pip install --force-reinstall onnxruntime" in finding.advice
    # A suite that does not use it can run; the broken install is still told.
    findings = judge_probe(BOARD, probe, ["executorch"])
    assert by_topic(findings)["onnxruntime"].level == "warn" and can_run(findings)
    assert by_topic(findings)["executorch"].detail == "executorch 0.4.0, imports in 0.25 s"


def test_no_runtime_that_imports_fails_and_a_numpy_that_does_not_import_fails() -> None:
    probe = broken("onnxruntime", "ImportError: boom")
    probe["imports"]["executorch"] = {"ok": False, "error": "RuntimeError: bad wheel"}
    topics = by_topic(judge_probe(BOARD, probe, None))
    assert topics["onnxruntime"].level == topics["executorch"].level == "warn"
    assert topics["executorch"].advice.count("import executorch.runtime") == 1
    assert topics["runtimes"].level == "fail"
    assert "no runtime imports" in topics["runtimes"].detail

    numpy = by_topic(judge_probe(BOARD, broken("numpy", "ImportError: numpy.core"), None))
    assert numpy["numpy"].level == "fail"
    assert numpy["numpy"].detail.startswith("numpy 1.26.4 is installed but does not import")


def test_an_import_without_metadata_is_ok_and_a_missing_module_is_not_installed() -> None:
    packages = {**healthy()["packages"], "executorch": None, "onnxruntime": None}
    probe = broken("executorch", "ModuleNotFoundError: No module named 'executorch'")
    probe["packages"] = packages
    topics = by_topic(judge_probe(BOARD, probe, ["executorch"]))
    assert topics["onnxruntime"].level == "ok"
    assert "no package metadata" in topics["onnxruntime"].detail
    assert topics["executorch"].level == "fail"
    assert topics["executorch"].detail == "not installed; the suite uses it"


def test_probe_import_reports_a_crash_and_a_hang_and_times_the_good_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.runner import bench_runner

    for package, init in (("onnxruntime", SEGFAULT), ("executorch", HANG)):
        broken_site(tmp_path, package, init)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    crashed = bench_runner.probe_import("onnxruntime")
    assert crashed["ok"] is False
    assert crashed["error"].startswith("the import killed Python (SIGSEGV)")
    started = time.monotonic()
    hung = bench_runner.probe_import("executorch", timeout_s=2)
    assert hung == {
        "ok": False,
        "seconds": None,
        "error": "the import did not finish within 2 s",
        "traceback": "",
    }
    assert time.monotonic() - started < 30  # killed at its deadline, not left to sleep
    numpy = bench_runner.probe_import("numpy")
    assert numpy["ok"] is True and numpy["error"] is None and 0 < numpy["seconds"] < 30


def test_devices_check_imports_the_runtime_and_names_the_broken_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real probe on this machine, with an onnxruntime on PYTHONPATH whose metadata
    says 9.9.9 and whose import fails the way a wheel without its library does."""
    site = broken_site(tmp_path / "site", "onnxruntime", MISSING_LIBRARY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    suite = write_suite(
        tmp_path,
        """
        name = "needs-onnxruntime"
        runtimes = ["onnxruntime"]
        devices = ["local"]
        [[models]]
        name = "tiny"
        factory = "tinymodel:make"
        [variants]
        fp32 = []
        """
        + FAST_MEASURE,
    )
    devices = str(REPO / "devices")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["devices", "check", "local", "--dir", devices, "--suite", str(suite)])
    text = out.getvalue()
    assert code == 1, text
    assert (
        "onnxruntime: onnxruntime 9.9.9 is installed but does not import: ImportError: "
        "libonnxruntime.so.1.17.1: cannot open shared object file"
    ) in " ".join(text.split())
    assert "--force-reinstall onnxruntime" in text and "cannot run" in text

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["devices", "check", "local", "--dir", devices, "--format", "json"])
    report = json.loads(out.getvalue())
    assert code == 0, report  # executorch imports, so without a suite it can run
    topics = {f["topic"]: f for f in report["findings"]}
    assert topics["onnxruntime"]["level"] == "warn"
    assert topics["executorch"]["level"] == "ok" and "imports in" in topics["executorch"]["detail"]
    imported = report["probe"]["imports"]["onnxruntime"]
    assert imported["ok"] is False and str(site / "onnxruntime") in imported["traceback"]
    assert report["probe"]["packages"]["onnxruntime"] == "9.9.9"
