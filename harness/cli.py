"""The ``harness`` command line: the parser, the signal handling and the dispatch to a
command of :mod:`harness.commands` (each parses its own arguments, calls its stage and
prints).

Exit codes (also in the README):
  0  every cell succeeded (run) / the command did what was asked
  1  the run finished but some cells failed (each is recorded with its reason)
     / compare: a cell regressed or newly fails
  2  bad input: a suite, preset or profile that does not validate, an unknown run,
     a damaged results store; run: the run is being run by another live process
  3  compare: nothing regressed among the cells judged, but some could not be judged
     (--interleave could not re-measure them); a regression elsewhere still exits 1
  130 interrupted with Ctrl-C (finished cells are kept; the next run resumes)
  143 stopped by SIGTERM (handled as Ctrl-C is)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings

from harness.commands import (
    compare,
    devices,
    fit,
    history,
    lab,
    models,
    recipes,
    report,
    run,
    tune,
    validate,
)
from harness.commands.exits import EXIT_BAD_INPUT, Terminated, interrupt_exit
from harness.errors import HarnessError

# In the order ``harness --help`` lists them.
COMMANDS = (run, lab, tune, report, fit, compare, history, validate, models, recipes, devices)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Compress, export, deploy and benchmark PyTorch models on edge devices.",
        epilog="Exit codes: 0 ok, 1 some cells failed (compare: something regressed), 2 bad "
        "input, 3 compare incomplete (cells not judged), 130 interrupted (Ctrl-C), 143 "
        "stopped by SIGTERM.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _quiet_third_party() -> None:
    """torch, torchao and executorch warn about their own deprecations and missing
    optional extras (torchvision, triton) on every export; none of it is the user's to act
    on, and it buries the progress lines. HARNESS_SHOW_WARNINGS=1 keeps them."""
    if os.environ.get("HARNESS_SHOW_WARNINGS") == "1":
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*experimental.*")
    for name in ("torch", "torchao", "executorch", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Signals:
    """SIGINT and SIGTERM as exceptions in the main thread, the first one only: a
    second signal while the harness is stopping its runners (which takes bounded time)
    is noted and does not cut that short, so no runner is left measuring."""

    def __init__(self) -> None:
        self.stopping = False
        self._saved: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.stopping:
            from harness.runlog import StderrToLog

            # Past a run's capture of stderr: this one is for the user.
            StderrToLog.write_terminal("harness: still stopping the runners, a moment\n")
            return
        self.stopping = True
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # e.g. a background job of a shell script: leave it ignored
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_third_party()
    with _Signals():
        try:
            return int(args.func(args))
        except HarnessError as exc:
            print(f"harness: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            print("harness: interrupted", file=sys.stderr)
            return interrupt_exit(exc)


if __name__ == "__main__":
    sys.exit(main())
