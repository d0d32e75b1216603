"""``harness tune SUITE --device D --budget KEY=VALUE``: search compression chains of one
model for the most accurate variant that meets the device's budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.commands.arguments import add_results_option, locate_suite
from harness.commands.exits import EXIT_CELLS_FAILED, EXIT_OK, interrupt_exit
from harness.errors import ConfigError, HarnessError

DEFAULT_MAX_CELLS = 12


def _ratios(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated ratios, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser(
        "tune",
        help="search prune/low-rank/int8 chains for the variant that best fits a budget",
        description="Measure chains of one model on one device, each a cell stored under "
        "the suite <name>-tune, until the most accurate chain that meets the budget is "
        "found or --max-cells is spent; print the cells, the Pareto front and the pick.",
    )
    tune.add_argument("suite", type=Path, help="suite TOML file, or a shipped suite by name")
    tune.add_argument("--device", required=True, help="the device profile to measure on")
    tune.add_argument("--model", help="the suite's model to tune (default: its first)")
    tune.add_argument("--runtime", help="the runtime (default: the suite's first)")
    tune.add_argument(
        "--budget",
        action="append",
        metavar="KEY=VALUE",
        help="a limit, repeatable (as harness fit): p90_ms, peak_memory_mb, energy_mj, "
        "min_accuracy (0-1), min_snr_db, max_size_bytes; laid over the suite's "
        "[budgets.<device>]",
    )
    tune.add_argument(
        "--max-cells",
        type=int,
        default=DEFAULT_MAX_CELLS,
        help=f"the most cells to measure (default {DEFAULT_MAX_CELLS})",
    )
    tune.add_argument("--prune", type=_ratios, help="channel ratios to try (0,0.25,0.5,0.75)")
    tune.add_argument("--low-rank", type=_ratios, help="rank ratios to keep (1,0.5,0.25)")
    tune.add_argument(
        "--quant", type=lambda t: t.split(","), help="quantizations to try (fp32,int8)"
    )
    add_results_option(tune)
    tune.add_argument("--new-run", action="store_true", help="measure every chain again")
    tune.add_argument("--json", type=Path, help="also write the outcome to this JSON file")
    tune.set_defaults(func=cmd_tune)


def _request(args: argparse.Namespace) -> Any:
    from harness.devices.config import find_profile, load_profile
    from harness.plugins import suggest
    from harness.reports.fit.budgets import (
        budget_checks,
        budget_for,
        parse_budget_options,
        with_overrides,
    )
    from harness.suite.config import default_dirs, load_suite
    from harness.tune.driver import TuneRequest
    from harness.tune.space import build_space

    suite = load_suite(locate_suite(args.suite))
    models = {m.name: m for m in suite.models}
    model = models[suite.models[0].name] if args.model is None else models.get(args.model)
    if model is None:
        raise ConfigError(
            suite.path,
            "--model",
            "a model of the suite: " + suggest(args.model, models),
            args.model,
        )
    if model.file is not None:
        raise ConfigError(
            suite.path,
            "--model",
            "a model defined in code (zoo or factory): a ready file takes no recipe",
            args.model,
        )
    runtime = args.runtime or suite.runtimes[0]
    if runtime not in suite.runtimes:
        raise ConfigError(
            suite.path,
            "--runtime",
            "a runtime of the suite: " + suggest(runtime, suite.runtimes),
            runtime,
        )
    devices = {d.name: d for d in suite.devices}
    device = devices.get(args.device)
    if device is None:
        dirs = default_dirs(suite.directory, "devices", [])
        found = find_profile(args.device, dirs)
        if found is None:
            raise ConfigError(
                "<command line>",
                "--device",
                "a device profile: " + suggest(args.device, devices),
                args.device,
            )
        device = load_profile(found)
    overrides = parse_budget_options(args.budget or [])
    budgets = with_overrides(suite.budgets, overrides, {device.name: device.board})
    held = budget_for(device.name, device.board, budgets)
    if held is None or not budget_checks(held[1]):
        raise HarnessError(
            f"tune needs a budget for {device.name}: --budget KEY=VALUE (e.g. p90_ms=5 "
            f"--budget min_accuracy=0.95) or [budgets.{device.name}] in {suite.path}"
        )
    if args.max_cells < 1:
        raise ConfigError("<command line>", "--max-cells", "at least 1", args.max_cells)
    space = build_space(
        default_dirs(suite.directory, "recipes", []), args.prune, args.low_rank, args.quant
    )
    return TuneRequest(
        suite=suite,
        model=model,
        runtime=runtime,
        device=device,
        budget=held[1],
        space=space,
        max_cells=args.max_cells,
        results_dir=args.results,
        new_run=args.new_run,
    )


def cmd_tune(args: argparse.Namespace) -> int:
    from harness.reports.tune import budget_text, outcome_json, render_outcome, trial_line
    from harness.suite.walk import WalkEvent
    from harness.tune.driver import run_tune

    request = _request(args)
    print(
        f"tune {request.model.name} on {request.device.name} ({request.runtime}): "
        f"{budget_text(request.budget)}"
    )
    print(f"space: {request.space.describe()}; at most {request.max_cells} cells")

    def on_event(event: WalkEvent) -> None:
        if event.kind == "cell_start" and event.cell is not None:
            print(f"    measuring {event.cell.variant.name}...", flush=True)

    try:
        outcome = run_tune(request, on_event=on_event, on_trial=lambda t: print(trial_line(t)))
    except KeyboardInterrupt as exc:
        print("interrupted: what was measured is stored; tune again to go on")
        return interrupt_exit(exc)
    print(render_outcome(outcome))
    if args.json is not None:
        args.json.write_text(json.dumps(outcome_json(outcome), indent=2) + "\n")
    return EXIT_OK if outcome.pick is not None else EXIT_CELLS_FAILED
