"""Device profiles (``devices/*.toml``): what a device is and how to reach it.

A profile holds the board's hardware facts (which pick the export formats), its power
model (used when the board has no power sensor), how to reach it over SSH, and the
caps that make this machine behave like it (emulation). Three kinds:

* ``local``: this machine as it is;
* ``emulated``: this machine held to the ``[emulation]`` caps (cores, single-core speed,
  memory). It runs on this CPU, so its artifacts are built for *this* machine
  (:meth:`DeviceProfile.target` is the local target), while its caps, power model and
  hardware facts describe the board. ``board = "pi4"`` copies the ``hardware``,
  ``power`` and ``emulation`` tables of ``pi4.toml`` (beside this file); keys the
  emulated profile sets itself win;
* ``ssh``: a real board reached over SSH (:mod:`harness.devices.ssh`);
* ``aarch64-qemu``: the board's own build (arm64 wheels, artifacts for the board's CPU)
  run under qemu-aarch64 in an arm64 Debian root (:mod:`harness.devices.qemu`). Its
  target is the board's (``board = "pi5"`` copies the tables as for ``emulated``); its
  outputs are real, its timings are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.configfile import StrictModel, load_toml, validate
from harness.errors import ConfigError
from harness.plugins import suggest
from harness.target import TargetInfo, local_target


class HardwareFacts(StrictModel):
    arch: str | None = None  # None: read from the machine (local devices)
    cores: int | None = Field(None, ge=1)
    cpu: str = ""  # the SoC or CPU name, e.g. "Broadcom BCM2711"
    core_type: str = ""  # e.g. "Cortex-A72"
    clock_ghz: float | None = Field(None, gt=0)
    ram_mb: int | None = Field(None, gt=0)
    cpu_features: list[str] = []


class PowerModel(StrictModel):
    idle_w: float = Field(ge=0)
    max_w: float = Field(gt=0)
    source: str = Field(min_length=1, description="where the figures come from")


class Connection(StrictModel):
    """How to reach an SSH board (see :mod:`harness.devices.ssh`).

    ``host`` may be a ``Host`` alias of ``ssh_config``: its HostName, Port, User and
    IdentityFile fill whatever this table leaves out (keys set here win).
    """

    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, min_length=1)
    key_file: str | None = Field(None, min_length=1)
    agent: bool = False
    python: str = Field("python3", min_length=1)
    workdir: str = Field("~/harness-work", min_length=1)
    known_hosts: str = Field("~/.ssh/known_hosts", min_length=1)
    ssh_config: str = Field("~/.ssh/config", min_length=1)
    # Also how long any remote step may go without an answer or a byte moved before it
    # is called stalled (see harness.devices.ssh_deadline).
    connect_timeout_s: float = Field(10.0, gt=0)
    # The slowest link to expect: a transfer of N MB may take N / this + connect_timeout_s
    # seconds in all (0.5 MB/s is a weak Wi-Fi link; a 256 MB model then gets ~9 min).
    min_transfer_mb_s: float = Field(0.5, gt=0)
    # Transient faults (connection reset, sshd restarting) are retried this many times,
    # with back-off doubling from retry_backoff_s.
    retries: int = Field(3, ge=0, le=10)
    retry_backoff_s: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Connection:
        if self.key_file is None and not self.agent:
            raise ValueError("key_file = '~/.ssh/id_ed25519' or agent = true")
        return self


class PrecisionSpeed(StrictModel):
    """The board's single-core speed for one precision, relative to this machine's speed
    for the same precision, and where the figure comes from."""

    speed_factor: float = Field(gt=0)
    source: str = Field(min_length=1, description="where the figure comes from")


@dataclass(frozen=True)
class SpeedChoice:
    """The speed factor a run uses and why (recorded in the result's emulation caps)."""

    factor: float | None
    precision: str | None  # the variant's precision, None when not known
    basis: str  # which of the profile's factors, e.g. "int8 factor"
    source: str


class EmulationCaps(StrictModel):
    """The caps that hold this machine to a board. A cap left out is not applied."""

    cores: int | None = Field(None, ge=1)
    # The board's single-core fp32 speed relative to this machine (0.25: four times
    # slower); also used for a precision with no factor of its own in ``precision``.
    speed_factor: float | None = Field(None, gt=0)
    speed_source: str = ""
    # Per-precision factors: int8 and fp16 speed up by different amounts on different
    # CPUs (x86 VNNI and ARM dot-product int8 gain ~2-4x over fp32, an ARMv8.0 core
    # without dot product much less), so one factor for every precision is wrong.
    precision: dict[Literal["int8", "fp16"], PrecisionSpeed] = {}
    memory_mb: int | None = Field(None, ge=16)
    # CFS bandwidth period in µs. None: a 2 ms quota (4 ms period at 50%, 8 ms at 25%).
    # Samples under the cap are means over blocks of 10 periods (bench_runner.run_blocks),
    # so the p50 shows the cap at any period; a short one keeps the blocks short. See
    # cgroups.quota_us and benchmarks/emulation_speed_cap.py.
    period_us: int | None = Field(None, ge=1000, le=1_000_000)
    # Where cgroups are mounted (tests point it at a tmp dir to force the fallback).
    cgroup_root: str = "/sys/fs/cgroup"

    def speed_for(self, precision: str | None) -> SpeedChoice:
        """The factor for a variant of ``precision`` ("fp32", "int8", "fp16", or None
        when not known): its own factor when the profile has one, else the fp32 one."""
        own = self.precision.get(precision) if precision in ("int8", "fp16") else None
        if own is not None:
            return SpeedChoice(own.speed_factor, precision, f"{precision} factor", own.source)
        if precision is None:
            basis = "fp32 factor (the variant's precision is not known)"
        elif precision == "fp32":
            basis = "fp32 factor"
        else:
            basis = f"fp32 factor (the profile has no {precision} factor)"
        return SpeedChoice(self.speed_factor, precision, basis, self.speed_source)


class QemuSettings(StrictModel):
    """How an ``aarch64-qemu`` device emulates the board (``[qemu]``)."""

    # qemu's CPU model (``qemu-aarch64-static -cpu help``): its features are the ones the
    # runtimes' kernels see, so it should be the board's core (Pi 5: cortex-a76).
    cpu: str = Field("cortex-a76", min_length=1)
    # The Debian release of the root: bookworm's python3 is 3.11, the cp311 wheels'.
    release: str = Field("bookworm", min_length=1)
    # Where the root is built; default $HARNESS_CACHE_DIR/<profile name>, where
    # HARNESS_CACHE_DIR defaults to ~/.cache/harness.
    root_dir: str | None = Field(None, min_length=1)
    # A Debian mirror; default: the one apt on this machine is configured with.
    mirror: str | None = Field(None, min_length=1)


class DeviceProfile(StrictModel):
    name: str
    kind: Literal["local", "emulated", "ssh", "aarch64-qemu"] = "local"
    description: str = ""
    # emulated and aarch64-qemu only: the profile whose tables are copied
    board: str | None = None
    hardware: HardwareFacts = HardwareFacts()
    power: PowerModel | None = None
    connection: Connection | None = None
    emulation: EmulationCaps | None = None
    qemu: QemuSettings | None = None

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"

    def target(self) -> TargetInfo:
        """The CPU a variant for this device is exported for.

        An emulated device runs on this machine, so its target is this machine's CPU
        (with at most its capped cores): an ARM artifact would not even load here.
        """
        here = local_target()
        if self.kind == "emulated":
            cores = self.emulation.cores if self.emulation and self.emulation.cores else None
            return TargetInfo(
                arch=here.arch,
                cpu_features=here.cpu_features,
                cores=min(cores or here.cores, here.cores),
            )
        hw = self.hardware
        if self.kind == "aarch64-qemu":
            # The board's CPU, not this one: the artifact runs in the arm64 root.
            return TargetInfo(
                arch="aarch64",
                cpu_features=frozenset(hw.cpu_features),
                cores=hw.cores or here.cores,
            )
        return TargetInfo(
            arch=hw.arch or here.arch,
            cpu_features=frozenset(hw.cpu_features) if hw.cpu_features else here.cpu_features,
            cores=hw.cores or here.cores,
        )


_INHERITED = ("hardware", "power", "emulation")


def _inherit_board(path: Path, data: dict[str, Any], seen: tuple[Path, ...]) -> dict[str, Any]:
    """``data`` with the board profile's tables filled in (its own keys win)."""
    board = data["board"]
    board_path = find_profile(board, [path.parent]) if isinstance(board, str) else None
    if board_path is None:
        known = sorted(p.stem for p in path.parent.glob("*.toml") if p != path)
        raise ConfigError(
            path, "board", "a device profile beside this one: " + suggest(str(board), known), board
        )
    if board_path.resolve() in seen:
        raise ConfigError(path, "board", "a profile that does not lead back to this one", board)
    base = _load(board_path, (*seen, board_path.resolve())).model_dump(mode="python")
    merged = dict(data)
    # A qemu device runs the board's build, not this machine under caps: no [emulation].
    tables = _INHERITED if data.get("kind") == "emulated" else ("hardware", "power")
    for table in tables:
        own = data.get(table)
        if base.get(table) is None:
            continue
        if own is None:
            merged[table] = base[table]
        elif isinstance(own, dict):
            merged[table] = {**base[table], **own}
    return merged


def _check_kind(path: Path, profile: DeviceProfile) -> None:
    """Cross-table rules, reported with the key to fix."""
    if profile.kind == "ssh":
        if profile.connection is None:
            raise ConfigError(
                path,
                "connection",
                "a [connection] table (host, user, key_file or agent) for kind 'ssh'",
            )
        if not profile.hardware.arch:
            raise ConfigError(
                path, "hardware.arch", "the board's arch (e.g. 'aarch64') for kind 'ssh'"
            )
    elif profile.connection is not None:
        raise ConfigError(
            path, "connection", "no [connection] table: it is only used by kind 'ssh'"
        )
    if profile.board is not None and profile.kind not in _BOARD_KINDS:
        raise ConfigError(
            path,
            "board",
            "no 'board' key: it is only used by kinds 'emulated' and 'aarch64-qemu'",
            profile.board,
        )
    if profile.qemu is not None and profile.kind != "aarch64-qemu":
        raise ConfigError(path, "qemu", "no [qemu] table: it is only used by kind 'aarch64-qemu'")
    if profile.kind == "aarch64-qemu" and profile.hardware.arch not in (None, "aarch64"):
        raise ConfigError(
            path,
            "hardware.arch",
            "'aarch64' (or no arch) for kind 'aarch64-qemu'",
            profile.hardware.arch,
        )
    if profile.kind == "emulated" and profile.emulation is None:
        raise ConfigError(
            path,
            "emulation",
            "an [emulation] table (cores, speed_factor, memory_mb) or board = '<profile>'",
        )


_BOARD_KINDS = ("emulated", "aarch64-qemu")


def _load(path: Path, seen: tuple[Path, ...]) -> DeviceProfile:
    data = load_toml(path)
    if data.get("kind") in _BOARD_KINDS and "board" in data:
        data = _inherit_board(path, data, seen)
    profile = validate(DeviceProfile, {"name": path.stem, **data}, path)
    if profile.name != path.stem:
        raise ConfigError(path, "name", f"the file's name {path.stem!r}", profile.name)
    _check_kind(path, profile)
    return profile


def load_profile(path: Path) -> DeviceProfile:
    """Load and validate one profile; a ``board`` is looked up beside it."""
    return _load(path, (path.resolve(),))


def find_profile(name: str, dirs: list[Path]) -> Path | None:
    for directory in dirs:
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def list_profiles(dirs: list[Path]) -> list[DeviceProfile]:
    seen: dict[str, DeviceProfile] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            if path.stem not in seen:
                seen[path.stem] = load_profile(path)
    return list(seen.values())
