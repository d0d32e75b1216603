"""Facts about the CPU a variant will run on, used to pick kernels and formats."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TargetInfo:
    arch: str  # "x86_64" or "aarch64"
    cpu_features: frozenset[str] = field(default_factory=frozenset)
    cores: int = 1

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm64", "armv7l")

    @property
    def has_vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni"} & self.cpu_features)

    def to_dict(self) -> dict:
        return {"arch": self.arch, "cpu_features": sorted(self.cpu_features), "cores": self.cores}


_INTERESTING_FLAGS = {
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "f16c",
    "fma",
    "asimd",
    "asimddp",
    "asimdhp",
    "fphp",
    "i8mm",
    "sve",
}


def read_cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """Flags of the first CPU listed (x86 'flags', ARM 'Features'), filtered to those we use."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split()) & _INTERESTING_FLAGS
    return frozenset()


def local_target() -> TargetInfo:
    return TargetInfo(
        arch=platform.machine(), cpu_features=read_cpu_features(), cores=os.cpu_count() or 1
    )
