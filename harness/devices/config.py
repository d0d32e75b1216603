"""Device profiles (``devices/*.toml``): what a device is and how to reach it.

A profile holds the board's hardware facts (which pick the export formats), its power
model (used when the board has no power sensor), how to reach it over SSH, and the
caps that make this machine behave like it (emulation). Its ``kind`` (default
``local``) picks the profile's class in :data:`PROFILE_KINDS`; each class checks the
tables its kind needs or must not have, and says which CPU a variant is exported for
(:meth:`DeviceProfile.target`) and which runs may not overlap (:meth:`DeviceProfile.lane`).
The kinds:

* ``local`` (:class:`LocalProfile`): this machine as it is;
* ``emulated`` (:class:`EmulatedProfile`): this machine held to the ``[emulation]`` caps
  (cores, single-core speed, memory). It runs on this CPU, so its artifacts are built
  for *this* machine (its target is the local target), while its caps, power model and
  hardware facts describe the board. ``board = "pi4"`` copies the ``hardware``,
  ``power`` and ``emulation`` tables of ``pi4.toml`` (beside this file); keys the
  emulated profile sets itself win;
* ``ssh`` (:class:`SshProfile`): a real board reached over SSH (:mod:`harness.devices.ssh`),
  its own lane;
* ``aarch64-qemu`` (:class:`QemuProfile`): the board's own build (arm64 wheels, artifacts
  for the board's CPU) run under qemu-aarch64 in an arm64 Debian root
  (:mod:`harness.devices.qemu`). Its target is the board's (``board = "pi5"`` copies the
  ``hardware`` and ``power`` tables); its outputs are real, its timings are not.

Every class has every field, in one order, so a profile dumps (and hashes into a cell's
config hash, see :meth:`harness.suite.walk.SuiteWalker.config_hash`) the same whatever
its class: the tables of other kinds are there as None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, model_validator

from harness.configfile import StrictModel, load_toml, validate
from harness.errors import ConfigError, HarnessError
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


# The keys only some kinds use, as an error names them.
_KIND_KEYS = {"connection": "[connection] table", "board": "'board' key", "qemu": "[qemu] table"}


class DeviceProfile(StrictModel):
    """What every kind's profile has; a profile is one of its subclasses
    (:data:`PROFILE_KINDS`), built by :func:`load_profile` or :func:`make_profile`."""

    name: str
    kind: str = "local"
    description: str = ""
    # emulated and aarch64-qemu only: the profile whose tables are copied
    board: str | None = None
    hardware: HardwareFacts = HardwareFacts()
    power: PowerModel | None = None
    connection: Connection | None = None
    emulation: EmulationCaps | None = None
    qemu: QemuSettings | None = None

    # Which of the keys in _KIND_KEYS this kind may set.
    own_keys: ClassVar[frozenset[str]] = frozenset()
    # With ``board = "<profile>"``: the tables copied from that profile.
    board_tables: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _check_kind(self, info: ValidationInfo) -> DeviceProfile:
        if type(self) is DeviceProfile:
            raise TypeError(
                "DeviceProfile is the base of the kinds' profiles: build one with "
                "make_profile() or load_profile(), or a class of PROFILE_KINDS"
            )
        context = info.context or {}
        file = context.get("file")
        # Before the kind's rules, as the only error when both are wrong.
        if file is not None and self.name != Path(file).stem:
            raise ConfigError(file, "name", f"the file's name {Path(file).stem!r}", self.name)
        self.check_kind(file)
        return self

    def check_kind(self, file: Path | None) -> None:
        """Raise :class:`ConfigError` (naming ``file`` and the key to fix) when the
        tables do not fit this kind. Subclasses add their own rules."""
        self._no_keys_of_other_kinds(file)

    def _no_keys_of_other_kinds(self, file: Path | None) -> None:
        for key, what in _KIND_KEYS.items():
            value = getattr(self, key)
            if value is None or key in self.own_keys:
                continue
            users = [f"'{kind}'" for kind, cls in PROFILE_KINDS.items() if key in cls.own_keys]
            if not users:
                used_by = "no kind"
            elif len(users) == 1:
                used_by = f"kind {users[0]}"
            else:
                used_by = f"kinds {', '.join(users[:-1])} and {users[-1]}"
            got = value if isinstance(value, str) else None
            raise ConfigError(file, key, f"no {what}: it is only used by {used_by}", got)

    @property
    def emulated(self) -> bool:
        """Whether this machine stands in for the board under caps."""
        return False

    @property
    def is_remote_board(self) -> bool:
        """Whether the device is a board of its own, reached over the network: the probe
        runs on the hardware the profile describes, and losing it mid-run is transient."""
        return False

    def target(self) -> TargetInfo:
        """The CPU a variant for this device is exported for: the hardware facts, with
        this machine's filling what they leave out."""
        here = local_target()
        hw = self.hardware
        return TargetInfo(
            arch=hw.arch or here.arch,
            cpu_features=frozenset(hw.cpu_features) if hw.cpu_features else here.cpu_features,
            cores=hw.cores or here.cores,
        )

    def lane(self) -> str:
        """Which runs must not overlap: everything on this machine (local and emulated
        devices share its cores, so running them side by side would disturb both) is
        one lane."""
        return "this-machine"


