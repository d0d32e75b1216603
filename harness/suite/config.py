"""The benchmark suite file: a matrix of models x variants x runtimes x devices.

Everything is validated when the suite is loaded, before any work starts: unknown
keys, wrong types, unknown zoo models, recipe presets or devices, missing files, and
recipe parameters out of range all raise :class:`ConfigError` naming the file and key.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, create_model, field_validator, model_validator

from harness.builtin import Kind, builtin_dir, not_found
from harness.configfile import StrictModel, load_toml, validate
from harness.devices.config import DeviceProfile, find_profile, load_profile
from harness.errors import ConfigError, ModelError
from harness.export.registry import RUNTIMES, file_suffixes, suffix_list
from harness.plugins import suggest
from harness.recipes.config import ChainStep, check_chain, find_preset, load_preset, validate_step
from harness.results.thresholds import parse_limit
from harness.runner.settings import MEASURE_SETTINGS, MeasureSettings


class _MeasureBase(StrictModel):
    def settings(self) -> MeasureSettings:
        """The runner-facing settings (all but those, as the host's time-out, that do not
        change what is measured)."""
        return MeasureSettings(
            **{s.name: getattr(self, s.name) for s in MEASURE_SETTINGS if s.measured}
        )


MeasureConfig = create_model(
    "MeasureConfig",
    __base__=_MeasureBase,
    __module__=__name__,
    __doc__="""``[measure]``: how every cell is timed, one field per
    :data:`~harness.runner.settings.MEASURE_SETTINGS` entry (its ``doc`` says what it does).

    ``trials`` runner processes measure each cell: back-to-back processes on a shared
    machine differ by far more than one process's samples suggest, so the reported CI
    is built over trials. ``adaptive_ci`` (e.g. 0.01) replaces the count-and-time rule
    by "stop when the median's 95% CI is within +-1%". ``batch`` > 1 needs an artifact
    with a dynamic batch dimension (the runner refuses a static one).
    """,
    **{
        s.name: (s.annotation, Field(s.default, description=s.doc, **s.bounds()))
        for s in MEASURE_SETTINGS
    },
)


class ModelEntry(StrictModel):
    name: str = Field(min_length=1)
    zoo: str | None = None
    factory: str | None = None
    file: str | None = None
    params: dict[str, Any] = {}
    variants: list[str] | None = None
    input_shape: list[int] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        given = [k for k in ("zoo", "factory", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of 'zoo', 'factory' or 'file' (got "
                + (", ".join(given) or "none")
                + ")"
            )
        return self


class Budget(StrictModel):
    p90_ms: float | None = Field(None, gt=0)
    peak_memory_mb: float | None = Field(None, gt=0)
    energy_mj: float | None = Field(None, gt=0)
    min_accuracy: float | None = Field(None, ge=0, le=1)
    # Fidelity where no labels exist: SNR of the outputs against the fp32 PyTorch model.
    min_snr_db: float | None = Field(None, gt=-200, le=200)
    max_size_bytes: int | None = Field(None, gt=0)


class CompareConfig(StrictModel):
    """``[compare]``: what ``harness compare`` calls a regression in this suite's runs.

    Each metric's limit is the smallest change that earns a verdict (``"5%"`` of the
    base value; accuracy in percentage points, ``"0.5pt"``); for latency it is also the
    minimum effect size next to the significance test at ``alpha``. ``interleave = true``
    makes ``harness compare`` re-measure base and candidate alternately instead of
    comparing the stored measurements: at least ``rounds`` pairs per cell, more until
    the ratio is known to +-0.8 x the latency limit, at most ``max_rounds``.
    """

    latency: str = "5%"
    memory: str = "10%"
    size: str = "2%"
    accuracy: str = "0.5pt"
    alpha: float = Field(0.05, gt=0, lt=0.5)
    interleave: bool = False
    rounds: int = Field(10, ge=6, le=1000)
    max_rounds: int = Field(60, ge=6, le=1000)

    @model_validator(mode="after")
    def _rounds_order(self) -> CompareConfig:
        if self.max_rounds < self.rounds:
            raise ValueError(f"max_rounds ({self.max_rounds}) >= rounds ({self.rounds})")
        return self

    @field_validator("latency", "memory", "size", "accuracy")
    @classmethod
    def _limit_parses(cls, value: str, info: Any) -> str:
        parse_limit(info.field_name, value)  # its ValueError says what is expected
        return value

    def limits(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ("latency", "memory", "size", "accuracy")}


def load_compare_config(path: str | Path) -> CompareConfig:
    """Only the ``[compare]`` table of a suite file (defaults when it has none), so a
    comparison does not depend on the rest of the suite still validating."""
    path = Path(path)
    data = load_toml(path)
    return validate(CompareConfig, data.get("compare", {}), path, key_prefix="compare")


class Exclude(StrictModel):
    """One ``[[exclude]]`` table: the cells matching every key it gives are left out of
    the matrix (as in a CI matrix's exclude), e.g. ``device = "pi4-emulated"`` with
    ``runtime = "executorch"``."""

    model: str | None = None
    variant: str | None = None
    runtime: str | None = None
    device: str | None = None

    @model_validator(mode="after")
    def _some_key(self) -> Exclude:
        if not any((self.model, self.variant, self.runtime, self.device)):
            raise ValueError("at least one of model, variant, runtime, device")
        return self

    def matches(self, model: str, variant: str, runtime: str, device: str) -> bool:
        wanted = (self.model, self.variant, self.runtime, self.device)
        return all(
            w is None or w == got
            for w, got in zip(wanted, (model, variant, runtime, device), strict=True)
        )


class SuiteFile(StrictModel):
    name: str = Field(min_length=1)
    description: str = ""
    models: list[ModelEntry] = Field(min_length=1)
    variants: dict[str, list[str | dict[str, Any]]] = Field(min_length=1)
    # Names of harness.export.registry's runtimes (checked after loading).
    runtimes: list[str] = Field(min_length=1)
    devices: list[str] = Field(min_length=1)
    measure: MeasureConfig = MeasureConfig()
    budgets: dict[str, Budget] = {}
    compare: CompareConfig = CompareConfig()
    exclude: list[Exclude] = []
    recipe_dirs: list[str] = []
    device_dirs: list[str] = []


@dataclass(frozen=True)
class Variant:
    name: str
    steps: tuple[ChainStep, ...]

    @property
    def is_baseline(self) -> bool:
        return not self.steps

    def lineage(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    def lineage_for_hash(self) -> list[dict[str, Any]]:
        return [s.to_hashable() for s in self.steps]


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    models: list[ModelEntry]
    variants: dict[str, Variant]
    runtimes: list[str]
    devices: list[DeviceProfile]
    measure: MeasureConfig
    budgets: dict[str, Budget] = field(default_factory=dict)
    compare: CompareConfig = field(default_factory=CompareConfig)
    exclude: list[Exclude] = field(default_factory=list)

    def excluded(self, model: str, variant: str, runtime: str, device: str) -> bool:
        return any(e.matches(model, variant, runtime, device) for e in self.exclude)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def model_path(self, entry: ModelEntry) -> Path:
        assert entry.file is not None
        return (self.directory / entry.file).resolve()


def default_dirs(suite_dir: Path | None, kind: Kind, extra: list[str]) -> list[Path]:
    """Where presets/profiles are looked up: the suite's own list, then ``<kind>/`` beside
    the suite and its parent (the project layout), then the working directory, then the
    package's own (:mod:`harness.builtin`): the user's files win on a name clash."""
    dirs: list[Path] = []
    if suite_dir is not None:
        dirs += [(suite_dir / e).resolve() for e in extra]
        dirs += [suite_dir / kind, suite_dir.parent / kind]
    dirs.append(Path.cwd() / kind)
    dirs.append(builtin_dir(kind))
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def _resolve_variant(
    name: str, items: list[str | dict[str, Any]], path: Path, recipe_dirs: list[Path]
) -> Variant:
    steps: list[ChainStep] = []
    for i, item in enumerate(items):
        key = f"variants.{name}[{i}]"
        if isinstance(item, str):
            preset_path = find_preset(item, recipe_dirs)
            if preset_path is None:
                raise ConfigError(path, key, not_found("recipes", item, recipe_dirs), item)
            try:
                steps.extend(load_preset(preset_path).steps)
            except ConfigError as exc:
                exc.args = (f"{exc} (preset used by {path}: key '{key}')",)
                raise
        else:
            steps.append(validate_step(item, path, key))
    check_chain(steps, path, f"variants.{name}")
    return Variant(name=name, steps=tuple(steps))


def _check_model(entry: ModelEntry, index: int, path: Path, variants: dict[str, Variant]) -> None:
    key = f"models[{index}]"
    if entry.zoo is not None:
        from harness.models.zoo import ZOO, get_zoo_model

        if entry.zoo not in ZOO:
            raise ConfigError(
                path, f"{key}.zoo", "a zoo model: " + suggest(entry.zoo, ZOO), entry.zoo
            )
        validate(get_zoo_model(entry.zoo).Params, entry.params, path, key_prefix=f"{key}.params")
    elif entry.factory is not None:
        module_name, _, attr = entry.factory.partition(":")
        if not module_name or not attr:
            raise ConfigError(path, f"{key}.factory", "'package.module:function'", entry.factory)
        sys.path.insert(0, str(path.parent))
        try:
            found = importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError as exc:
            found = not (module_name + ".").startswith(f"{exc.name}.")
        except ValueError:
            found = False
        except Exception:
            # Its package is there but fails as it loads: the run names that error in
            # the model's cells (and `harness validate` names it here).
            found = True
        finally:
            sys.path.remove(str(path.parent))
        if not found:
            raise ConfigError(
                path,
                f"{key}.factory",
                f"an importable module (looked on sys.path and in {path.parent})",
                module_name,
            )
    else:
        assert entry.file is not None
        file_path = (path.parent / entry.file).resolve()
        if file_path.suffix.lower() not in file_suffixes():
            raise ConfigError(path, f"{key}.file", f"a {suffix_list()} file", entry.file)
        if not file_path.is_file():
            raise ConfigError(
                path, f"{key}.file", f"an existing file ({file_path} not found)", entry.file
            )
        if entry.params:
            raise ConfigError(path, f"{key}.params", "no params for a ready .onnx/.pte file")
    if entry.variants is not None:
        for j, v in enumerate(entry.variants):
            if v not in variants:
                raise ConfigError(path, f"{key}.variants[{j}]", suggest(v, variants), v)
            if entry.file is not None and not variants[v].is_baseline:
                raise ConfigError(
                    path,
                    f"{key}.variants[{j}]",
                    "only variants with no recipes for a ready .onnx/.pte file "
                    "(recipes need the PyTorch model)",
                    v,
                )


def source_error(
    exc: ConfigError | ModelError, suite_path: Path, index: int, field: str
) -> ConfigError | ModelError:
    """A model loader's error restated for the suite: it names the suite file and the
    key ``models[index].<field>``. A ConfigError's own ``model.*`` key becomes the
    suite's (``model.input_shape`` -> ``models[0].input_shape``)."""
    key = f"models[{index}].{field}"
    if not isinstance(exc, ConfigError):
        return ModelError(f"{suite_path}: key '{key}': {exc}")
    if exc.key.startswith("model."):
        key = f"models[{index}].{exc.key.removeprefix('model.')}"
    restated = ConfigError(suite_path, key, exc.expected, exc.got)
    if exc.file not in ("<inline>", str(suite_path)):  # the loader named the model file
        got = f", got {exc.got!r}" if exc.got is not None else ""
        restated.args = (f"{suite_path}: key '{key}': {exc.file}: expected {exc.expected}{got}",)
    return restated


def check_model_sources(suite: Suite) -> None:
    """Load every factory and ready file as a run would (``harness validate``): import
    the module, call the factory and check what it returns with the loader a run uses,
    read each .onnx/.pte. The first problem raises, naming the suite file and the key.
    Zoo models are the harness's own and are not built here."""
    from harness.models.loaders import load_factory_model, load_file_model

    for index, entry in enumerate(suite.models):
        field_name = "factory" if entry.factory is not None else "file"
        try:
            if entry.factory is not None:
                sys.path.insert(0, str(suite.directory))
                try:
                    load_factory_model(entry.factory, None)
                finally:
                    sys.path.remove(str(suite.directory))
            elif entry.file is not None:
                load_file_model(suite.model_path(entry), input_shape=entry.input_shape)
        except (ConfigError, ModelError) as exc:
            raise source_error(exc, suite.path, index, field_name) from exc
        except Exception as exc:  # e.g. the module's forward fails on its example input
            raise ModelError(
                f"{suite.path}: key 'models[{index}].{field_name}': {type(exc).__name__}: {exc}"
            ) from exc


def load_suite(path: str | Path) -> Suite:
    path = Path(path).resolve()
    data = validate(SuiteFile, load_toml(path), path)
    recipe_dirs = default_dirs(path.parent, "recipes", data.recipe_dirs)
    device_dirs = default_dirs(path.parent, "devices", data.device_dirs)

    variants = {
        name: _resolve_variant(name, items, path, recipe_dirs)
        for name, items in data.variants.items()
    }
    names = [m.name for m in data.models]
    for i, entry in enumerate(data.models):
        if names.count(entry.name) > 1:
            raise ConfigError(
                path, f"models[{i}].name", "a name unique within the suite", entry.name
            )
        _check_model(entry, i, path, variants)

    for i, runtime in enumerate(data.runtimes):
        if runtime not in RUNTIMES:
            raise ConfigError(path, f"runtimes[{i}]", suggest(runtime, RUNTIMES), runtime)

    devices: list[DeviceProfile] = []
    for i, name in enumerate(data.devices):
        profile_path = find_profile(name, device_dirs)
        if profile_path is None:
            raise ConfigError(path, f"devices[{i}]", not_found("devices", name, device_dirs), name)
        devices.append(load_profile(profile_path))

    # A budget names a device of the suite or the board an emulated one stands for
    # (budgets.pi4 holds for pi4-emulated too).
    boards = {d.board for d in devices if d.board}
    for name in data.budgets:
        if name not in data.devices and name not in boards:
            raise ConfigError(
                path,
                f"budgets.{name}",
                "a device listed in 'devices', or the board of a listed emulated device",
                name,
            )

    _check_excludes(data, path)

    return Suite(
        name=data.name,
        path=path,
        description=data.description,
        models=list(data.models),
        variants=variants,
        runtimes=list(data.runtimes),
        devices=devices,
        measure=data.measure,
        budgets=dict(data.budgets),
        compare=data.compare,
        exclude=list(data.exclude),
    )


def _check_excludes(data: SuiteFile, path: Path) -> None:
    """An exclude naming nothing in the suite is a typo that would silently keep cells."""
    known = {
        "model": [m.name for m in data.models],
        "variant": list(data.variants),
        "runtime": list(data.runtimes),
        "device": list(data.devices),
    }
    for i, rule in enumerate(data.exclude):
        for key, names in known.items():
            value = getattr(rule, key)
            if value is not None and value not in names:
                raise ConfigError(path, f"exclude[{i}].{key}", suggest(value, names), value)
