"""A cell's measurements as a typed, immutable, versioned object (after pyperf's ``Run``).

The store keeps the dict the runner returned (``CellRecord.result``); :class:`CellResult`
wraps a copy of it so readers ask ``result.latency.p50_ms`` or ``result.peak_memory_mb``
instead of repeating ``(d.get("latency_ms") or {}).get("p50")``. ``to_dict`` gives back
exactly the stored shape, so JSON exports and stored runs stay byte-identical.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# Dicts stored before results carried a version have no "api_version" key; their shape is
# version 1, the shape every stored run so far has.
CELL_RESULT_API_VERSION = 1


class CellResultError(ValueError):
    """A stored result this harness cannot read (written by a newer one)."""


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


@dataclass(frozen=True)
class Latency:
    """The latency statistics of a cell, in milliseconds."""

    stats: Mapping[str, Any]

    def stat(self, name: str) -> float | None:
        """One statistic by its stored name ("p50", "p90", "mean", ...), None if absent."""
        value = self.stats.get(name)
        return None if value is None else value

    @property
    def p50_ms(self) -> float | None:
        return self.stat("p50")

    @property
    def trial_p50s_ms(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.stats.get("trial_p50s") or ())


@dataclass(frozen=True)
class CellResult:
    """One cell's measurements; missing data reads as None (or an empty tuple/mapping)."""

    data: Mapping[str, Any]
    api_version: int = CELL_RESULT_API_VERSION

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CellResult:
        version = raw.get("api_version", CELL_RESULT_API_VERSION)
        if not isinstance(version, int) or version > CELL_RESULT_API_VERSION:
            raise CellResultError(
                f"cell result api_version {version!r} is newer than this harness reads "
                f"(up to {CELL_RESULT_API_VERSION}); upgrade the harness"
            )
        body = {k: v for k, v in raw.items() if k != "api_version"}
        return cls(data=_frozen(copy.deepcopy(body)), api_version=CELL_RESULT_API_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """The stored shape (without ``api_version``, which older stores never had)."""
        return _thawed(self.data)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    @property
    def latency(self) -> Latency:
        return Latency(self.data.get("latency_ms") or MappingProxyType({}))

    @property
    def peak_memory_mb(self) -> float | None:
        return (self.data.get("memory_mb") or {}).get("peak")

    @property
    def accuracy(self) -> float | None:
        return self.data.get("accuracy")

    @property
    def agreement(self) -> float | None:
        return self.data.get("agreement")

    @property
    def energy_mj(self) -> float | None:
        return self.data.get("energy_mj")

    @property
    def snr_db(self) -> float | None:
        return self.data.get("snr_db")

    @property
    def snr_varying_db(self) -> float | None:
        return self.data.get("snr_varying_db")

    @property
    def baseline_degenerate(self) -> tuple[str, ...]:
        return tuple(self.data.get("baseline_degenerate") or ())

    @property
    def validity(self) -> Any:
        """As stored ("ok", a reason, a list of reasons, or None)."""
        return _thawed(self.data.get("validity"))

    @property
    def measure(self) -> Mapping[str, Any]:
        return self.data.get("measure") or MappingProxyType({})

    @property
    def runtime_version(self) -> str | None:
        return self.data.get("runtime_version")
