"""``harness fit`` on the command line: where budgets come from, exit codes, bad input,
and the JSON output pinned on the golden database.

The pinned files are generated, never edited by hand:

    .venv/bin/python -m tests.cli.test_fit_cli --write-expected
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.cli import main
from harness.commands.exits import EXIT_BAD_INPUT, EXIT_OK
from harness.results.store import ResultsStore
from tests.golden.build_golden_db import EXPECTED_DIR, GOLDEN_BUDGETS, GOLDEN_DB
from tests.results_builders import add_run, failed_cell, ok_cell

GOLDEN_RUNS = ("3", "4")


def expected_path(run: str) -> Path:
    return EXPECTED_DIR / f"fit-run-{run}.json"


def fit_json_on_golden(workdir: Path, run: str) -> str:
    """``harness fit RUN --suite <GOLDEN_BUDGETS> --format json`` on a copy of golden.db."""
    results = workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(GOLDEN_DB, results / "harness.db")
    suite = workdir / "budgets.toml"
    suite.write_text(GOLDEN_BUDGETS)
    out = workdir / f"fit-{run}.json"
    args = ["--results", str(results), "--suite", str(suite), "--format", "json"]
    code = main(["fit", run, *args, "-o", str(out)])
    if code != EXIT_OK:
        raise RuntimeError(f"harness fit {run} exited {code}")
    return out.read_text()


def write_expected() -> list[Path]:
    EXPECTED_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in GOLDEN_RUNS:
            path = expected_path(run)
            path.write_text(fit_json_on_golden(Path(tmp) / run, run))
            written.append(path)
    return written


# --- fixtures ----------------------------------------------------------------------------

SUITE_BUDGETS = """\
name = "fit-cli"

[budgets.pi4]
p90_ms = 20
peak_memory_mb = 300

