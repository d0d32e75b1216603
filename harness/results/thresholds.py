"""Thresholds for regression verdicts: a metric, which direction is worse, and how large
a change has to be before it counts.

A threshold is parsed once, from a command-line string (``latency=5%``, ``memory=10%``,
``size=2%``, ``accuracy=0.5pt``) or from a suite's ``[compare]`` table, into a frozen
:class:`Threshold`; the comparison asks it how much worse a value got and whether that
is beyond its limit, instead of matching metric names and units all over the code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from harness.errors import ConfigError

COMMAND_LINE = "<command line>"


class Direction(str, Enum):
    HIGHER_IS_WORSE = "higher_is_worse"
    LOWER_IS_WORSE = "lower_is_worse"


class LimitKind(str, Enum):
    RELATIVE = "relative"  # a fraction of the base value: "5%" is 0.05
    POINTS = "points"  # a difference in percentage points: "0.5pt" is 0.005 of a fraction


_SUFFIX = {LimitKind.RELATIVE: "%", LimitKind.POINTS: "pt"}


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is: its canonical name, the names a user may type, which way is
    worse, the limit kinds that make sense for it and its default limit."""

    name: str
    aliases: tuple[str, ...]
    direction: Direction
    kinds: tuple[LimitKind, ...]
    default: str
    description: str


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "latency_p50",
            ("latency", "p50", "latency_p50"),
            Direction.HIGHER_IS_WORSE,
            (LimitKind.RELATIVE,),
            "5%",
            "median latency; also the minimum effect size of the significance test",
        ),
        MetricSpec(
            "memory_peak",
            ("memory", "peak_memory", "memory_peak"),
            Direction.HIGHER_IS_WORSE,
            (LimitKind.RELATIVE,),
            "10%",
            "peak RSS during inference",
        ),
        MetricSpec(
            "size",
            ("size", "size_bytes"),
            Direction.HIGHER_IS_WORSE,
            (LimitKind.RELATIVE,),
            "2%",
            "artifact size on disk",
        ),
        MetricSpec(
            "accuracy",
            ("accuracy",),
            Direction.LOWER_IS_WORSE,
            (LimitKind.POINTS,),
            "0.5pt",
            "task accuracy on held-out data, in percentage points",
        ),
    )
}
_BY_ALIAS = {alias: spec for spec in METRICS.values() for alias in spec.aliases}
_LIMIT_RE = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>%|pt)\s*$")


@dataclass(frozen=True)
class Threshold:
    """``metric`` gets a verdict when it moves by at least ``limit`` (a fraction of the
    base value for :attr:`LimitKind.RELATIVE`, an absolute difference of a 0..1 fraction
    for :attr:`LimitKind.POINTS`) in either direction; ``direction`` says which way is
    a regression."""

    metric: str
    direction: Direction
    limit: float
    kind: LimitKind = LimitKind.RELATIVE

    def change(self, base: float, new: float) -> float:
        """``new`` against ``base``: ``new / base - 1`` (relative) or ``new - base``
        (points). A relative change from a zero base is infinite unless both are zero."""
        if self.kind is LimitKind.POINTS:
            return new - base
        if base == 0:
            return 0.0 if new == 0 else math.copysign(math.inf, new)
        return new / base - 1.0

    def worsening(self, change: float) -> float:
        """The change signed so that positive means worse."""
        return change if self.direction is Direction.HIGHER_IS_WORSE else -change

    def reaches(self, change: float) -> bool:
        """Whether a change is at least the limit, either way (a tiny tolerance keeps a
        change of exactly the limit, e.g. 0.5pt from 0.995 to 0.990, from being lost to
        floating point)."""
        return abs(change) >= self.limit * (1 - 1e-9)

    @property
    def text(self) -> str:
        """The limit as a user writes it: ``5%``, ``0.5pt``."""
        return f"{self.limit * 100:g}{_SUFFIX[self.kind]}"

    def format_change(self, change: float) -> str:
        if math.isinf(change):
            return "+inf%" if change > 0 else "-inf%"
        return f"{change * 100:+.2f}{_SUFFIX[self.kind]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "direction": self.direction.value,
            "limit": self.limit,
            "kind": self.kind.value,
            "text": self.text,
        }


def metric_spec(name: str) -> MetricSpec:
    """The metric a user named (any alias); KeyError with the known names if none."""
    spec = _BY_ALIAS.get(name.strip().lower())
    if spec is None:
        raise KeyError(name)
    return spec


def known_metric_names() -> str:
    return ", ".join(spec.aliases[0] for spec in METRICS.values())


def parse_limit(metric: str, text: str) -> Threshold:
    """``text`` (``5%``, ``0.5pt``) as the limit of ``metric``; ValueError explaining
    the expected form when it is not one."""
    try:
        spec = metric_spec(metric)
    except KeyError:
        raise ValueError(f"a metric among {known_metric_names()} (got {metric!r})") from None
    forms = (
        " or ".join(
            f"a limit in {'percentage points' if kind is LimitKind.POINTS else 'percent'}"
            for kind in spec.kinds
        )
        + f" such as '{spec.default}'"
    )
    match = _LIMIT_RE.match(str(text))
    if match is None:
        raise ValueError(f"{forms} for {spec.name}")
    kind = LimitKind.RELATIVE if match["unit"] == "%" else LimitKind.POINTS
    if kind not in spec.kinds:
        why = (
            " (a relative '%' is ambiguous for accuracy; write percentage points)"
            if spec.name == "accuracy"
            else ""
        )
        raise ValueError(f"{forms} for {spec.name}{why}")
    value = float(match["value"]) / 100.0
    if not 0 <= value < 10:
        raise ValueError(f"{forms} for {spec.name}, between 0 and 1000")
    return Threshold(spec.name, spec.direction, value, kind)


def default_thresholds() -> dict[str, Threshold]:
    return {name: parse_limit(name, spec.default) for name, spec in METRICS.items()}


def parse_threshold(text: str) -> Threshold:
    """One ``METRIC=LIMIT`` from the command line; :class:`ConfigError` otherwise."""
    metric, sep, limit = text.partition("=")
    if not sep or not metric.strip():
        raise ConfigError(
            COMMAND_LINE,
            "--threshold",
            f"METRIC=LIMIT, e.g. latency=5% or accuracy=0.5pt (metrics: {known_metric_names()})",
            text,
        )
    try:
        return parse_limit(metric, limit)
    except ValueError as exc:
        raise ConfigError(COMMAND_LINE, f"--threshold {metric.strip()}", str(exc), limit) from None


def resolve_thresholds(
    configured: Mapping[str, str] | None = None, command_line: Iterable[str] = ()
) -> dict[str, Threshold]:
    """Defaults, overridden by a suite's ``[compare]`` limits, overridden by the
    command line's ``--threshold`` values; keyed by canonical metric name."""
    thresholds = default_thresholds()
    for metric, limit in (configured or {}).items():
        threshold = parse_limit(metric, limit)
        thresholds[threshold.metric] = threshold
    for text in command_line:
        threshold = parse_threshold(text)
        thresholds[threshold.metric] = threshold
    return thresholds