class LocalProfile(DeviceProfile):
    """This machine as it is."""

    kind: Literal["local"] = "local"


class EmulatedProfile(DeviceProfile):
    """This machine held to the board's ``[emulation]`` caps."""

    kind: Literal["emulated"] = "emulated"

    own_keys: ClassVar[frozenset[str]] = frozenset({"board"})
    board_tables: ClassVar[tuple[str, ...]] = ("hardware", "power", "emulation")

    def check_kind(self, file: Path | None) -> None:
        super().check_kind(file)
        if self.emulation is None:
            raise ConfigError(
                file,
                "emulation",
                "an [emulation] table (cores, speed_factor, memory_mb) or board = '<profile>'",
            )

    @property
    def emulated(self) -> bool:
        return True

    def target(self) -> TargetInfo:
        """This machine's CPU (with at most its capped cores): the device runs here, so
        an ARM artifact would not even load."""
        here = local_target()
        cores = self.emulation.cores if self.emulation and self.emulation.cores else None
        return TargetInfo(
            arch=here.arch,
            cpu_features=here.cpu_features,
            cores=min(cores or here.cores, here.cores),
        )


class SshProfile(DeviceProfile):
    """A real board reached over SSH (:mod:`harness.devices.ssh`)."""

    kind: Literal["ssh"] = "ssh"

    own_keys: ClassVar[frozenset[str]] = frozenset({"connection"})

    def check_kind(self, file: Path | None) -> None:
        if self.connection is None:
            raise ConfigError(
                file,
                "connection",
                "a [connection] table (host, user, key_file or agent) for kind 'ssh'",
            )
        if not self.hardware.arch:
            raise ConfigError(
                file, "hardware.arch", "the board's arch (e.g. 'aarch64') for kind 'ssh'"
            )
        super().check_kind(file)

    @property
    def is_remote_board(self) -> bool:
        return True

    def lane(self) -> str:
        """Each board is its own lane, named by the address it resolves to."""
        conn = self.connection
        assert conn is not None  # check_kind requires it
        host, port = conn.host, conn.port
        try:
            # Through ~/.ssh/config: two profiles naming one board by an alias and by its
            # address are one lane, so their runs never overlap.
            from harness.devices.ssh_connect import resolve_target

            target = resolve_target(self)
            host, port = target.host, target.port
        except HarnessError:
            pass  # no user to log in as: the cell fails on that; the lane is as written
        return f"ssh:{host}:{port}"


class QemuProfile(DeviceProfile):
    """The board's own build under qemu-aarch64 (:mod:`harness.devices.qemu`)."""

    kind: Literal["aarch64-qemu"] = "aarch64-qemu"

    own_keys: ClassVar[frozenset[str]] = frozenset({"board", "qemu"})
    # It runs the board's build, not this machine under caps: no [emulation].
    board_tables: ClassVar[tuple[str, ...]] = ("hardware", "power")

    def check_kind(self, file: Path | None) -> None:
        super().check_kind(file)
        if self.hardware.arch not in (None, "aarch64"):
            raise ConfigError(
                file,
                "hardware.arch",
                "'aarch64' (or no arch) for kind 'aarch64-qemu'",
                self.hardware.arch,
            )

    def target(self) -> TargetInfo:
        """The board's CPU, not this one: the artifact runs in the arm64 root."""
        hw = self.hardware
        return TargetInfo(
            arch="aarch64",
            cpu_features=frozenset(hw.cpu_features),
            cores=hw.cores or local_target().cores,
        )


# A profile's ``kind`` -> its class. A new kind adds its class here and its device in
# harness.devices.DEVICE_KINDS.
PROFILE_KINDS: dict[str, type[DeviceProfile]] = {
    "local": LocalProfile,
    "emulated": EmulatedProfile,
    "ssh": SshProfile,
    "aarch64-qemu": QemuProfile,
}


def profile_class(data: Mapping[str, Any], file: Path | None = None) -> type[DeviceProfile]:
    """The class of the profile ``data`` describes (by its ``kind``, default local)."""
    kind = data.get("kind", "local")
    cls = PROFILE_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(
            file, "kind", "a known device kind, " + suggest(str(kind), PROFILE_KINDS), kind
        )
    return cls


def make_profile(data: Mapping[str, Any], file: Path | None = None) -> DeviceProfile:
    """The profile of its kind's class, validated; errors name ``file``, and a profile
    read from ``file`` is named after it."""
    cls = profile_class(data, file)
    return validate(cls, dict(data), file, context={"file": file})


def _inherit_board(
    path: Path, data: dict[str, Any], tables: tuple[str, ...], seen: tuple[Path, ...]
) -> dict[str, Any]:
    """``data`` with the board profile's ``tables`` filled in (its own keys win)."""
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
    for table in tables:
        own = data.get(table)
        if base.get(table) is None:
            continue
        if own is None:
            merged[table] = base[table]
        elif isinstance(own, dict):
            merged[table] = {**base[table], **own}
    return merged


def _load(path: Path, seen: tuple[Path, ...]) -> DeviceProfile:
    data = load_toml(path)
    cls = profile_class(data, path)
    if cls.board_tables and "board" in data:
        data = _inherit_board(path, data, cls.board_tables, seen)
    return make_profile({"name": path.stem, **data}, path)


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
