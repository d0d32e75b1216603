"""Device profiles (``devices/*.toml``): what a device is and how to reach it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from harness.configfile import StrictModel, load_toml, validate
from harness.errors import ConfigError
from harness.target import TargetInfo, local_target


class HardwareFacts(StrictModel):
    arch: str | None = None  # None: read from the machine (local devices)
    cores: int | None = Field(None, ge=1)
    cpu: str = ""
    clock_ghz: float | None = Field(None, gt=0)
    ram_mb: int | None = Field(None, gt=0)
    cpu_features: list[str] = []


class PowerModel(StrictModel):
    idle_w: float = Field(ge=0)
    max_w: float = Field(gt=0)
    source: str = Field(min_length=1, description="where the figures come from")


class DeviceProfile(StrictModel):
    name: str
    kind: Literal["local"] = "local"
    description: str = ""
    hardware: HardwareFacts = HardwareFacts()
    power: PowerModel | None = None

    @property
    def emulated(self) -> bool:
        return False

    def target(self) -> TargetInfo:
        """The CPU a variant for this device is exported for."""
        here = local_target()
        hw = self.hardware
        return TargetInfo(
            arch=hw.arch or here.arch,
            cpu_features=frozenset(hw.cpu_features) if hw.cpu_features else here.cpu_features,
            cores=hw.cores or here.cores,
        )


def load_profile(path: Path) -> DeviceProfile:
    data = load_toml(path)
    profile = validate(DeviceProfile, {"name": path.stem, **data}, path)
    if profile.name != path.stem:
        raise ConfigError(path, "name", f"the file's name {path.stem!r}", profile.name)
    return profile


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
