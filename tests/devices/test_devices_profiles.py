"""Device profiles: every shipped one loads, bad ones name the file, key and expectation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.devices import open_device
from harness.devices.config import DeviceProfile, list_profiles, load_profile, make_profile
from harness.errors import ConfigError
from harness.target import local_target
from tests.suite_files import REPO

DEVICES = REPO / "devices"
BOARDS = ["pi4", "pi5", "jetson-nano", "jetson-orin-nano"]

SSH = """
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


def _write(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(textwrap.dedent(body))
    return path


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    return info.value


def test_every_shipped_profile_loads() -> None:
    profiles = {p.name: p for p in list_profiles([DEVICES])}
    for board in BOARDS:
        assert board in profiles and f"{board}-emulated" in profiles
    for board in BOARDS:
        ssh, emulated = profiles[board], profiles[f"{board}-emulated"]
        assert ssh.kind == "ssh" and not ssh.emulated
        assert ssh.connection is not None and ssh.connection.port == 22
        assert ssh.power is not None and ssh.power.source
        assert ssh.hardware.core_type.startswith("Cortex-A")
        # Exports for the board pick ARM formats ...
        target = ssh.target()
        assert target.arch == "aarch64" and target.is_arm and "asimd" in target.cpu_features
        # ... while the emulated form runs here, so it is exported for this machine.
        assert emulated.kind == "emulated" and emulated.emulated
        assert emulated.target().arch == local_target().arch
        assert emulated.target().cores <= local_target().cores
        assert emulated.emulation == ssh.emulation and emulated.power == ssh.power
        assert emulated.hardware == ssh.hardware
    assert {"asimddp"} <= profiles["pi5"].target().cpu_features
    assert "asimddp" not in profiles["pi4"].target().cpu_features


def test_ssh_profile_fields_and_defaults(tmp_path: Path) -> None:
    profile = load_profile(_write(tmp_path, "board", SSH))
    conn = profile.connection
    assert conn is not None
    assert (conn.port, conn.python, conn.workdir, conn.key_file) == (
        22,
        "python3",
        "~/harness-work",
        None,
    )
    assert profile.hardware.core_type == "Cortex-A72"


def test_emulated_profile_copies_board_and_overrides(tmp_path: Path) -> None:
    _write(tmp_path, "board", SSH)
    path = _write(
        tmp_path,
        "board-emulated",
        """
        kind = "emulated"
        board = "board"
        [emulation]
        memory_mb = 128
        """,
    )
    profile = load_profile(path)
    assert profile.emulation is not None
    assert (profile.emulation.cores, profile.emulation.speed_factor) == (1, 0.5)
    assert profile.emulation.memory_mb == 128
    assert profile.power is not None and profile.power.idle_w == 2.7
    assert profile.connection is None


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        (
            SSH.replace("speed_factor = 0.5", "speed_factor = -1"),
            "emulation.speed_factor",
            "greater than 0",
        ),
        (SSH + "[extra]\nx = 1\n", "extra", "allowed here"),
        (
            SSH.replace('kind = "ssh"', 'kind = "usb"'),
            "kind",
            "a known device kind, one of aarch64-qemu, emulated, local, ssh",
        ),
        (SSH.replace("agent = true", ""), "connection", "key_file"),
        (
            SSH.replace("memory_mb = 256", "memory_mb = 256\nswap = 1"),
            "emulation.swap",
            "allowed here: cgroup_root, cores",
        ),
        (SSH.replace('host = "board.local"', "host = 22"), "connection.host", "valid string"),
        (
            SSH.replace("[connection]", "[connection]\nport = 70000"),
            "connection.port",
            "less than or equal to 65535",
        ),
        (SSH.replace('arch = "aarch64"', ""), "hardware.arch", "arch"),
    ],
)
def test_bad_profiles_name_file_key_and_expectation(
    tmp_path: Path, body: str, key: str, expected: str
) -> None:
    path = _write(tmp_path, "board", body)
    err = _error(path)
    assert err.file == str(path)
    assert err.key == key
    assert expected in err.expected


def test_ssh_needs_connection_and_others_must_not_have_one(tmp_path: Path) -> None:
    no_conn = SSH.split("[connection]")[0] + "[emulation]\ncores = 1\n"
    assert _error(_write(tmp_path, "a", no_conn)).key == "connection"
    local_with_conn = 'kind = "local"\n[connection]\nhost = "x"\nuser = "y"\nagent = true\n'
    assert _error(_write(tmp_path, "b", local_with_conn)).key == "connection"


def test_emulated_needs_caps_and_a_known_board(tmp_path: Path) -> None:
    assert _error(_write(tmp_path, "e1", 'kind = "emulated"\n')).key == "emulation"
    err = _error(_write(tmp_path, "e2", 'kind = "emulated"\nboard = "pi9"\n'))
    assert err.key == "board" and err.got == "pi9"
    err = _error(_write(tmp_path, "e3", 'kind = "emulated"\nboard = "e3"\n'))
    assert err.key == "board"
    err = _error(_write(tmp_path, "e4", 'kind = "local"\nboard = "e1"\n'))
    assert err.key == "board"


def test_suite_with_a_bad_profile_reports_the_profile(tmp_path: Path) -> None:
    from harness.suite.config import load_suite

    devices = tmp_path / "devices"
    devices.mkdir()
    _write(devices, "broken", SSH.replace("max_w = 6.4", 'max_w = "lots"'))
    suite = tmp_path / "suite.toml"
    suite.write_text(
        textwrap.dedent(
            """
            name = "s"
            runtimes = ["onnxruntime"]
            devices = ["broken"]
            [[models]]
            name = "m"
            zoo = "digits-cnn"
            [variants]
            fp32 = []
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    assert info.value.key == "power.max_w"
    assert info.value.file.endswith("broken.toml")


def test_ssh_profile_opens_an_ssh_device_and_local_ones_share_a_lane() -> None:
    from harness.devices import lane
    from harness.devices.ssh import SshDevice

    pi4 = load_profile(DEVICES / "pi4.toml")
    assert isinstance(open_device(pi4), SshDevice)
    assert lane(pi4) == "ssh:pi4.local:22"
    assert lane(load_profile(DEVICES / "local.toml")) == lane(
        load_profile(DEVICES / "pi4-emulated.toml")
    )


def test_an_alias_and_the_address_it_stands_for_share_a_lane(tmp_path: Path) -> None:
    """One board named by an ssh_config alias in one profile and by its address in
    another: one lane, so the walk never runs both profiles' cells at once on it."""
    from harness.devices import lane

    config = tmp_path / "ssh_config"
    config.write_text("Host myboard\n    HostName 192.0.2.7\n    Port 2222\n    User pi\n")

    def profile(name: str, host: str, port: int | None) -> DeviceProfile:
        conn = {"host": host, "user": "pi", "ssh_config": str(config), "agent": True}
        if port is not None:
            conn["port"] = port
        hardware = {"arch": "aarch64"}
        return make_profile({"name": name, "kind": "ssh", "connection": conn, "hardware": hardware})

    by_alias, by_address = profile("a", "myboard", None), profile("b", "192.0.2.7", 2222)
    assert lane(by_alias) == lane(by_address) == "ssh:192.0.2.7:2222"
    assert lane(profile("c", "192.0.2.7", 22)) != lane(by_alias)


def test_emulated_flag_follows_kind() -> None:
    assert make_profile({"name": "e", "kind": "emulated", "emulation": {}}).emulated
    assert not make_profile({"name": "l"}).emulated
