"""Where a fit's inputs come from besides the store: a suite file's budgets and device
directories (:func:`load_suite_budgets`), the boards that emulated profiles stand for
(:func:`boards_from_profiles`, :func:`board_of`), and the run's devices."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.configfile import load_toml, validate
from harness.errors import ConfigError
from harness.results.store import CellRecord
from harness.suite.config import Budget, default_dirs

EMULATED_SUFFIX = "-emulated"


@dataclass(frozen=True)
class SuiteBudgets:
    """What ``harness fit`` takes from a suite file: its budgets and where its device
    profiles are looked up (for the boards of emulated profiles)."""

    path: Path
    budgets: dict[str, Budget]
    device_dirs: tuple[Path, ...]


def load_suite_budgets(path: Path) -> SuiteBudgets:
    """Read only the ``budgets`` and ``device_dirs`` of a suite: a report on an old run
    must not depend on the suite's models still importing."""
    data = load_toml(path)
    tables = data.get("budgets", {})
    if not isinstance(tables, dict):
        raise ConfigError(path, "budgets", "a table of [budgets.<device>] tables", tables)
    budgets = {
        name: validate(Budget, table, path, key_prefix=f"budgets.{name}")
        for name, table in tables.items()
    }
    extra = data.get("device_dirs", [])
    if not isinstance(extra, list) or not all(isinstance(d, str) for d in extra):
        raise ConfigError(path, "device_dirs", "a list of directory names", extra)
    return SuiteBudgets(path, budgets, tuple(default_dirs(path.parent, "devices", extra)))


def boards_from_profiles(dirs: Iterable[Path]) -> dict[str, str]:
    """Emulated profile name -> its board, from the profiles in ``dirs`` (first wins).
    A profile that does not load is skipped: it cannot stop a report on stored data."""
    from harness.devices.config import load_profile

    boards: dict[str, str] = {}
    seen: set[str] = set()
    for directory in dirs:
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                profile = load_profile(path)
            except ConfigError:
                continue
            if profile.emulated and profile.board:
                boards[profile.name] = profile.board
    return boards


def board_of(device: str, emulated: bool, boards: Mapping[str, str]) -> str | None:
    """The real board an emulated device stands for. The store does not record it, so it
    comes from the profiles; a profile no longer around falls back to the naming
    convention of the shipped profiles (``pi4-emulated`` emulates ``pi4``)."""
    if not emulated:
        return None
    if device in boards:
        return boards[device]
    if device.endswith(EMULATED_SUFFIX) and len(device) > len(EMULATED_SUFFIX):
        return device[: -len(EMULATED_SUFFIX)]
    return None


def device_selected(
    device: str, emulated: bool, wanted: Collection[str] | None, boards: Mapping[str, str]
) -> bool:
    """Whether ``--device`` names this device or the board it emulates."""
    if wanted is None:
        return True
    return device in wanted or board_of(device, emulated, boards) in wanted


def run_devices(cells: Iterable[CellRecord]) -> dict[str, bool]:
    """The run's devices in the order the matrix met them, and whether each is emulated."""
    devices: dict[str, bool] = {}
    for cell in cells:
        devices[cell.device] = devices.get(cell.device, False) or cell.emulated
    return devices
