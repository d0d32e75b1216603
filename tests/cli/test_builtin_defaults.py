"""The shipped presets, device profiles and quickstart suite work from any directory:
a user with `pip install` and a suite in an empty directory, not a checkout."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from harness.builtin import builtin_dir, builtin_suite
from harness.suite.config import load_suite
from tests.cli_runner import harness
from tests.suite_files import REPO

MEASURE = """
[measure]
warmup_count = 2
warmup_seconds = 0.0
min_count = 5
min_seconds = 0.02
max_seconds = 5
trials = 1
"""


def lone_suite(directory: Path, body: str) -> Path:
    """A suite in a directory with nothing beside it (no recipes/, no devices/)."""
    path = directory / "suite.toml"
    path.write_text(textwrap.dedent(body) + MEASURE)
    return path


def test_the_package_holds_every_shipped_file() -> None:
    for kind, names in {
        "recipes": ["int8-static", "prune-channels-50"],
        "devices": ["local", "pi4", "pi4-emulated"],
        "suites": ["quickstart"],
    }.items():
        for name in names:
            assert (builtin_dir(kind) / f"{name}.toml").is_file(), (kind, name)
    assert builtin_suite("quickstart") == builtin_dir("suites") / "quickstart.toml"
    assert builtin_suite("quickstart.toml") == builtin_suite("quickstart")
    assert builtin_suite("nope") is None and builtin_suite("a/quickstart") is None


def test_the_checkout_links_to_the_package_copies() -> None:
    # One copy of each file: the checkout's top-level directories are links into the
    # package, so editing devices/pi4.toml edits what `pip install` ships.
    for top, kind in (("recipes", "recipes"), ("devices", "devices")):
        assert (REPO / top).resolve() == builtin_dir(kind)
    assert (REPO / "suites" / "quickstart.toml").resolve() == builtin_suite("quickstart")


LONE_SUITE = """
name = "lone"
runtimes = ["onnxruntime"]
devices = ["local", "pi4-emulated"]
[[models]]
name = "mlp"
zoo = "mlp"
params = { hidden = 16, epochs = 1 }
[variants]
fp32 = []
int8 = ["int8-static"]
"""


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_a_suite_in_an_empty_directory_finds_presets_and_boards(tmp_path: Path) -> None:
    suite = lone_suite(tmp_path, LONE_SUITE)
    loaded = load_suite(suite)
    assert loaded.variants["int8"].steps[0].recipe == "int8-static"
    assert [d.name for d in loaded.devices] == ["local", "pi4-emulated"]

    assert harness("validate", str(suite), cwd=tmp_path).returncode == 0


@pytest.mark.slow
def test_a_suite_in_an_empty_directory_runs_on_the_presets_and_boards(tmp_path: Path) -> None:
    suite = lone_suite(tmp_path, LONE_SUITE)
    run = harness("run", str(suite), "--results", str(tmp_path / "out"), "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    report = harness("report", "--results", str(tmp_path / "out"), "--format", "json", cwd=tmp_path)
    cells = json.loads(report.stdout)
    assert {(c["variant"], c["device"], c["status"]) for c in cells} == {
        ("fp32", "local", "ok"),
        ("int8", "local", "ok"),
        ("fp32", "pi4-emulated", "ok"),
        ("int8", "pi4-emulated", "ok"),
    }


def test_a_users_file_of_the_same_name_wins(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "int8-static.toml").write_text(
        'description = "mine"\n[[steps]]\nrecipe = "int8-static"\ncalibration_samples = 16\n'
    )
    suite = lone_suite(
        tmp_path,
        """
        name = "mine"
        runtimes = ["onnxruntime"]
        devices = ["local"]
        [[models]]
        name = "mlp"
        zoo = "mlp"
        [variants]
        int8 = ["int8-static"]
        """,
    )
    [step] = load_suite(suite).variants["int8"].steps
    assert step.params["calibration_samples"] == 16


def test_an_unknown_preset_names_every_place_searched_and_what_is_there(tmp_path: Path) -> None:
    suite = lone_suite(
        tmp_path,
        """
        name = "typo"
        runtimes = ["onnxruntime"]
        devices = ["local"]
        [[models]]
        name = "mlp"
        zoo = "mlp"
        [variants]
        int8 = ["int8-statik"]
        """,
    )
    proc = harness("validate", str(suite), cwd=tmp_path)
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert str(suite) in err and "variants.int8[0]" in err
    assert f"{tmp_path / 'recipes'} (no such directory)" in err
    assert f"the package's own {builtin_dir('recipes')}" in err
    assert "did you mean 'int8-static'?" in err and "prune-channels-50" in err


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_an_unknown_device_names_the_places_searched(tmp_path: Path) -> None:
    suite = lone_suite(
        tmp_path,
        """
        name = "typo"
        runtimes = ["onnxruntime"]
        devices = ["pi4-emulatd"]
        [[models]]
        name = "mlp"
        zoo = "mlp"
        [variants]
        fp32 = []
        """,
    )
    proc = harness("validate", str(suite), cwd=tmp_path)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "devices[0]" in err
    assert f"the package's own {builtin_dir('devices')}" in err
    assert "did you mean 'pi4-emulated'?" in err


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_devices_check_looks_beside_the_suite(tmp_path: Path) -> None:
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "bench-box.toml").write_text(
        'description = "a local box"\nkind = "local"\n'
    )
    suite = lone_suite(
        tmp_path,
        """
        name = "box"
        runtimes = ["onnxruntime"]
        devices = ["bench-box"]
        [[models]]
        name = "mlp"
        zoo = "mlp"
        [variants]
        fp32 = []
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = harness(
        "devices", "check", "bench-box", "--suite", str(suite), "--format", "json", cwd=elsewhere
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["can_run"] is True


def test_lists_show_the_package_defaults_from_anywhere(tmp_path: Path) -> None:
    recipes = harness("recipes", "list", cwd=tmp_path)
    devices = harness("devices", "list", cwd=tmp_path)
    assert recipes.returncode == devices.returncode == 0
    assert "int8-static" in recipes.stdout and "pi4-emulated" in devices.stdout


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_the_quickstart_suite_by_name_validates_from_anywhere(tmp_path: Path) -> None:
    proc = harness("validate", "quickstart", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_wheel_ships_the_defaults(tmp_path: Path) -> None:
    # Without setuptools in this environment pip builds in isolation (it fetches setuptools).
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q"]
    proc = subprocess.run(
        [*command, "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("harness-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in (
        "harness/builtin/recipes/int8-static.toml",
        "harness/builtin/devices/pi4-emulated.toml",
        "harness/builtin/suites/quickstart.toml",
    ):
        assert member in names
