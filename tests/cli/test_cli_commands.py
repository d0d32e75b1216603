"""Every subcommand is a module of harness.commands that imports on its own and whose
``--help`` works: what the split of the command line into harness/commands/ rests on."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import pytest

import harness.commands
from harness.cli import COMMANDS, build_parser, main

SHARED = {"arguments", "exits", "output"}  # used by the commands, not commands themselves


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list:
    """Every command line that reaches a parser: ("run",), ("devices", "check"), ..."""
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths.append((*prefix, name))
                paths += _command_paths(child, (*prefix, name))
    return paths


def test_every_module_of_the_package_imports_and_every_command_module_is_registered() -> None:
    names = {m.name for m in pkgutil.iter_modules(harness.commands.__path__)}
    for name in names:
        importlib.import_module(f"harness.commands.{name}")
    registered = {c.__name__.rsplit(".", 1)[1] for c in COMMANDS}
    assert registered == names - SHARED


ALL_PATHS = _command_paths(build_parser())


def test_the_parser_has_every_command() -> None:
    top = {p[0] for p in ALL_PATHS}
    commands = "run report fit compare history validate models recipes devices lab tune"
    assert top == set(commands.split())
    assert {p for p in ALL_PATHS if p[0] == "devices"} == {
        ("devices",),
        ("devices", "list"),
        ("devices", "check"),
        ("devices", "trust"),
        ("devices", "setup"),
    }


@pytest.mark.parametrize("path", [(), *ALL_PATHS], ids=lambda p: " ".join(p) or "harness")
def test_help_of_every_command_exits_0(path: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {' '.join(('harness', *path))}")
