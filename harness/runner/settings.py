"""The measure settings, defined once: every key of a suite's ``[measure]`` table.

One :class:`Setting` per key gives its type, default, bounds, where the runner's job
carries it and what it does. :class:`harness.suite.config.MeasureConfig` (the suite's
validation), :class:`MeasureSettings` (what the host hands the runner and its trials)
and :func:`job_settings` (their place in the job) are built from :data:`MEASURE_SETTINGS`.
The runner cannot import this (it travels to the board alone) and keeps its own rule
table; tests/runner/test_measure_settings.py checks that its defaults and bounds agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

BOUNDS = ("ge", "gt", "le", "lt")


@dataclass(frozen=True)
class Setting:
    """One ``[measure]`` key. ``job_key`` is its path in the job (None: the host uses it
    alone, as ``trials``). ``measured`` False: it changes nothing about the numbers (the
    host's time-out), so it stays out of :class:`MeasureSettings` and of the settings a
    cell records and hashes."""

    name: str
    type: type
    default: bool | int | float | None
    doc: str
    job_key: tuple[str, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    nullable: bool = False
    measured: bool = True

    @property
    def annotation(self) -> Any:
        return self.type | None if self.nullable else self.type

    def bounds(self) -> dict[str, float]:
        """The bounds it has, by pydantic's names (``ge``: >=, ``gt``: >, ...)."""
        return {b: getattr(self, b) for b in BOUNDS if getattr(self, b) is not None}


MEASURE_SETTINGS: tuple[Setting, ...] = (
    Setting("threads", int, 1, "intra-op threads of the runtime", ("threads",), ge=1),
    Setting(
        "warmup_count", int, 10, "untimed inferences before timing", ("warmup", "min_count"), ge=0
    ),
    Setting(
        "warmup_seconds",
        float,
        0.2,
        "warm up for at least this long too",
        ("warmup", "min_seconds"),
        ge=0,
    ),
    Setting(
        "min_count",
        int,
        50,
        "timed inferences at least (sampling stops when both minimums are reached)",
        ("measure", "min_count"),
        ge=1,
    ),
    Setting(
        "min_seconds", float, 1.0, "time for at least this long", ("measure", "min_seconds"), ge=0
    ),
    Setting(
        "max_seconds", float, 30.0, "hard cap on the timed loop", ("measure", "max_seconds"), gt=0
    ),
    Setting(
        "timeout_seconds",
        float,
        600.0,
        "the host's deadline for one runner process",
        gt=0,
        measured=False,
    ),
    Setting(
        "seed",
        int,
        0,
        "seed of the generated inputs (recipes and evaluation data use it too)",
        ("seed",),
        ge=0,
    ),
    Setting(
        "batch",
        int,
        1,
        "items per inference; > 1 needs a dynamic batch dimension",
        ("batch",),
        ge=1,
    ),
    Setting(
        "trials",
        int,
        3,
        "runner processes per cell; the reported CI is built over them",
        ge=1,
        le=100,
    ),
    Setting(
        "adaptive_ci",
        float,
        None,
        "stop once the median's 95% CI is within +- this fraction (e.g. 0.01)",
        ("measure", "adaptive_ci"),
        gt=0,
        lt=1,
        nullable=True,
    ),
    Setting(
        "adaptive_check_every",
        int,
        20,
        "samples between checks of the adaptive rule",
        ("measure", "check_every"),
        ge=1,
    ),
    Setting(
        "max_cv",
        float,
        0.20,
        "a trial whose robust CV is above this is marked unstable",
        ("measure", "max_cv"),
        gt=0,
    ),
    Setting(
        "cooldown_c",
        float,
        None,
        "wait, before timing, until the hottest thermal zone is below this (deg C)",
        ("cooldown", "max_c"),
        gt=0,
        lt=200,
        nullable=True,
    ),
    Setting(
        "cooldown_timeout_s",
        float,
        60.0,
        "give up waiting for the cool-down after this long",
        ("cooldown", "timeout_s"),
        ge=0,
    ),
    Setting(
        "idle_seconds",
        float,
        0.5,
        "idle power is read for this long (with a real sensor)",
        ("power", "idle_seconds"),
        ge=0,
    ),
    Setting(
        "power_interval_s",
        float,
        0.1,
        "seconds between power readings",
        ("power", "interval_s"),
        gt=0,
    ),
    Setting("profile", bool, False, "a per-op profile in a separate pass", ("profile", "enabled")),
    Setting("profile_count", int, 20, "inferences in the profile pass", ("profile", "count"), ge=1),
    Setting("profile_top", int, 10, "ops the profile lists", ("profile", "top"), ge=1),
)

MeasureSettings = dataclasses.make_dataclass(
    "MeasureSettings",
    [
        (s.name, s.annotation, dataclasses.field(default=s.default))
        for s in MEASURE_SETTINGS
        if s.measured
    ],
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": "How one cell is timed: the measured settings of :data:`MEASURE_SETTINGS`.",
    },
)


def job_settings(settings: MeasureSettings) -> dict[str, Any]:
    """The settings at their places in the job (``warmup_count`` -> ``warmup.min_count``)."""
    out: dict[str, Any] = {}
    for setting in MEASURE_SETTINGS:
        if setting.job_key is None:
            continue
        *sections, key = setting.job_key
        target = out
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = getattr(settings, setting.name)
    return out
