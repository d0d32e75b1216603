"""Emulated devices: caps through real cgroups (as root), and the fallback without them.

Tests that need writable cgroups skip with the reason when they are not. The fallback
tests point the cgroup root at a directory that is not a cgroup tree, or at a cgroup
tree mounted read-only (a bind of the real v1 hierarchies, a v2-shaped tmpfs), which
takes the "there but not writable" branches.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.devices import cgroups, open_device
from harness.devices.base import job_for
from harness.devices.config import (
    EmulatedProfile,
    EmulationCaps,
    PowerModel,
    PrecisionSpeed,
    load_profile,
)
from harness.devices.emulated import EmulatedDevice, host_loaded
from harness.errors import ConfigError, RunnerError
from harness.export.precision import precision_of
from harness.runner.job import MeasureSettings, make_job
from tests.onnx_models import big_model, matmul_model
from tests.suite_files import FAST_MEASURE, FIXTURES, REPO, write_suite

HOST_LOAD = FIXTURES / "host-load"

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroups_writable() -> str | None:
    """None when this machine can hold a run in cgroups; else why not."""
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    if cgroups.detect_version(CGROUP_ROOT) is None:
        return f"no cgroup tree at {CGROUP_ROOT}"
    caps = cgroups.Caps(cores=1, cpu_fraction=0.5, memory_mb=256)
    with cgroups.sandbox("probe", caps, CGROUP_ROOT) as box:
        if set(box.dirs) != {"cpuset", "cpu", "memory"}:
            return "cgroups not writable here: " + "; ".join(box.record["warnings"])
    return None


WHY_NOT = _cgroups_writable()
needs_cgroups = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))


@pytest.fixture
def readonly_root(tmp_path: Path) -> Path:
    # Not a cgroup tree at all (the mode does not stop root): the "no cgroups here"
    # fallback. A tree that is there but read-only is readonly_cgroup_v1/v2 below.
    root = tmp_path / "cgroup-ro"
    root.mkdir()
    root.chmod(0o555)
    return root


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _unmount(targets: list[Path]) -> None:
    for target in reversed(targets):
        subprocess.run(["umount", str(target)], check=False, capture_output=True)


@pytest.fixture
def readonly_cgroup_v1(tmp_path: Path) -> Iterator[Path]:
    """This machine's own v1 hierarchies, bound read-only under a temporary root.

    ``remount,bind,ro`` changes only the new bind's flags; the real hierarchies stay
    writable for everything else.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    root = tmp_path / "cgroup-v1-ro"
    mounted: list[Path] = []
    try:
        for name in ("cpuset", "cpu", "memory"):
            source = CGROUP_ROOT / name
            if not (source / "cgroup.procs").is_file():
                pytest.skip(f"no cgroup v1 {name} hierarchy at {source} to bind")
            target = root / name
            target.mkdir(parents=True)
            try:
                _mount("--bind", str(source), str(target))
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"mount is not permitted here: {exc.stderr.strip()}")
            mounted.append(target)
            _mount("-o", "remount,bind,ro", str(target))
        yield root
    finally:
        _unmount(mounted)


