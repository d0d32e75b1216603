"""Device kinds: each kind's profile class dumps exactly as the one model before it did.

The suite walker hashes ``profile.model_dump(mode="json")`` into every cell's config hash,
and a stored run resumes the cells whose hash it already holds; a dump that changed
(a key, its order, a value, a None table of another kind) would measure every stored
cell again. The literals below were taken from the single ``DeviceProfile`` model before
the kinds had classes of their own. Editing a shipped profile changes its hash on purpose:
update the pin then, knowing stored runs on that device will measure again.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from harness.artifacts import digest
from harness.devices import DEVICE_KINDS, lane, open_device
from harness.devices.base import Device, DeviceRun
from harness.devices.check import PROBES, probe_for
from harness.devices.config import (
    PROFILE_KINDS,
    DeviceProfile,
    list_profiles,
    load_profile,
)
from harness.errors import ConfigError
from harness.target import TargetInfo
from tests.suite_files import REPO

DEVICES = REPO / "devices"
KEY_ORDER = [
    "name",
    "kind",
    "description",
    "board",
    "hardware",
    "power",
    "connection",
    "emulation",
    "qemu",
]

BOARD = """
kind = "ssh"
[hardware]
arch = "aarch64"
cores = 4
core_type = "Cortex-A72"
cpu_features = ["asimd"]
[power]
idle_w = 2.7
max_w = 6.4
source = "test figures"
[connection]
host = "board.local"
user = "pi"
agent = true
[emulation]
cores = 1
speed_factor = 0.5
memory_mb = 256
"""
BOARD_EMULATED = """
kind = "emulated"
board = "board"
description = "this machine held to board's caps"
[emulation]
memory_mb = 128
[emulation.precision.int8]
speed_factor = 0.7
source = "a test figure"
"""
BOARD_QEMU = """
kind = "aarch64-qemu"
board = "board"
[qemu]
cpu = "cortex-a72"
"""
HERE = """
description = "no kind: local"
[hardware]
cores = 2
"""
PROFILES = {"board": BOARD, "board-emulated": BOARD_EMULATED, "board-qemu": BOARD_QEMU}
PROFILES["here"] = HERE

SSH_DUMP = """
{
    "name": "board",
    "kind": "ssh",
    "description": "",
    "board": null,
    "hardware": {
        "arch": "aarch64",
        "cores": 4,
        "cpu": "",
        "core_type": "Cortex-A72",
        "clock_ghz": null,
        "ram_mb": null,
        "cpu_features": [
            "asimd"
        ]
    },
    "power": {
        "idle_w": 2.7,
        "max_w": 6.4,
        "source": "test figures"
    },
    "connection": {
        "host": "board.local",
        "port": 22,
        "user": "pi",
        "key_file": null,
        "agent": true,
        "python": "python3",
        "workdir": "~/harness-work",
        "known_hosts": "~/.ssh/known_hosts",
        "ssh_config": "~/.ssh/config",
        "connect_timeout_s": 10.0,
        "min_transfer_mb_s": 0.5,
        "retries": 3,
        "retry_backoff_s": 1.0
    },
    "emulation": {
        "cores": 1,
        "speed_factor": 0.5,
        "speed_source": "",
        "precision": {},
        "memory_mb": 256,
        "period_us": null,
        "cgroup_root": "/sys/fs/cgroup"
    },
    "qemu": null
}
"""

EMULATED_DUMP = """
{
    "name": "board-emulated",
    "kind": "emulated",
    "description": "this machine held to board's caps",
    "board": "board",
    "hardware": {
        "arch": "aarch64",
        "cores": 4,
        "cpu": "",
        "core_type": "Cortex-A72",
        "clock_ghz": null,
        "ram_mb": null,
        "cpu_features": [
            "asimd"
        ]
    },
    "power": {
        "idle_w": 2.7,
        "max_w": 6.4,
        "source": "test figures"
    },
    "connection": null,
    "emulation": {
        "cores": 1,
        "speed_factor": 0.5,
        "speed_source": "",
        "precision": {
            "int8": {
                "speed_factor": 0.7,
                "source": "a test figure"
            }
        },
        "memory_mb": 128,
        "period_us": null,
        "cgroup_root": "/sys/fs/cgroup"
    },
    "qemu": null
}
"""

QEMU_DUMP = """
{
    "name": "board-qemu",
    "kind": "aarch64-qemu",
    "description": "",
    "board": "board",
    "hardware": {
        "arch": "aarch64",
        "cores": 4,
        "cpu": "",
        "core_type": "Cortex-A72",
        "clock_ghz": null,
        "ram_mb": null,
        "cpu_features": [
            "asimd"
        ]
    },
    "power": {
        "idle_w": 2.7,
        "max_w": 6.4,
        "source": "test figures"
    },
    "connection": null,
    "emulation": null,
    "qemu": {
        "cpu": "cortex-a72",
        "release": "bookworm",
        "root_dir": null,
        "mirror": null
    }
}
"""

LOCAL_DUMP = """
{
    "name": "here",
    "kind": "local",
    "description": "no kind: local",
    "board": null,
    "hardware": {
        "arch": null,
        "cores": 2,
        "cpu": "",
        "core_type": "",
        "clock_ghz": null,
        "ram_mb": null,
        "cpu_features": []
    },
    "power": null,
    "connection": null,
    "emulation": null,
    "qemu": null
}
"""

SHIPPED_DUMP_SHA256 = {
    "aarch64-qemu": "77d7be1001fba665c3af6c9f91d1621563f66ae44c5d496b6c204858a2a7fe1b",
    "jetson-nano": "50b47b42b19f581dc007377655a154fc15a32daa27a08abb8b557667ee18dc29",
    "jetson-nano-emulated": "0871692da238fa3802fc93d4b5a5b7710640fb764e121ea30ce18c8c86743d2b",
    "jetson-orin-nano": "8ce623b196497d23333c92f7b6f5462c5c51136113f5014f374b5b6ab04c9266",
    "jetson-orin-nano-emulated": "ac13930ad5882cad7434088391910ec4d0f1f10849a745f599d6e9c29ad5aae8",
    "local": "a3f2d822eecba801c7b9cb1ac72a66151e712dd6cc522a232acfe5dd0408b243",
    "pi4": "41910e22752683cbc166e79e54422c07efdbed6ca9466c3962046ef82ff17ba2",
    "pi4-emulated": "e5453a219c7a5482469b8fda4a7e62837cad9a3e002a2777f31de823dc7ceefd",
    "pi5": "fbb43a72fd6beb51b31eba488d49a6c804d7522fc74bbd5ecff1078b672acc3b",
    "pi5-emulated": "a0bee3c2808024f92f258f18991ca548f98ec79296b516e8e0c344953abf322a",
}
EXPECTED = {
    "board": SSH_DUMP,
    "board-emulated": EMULATED_DUMP,
    "board-qemu": QEMU_DUMP,
    "here": LOCAL_DUMP,
}


def _write_all(directory: Path) -> None:
    for name, body in PROFILES.items():
        (directory / f"{name}.toml").write_text(textwrap.dedent(body))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_kind_dumps_as_before(tmp_path: Path, name: str) -> None:
    _write_all(tmp_path)
    dump = load_profile(tmp_path / f"{name}.toml").model_dump(mode="json")
    # Compared as text: the keys' order counts too, nested ones included.
    assert json.dumps(dump) == json.dumps(json.loads(EXPECTED[name]))


def test_shipped_profiles_dump_as_before() -> None:
    profiles = {p.name: p for p in list_profiles([DEVICES])}
    assert sorted(profiles) == sorted(SHIPPED_DUMP_SHA256)
    for name, profile in profiles.items():
        dump = profile.model_dump(mode="json")
        assert list(dump) == KEY_ORDER, name
        assert digest(dump) == SHIPPED_DUMP_SHA256[name], name


# The board's own CPU for ssh and aarch64-qemu profiles: (arch, cpu_features, cores).
BOARD_TARGETS = {
    "aarch64-qemu": ("aarch64", ["asimd", "asimddp", "asimdhp", "fphp"], 4),
    "jetson-nano": ("aarch64", ["asimd"], 4),
    "jetson-orin-nano": ("aarch64", ["asimd", "asimddp", "asimdhp", "fphp"], 6),
    "pi4": ("aarch64", ["asimd"], 4),
    "pi5": ("aarch64", ["asimd", "asimddp", "asimdhp", "fphp"], 4),
}
# Emulated profiles run here: this machine's CPU, at most the caps' cores.
EMULATED_CORES = {
    "jetson-nano-emulated": 4,
    "jetson-orin-nano-emulated": 6,
    "pi4-emulated": 4,
    "pi5-emulated": 4,
}


def test_shipped_profiles_target_as_before() -> None:
    """The target is hashed too (through the artifact key)."""
    from harness.target import TargetInfo, local_target

    here = local_target()
    profiles = {p.name: p for p in list_profiles([DEVICES])}
    for name, (arch, features, cores) in BOARD_TARGETS.items():
        assert profiles[name].target() == TargetInfo(arch, frozenset(features), cores), name
    for name, caps_cores in EMULATED_CORES.items():
        expected = TargetInfo(here.arch, here.cpu_features, min(caps_cores, here.cores))
        assert profiles[name].target() == expected, name
    assert profiles["local"].target() == here


class ToyProfile(DeviceProfile):
    """A kind added in one place: a profile class and its device."""

    kind: Literal["toy"] = "toy"
    own_keys: ClassVar[frozenset[str]] = frozenset({"qemu"})

    def check_kind(self, file: Path | None) -> None:
        super().check_kind(file)
        if self.hardware.cores is None:
            raise ConfigError(file, "hardware.cores", "the toy's cores")

    def target(self) -> TargetInfo:
        return TargetInfo("riscv64", frozenset({"v"}), self.hardware.cores or 1)

    def lane(self) -> str:
        return f"toy:{self.name}"


class ToyDevice(Device):
    def run(
        self, job: dict[str, Any], artifact: Path, eval_inputs: Path | None, timeout_s: float
    ) -> DeviceRun:
        raise NotImplementedError


@pytest.fixture
def toy_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROFILE_KINDS, "toy", ToyProfile)
    monkeypatch.setitem(DEVICE_KINDS, "toy", f"{__name__}:ToyDevice")


@pytest.mark.usefixtures("toy_kind")
def test_a_new_kind_is_one_class_and_its_device(tmp_path: Path) -> None:
    path = tmp_path / "toy1.toml"
    path.write_text('kind = "toy"\n[hardware]\ncores = 3\n[qemu]\ncpu = "x"\n')
    profile = load_profile(path)
    assert isinstance(profile, ToyProfile)
    assert lane(profile) == "toy:toy1"
    assert profile.target() == TargetInfo("riscv64", frozenset({"v"}), 3)
    assert isinstance(open_device(profile), ToyDevice)
    # A kind with no probe of its own is probed as this machine is.
    assert probe_for(profile) is PROBES[DeviceProfile]
    assert list(profile.model_dump(mode="json")) == KEY_ORDER

    # Its own rule, and the other kinds' rules know it uses [qemu].
    (tmp_path / "toy2.toml").write_text('kind = "toy"\n')
    with pytest.raises(ConfigError) as info:
        load_profile(tmp_path / "toy2.toml")
    assert (info.value.key, info.value.expected) == ("hardware.cores", "the toy's cores")
    (tmp_path / "here.toml").write_text('kind = "local"\n[qemu]\n')
    with pytest.raises(ConfigError) as info:
        load_profile(tmp_path / "here.toml")
    assert info.value.expected == (
        "no [qemu] table: it is only used by kinds 'aarch64-qemu' and 'toy'"
    )


def test_an_unknown_kind_names_the_key_and_the_known_kinds(tmp_path: Path) -> None:
    """(After the toy kind's test: its registration is gone.)"""
    path = tmp_path / "odd.toml"
    path.write_text('kind = "toys"\n')
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert (info.value.file, info.value.key, info.value.got) == (str(path), "kind", "toys")
    assert info.value.expected == ("a known device kind, one of aarch64-qemu, emulated, local, ssh")


def test_the_base_is_no_profile_of_its_own() -> None:
    with pytest.raises(TypeError, match="make_profile"):
        DeviceProfile(name="x")
