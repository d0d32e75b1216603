"""Recipe presets (``recipes/*.toml``) and the validated steps of a variant's chain.

A preset file holds a description and one or more steps::

    description = "int8 static PTQ, per-channel weights, 128 calibration samples"
    [[steps]]
    recipe = "int8-static"
    calibration_samples = 128

A suite's variant is a list whose items are preset names or inline steps
(``{ recipe = "prune-channels", ratio = 0.3 }``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.configfile import StrictModel, load_toml, validate
from harness.errors import ConfigError
from harness.plugins import suggest
from harness.recipes import RECIPES, get_recipe_class
from harness.recipes.base import Recipe


@dataclass(frozen=True)
class ChainStep:
    """One validated step: the recipe name, its full parameters (defaults filled in) and
    where it was defined (a preset file or the suite)."""

    recipe: str
    params: dict[str, Any]
    source: str

    def instantiate(self) -> Recipe:
        cls = get_recipe_class(self.recipe)
        return cls(cls.Params.model_validate(self.params))

    @property
    def kind(self) -> str:
        return get_recipe_class(self.recipe).kind

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "params": self.params, "source": self.source}

    def to_hashable(self) -> dict[str, Any]:
        """What decides the step's output (where it was defined does not)."""
        return {"recipe": self.recipe, "params": self.params}


class PresetFile(StrictModel):
    description: str = ""
    steps: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    description: str
    steps: tuple[ChainStep, ...]


def validate_step(raw: Any, file: str | Path | None, key: str) -> ChainStep:
    """Check one step (a table with ``recipe`` and that recipe's parameters)."""
    if not isinstance(raw, dict):
        raise ConfigError(file, key, "a preset name or a table with a 'recipe' key", raw)
    if "recipe" not in raw:
        raise ConfigError(file, f"{key}.recipe", "a recipe name: " + suggest("", RECIPES))
    name = raw["recipe"]
    if not isinstance(name, str) or name not in RECIPES:
        raise ConfigError(file, f"{key}.recipe", suggest(str(name), RECIPES), name)
    params_raw = {k: v for k, v in raw.items() if k != "recipe"}
    cls = get_recipe_class(name)
    params = validate(cls.Params, params_raw, file, key_prefix=key)
    return ChainStep(recipe=name, params=params.model_dump(mode="json"), source=str(file))


def load_preset(path: Path) -> Preset:
    data = validate(PresetFile, load_toml(path), path)
    steps = tuple(validate_step(raw, path, f"steps[{i}]") for i, raw in enumerate(data.steps))
    return Preset(name=path.stem, path=path, description=data.description, steps=steps)


def find_preset(name: str, dirs: list[Path]) -> Path | None:
    for directory in dirs:
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def list_presets(dirs: list[Path]) -> list[Preset]:
    """Every preset found in ``dirs`` (the first directory wins on name clashes)."""
    seen: dict[str, Preset] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            if path.stem not in seen:
                seen[path.stem] = load_preset(path)
    return list(seen.values())


def check_chain(steps: list[ChainStep], file: str | Path | None, key: str) -> None:
    """A quantize step describes the export, so it must be the last step and unique."""
    quant_positions = [i for i, s in enumerate(steps) if s.kind == "quantize"]
    if len(quant_positions) > 1:
        raise ConfigError(
            file,
            key,
            f"at most one quantize step ({', '.join(_quantize_recipes())})",
            [s.recipe for s in steps],
        )
    if quant_positions and quant_positions[0] != len(steps) - 1:
        raise ConfigError(
            file,
            key,
            "the quantize step last in the chain (it is applied at export)",
            [s.recipe for s in steps],
        )


def _quantize_recipes() -> list[str]:
    """The registered recipes that are quantize steps (resolved to ask their kind)."""
    from harness.recipes import RECIPES, get_recipe_class

    return [name for name in RECIPES if get_recipe_class(name).kind == "quantize"]