@pytest.fixture
def readonly_cgroup_v2(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs laid out like a cgroup v2 root (what detect_version looks for), then
    remounted read-only: the setup finds its controllers but can write nothing."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    root = tmp_path / "cgroup-v2-ro"
    root.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=1m,mode=755", "harness-test", str(root))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"mount is not permitted here: {exc.stderr.strip()}")
    try:
        (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (root / "cgroup.subtree_control").write_text("")
        (root / "cgroup.procs").write_text("")
        _mount("-o", "remount,ro", str(root))  # this tmpfs only
        yield root
    finally:
        _unmount([root])


def profile(name: str = "cap-emulated", **caps: object) -> EmulatedProfile:
    return EmulatedProfile(
        name=name,
        emulation=EmulationCaps(**caps),  # type: ignore[arg-type]
        power=PowerModel(idle_w=2.0, max_w=6.0, source="test"),
    )


FAST = MeasureSettings(warmup_count=3, warmup_seconds=0.0, min_count=30, min_seconds=0.3)


def run_device(device: EmulatedDevice, artifact: Path, shape: list[int], **job_keys: Any) -> dict:
    job = make_job("onnxruntime", str(artifact), shape, FAST, **job_keys)
    return device.run(job, artifact, None, 120).result


def reasons(result: dict) -> list[str]:
    validity = result["validity"]
    return validity if isinstance(validity, list) else []


# --- fast: plans and the sandbox itself ----------------------------------------------


def test_cpulist_and_quota() -> None:
    assert cgroups.parse_cpulist("0-2,5") == [0, 1, 2, 5]
    assert cgroups.format_cpulist([0, 1]) == "0,1"
    assert cgroups.quota_us(0.5, 100_000) == (50_000, 100_000)
    assert cgroups.quota_us(0.25, None) == (2000, 8000)  # a 2 ms quota by default
    assert cgroups.quota_us(0.5, None) == (2000, 4000)
    # The kernel's 1 ms minimum quota: the period grows to keep the fraction (1 ms per
    # 2 ms would be 50%, not the 10% asked).
    assert cgroups.quota_us(0.1, 2000) == (1000, 10000)


def test_plans_v1_and_v2() -> None:
    caps = cgroups.Caps(cores=1, cpu_fraction=0.25, period_us=100_000, memory_mb=100)
    v1 = cgroups.plan_v1(caps, [0], "0", memsw=True)
    assert v1["cpuset"] == [("cpuset.cpus", "0"), ("cpuset.mems", "0")]
    assert v1["cpu"] == [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "25000")]
    assert v1["memory"][0] == ("memory.limit_in_bytes", str(100 * 2**20))
    assert v1["memory"][1][0] == "memory.memsw.limit_in_bytes"
    assert cgroups.plan_v1(caps, [0], "0", memsw=False)["memory"][1] == ("memory.swappiness", "0")
    v2 = cgroups.plan_v2(caps, [0, 1], "0")
    assert v2["cpu"] == [("cpu.max", "25000 100000")]
    assert v2["memory"] == [("memory.max", str(100 * 2**20)), ("memory.swap.max", "0")]
    assert v2["cpuset"][0] == ("cpuset.cpus", "0,1")


def test_quota_follows_busy_cores_not_board_cores() -> None:
    device = EmulatedDevice(profile(cores=4, speed_factor=0.25))
    here = len(os.sched_getaffinity(0))
    assert device.caps(threads=1).cpu_fraction == 0.25
    for threads in (2, 8):  # and not beyond the cores this machine has
        assert device.caps(threads=threads).cpu_fraction == 0.25 * min(4, here, threads)


def test_each_precision_gets_its_own_speed_factor() -> None:
    caps = EmulationCaps(
        cores=1,
        speed_factor=0.5,
        speed_source="fp32 figure",
        precision={"int8": PrecisionSpeed(speed_factor=0.2, source="int8 figure")},
    )
    int8 = caps.speed_for("int8")
    assert (int8.factor, int8.basis, int8.source) == (0.2, "int8 factor", "int8 figure")
    fp32 = caps.speed_for("fp32")
    assert (fp32.factor, fp32.basis, fp32.source) == (0.5, "fp32 factor", "fp32 figure")
    # No factor of its own, or a precision not known: the fp32 one, and the record says so.
    assert caps.speed_for("fp16").factor == 0.5
    assert caps.speed_for("fp16").basis == "fp32 factor (the profile has no fp16 factor)"
    assert "not known" in caps.speed_for(None).basis
    # The quota follows the factor picked.
    device = EmulatedDevice(profile(cores=1, speed_factor=0.5, precision=caps.precision))
    assert device.caps(threads=1, precision="int8").cpu_fraction == 0.2
    assert device.caps(threads=1, precision="fp32").cpu_fraction == 0.5
    assert device.caps(threads=1).cpu_fraction == 0.5


@pytest.mark.parametrize("board", ["pi4", "pi5", "jetson-nano", "jetson-orin-nano"])
def test_shipped_boards_have_per_precision_factors_that_follow_their_cpu(board: str) -> None:
    emulated = load_profile(REPO / "devices" / f"{board}-emulated.toml")
    caps, features = emulated.emulation, set(emulated.hardware.cpu_features)
    assert caps is not None and caps.speed_factor is not None and caps.speed_source
    int8 = caps.precision["int8"]
    # Calibrated against published board figures (benchmarks/board_calibration.py): no
    # fixed relation to the fp32 factor (XNNPACK's int8 gains 2.7x on the Pi 4's A72
    # without dot product), but every factor says where it comes from.
    assert int8.source and "board_calibration" in int8.source
    assert "board_calibration" in caps.speed_source
    assert "rovisional" not in caps.speed_source + int8.source
    # An fp16 factor only where the board has fp16 arithmetic.
    assert ("fp16" in caps.precision) == ("asimdhp" in features)


def test_precision_table_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "odd-emulated.toml"
    path.write_text(
        'kind = "emulated"\n[emulation]\nspeed_factor = 0.5\n'
        '[emulation.precision.fp32]\nspeed_factor = 0.3\nsource = "x"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert "emulation.precision" in str(info.value) and str(path) in str(info.value)
    path.write_text(
        'kind = "emulated"\n[emulation]\nspeed_factor = 0.5\n'
        "[emulation.precision.int8]\nspeed_factor = 0.3\n"
    )
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert "emulation.precision.int8.source" in str(info.value)


@pytest.mark.parametrize(
    ("quant_format", "mode", "expected"),
    [
        ("QDQ U8S8 per-channel", "static", "int8"),  # onnxruntime static, x86
        ("QDQ S8S8 per-tensor", "static", "int8"),  # onnxruntime static, ARM
        ("QAT QDQ U8S8 per-channel reduce-range", "qat", "int8"),
        ("dynamic int8 (S8 weights per-channel, U8 activations)", "dynamic", "int8"),
        ("XNNPACK pt2e int8 symmetric per-channel", "static", "int8"),  # executorch
        ("fp16 weights and activations (float32 model inputs/outputs)", "fp16", "fp16"),
        ("fp16 XNNPACK (float32 inputs/outputs)", "fp16", "fp16"),
        ("fp32", None, "fp32"),
        (None, "static", "int8"),  # no notes: what the quantize step asked for
        (None, None, None),  # a model file: not known
    ],
)
def test_precision_of_a_variant(
    quant_format: str | None, mode: str | None, expected: str | None
) -> None:
    notes = {"quant_format": quant_format} if quant_format else None
    found = precision_of(notes, mode)
    assert found.name == expected
    basis = "export notes" if quant_format else ("the variant's quantize step" if mode else "not")
    assert found.found_from.startswith(basis)


def test_precision_is_for_the_device_not_the_runner() -> None:
    job = make_job(
        "onnxruntime", "m.onnx", [1, 4], FAST, precision={"name": "int8", "from": "test"}
    )
    assert job["precision"] == {"name": "int8", "from": "test"}
    assert "precision" not in job_for(job, "m.onnx", None)


def test_a_crowded_or_stolen_host_is_too_loaded_for_the_quota() -> None:
    # A quarter of a core per busy thread needs a fair share of at least half a core.
    assert host_loaded({"others_runnable_per_cpu": 1.0, "steal_fraction": 0.0}, 0.25) is None
    crowded = {
        "others_runnable_per_cpu": 4.0,
        "steal_fraction": 0.0,
        "procs_running": [9, 9],
        "online_cpus": 2,
    }
    text = host_loaded(crowded, 0.25)
    assert text is not None
    assert text.startswith("4.0 other runnable tasks per CPU (procs_running [9, 9] on 2 CPUs)")
    assert "fair share of 0.20 of a core" in text
    # A quota above half a core on an idle host: the fair share (a whole core) suffices.
    assert host_loaded({"others_runnable_per_cpu": 0.0, "steal_fraction": 0.0}, 0.77) is None
    assert host_loaded({"others_runnable_per_cpu": 0.5, "steal_fraction": 0.0}, 0.77)
    # A smaller quota tolerates more company: 1/(1+4) = 0.2 >= 2 x 0.1.
    assert host_loaded(crowded, 0.1) is None
    stolen = host_loaded({"others_runnable_per_cpu": 0.0, "steal_fraction": 0.1}, 0.25)
    assert stolen == "steal 10.0% of the runner's CPUs' time (limit 5%)"
    assert host_loaded({"others_runnable_per_cpu": None, "steal_fraction": None}, 0.25) is None


def test_emulated_profile_opens_an_emulated_device() -> None:
    assert isinstance(open_device(profile(cores=1)), EmulatedDevice)


def test_fallback_without_cgroups_is_taken_and_reported(
    readonly_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caps = cgroups.Caps(cores=1, cpu_fraction=0.5, memory_mb=3000)
    with cgroups.sandbox("fb", caps, readonly_root) as box:
        record = box.record
        probe = (
            "import os, resource; print(sorted(os.sched_getaffinity(0)), "
            "resource.getrlimit(resource.RLIMIT_AS)[0])"
        )
        out = subprocess.run(
            [*box.prefix, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    assert record["method"] == "fallback"
    assert record["cores"].startswith("sched_setaffinity")
    assert record["memory"].startswith("RLIMIT_AS 3000 MB")
    assert record["speed"] is None
    assert any(s.startswith("speed:") for s in record["not_enforced"])
    assert record["warnings"] and "falling back" in caplog.text
    assert out.split() == [f"[{sorted(os.sched_getaffinity(0))[0]}]", str(3000 * 2**20)]
    assert list(readonly_root.iterdir()) == []


@pytest.mark.parametrize(
    ("tree", "version"), [("readonly_cgroup_v1", 1), ("readonly_cgroup_v2", 2)]
)
def test_a_cgroup_tree_that_is_there_but_read_only_falls_back_and_says_so(
    tree: str, version: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root: Path = request.getfixturevalue(tree)
    # A cgroup tree as far as the harness can tell, which nothing can be written to.
    assert cgroups.detect_version(root) == version
    probe_dir = root / ("cpu" if version == 1 else "") / "harness-write-probe"
    try:
        probe_dir.mkdir()
    except OSError as exc:
        assert exc.errno == errno.EROFS, exc
    else:
        probe_dir.rmdir()
        pytest.fail(f"{root} is writable")

    caps = cgroups.Caps(cores=1, cpu_fraction=0.5, memory_mb=3000)
    with cgroups.sandbox("ro", caps, root) as box:
        probe = (
            "import os, resource; print(sorted(os.sched_getaffinity(0)), "
            "resource.getrlimit(resource.RLIMIT_AS)[0])"
        )
        out = subprocess.run(
            [*box.prefix, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    assert box.version is None and box.dirs == {}
    assert out.split() == [f"[{sorted(os.sched_getaffinity(0))[0]}]", str(3000 * 2**20)]
    warnings = box.record["warnings"]
    assert not any("no writable cgroup tree" in w for w in warnings)  # not the other branch
    if version == 1:
        for controller in ("cpuset", "cpu", "memory"):
            assert any(
                w.startswith(f"{controller}: cannot create a cgroup under")
                and "Read-only file system" in w
                for w in warnings
            ), warnings
    else:
        assert any(w.startswith("cgroup v2:") and "Read-only file system" in w for w in warnings), (
            warnings
        )

    # And through the runner: the result says how the caps were held, and what was not.
    artifact = tmp_path / "chain.onnx"
    shape = matmul_model(artifact, layers=2)
    device = EmulatedDevice(profile(cores=1, speed_factor=0.5, memory_mb=8192), cgroup_root=root)
    result = run_device(device, artifact, shape)
    emulation = result["emulation"]
    assert emulation["method"] == "fallback"
    assert emulation["cores"].startswith("sched_setaffinity")
    assert emulation["memory"].startswith("RLIMIT_AS 8192 MB")
    assert emulation["speed"] is None
    assert any(s.startswith("speed:") for s in emulation["not_enforced"])
    assert any("Read-only file system" in w for w in emulation["warnings"])
    # The cap could not bind: the cell says so, and it is not valid.
    assert emulation["speed_cap"] == "not_enforced"
    assert "speed_cap_not_enforced" in reasons(result)
    assert emulation["estimate"]["method"] == "per_inference"
    assert "could not be enforced" in emulation["estimate"]["how"]


@needs_cgroups
def test_runner_lands_in_the_groups_which_are_removed() -> None:
    caps = cgroups.Caps(cores=1, cpu_fraction=0.5, memory_mb=256)
    with cgroups.sandbox("in", caps, CGROUP_ROOT) as box:
        out = subprocess.run(
            [*box.prefix, "-c", "print(open('/proc/self/cgroup').read())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        groups = dict(box.dirs)
        quota = (groups["cpu"] / "cpu.cfs_quota_us").read_text().strip()
    assert box.record["method"] == "cgroup v1" or box.record["method"] == "cgroup v2"
    assert box.record["speed"].startswith(("cfs_quota 50%", "cpu.max 50%"))
    assert int(quota) > 0
    for group in groups.values():
        assert f"/harness/{group.name}" in out
        assert not group.exists()


BUSY_HALF_SECOND = """
import time
wall0, cpu0 = time.monotonic(), time.process_time()
while time.monotonic() - wall0 < 0.5:
    pass
print(time.process_time() - cpu0, time.monotonic() - wall0)
"""


def _quota_read_back(cpu_group: Path) -> tuple[int, int]:
    if (cpu_group / "cpu.cfs_quota_us").is_file():  # v1
        quota = int((cpu_group / "cpu.cfs_quota_us").read_text())
        return quota, int((cpu_group / "cpu.cfs_period_us").read_text())
    quota_text, period_text = (cpu_group / "cpu.max").read_text().split()
    return int(quota_text), int(period_text)


@needs_cgroups
def test_a_busy_process_gets_no_more_cpu_than_its_quota() -> None:
    # Load-independent: other tasks can only take CPU time from the process, never give
    # it more, so the CPU it got is bounded from above only. The slow-down ratio, which
    # load moves, is benchmarks/emulation_speed_cap.py's to print.
    caps = cgroups.Caps(cores=1, cpu_fraction=0.25)
    with cgroups.sandbox("busy", caps, CGROUP_ROOT) as box:
        out = subprocess.run(
            [*box.prefix, "-c", BUSY_HALF_SECOND], capture_output=True, text=True, check=True
        ).stdout
        quota, period = _quota_read_back(box.dirs["cpu"])
    assert (quota, period) == cgroups.quota_us(0.25, None) == (2000, 8000)
    cpu_s, wall_s = (float(x) for x in out.split())
    # Measured 0.24-0.25 of the wall time. Slack for the loop starting and ending
    # mid-period and the scheduler tick's overrun; uncapped it would be near 1.
    assert cpu_s <= 0.25 * wall_s * 1.2 + quota / 1e6, (cpu_s, wall_s)


@needs_cgroups
def test_memory_cgroup_oom_is_seen() -> None:
    caps = cgroups.Caps(memory_mb=64)
    with cgroups.sandbox("oom", caps, CGROUP_ROOT) as box:
        proc = subprocess.run(
            [*box.prefix, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"],
            capture_output=True,
            check=False,
        )
        stats = box.stats()
    assert proc.returncode == -9
    assert box.killed_by_memory_cap(stats, sigkilled=True)


def test_rlimit_memory_error_maps_to_does_not_fit(readonly_root: Path) -> None:
    device = EmulatedDevice(profile(memory_mb=64), cgroup_root=readonly_root)
    caps = device.caps(1)
    with cgroups.sandbox("rl", caps, readonly_root) as box:
        box.record["caps"] = {"memory_mb": 64}
        exc = RunnerError("MemoryError: ", kind="runtime_error")
        with pytest.raises(RunnerError) as info:
            device._raise_if_memory(box, box.stats(), exc)
    assert info.value.kind == "does_not_fit"
    assert str(info.value).startswith("memory: ")


# --- slow: the real runner under caps --------------------------------------------------


@pytest.mark.slow
@needs_cgroups
def test_a_run_under_a_half_quota_is_throttled_and_its_power_modelled(tmp_path: Path) -> None:
    # How much the quota slows a run is a timing ratio that host load moves:
    # benchmarks/emulation_speed_cap.py prints it. What a test can hold on any host is that
    # the quota was there (read back in test_a_busy_process_gets_no_more_cpu_than_its_quota)
    # and that the runner hit it.
    artifact = tmp_path / "chain.onnx"
    shape = matmul_model(artifact, layers=16)
    half = EmulatedDevice(profile("half", cores=1, speed_factor=0.5))
    capped = run_device(half, artifact, shape)
    assert capped["emulation"]["speed"].startswith(("cfs_quota 50%", "cpu.max 50%"))
    assert capped["emulation"]["cgroup"]["cpu_throttled_periods"] > 0
    assert capped["power"]["source"] == "modelled"


@pytest.mark.slow
@needs_cgroups
def test_a_microsecond_model_under_a_quarter_quota_is_timed_in_blocks(tmp_path: Path) -> None:
    # A few microseconds per inference, far below the 8 ms quota period: timed per
    # inference, throttles fall between samples and the p50 is this machine's. Its
    # slow-down (about 4x) is benchmarks/emulation_speed_cap.py --size 16 --layers 1's.
    artifact = tmp_path / "tiny.onnx"
    shape = matmul_model(artifact, size=16, layers=1)
    quarter = EmulatedDevice(profile("quarter", cores=1, speed_factor=0.25))
    capped = run_device(quarter, artifact, shape)
    estimate = capped["emulation"]["estimate"]
    assert estimate["method"] == "block_mean" and estimate["block_ms"] == 80.0  # 10 x 8 ms
    assert estimate["inferences_per_block"]["median"] > 1
    assert "p50 and mean estimate one inference" in estimate["quantiles"]
    assert capped["emulation"]["speed_cap"] == "enforced"
    assert capped["emulation"]["cgroup"]["cpu_throttled_periods"] > 0


@pytest.mark.slow
@needs_cgroups
def test_an_int8_run_is_held_to_the_int8_factor(tmp_path: Path) -> None:
    artifact = tmp_path / "tiny.onnx"
    shape = matmul_model(artifact, size=16, layers=1)
    int8 = {"int8": PrecisionSpeed(speed_factor=0.25, source="test int8 figure")}
    device = EmulatedDevice(profile(cores=1, speed_factor=0.5, precision=int8))
    precision = {"name": "int8", "from": "export notes: QDQ U8S8 per-channel"}
    emulation = run_device(device, artifact, shape, precision=precision)["emulation"]
    caps = emulation["caps"]
    assert (caps["speed_factor"], caps["precision"]) == (0.25, "int8")
    assert caps["precision_from"] == "export notes: QDQ U8S8 per-channel"
    assert (caps["speed_factor_basis"], caps["speed_source"]) == ("int8 factor", "test int8 figure")
    assert emulation["speed"].startswith(("cfs_quota 25%", "cpu.max 25%"))
    fp32 = run_device(device, artifact, shape)["emulation"]  # no precision given
    assert fp32["caps"]["speed_factor"] == 0.5
    assert fp32["speed"].startswith(("cfs_quota 50%", "cpu.max 50%"))


@pytest.mark.slow
@needs_cgroups
def test_a_loaded_host_marks_the_run_invalid_with_the_numbers(tmp_path: Path) -> None:
    artifact = tmp_path / "tiny.onnx"
    shape = matmul_model(artifact, size=16, layers=1)
    device = EmulatedDevice(profile(cores=1, speed_factor=0.25))
    # The runner reads proc/stat under the job's sysfs_root: 9 runnable tasks on 2 CPUs.
    crowded = run_device(device, artifact, shape, sysfs_root=str(HOST_LOAD / "crowded"))
    loaded = [r for r in reasons(crowded) if r.startswith("host_loaded: ")]
    assert loaded == [
        "host_loaded: 4.0 other runnable tasks per CPU (procs_running [9, 9] on 2 CPUs): "
        "a fair share of 0.20 of a core, under 2x the quota's 0.25"
    ]
    assert crowded["emulation"]["host_load"]["loadavg"] == [8.40, 7.95, 6.10]
    idle = run_device(device, artifact, shape, sysfs_root=str(HOST_LOAD / "idle"))
    assert not [r for r in reasons(idle) if r.startswith("host_loaded")]
    assert idle["emulation"]["host_load"]["procs_running"] == [1, 1]


@pytest.mark.slow
@needs_cgroups
def test_emulated_pi4_is_slower_than_this_machine_at_every_precision(tmp_path: Path) -> None:
    # The quickstart's failure: microsecond models on the emulated Pi 4 had this
    # machine's p50. Now each is slower, and the int8 variant runs at the int8 factor.
    from harness.results.store import ResultsStore
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker

    suite_path = write_suite(
        tmp_path,
        """
        name = "pi4-vs-local"
        runtimes = ["onnxruntime"]
        devices = ["local", "pi4-emulated"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        int8 = [{ recipe = "int8-static", calibration_samples = 16 }]
        """
        + FAST_MEASURE,
    )
    walker = SuiteWalker(load_suite(suite_path), tmp_path / "results")
    try:
        summary = walker.walk()
    finally:
        walker.close()
    assert (summary.ran, summary.failed) == (4, 0)
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        cells = {(c.variant, c.device): c for c in store.cells(summary.run_id)}
    pi4 = load_profile(REPO / "devices" / "pi4-emulated.toml").emulation
    assert pi4 is not None
    factors = {"fp32": pi4.speed_factor, "int8": pi4.precision["int8"].speed_factor}
    for variant, factor in factors.items():
        local = cells[(variant, "local")].result
        emulated = cells[(variant, "pi4-emulated")].result
        caps = emulated["emulation"]["caps"]
        assert (caps["precision"], caps["speed_factor"]) == (variant, factor)
        assert caps["precision_from"].startswith("export notes: ")
        assert emulated["emulation"]["estimate"]["method"] == "block_mean"
        # Loose on purpose (expected 4-8x): only that the cap binds at all.
        assert emulated["latency_ms"]["p50"] > local["latency_ms"]["p50"], variant


@pytest.mark.slow
@needs_cgroups
def test_memory_cap_makes_a_big_model_not_fit_in_the_walk(tmp_path: Path) -> None:
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker

    big_model(tmp_path / "big.onnx", megabytes=200)
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "small-emulated.toml").write_text(
        'kind = "emulated"\n[emulation]\ncores = 1\nmemory_mb = 150\n'
    )
    suite_path = tmp_path / "suite.toml"
    suite_path.write_text(
        textwrap.dedent(
            f"""
            name = "fit"
            runtimes = ["onnxruntime"]
            devices = ["small-emulated"]
            recipe_dirs = ["{REPO / "recipes"}"]
            [[models]]
            name = "big"
            file = "big.onnx"
            [variants]
            fp32 = []
            """
        )
        + textwrap.dedent(FAST_MEASURE)
    )
    walker = SuiteWalker(load_suite(suite_path), tmp_path / "results")
    try:
        summary = walker.walk()
    finally:
        walker.close()
    assert summary.failed == 1
    record = summary.failures[0]
    assert record.emulated
    assert record.reason.startswith("does_not_fit: memory"), record.reason


@pytest.mark.slow
@needs_cgroups
def test_small_model_fits_under_the_same_memory_cap(tmp_path: Path) -> None:
    artifact = tmp_path / "chain.onnx"
    shape = matmul_model(artifact, layers=2)
    result = run_device(EmulatedDevice(profile(cores=1, memory_mb=150)), artifact, shape)
    assert result["emulation"]["memory"].startswith(("memory.limit_in_bytes 150 MB", "memory.max"))
    assert result["emulation"]["cgroup"]["oom_kills"] in (0, None)


@pytest.mark.slow
def test_fallback_run_is_reported_in_the_result(tmp_path: Path, readonly_root: Path) -> None:
    artifact = tmp_path / "chain.onnx"
    shape = matmul_model(artifact, layers=2)
    device = EmulatedDevice(
        profile(cores=1, speed_factor=0.5, memory_mb=8192), cgroup_root=readonly_root
    )
    result = run_device(device, artifact, shape)
    emulation = result["emulation"]
    assert emulation["method"] == "fallback"
    assert emulation["cores"].startswith("sched_setaffinity")
    assert emulation["memory"].startswith("RLIMIT_AS 8192 MB")
    assert any(s.startswith("speed:") for s in emulation["not_enforced"])
    assert "speed_cap_not_enforced" in reasons(result)


@pytest.mark.slow
def test_fallback_memory_limit_makes_a_big_model_not_fit(
    tmp_path: Path, readonly_root: Path
) -> None:
    artifact = tmp_path / "big.onnx"
    shape = big_model(artifact, megabytes=200)
    small = tmp_path / "chain.onnx"
    small_shape = matmul_model(small, layers=2)
    # The address-space cap is set from what the small model needs, plus less than the
    # big one's initializer: runtimes reserve far more address space than they touch.
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    assert soft == resource.RLIM_INFINITY
    fits = EmulatedDevice(profile(cores=1, memory_mb=SMALL_AS_MB), cgroup_root=readonly_root)
    run_device(fits, small, small_shape)
    with pytest.raises(RunnerError) as info:
        run_device(fits, artifact, shape)
    assert info.value.kind == "does_not_fit"
    assert str(info.value).startswith("memory: ")


SMALL_AS_MB = 300
