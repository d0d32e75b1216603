"""The run log's capture of the process's stderr: what native libraries write to file
descriptor 2 (past Python) and Python-level stderr land in the run log, not on the
terminal, and the terminal's stderr is back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.runlog import STDERR_HEADER, StderrToLog


def test_fd_2_writes_go_to_the_run_log_once_it_is_known(tmp_path, capfd):
    log = tmp_path / "logs" / "run-7.log"
    with StderrToLog() as capture:
        os.write(2, b"early: before the run had an id\n")  # as cpuinfo's C code does
        capture.to_log(log)
        os.write(2, b"native: cpuinfo chatter\n")
        # A child process inheriting fd 2 (a native helper) writes there too.
        subprocess.run([sys.executable, "-c", "import os; os.write(2, b'child line\\n')"])
    os.write(2, b"after: for the terminal\n")
    err = capfd.readouterr().err
    assert "after: for the terminal" in err
    for kept in ("early: before", "native: cpuinfo", "child line"):
        assert kept not in err
    text = log.read_text()
    assert text.startswith(STDERR_HEADER.decode())
    assert text.index("early: before") < text.index("native: cpuinfo") < text.index("child line")


def test_without_a_run_log_what_was_captured_reaches_the_terminal_at_the_end(capfd):
    """A run that fails before it has an id (no log to keep it): nothing is lost."""
    with StderrToLog():
        os.write(2, b"an error before the run began\n")
        assert "an error" not in capfd.readouterr().err  # held back while it runs
    assert "an error before the run began" in capfd.readouterr().err


def test_a_message_for_the_user_gets_past_the_capture(tmp_path, capfd):
    with StderrToLog() as capture:
        capture.to_log(tmp_path / "run-1.log")
        StderrToLog.write_terminal("harness: still stopping the runners, a moment\n")
        os.write(2, b"chatter\n")
    err = capfd.readouterr().err
    assert "still stopping the runners" in err and "chatter" not in err
    assert StderrToLog.active is None
