"""Loading TOML files and validating them into pydantic models with readable errors.

Every configuration error names the file, the key (as a path such as
``models[1].params.width``) and what was expected, so a user can fix it without a
traceback. Unknown keys list the keys that are allowed there.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "<file>", "an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "<syntax>", f"valid TOML ({exc})") from None


def format_key(loc: tuple[Any, ...], prefix: str = "") -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key or "<top level>"


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation may hold (through Optional, list, dict values)."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return [annotation]
    args = typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset):
        return [t for a in args for t in _unwrap(a)]
    if origin is dict:
        return _unwrap(args[1]) if len(args) == 2 else []
    if origin in (typing.Union, types.UnionType):
        return [t for a in args for t in _unwrap(a)]
    return []


def _model_at(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Walk a validation error location down to the model class that holds its last key."""
    current: list[Any] = [model_cls]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[Any] = []
        for cls in current:
            if isinstance(cls, type) and issubclass(cls, BaseModel):
                field = cls.model_fields.get(str(part))
                if field is not None:
                    nxt.extend(_unwrap(field.annotation))
            elif cls is dict or typing.get_origin(cls) is dict:
                nxt.append(cls)
        # A dict[str, Model] key: stay on the value model.
        if not nxt:
            nxt = [c for c in current if not (isinstance(c, type) and issubclass(c, BaseModel))]
        current = nxt
    for cls in current:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            return cls
    return None


def _expected(model_cls: type[BaseModel], err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model_cls, tuple(err["loc"][:-1]))
        allowed = sorted(parent.model_fields) if parent is not None else []
        return "a known key (allowed here: " + ", ".join(allowed) + ")"
    if kind == "missing":
        return "a value (this key is required)"
    msg = str(err["msg"])
    for lead in ("Input should be ", "Value error, ", "Assertion failed, "):
        if msg.startswith(lead):
            msg = msg[len(lead) :]
    return msg


def validate(
    model_cls: type[M],
    data: Any,
    file: str | Path | None,
    key_prefix: str = "",
    context: dict[str, Any] | None = None,
) -> M:
    """Validate ``data`` into ``model_cls``; raise :class:`ConfigError` listing every problem.

    ``context`` reaches the models' validators (``info.context``), e.g. the file, for the
    ones that raise a :class:`ConfigError` of their own.
    """
    try:
        return model_cls.model_validate(data, context=context)
    except ValidationError as exc:
        raise validation_to_config_error(exc, model_cls, file, key_prefix) from None


def validation_to_config_error(
    exc: ValidationError, model_cls: type[BaseModel], file: str | Path | None, key_prefix: str = ""
) -> ConfigError:
    errors = exc.errors()
    first = errors[0]
    got = None if first["type"] in ("missing", "extra_forbidden") else first.get("input")
    error = ConfigError(
        file, format_key(tuple(first["loc"]), key_prefix), _expected(model_cls, first), got
    )
    if len(errors) > 1:
        more = [
            f"{error.file}: key '{format_key(tuple(e['loc']), key_prefix)}': "
            f"expected {_expected(model_cls, e)}"
            for e in errors[1:]
        ]
        error.args = (str(error) + "\n" + "\n".join(more),)
    return error
