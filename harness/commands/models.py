"""``harness models list``: the model zoo, with each model's suite table to paste."""

from __future__ import annotations

import argparse

from harness.commands.exits import EXIT_OK
from harness.commands.output import terminal_console


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("models", help="the model zoo")
    group_sub = group.add_subparsers(dest="action", required=True)
    lister = group_sub.add_parser("list", help="list the model zoo")
    lister.set_defaults(func=cmd_models_list)


def cmd_models_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.models.zoo import list_models, suite_snippet

    console = terminal_console()
    models = list_models()
    table = Table(title="model zoo")
    for col in ("name", "labels", "description", "params (defaults)"):
        table.add_column(col, overflow="fold")
    for m in models:
        params = ", ".join(f"{k}={v}" for k, v in m.get("params", {}).items())
        table.add_row(
            m["name"], "yes" if m.get("has_labels") else "no", m.get("description", ""), params
        )
    console.print(table)
    # Ready to paste into a suite: every parameter at its default, to edit or delete.
    console.print("\nTo use one, paste its table into a suite (parameters at their defaults):")
    for m in models:
        console.print("\n" + suite_snippet(m), markup=False, highlight=False, soft_wrap=True)
    console.print(
        "\nUser models: 'factory = \"package.module:function\"' (returns (module, example_input"
        "[, data]); the example a tensor, tuple or dict of tensors, integer ids allowed) "
        "or 'file = \"model.onnx\"' / '.pte' (benchmark only) in a suite's [[models]].",
        markup=False,
    )
    return EXIT_OK
