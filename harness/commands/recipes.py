"""``harness recipes list``: the recipe presets, and the recipes a suite can use inline."""

from __future__ import annotations

import argparse

from harness.commands.arguments import search_dirs
from harness.commands.exits import EXIT_OK
from harness.commands.output import terminal_console


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("recipes", help="recipe presets (recipes/*.toml)")
    group_sub = group.add_subparsers(dest="action", required=True)
    lister = group_sub.add_parser("list", help="list recipe presets (recipes/*.toml)")
    lister.add_argument("--dir", action="append", help="extra directory to search")
    lister.set_defaults(func=cmd_recipes_list)


def cmd_recipes_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.recipes import RECIPES
    from harness.recipes.config import list_presets

    console = terminal_console()
    table = Table(title="recipe presets")
    for col in ("preset", "steps", "description", "file"):
        table.add_column(col, overflow="fold")
    for preset in list_presets(search_dirs("recipes", args.dir)):
        steps = " -> ".join(s.recipe for s in preset.steps)
        table.add_row(preset.name, steps, preset.description, str(preset.path))
    console.print(table)
    console.print("recipes usable inline in a suite: " + ", ".join(sorted(RECIPES)))
    return EXIT_OK
