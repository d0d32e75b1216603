"""The chain space ``harness tune`` searches: a grid of knob settings, each a chain of
the shipped recipes (channel pruning, then low-rank factorization, then a quantize step).

Each knob is ordered from least to most compressed, which gives the space a partial
order the search relies on: a chain at least as compressed as another on every knob is
assumed to run no slower and to be no more accurate
(:meth:`Knobs.at_least_as_compressed`). Measured, that holds for the zoo's models on
both runtimes, except where int8 on a tiny layer costs more than it saves; the search
reports what it assumed, and every point it did not measure it says why.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.recipes.config import ChainStep, find_preset, load_preset, validate_step

# Presets whose steps (fine-tuning epochs, importance, calibration) a knob reuses with
# its own ratio: the chain differs from a shipped preset only in what is searched.
PRUNE_PRESET = "prune-channels-50"
LOW_RANK_PRESET = "low-rank-50"
INT8_PRESET = "int8-static"

DEFAULT_PRUNE = (0.0, 0.25, 0.5, 0.75)
DEFAULT_LOW_RANK = (1.0, 0.5, 0.25)
DEFAULT_QUANT = ("fp32", "int8")


@dataclass(frozen=True, order=True)
class Knobs:
    """One point of the space: the channel ratio pruned (0 = none), the rank ratio kept
    (1 = no factorization) and the quantization (an index into the space's ``quant``
    list, least compressed first)."""

    prune: float
    low_rank: float
    quant: int

    def at_least_as_compressed(self, other: Knobs) -> bool:
        return (
            self.prune >= other.prune
            and self.low_rank <= other.low_rank
            and self.quant >= other.quant
        )


def _percent(value: float) -> str:
    return f"{round(value * 100):d}"


@dataclass(frozen=True)
class ChainSpace:
    """The grid and how a point becomes a chain of validated steps."""

    prune: tuple[float, ...]
    low_rank: tuple[float, ...]
    quant: tuple[str, ...]
    prune_step: ChainStep
    low_rank_step: ChainStep
    quant_steps: dict[str, ChainStep]

    def points(self) -> list[Knobs]:
        return [
            Knobs(p, r, q)
            for p, r, q in itertools.product(self.prune, self.low_rank, range(len(self.quant)))
        ]

    def name(self, knobs: Knobs) -> str:
        """The variant's name: ``fp32``, ``prune25``, ``prune50-rank50-int8``..."""
        parts = []
        if knobs.prune > 0:
            parts.append(f"prune{_percent(knobs.prune)}")
        if knobs.low_rank < 1:
            parts.append(f"rank{_percent(knobs.low_rank)}")
        quant = self.quant[knobs.quant]
        if quant != "fp32" or not parts:
            parts.append(quant)
        return "-".join(parts)

    def steps(self, knobs: Knobs) -> tuple[ChainStep, ...]:
        steps: list[ChainStep] = []
        if knobs.prune > 0:
            steps.append(_with(self.prune_step, ratio=knobs.prune))
        if knobs.low_rank < 1:
            steps.append(_with(self.low_rank_step, rank_ratio=knobs.low_rank))
        quant = self.quant[knobs.quant]
        if quant != "fp32":
            steps.append(self.quant_steps[quant])
        return tuple(steps)

    def describe(self) -> str:
        return (
            f"prune {'/'.join(_percent(p) + '%' for p in self.prune)} x "
            f"rank kept {'/'.join(_percent(r) + '%' for r in self.low_rank)} x "
            f"{'/'.join(self.quant)} = {len(self.points())} chains"
        )


def _with(step: ChainStep, **params: Any) -> ChainStep:
    """The step with some parameters replaced, validated again as the recipe's own."""
    raw = {"recipe": step.recipe, **step.params, **params}
    return validate_step(raw, "harness tune", f"{step.recipe}")


def _preset_step(name: str, recipe_dirs: Sequence[Path]) -> ChainStep:
    path = find_preset(name, list(recipe_dirs))
    if path is None:
        raise ConfigError("harness tune", "recipes", f"the preset {name} (shipped)", name)
    return load_preset(path).steps[-1]


def _grid(
    values: Sequence[float] | None, default: tuple[float, ...], key: str, neutral: float
) -> tuple[float, ...]:
    grid = tuple(sorted(set(values if values is not None else default)))
    for v in grid:
        if not 0 <= v <= 1 or (key == "--low-rank" and v == 0) or (key == "--prune" and v == 1):
            expected = "ratios in (0, 1]" if key == "--low-rank" else "ratios in [0, 1)"
            raise ConfigError("<command line>", key, expected, v)
    if neutral not in grid:  # the uncompressed setting anchors the partial order
        grid = tuple(sorted({*grid, neutral}))
    return grid if key == "--prune" else tuple(sorted(grid, reverse=True))


def build_space(
    recipe_dirs: Sequence[Path],
    prune: Sequence[float] | None = None,
    low_rank: Sequence[float] | None = None,
    quant: Sequence[str] | None = None,
) -> ChainSpace:
    """The default grid, or the given settings of each knob (the uncompressed setting is
    always added: the fp32 chain is the search's first measurement)."""
    quant_names = tuple(dict.fromkeys(["fp32", *(quant or DEFAULT_QUANT)]))
    quant_steps: dict[str, ChainStep] = {}
    for name in quant_names[1:]:
        if name != "int8":
            raise ConfigError("<command line>", "--quant", "fp32 or int8", name)
        quant_steps[name] = _preset_step(INT8_PRESET, recipe_dirs)
    return ChainSpace(
        prune=_grid(prune, DEFAULT_PRUNE, "--prune", 0.0),
        low_rank=_grid(low_rank, DEFAULT_LOW_RANK, "--low-rank", 1.0),
        quant=quant_names,
        prune_step=_preset_step(PRUNE_PRESET, recipe_dirs),
        low_rank_step=_preset_step(LOW_RANK_PRESET, recipe_dirs),
        quant_steps=quant_steps,
    )
