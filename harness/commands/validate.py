"""``harness validate SUITE``: check a suite file and its model sources without running it."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.arguments import locate_suite
from harness.commands.exits import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    validate = sub.add_parser(
        "validate",
        help="check a suite file without running it: its keys, presets and devices, and "
        "its model sources (imports and calls each factory, reads each .onnx/.pte)",
    )
    validate.add_argument("suite", type=Path)
    validate.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.suite.config import check_model_sources, load_suite
    from harness.suite.walk import expand

    suite = load_suite(locate_suite(args.suite))
    check_model_sources(suite)  # imports and calls factories, reads model files
    print(f"{suite.path}: valid, {len(expand(suite))} cells")
    return EXIT_OK