[budgets.local]
p90_ms = 2
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A store whose latest run has local and pi4-emulated cells and names a suite file
    with budgets for local and for the pi4 board."""
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE_BUDGETS)
    directory = tmp_path / "results"
    with ResultsStore(directory / "harness.db") as store:
        add_run(store, [ok_cell("fp32", device="pi4", p50=20.0)], suite_path=suite)
        add_run(
            store,
            [
                ok_cell("fp32", p50=1.5),
                ok_cell("int8", p50=0.5, accuracy=0.98),
                failed_cell("fp16"),
                ok_cell("fp32", device="pi4-emulated", emulated=True, p50=24.0, peak=250),
                ok_cell("int8", device="pi4-emulated", emulated=True, p50=10.0, peak=120),
            ],
            suite_path=suite,
        )
    return directory


def fit(results: Path, *args: str) -> int:
    return main(["fit", "--results", str(results), *args])


def fit_json(results: Path, capsys, *args: str) -> dict:
    assert fit(results, "--format", "json", *args) == EXIT_OK, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def devices(report: dict) -> dict[str, dict]:
    return {d["device"]: d for d in report["devices"]}


def verdicts(device: dict) -> dict[str, str]:
    return {f"{v['variant']}/{v['runtime']}": v["verdict"] for v in device["variants"]}


# --- budgets: suite, command line, inheritance ---------------------------------------------


def test_budgets_come_from_the_runs_suite_file(results, capsys):
    report = fit_json(results, capsys)
    assert report["run_id"] == 2
    local, emulated = devices(report)["local"], devices(report)["pi4-emulated"]
    assert local["budget"] == {"p90_ms": 2.0}
    assert verdicts(local) == {
        "fp32/onnxruntime": "fits",
        "int8/onnxruntime": "fits",
        "fp16/onnxruntime": "failed",
    }
    assert emulated["budget_from"] == "pi4" and emulated["emulated"]
    assert emulated["label"].startswith("estimate")
    assert verdicts(emulated) == {"fp32/onnxruntime": "breaks", "int8/onnxruntime": "fits"}
    [pair] = report["emulation_vs_real"]  # run 1 measured fp32 on the board
    assert pair["real_run_id"] == 1 and pair["p50_ms"]["ratio"] == pytest.approx(24.0 / 20.0)


def test_command_line_budgets_override_the_suite_key_by_key(results, capsys):
    report = fit_json(results, capsys, "--budget", "p90_ms=40", "--device", "pi4")
    assert list(devices(report)) == ["pi4-emulated"]  # a board selects its emulation
    [emulated] = report["devices"]
    assert emulated["budget"] == {"p90_ms": 40.0, "peak_memory_mb": 300.0}
    assert verdicts(emulated) == {"fp32/onnxruntime": "fits", "int8/onnxruntime": "fits"}


def test_command_line_budgets_apply_to_every_device_without_device(results, capsys):
    report = fit_json(results, capsys, "--budget", "peak_memory_mb=200", "--budget", "p90_ms=1")
    assert devices(report)["local"]["budget"] == {"p90_ms": 1.0, "peak_memory_mb": 200.0}
    assert devices(report)["pi4-emulated"]["budget"] == {"p90_ms": 1.0, "peak_memory_mb": 200.0}


def test_an_explicit_suite_replaces_the_runs_own(results, tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text("[budgets.local]\nmin_accuracy = 0.99\n")
    report = fit_json(results, capsys, "--suite", str(other))
    assert list(devices(report)) == ["local"]
    assert report["devices_without_budget"] == ["pi4-emulated"]
    [rec] = devices(report)["local"]["recommendations"]
    assert rec["variant"] == "fp32"


def test_a_missing_suite_file_leaves_the_command_line(results, capsys):
    (results.parent / "suite.toml").unlink()
    report = fit_json(results, capsys, "--budget", "p90_ms=5", "--device", "local")
    assert list(devices(report)) == ["local"]


def test_a_missing_suite_file_is_noted_on_stderr(results, capsys):
    (results.parent / "suite.toml").unlink()
    assert fit(results, "--budget", "p90_ms=5", "--format", "json") == EXIT_OK
    assert "is not there; budgets come from --budget only" in capsys.readouterr().err


# --- exit codes and bad input ----------------------------------------------------------------


def test_exit_0_when_the_report_is_made_even_if_nothing_fits(results, capsys):
    report = fit_json(results, capsys, "--budget", "p90_ms=0.001")
    assert all(r["variant"] is None for d in report["devices"] for r in d["recommendations"])


def test_no_budget_at_all_is_bad_input(results, tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text('name = "no budgets"\n')
    assert fit(results, "--suite", str(empty)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no budget to check (local, pi4-emulated)" in err
    assert "has no [budgets.<device>] table" in err and "--budget KEY=VALUE" in err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("p90_ms", "key '--budget': expected KEY=VALUE with KEY one of p90_ms"),
        ("latency=3", "key '--budget latency': expected a budget key: one of energy_mj"),
        ("p90=3", "did you mean 'p90_ms'?"),
        ("p90_ms=fast", "key '--budget p90_ms': expected a finite number, e.g. p90_ms=20"),
        ("p90_ms=0", "key '--budget p90_ms': expected greater than 0"),
        ("min_accuracy=95", "expected less than or equal to 1, e.g. min_accuracy=0.95"),
    ],
)
def test_bad_budget_options_exit_2_naming_the_key(results, capsys, option, message):
    assert fit(results, "--budget", option) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("harness: error: <command line>: ") and message in err


def test_a_bad_budget_in_the_suite_names_the_file_and_key(results, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[budgets.local]\np90_ms = -1\n")
    assert fit(results, "--suite", str(bad)) == EXIT_BAD_INPUT
    assert f"{bad}: key 'budgets.local.p90_ms'" in capsys.readouterr().err


def test_a_device_not_in_the_run_is_bad_input(results, capsys):
    assert fit(results, "--device", "pi5", "--budget", "p90_ms=5") == EXIT_BAD_INPUT
    assert "--device pi5: run 2 has no cells on it" in capsys.readouterr().err


def test_unknown_run_and_missing_store_are_bad_input(results, tmp_path, capsys):
    assert fit(results, "9") == EXIT_BAD_INPUT
    assert "no run with id 9" in capsys.readouterr().err
    assert fit(tmp_path / "nowhere") == EXIT_BAD_INPUT
    assert "no results store here" in capsys.readouterr().err


def test_an_older_run_by_id(results, capsys):
    report = fit_json(results, capsys, "1")
    assert report["run_id"] == 1 and list(devices(report)) == ["pi4"]
    assert devices(report)["pi4"]["label"] == "measured"


# --- formats ------------------------------------------------------------------------------


def test_markdown_and_table_formats(results, tmp_path, capsys):
    assert fit(results, "--format", "markdown") == EXIT_OK
    markdown = capsys.readouterr().out
    assert "## pi4-emulated (estimate: emulated on this machine with pi4's caps)" in markdown
    assert "failed: unsupported: no fp16 kernels" in markdown
    out = tmp_path / "fit.txt"
    assert fit(results, "-o", str(out)) == EXIT_OK
    table = out.read_text()
    assert "local (measured)" in table and "budget (from pi4): p90 <= 20 ms" in table
    assert "emulated estimates against real measurements" in table


def test_the_installed_command_runs_it(results):
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "fit", "--results", str(results), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_BAD_INPUT and "unrecognized arguments: -q" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "fit", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "Hardware fit: fit-test (run 2)" in proc.stdout


# --- the golden pin -------------------------------------------------------------------------


@pytest.mark.parametrize("run", GOLDEN_RUNS)
def test_fit_json_on_the_golden_database_is_pinned(tmp_path, run):
    expected = expected_path(run)
    assert expected.is_file(), "generate it: python -m tests.cli.test_fit_cli --write-expected"
    assert fit_json_on_golden(tmp_path, run) == expected.read_text(), (
        f"harness fit {run} changed on golden.db; if that is intended, regenerate with "
        "python -m tests.cli.test_fit_cli --write-expected and review the diff"
    )


def test_golden_fit_shows_every_kind_of_verdict(tmp_path):
    report = json.loads(fit_json_on_golden(tmp_path, "3"))
    seen = {v["verdict"] for d in report["devices"] for v in d["variants"]}
    assert seen == {"fits", "breaks", "failed"}
    emulated = devices(report)["pi4-emulated"]
    assert emulated["budget_from"] == "pi4"
    assert any(r["variant"] is None for r in emulated["recommendations"])
    assert {
        (c["variant"], c["emulated_run_id"], c["real_run_id"]) for c in report["emulation_vs_real"]
    } >= {("fp32", 3, 3), ("int8", 3, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The fit outputs pinned on golden.db.")
    parser.add_argument(
        "--write-expected",
        action="store_true",
        help="regenerate tests/golden/expected/fit-run-*.json from tests/golden/golden.db",
    )
    if parser.parse_args().write_expected:
        for path in write_expected():
            print(f"wrote {path}")
    else:
        parser.print_help()


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_fit_as_html_puts_command_line_budgets_in_the_pages_fit_section(tmp_path: Path):
    """Budgets given only on the command line reach the HTML report's fit section, with
    the same verdicts the JSON gives (the pi4 budget inherited by pi4-emulated)."""
    results = tmp_path / "results"
    results.mkdir()
    shutil.copyfile(GOLDEN_DB, results / "harness.db")
    budget = ["--budget", "p90_ms=0.2", "--budget", "min_accuracy=0.96", "--device", "pi4"]
    page = tmp_path / "fit.html"
    common = ["fit", "4", "--results", str(results), *budget]
    assert main([*common, "--format", "html", "-o", str(page)]) == EXIT_OK
    assert main([*common, "--format", "json", "-o", str(tmp_path / "fit.json")]) == EXIT_OK
    report = json.loads((tmp_path / "fit.json").read_text())
    html = page.read_text()
    assert 'data-optional="fit"' in html and "No budgets to check" not in html
    devices = [d["device"] for d in report["devices"]]
    assert "pi4-emulated" in devices
    for device in report["devices"]:
        assert f'data-fit-device="{device["device"]}"' in html
        for v in device["variants"]:
            row = f'data-fit-cell="{v["model"]}/{v["variant"]}/{v["runtime"]}/{device["device"]}"'
            assert row in html
            tail = html.split(row, 1)[1].split("</tr>", 1)[0]
            assert f"<td>{v['verdict']}</td>" in tail
