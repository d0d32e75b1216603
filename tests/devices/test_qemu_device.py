"""The aarch64-qemu device: its profile, the root's setup, and an int8 cell run in it.

The slow tests build the arm64 Debian root for real (debootstrap, the aarch64 wheels
from PyPI, qemu-user) once per session under ``.cache/`` of the checkout, so a fresh
clone (CI) builds it cold and a developer's re-run finds it warm; they skip, with the
reason, where debootstrap or qemu-user-static is missing or the tests are not root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from harness.devices import open_device
from harness.devices.check import check_device
from harness.devices.config import load_profile
from harness.devices.qemu import QEMU_VALIDITY, QemuDevice
from harness.devices.qemu_root import (
    SetupError,
    apt_sources,
    cpuinfo_text,
    debian_mirror,
    hwcap_features,
    layout_of,
    root_status,
    setup_root,
)
from harness.errors import ConfigError, RunnerError
from harness.export.ort_quant import choose_static_format
from harness.recipes.base import QuantRequest
from harness.results.store import ResultsStore
from tests.suite_files import FAST_MEASURE, REPO

PROFILE = REPO / "devices" / "aarch64-qemu.toml"
HOST_ORT = metadata.version("onnxruntime")


def _write_profile(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(textwrap.dedent(body))
    return path


# --- the profile and its target ------------------------------------------------------------


def test_shipped_profile_targets_the_pi5_cpu_so_int8_is_s8s8() -> None:
    profile = load_profile(PROFILE)
    assert profile.kind == "aarch64-qemu"
    assert profile.qemu is not None and profile.qemu.cpu == "cortex-a76"
    target = profile.target()
    assert target.arch == "aarch64" and target.is_arm
    assert {"asimddp", "asimdhp"} <= target.cpu_features  # copied from pi5.toml
    assert profile.power is not None  # so is the power model
    assert profile.emulation is None  # but not the caps: qemu is not a cap
    fmt = choose_static_format(QuantRequest(mode="static"), target)
    assert fmt.label.startswith("QDQ S8S8")
    assert isinstance(open_device(profile), QemuDevice)


def test_qemu_table_on_another_kind_and_a_wrong_arch_are_refused(tmp_path: Path) -> None:
    path = _write_profile(tmp_path, "here", 'kind = "local"\n[qemu]\ncpu = "cortex-a72"\n')
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert err.value.key == "qemu" and "aarch64-qemu" in str(err.value)
    path = _write_profile(tmp_path, "x86", 'kind = "aarch64-qemu"\n[hardware]\narch = "x86_64"\n')
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert err.value.key == "hardware.arch"


# --- what setup reads from this machine -------------------------------------------------------


def test_the_mirror_is_apts_debian_release_entry(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "# deb http://old.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://vendor.invalid/repo nodistro main\n"
    )
    (etc / "sources.list.d" / "debian.sources").write_text(
        textwrap.dedent(
            """\
            Types: deb
            URIs: http://security.invalid/debian-security
            Suites: bookworm-security
            Components: main

            Types: deb
            URIs: http://off.invalid/debian
            Suites: bookworm
            Components: main
            Enabled: no

            Types: deb deb-src
            # a comment inside the stanza
            URIs: http://mirror.invalid/debian
            Suites: bookworm bookworm-updates
            Components: main contrib
            """
        )
    )
    (etc / "sources.list.d" / "ignored.sources.disabled").write_text(
        "Types: deb\nURIs: http://disabled.invalid/debian\nSuites: bookworm\nComponents: main\n"
    )
    uris = [s.uri for s in apt_sources(etc)]
    assert "http://old.invalid/debian" not in uris and "http://off.invalid/debian" not in uris
    assert "http://disabled.invalid/debian" not in uris
    settings = load_profile(PROFILE).qemu
    assert settings is not None
    assert debian_mirror(settings, etc) == "http://mirror.invalid/debian"
    chosen = settings.model_copy(update={"mirror": "http://own.invalid/debian"})
    assert debian_mirror(chosen, etc) == "http://own.invalid/debian"


def test_no_debian_entry_says_what_was_found_and_the_key_to_set(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    etc.mkdir()
    (etc / "sources.list").write_text("deb http://vendor.invalid/repo nodistro main\n")
    settings = load_profile(PROFILE).qemu
    assert settings is not None
    with pytest.raises(SetupError, match=r"qemu\.mirror") as err:
        debian_mirror(settings, etc)
    assert "vendor.invalid" in str(err.value)


def test_cpuinfo_is_made_from_the_emulated_cpus_hwcaps() -> None:
    # AT_HWCAP that qemu 7.2 gives -cpu cortex-a76 (read from /proc/self/auxv under it).
    features = hwcap_features(0x119FFB, 0)
    assert {"fp", "asimd", "asimddp", "asimdhp", "fphp", "lrcpc", "dcpop"} <= set(features)
    assert not {"sve", "i8mm", "evtstrm"} & set(features)
    assert "i8mm" in hwcap_features(0, 1 << 13)
    text = cpuinfo_text("cortex-a76", features, processors=3)
    assert text.count("processor\t:") == 3
    assert "CPU part\t: 0xd0b" in text and "CPU implementer\t: 0x41" in text
    assert text.rstrip().endswith("qemu-aarch64 -cpu cortex-a76")


# --- a device whose root is not there ---------------------------------------------------------


def test_a_missing_root_fails_the_cell_with_the_setup_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("qemu-aarch64-static") is None and shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-user-static is not installed (apt-get install qemu-user-static)")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    profile = load_profile(PROFILE)
    status = root_status(profile)
    assert not status.ready and str(tmp_path / "cache" / "aarch64-qemu") in status.problem
    job = {"runtime": "onnxruntime", "threads": 1}
    with pytest.raises(RunnerError) as err:
        QemuDevice(profile).run(job, tmp_path / "m.onnx", None, timeout_s=30)
    assert err.value.kind == "device_unavailable"
    assert "harness devices setup aarch64-qemu" in str(err.value)


def test_a_root_set_up_for_another_cpu_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    profile = load_profile(PROFILE)
    lay = layout_of(profile)
    lay.state.mkdir(parents=True)
    lay.python.parent.mkdir(parents=True)
    lay.python.symlink_to("python3.11")
    (lay.python.parent / "python3.11").write_text("")
    facts = {"cpu": "cortex-a72", "processors": 1, "versions": {}, "runtimes": ["onnxruntime"]}
    lay.stamp("check").write_text(json.dumps({"key": {}, "facts": facts}))
    status = root_status(profile)
    assert not status.ready and "'cortex-a72'" in status.problem


def test_devices_check_without_a_root_says_to_set_it_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    report = check_device(load_profile(PROFILE))
    assert not report.can_run
    (root,) = [f for f in report.findings if f.topic == "root"]
    assert root.level == "fail" and root.advice.startswith("harness devices setup aarch64-qemu")


def test_setup_refuses_a_profile_of_another_kind() -> None:
    with pytest.raises(SetupError, match="only aarch64-qemu"):
        setup_root(load_profile(REPO / "devices" / "local.toml"))


# --- slow: the real root and an int8 cell in it ----------------------------------------------


def _cannot_build() -> str | None:
    if sys.platform != "linux":
        return "the arm64 root is built on Linux"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    if shutil.which("qemu-aarch64-static") is None:
        return "qemu-user-static is not installed (apt-get install qemu-user-static)"
    if os.geteuid() != 0:
        return "debootstrap needs root to build the arm64 root"
    return None


needs_root_build = pytest.mark.skipif(_cannot_build() is not None, reason=str(_cannot_build()))


@pytest.fixture(scope="session")
def qemu_cache() -> Iterator[Path]:
    """The root, built (or found) under .cache/ of this checkout, once per session."""
    cache = REPO / ".cache" / "harness-test"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE_DIR", str(cache))
        lines: list[str] = []
        report = setup_root(load_profile(PROFILE), on_progress=lines.append)
        print("\n".join(lines), f"\nsetup: {report.seconds:.0f} s, {report.size_mb:.0f} MB")
        yield cache


@pytest.mark.slow
@needs_root_build
def test_setup_again_reuses_every_step_and_resumes_at_one_whose_stamp_is_gone(
    qemu_cache: Path,
) -> None:
    profile = load_profile(PROFILE)
    lay = layout_of(profile)
    assert lay.base == qemu_cache / "aarch64-qemu"
    warm = setup_root(profile, on_progress=lambda _: None)
    assert warm.ran == () and "debootstrap" in warm.reused and "check" in warm.reused
    # As if setup had been interrupted while unpacking: that step runs again (from the
    # download cache: the root keeps no .deb files) and so does every step after it.
    lay.stamp("unpack").unlink()
    lay.stamp("check").unlink()
    assert not root_status(profile).ready
    assert not list((lay.root / "var/cache/apt/archives").glob("*.deb"))
    resumed = setup_root(profile, on_progress=lambda _: None)
    assert resumed.ran == ("unpack", "cpu", "onnxruntime", "bytecode", "check")
    assert resumed.reused == ("debootstrap",)
    status = root_status(profile)
    assert status.ready and status.runtimes == {"onnxruntime": HOST_ORT}
    assert (lay.root / "proc" / "cpuinfo").read_text().count("asimddp") >= 1


@pytest.mark.slow
@needs_root_build
def test_devices_check_probes_the_runner_under_qemu(
    qemu_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(qemu_cache))
    report = check_device(load_profile(PROFILE), ["onnxruntime"])
    assert report.can_run, report.findings
    assert report.probe is not None and report.probe["machine"] == "aarch64"
    assert report.probe["packages"]["onnxruntime"] == HOST_ORT
    findings = {f.topic: f for f in report.findings}
    assert findings["timing"].level == "warn"
    assert "--executorch" in findings["executorch"].advice


@pytest.mark.slow
@needs_root_build
def test_an_int8_cell_runs_in_the_arm64_root_with_its_fidelity(
    qemu_cache: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(
        textwrap.dedent(
            f"""
            name = "qemu-int8"
            runtimes = ["onnxruntime"]
            devices = ["aarch64-qemu"]
            recipe_dirs = ["{REPO / "recipes"}"]
            device_dirs = ["{REPO / "devices"}"]

            [[models]]
            name = "digits-cnn"
            zoo = "digits-cnn"

            [variants]
            int8 = ["int8-static"]
            """
        )
        + textwrap.dedent(FAST_MEASURE).replace("timeout_seconds = 120", "timeout_seconds = 600")
        + "trials = 1\n"
    )
    results = tmp_path / "results"
    env = {**os.environ, "HARNESS_CACHE_DIR": str(qemu_cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "INVALID" in proc.stdout and QEMU_VALIDITY in proc.stdout  # latency not shown as ok
    with ResultsStore(results / "harness.db") as store:
        (run,) = store.runs()
        (cell,) = store.cells(run.id)
    r = cell.result
    assert cell.status == "ok", cell.reason
    assert cell.device == "aarch64-qemu" and not cell.emulated
    assert r["env"]["machine"] == "aarch64"  # the runner really ran in the arm64 root
    assert r["env"]["cpu_model"] == "qemu-aarch64 -cpu cortex-a76"
    assert "asimddp" in r["env"]["cpu_flags"]
    assert r["export_notes"]["quant_format"].startswith("QDQ S8S8")  # built for ARM
    assert r["runtime_version"] == HOST_ORT  # the root has the version the host exports with
    assert r["timing"] == "not meaningful under qemu"
    assert QEMU_VALIDITY in r["validity"]
    assert r["power_source"] == "none" and r["energy_mj"] is None
    # Fidelity against the fp32 reference, from the arm64 build's own outputs.
    assert r["agreement"] >= 0.95, r["agreement"]
    assert r["accuracy"] >= 0.9, r["accuracy"]
    assert r["cosine"] > 0.99, r["cosine"]
    if r.get("snr_db") is not None:  # scoring's SNR, where it is computed
        assert r["snr_db"] > 15.0, r["snr_db"]
    print(
        "aarch64-qemu int8 cell:",
        {k: r.get(k) for k in ("agreement", "accuracy", "cosine", "snr_db", "timing")},
    )
