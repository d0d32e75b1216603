"""A cell's measurements as a typed, immutable, versioned object (after pyperf's ``Run``).

:attr:`CellRecord.result <harness.results.store.CellRecord.result>` is a :class:`CellResult`:
readers ask ``result.latency.p50_ms`` or ``result.peak_memory_mb`` instead of repeating
``(d.get("latency_ms") or {}).get("p50")``. It is also a read-only mapping of the stored
keys (``result["deploy"]``), whose values come back as fresh plain dicts and lists, so a
reader can neither change a stored result nor see one change under it. A changed result is
a new object (:meth:`CellResult.with_values`).

On disk (the store's ``result_json``) a result carries ``api_version``; results stored
before it did have the version-1 shape. :data:`MIGRATIONS` takes an older shape forward
one version at a time when it is read, so a report always sees the current shape.
:meth:`CellResult.to_dict` gives the shape without the version, which is what JSON exports
show, so they stay byte-identical across versions that only add keys.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

CELL_RESULT_API_VERSION = 1

# version N -> the function taking a version-N dict (without "api_version") to version N+1.
# Empty while every stored shape is version 1; a change of shape adds its step here and
# bumps CELL_RESULT_API_VERSION.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


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


def migrate(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (as stored, with or without ``api_version``) in the current shape, without
    the version key."""
    version = raw.get("api_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CellResultError(f"cell result api_version {version!r} is not a version number")
    if version > CELL_RESULT_API_VERSION:
        raise CellResultError(
            f"cell result api_version {version!r} is newer than this harness reads "
            f"(up to {CELL_RESULT_API_VERSION}); upgrade the harness"
        )
    body = {k: copy.deepcopy(v) for k, v in raw.items() if k != "api_version"}
    while version < CELL_RESULT_API_VERSION:
        body = MIGRATIONS[version](body)
        version += 1
    return body


@dataclass(frozen=True)
class Latency:
    """The latency statistics of a cell, in milliseconds."""

    stats: Mapping[str, Any]

    def stat(self, name: str) -> float | None:
        """One statistic by its stored name ("p50", "p90", "mean", ...), None if absent."""
        return _thawed(self.stats.get(name))

    @property
    def p50_ms(self) -> float | None:
        return self.stat("p50")

    @property
    def ci95_ms(self) -> tuple[float, float] | None:
        """The p50's 95% confidence interval, when the cell has one."""
        ci = self.stats.get("ci95")
        return (float(ci[0]), float(ci[1])) if ci else None

    @property
    def ci_basis(self) -> str | None:
        """What the interval was computed over ("trials", "samples", ...)."""
        return self.stats.get("ci_basis")

    @property
    def trial_p50s_ms(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.stats.get("trial_p50s") or ())

    def __bool__(self) -> bool:
        """Whether the cell has latency statistics at all."""
        return bool(self.stats)

    def to_dict(self) -> dict[str, Any]:
        return _thawed(self.stats)


@dataclass(frozen=True, eq=False)
class CellResult(Mapping[str, Any]):
    """One cell's measurements; missing data reads as None (or an empty tuple/dict).

    Accessors that return dicts or lists return fresh copies (changing one changes
    nothing stored)."""

    data: Mapping[str, Any]
    api_version: int = CELL_RESULT_API_VERSION

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CellResult:
        """A result from its stored or freshly measured dict (copied, then frozen)."""
        if isinstance(raw, CellResult):
            return raw
        return cls(data=_frozen(migrate(raw)), api_version=CELL_RESULT_API_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """The stored shape without ``api_version`` (what JSON exports show)."""
        return _thawed(self.data)

    def to_stored(self) -> dict[str, Any]:
        """What the store writes: the shape with its version."""
        return {"api_version": self.api_version, **self.to_dict()}

    def with_values(self, **values: Any) -> CellResult:
        """A new result with these keys set (a None value sets the key to null)."""
        return CellResult.from_dict({**self.to_dict(), **values})

    # --- the read-only mapping of stored keys -------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return _thawed(self.data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CellResult):
            return self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CellResult({self.to_dict()!r})"

    # --- measurements -------------------------------------------------------------------

    @property
    def latency(self) -> Latency:
        return Latency(self.data.get("latency_ms") or MappingProxyType({}))

    @property
    def samples(self) -> int | None:
        """How many latency samples the cell kept."""
        return self.data.get("samples")

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
    def cosine(self) -> float | None:
        return self.data.get("cosine")

    @property
    def output(self) -> str | None:
        """What the model's output is ("embedding", "logits", ...), when known."""
        return self.data.get("output")

    @property
    def energy_mj(self) -> float | None:
        return self.data.get("energy_mj")

    @property
    def power_source(self) -> str | None:
        return self.data.get("power_source")

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
    def trials(self) -> Any:
        return _thawed(self.data.get("trials"))

    @property
    def wall_seconds(self) -> float | None:
        return self.data.get("wall_seconds")

    # --- how it was measured --------------------------------------------------------------

    @property
    def measure(self) -> dict[str, Any]:
        return _thawed(self.data.get("measure") or {})

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The input specs the cell was fed (name, shape, dtype, ...)."""
        return _thawed(self.data.get("inputs") or ())

    @property
    def runtime_version(self) -> str | None:
        return self.data.get("runtime_version")

    @property
    def runtime_settings(self) -> dict[str, Any]:
        """What the runtime's session ran with, where it says (OpenVINO's precision)."""
        return _thawed(self.data.get("runtime_settings") or {})

    @property
    def emulation(self) -> dict[str, Any]:
        """How an emulated cell was capped (``caps``, ...); empty for a real device."""
        return _thawed(self.data.get("emulation") or {})

    @property
    def executor(self) -> dict[str, Any] | None:
        """What ran the cell's trials and when: ``{"kind": "inprocess" | "ray", "host",
        "node" (Ray's node id), "started_at", "ended_at"}`` (UTC ISO times), None for a
        cell stored before it was recorded."""
        return _thawed(self.data.get("executor"))

    @property
    def deploy(self) -> dict[str, Any] | None:
        """What reached an SSH board (host, files sent, bytes, seconds), else None."""
        return _thawed(self.data.get("deploy"))

    # --- where the variant came from -------------------------------------------------------

    @property
    def lineage(self) -> list[dict[str, Any]]:
        """The recipe steps that made the variant, in order; empty for a baseline."""
        return _thawed(self.data.get("lineage") or ())

    @property
    def transform_notes(self) -> list[dict[str, Any]]:
        return _thawed(self.data.get("transform_notes") or ())

    @property
    def export_notes(self) -> dict[str, Any]:
        return _thawed(self.data.get("export_notes") or {})

    # --- a failed cell ----------------------------------------------------------------------

    @property
    def failure_kind(self) -> str | None:
        return self.data.get("failure_kind")

    @property
    def error(self) -> str | None:
        return self.data.get("error")
