"""``harness tune`` end to end: real training, pruning, low-rank and int8 cells of the
digits CNN on this machine, stored like any run's. The budget that decides the pick is
the artifact size, which does not depend on this shared machine's speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.store import ResultsStore
from tests.cli_runner import cli

SUITE = """
name = "t"
runtimes = ["onnxruntime"]
devices = ["local"]

[[models]]
name = "cnn"
zoo = "digits-cnn"
params = { width = 16, epochs = 4 }

[variants]
fp32 = []

[measure]
threads = 1
warmup_count = 2
warmup_seconds = 0.0
min_count = 10
min_seconds = 0.05
max_seconds = 5
timeout_seconds = 120
"""


def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    return path


@pytest.mark.slow
def test_tune_measures_chains_until_the_most_accurate_one_within_the_size_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # as a user runs it, from their own directory
    suite, results = suite_file(tmp_path), tmp_path / "results"
    argv = [
        "tune", str(suite), "--device", "local", "--budget", "max_size_bytes=45000",
        "--budget", "min_accuracy=0.9", "--max-cells", "6", "--results", str(results),
        "--prune", "0,0.5", "--low-rank", "1,0.5", "--json", str(tmp_path / "tune.json"),
    ]  # fmt: skip
    code, out = cli(*argv)
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    outcome = json.loads((tmp_path / "tune.json").read_text())
    trials = {t["chain"]: t for t in outcome["trials"]}
    assert next(iter(trials)) == "fp32"
    pick = trials[outcome["pick"]]
    assert pick["size_bytes"] <= 45000 and pick["accuracy"] >= 0.9
    fitting = [t for t in trials.values() if t["verdict"] == "fits"]
    assert pick["accuracy"] == max(t["accuracy"] for t in fitting)
    assert f"pick: {outcome['pick']}" in out
    assert len(trials) <= 6
    # Every tried chain is a cell of the store, under the suite <name>-tune.
    with ResultsStore(results / "harness.db") as store:
        run = store.latest_run("t-tune")
        assert run is not None
        stored = {c.variant: c for c in store.cells(run.id)}
    assert set(stored) == set(trials)
    assert stored[outcome["pick"]].result.lineage == pick["lineage"]

    # Tuned again, it measures nothing new: the same chains, each measured before.
    code, again = cli(*argv)
    assert code == 0, again
    repeat = json.loads((tmp_path / "tune.json").read_text())
    assert [t["chain"] for t in repeat["trials"]] == list(trials)
    assert all(t["reused"] for t in repeat["trials"])
    assert repeat["pick"] == outcome["pick"]


def test_tune_without_a_budget_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = cli("tune", str(suite_file(tmp_path)), "--device", "local")
    err = capsys.readouterr().err
    assert code == 2 and "--budget KEY=VALUE" in err and "[budgets.local]" in err


def test_tune_an_unknown_model_or_device_names_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = str(suite_file(tmp_path))
    code, _ = cli("tune", suite, "--device", "local", "--model", "cnnn", "--budget", "p90_ms=1")
    assert code == 2 and "--model" in capsys.readouterr().err
    code, _ = cli("tune", suite, "--device", "pi9", "--budget", "p90_ms=1")
    assert code == 2 and "--device" in capsys.readouterr().err
