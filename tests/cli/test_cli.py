"""The command line end to end, as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.cli_runner import harness
from tests.suite_files import REPO

FOUNDATION_KEYS = {
    "model",
    "variant",
    "runtime",
    "device",
    "status",
    "reason",
    "latency_ms",
    "samples",
    "memory_mb",
    "size_bytes",
    "accuracy",
    "agreement",
    "emulated",
}


# What ExecuTorch, torch and torchao write to stderr on import, export and load when left
# alone (seen in the first hour of a new user): none of it may reach the terminal.
THIRD_PARTY_CHATTER = (
    "cpuinfo",
    "LeafSpec",
    "FutureWarning",
    "DeprecationWarning",
    "Failed to load",
    "_C_mxfp8",
    "_pytree.py",
    "register_constant",
)


@pytest.mark.slow
def test_tiny_suite_through_both_runtimes(tiny_suite, tmp_path):
    results = tmp_path / "out"
    proc = harness("run", str(tiny_suite), "--results", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/4]" in proc.stdout and "[4/4]" in proc.stdout  # progress
    # A cold run exports through ExecuTorch: its, torch's and torchao's chatter stays off
    # the terminal (the progress is on stdout; nothing on stderr was for the user) ...
    shown = proc.stdout + proc.stderr
    for chatter in THIRD_PARTY_CHATTER:
        assert chatter not in shown, (chatter, shown)
    assert proc.stderr == ""
    # ... and is kept in the run log, not lost.
    log = (results / "logs" / "run-1.log").read_text()
    assert "standard error of the harness process" in log
    assert "executorch" in proc.stdout and "onnxruntime" in proc.stdout

    report = harness("report", "--results", str(results), "--format", "json")
    assert report.returncode == 0, report.stderr
    cells = json.loads(report.stdout)
    assert {(c["variant"], c["runtime"]) for c in cells} == {
        ("fp32", "onnxruntime"),
        ("fp32", "executorch"),
        ("int8", "onnxruntime"),
        ("int8", "executorch"),
    }
    for cell in cells:
        assert FOUNDATION_KEYS <= set(cell)
        assert cell["status"] == "ok", cell["reason"]
        assert set(cell["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std", "min", "cv"}
        assert cell["latency_ms"]["min"] <= cell["latency_ms"]["p50"] <= cell["latency_ms"]["p99"]
        assert set(cell["memory_mb"]) == {"baseline", "after_load", "peak"}
        assert cell["size_bytes"] > 0 and cell["accuracy"] is None and cell["emulated"] is False
        assert 0.0 <= cell["agreement"] <= 1.0
    fp32 = [c for c in cells if c["variant"] == "fp32"]
    assert all(c["agreement"] == 1.0 for c in fp32)

    for fmt in ("markdown", "csv", "table"):
        out = harness("report", "latest", "--results", str(results), "--format", fmt)
        assert out.returncode == 0 and "int8" in out.stdout

    # The warm re-run measures nothing.
    again = harness("run", str(tiny_suite), "--results", str(results))
    assert again.returncode == 0
    assert "0 cells measured, 4 already done" in again.stdout

    # -q: the table and nothing else, also when cells are measured again.
    quiet = harness("run", str(tiny_suite), "--results", str(results), "--new-run", "-q")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "tiny (run 2)" in quiet.stdout and "fp32 baseline" in quiet.stdout  # the table
    for chatter in ("[1/4]", "ok: p50", "suite tiny:", "cells measured", "left after this"):
        assert chatter not in quiet.stdout, chatter
    assert quiet.stderr == ""


def test_bad_suite_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nruntimes = ["onnxruntime"]\ndevices = ["local"]\nmodels = []\n')
    proc = harness("run", str(bad), "--results", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "'models'" in proc.stderr
    assert not (tmp_path / "r" / "harness.db").exists()  # nothing started


def test_report_on_missing_store_and_unknown_run(tmp_path):
    proc = harness("report", "--results", str(tmp_path))
    assert proc.returncode == 2 and "no results store" in proc.stderr


@pytest.mark.parametrize("group", ["models", "recipes", "devices"])
def test_listings(group):
    proc = harness(group, "list")
    assert proc.returncode == 0, proc.stderr
    expected = {"models": "digits-cnn", "recipes": "int8-static", "devices": "local"}[group]
    assert expected in proc.stdout


def test_models_list_prints_a_models_table_to_paste_for_each_zoo_model(tmp_path):
    """Every zoo model gets a ready [[models]] table (name, zoo, params at their
    defaults); pasted together into a suite they validate as they are."""
    import tomllib

    from harness.models.zoo import list_models
    from harness.suite.config import load_suite

    proc = harness("models", "list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    snippets, current = [], None
    for line in lines:
        if line == "[[models]]":
            current = [line]
            snippets.append(current)
        elif current is not None and line.strip() and not line.startswith("User models"):
            current.append(line)
        else:
            current = None
    zoo = {m["name"]: m for m in list_models()}
    parsed = [tomllib.loads("\n".join(s))["models"][0] for s in snippets]
    assert [p["name"] for p in parsed] == list(zoo)
    for entry in parsed:
        assert entry["zoo"] == entry["name"]
        defaults = {k: v for k, v in zoo[entry["name"]]["params"].items() if v is not None}
        assert entry.get("params", {}) == defaults
    suite = tmp_path / "pasted.toml"
    suite.write_text(
        'name = "pasted"\nruntimes = ["onnxruntime"]\ndevices = ["local"]\n\n'
        + "\n\n".join("\n".join(s) for s in snippets)
        + "\n\n[variants]\nfp32 = []\n"
    )
    loaded = load_suite(suite)  # every params table validates against its model
    assert [m.name for m in loaded.models] == list(zoo)


@pytest.mark.parametrize("args", [[], ["run"], ["report"], ["models"], ["models", "list"]])
def test_help(args):
    proc = harness(*args, "--help")
    assert proc.returncode == 0 and "usage" in proc.stdout


@pytest.mark.slow
def test_ctrl_c_leaves_store_consistent_and_next_run_resumes(tiny_suite, tmp_path):
    results = tmp_path / "out"
    db = results / "harness.db"
    # The harness keeps SIGINT ignored when it was started so (as `cmd &` in a script is):
    # give the child SIGINT's default, so the test means Ctrl-C however pytest was started.
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(tiny_suite), "--results", str(results)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    recorded = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            with sqlite3.connect(db) as con:
                try:
                    recorded = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
                except sqlite3.OperationalError:
                    recorded = 0
            if recorded >= 1:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    with sqlite3.connect(db) as con:
        status = con.execute("SELECT status FROM runs").fetchone()[0]
        kept = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        orphan_samples = con.execute(
            "SELECT COUNT(*) FROM samples WHERE cell_id NOT IN (SELECT id FROM cells)"
        ).fetchone()[0]
    assert status == "interrupted" and 1 <= kept < 4 and orphan_samples == 0

    resumed = harness("run", str(tiny_suite), "--results", str(results))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{kept} already done" in resumed.stdout
