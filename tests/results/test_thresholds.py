"""Thresholds: parsed from the command line and a suite's [compare] table, with clear errors."""

from __future__ import annotations

import dataclasses
import math

import pytest

from harness.errors import ConfigError
from harness.results.thresholds import (
    Direction,
    LimitKind,
    Threshold,
    default_thresholds,
    parse_limit,
    parse_threshold,
    resolve_thresholds,
)
from harness.suite.config import CompareConfig, load_compare_config, load_suite
from tests.suite_files import write_suite

SUITE = """
name = "t"
runtimes = ["onnxruntime"]
devices = ["local"]

[[models]]
name = "tiny"
factory = "tinymodel:make"

[variants]
fp32 = []
"""


def test_command_line_strings_become_threshold_objects():
    assert parse_threshold("latency=5%") == Threshold(
        "latency_p50", Direction.HIGHER_IS_WORSE, 0.05, LimitKind.RELATIVE
    )
    assert parse_threshold("memory=10%").metric == "memory_peak"
    assert parse_threshold("size = 2.5%").limit == pytest.approx(0.025)
    accuracy = parse_threshold("accuracy=0.5pt")
    assert accuracy == Threshold("accuracy", Direction.LOWER_IS_WORSE, 0.005, LimitKind.POINTS)
    assert parse_threshold("p50=3%").metric == "latency_p50"  # an alias
    assert accuracy.text == "0.5pt" and parse_threshold("latency=5%").text == "5%"


def test_defaults_are_the_issues():
    t = default_thresholds()
    assert {name: th.text for name, th in t.items()} == {
        "latency_p50": "5%",
        "memory_peak": "10%",
        "size": "2%",
        "accuracy": "0.5pt",
    }


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("latency=5", "--threshold latency", "a limit in percent such as '5%'"),
        ("latency=fast", "--threshold latency", "percent"),
        ("accuracy=1%", "--threshold accuracy", "percentage points"),
        ("memory=0.5pt", "--threshold memory", "a limit in percent"),
        ("speed=5%", "--threshold speed", "latency, memory, size, accuracy"),
        ("latency", "--threshold", "METRIC=LIMIT"),
        ("=5%", "--threshold", "METRIC=LIMIT"),
    ],
)
def test_bad_command_line_thresholds_say_what_is_expected(text, key, expected):
    with pytest.raises(ConfigError) as info:
        parse_threshold(text)
    assert info.value.key == key
    assert expected in info.value.expected
    assert "<command line>" in str(info.value)


def test_changes_directions_and_the_limit_boundary():
    latency = parse_limit("latency", "5%")
    assert latency.change(2.0, 2.2) == pytest.approx(0.1)
    assert latency.worsening(0.1) == pytest.approx(0.1) and latency.reaches(0.1)
    assert latency.reaches(-0.05) and not latency.reaches(0.049)
    assert latency.change(0.0, 0.0) == 0.0 and math.isinf(latency.change(0.0, 1.0))
    accuracy = parse_limit("accuracy", "0.5pt")
    change = accuracy.change(0.995, 0.990)
    assert change == pytest.approx(-0.005)
    assert accuracy.worsening(change) > 0 and accuracy.reaches(change)  # exactly the limit
    assert accuracy.format_change(change) == "-0.50pt"
    assert latency.format_change(0.1234) == "+12.34%"


def test_thresholds_are_frozen_and_serialise():
    t = parse_threshold("latency=5%")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.limit = 0.1  # type: ignore[misc]
    assert t.to_dict() == {
        "metric": "latency_p50",
        "direction": "higher_is_worse",
        "limit": 0.05,
        "kind": "relative",
        "text": "5%",
    }


def test_command_line_overrides_the_suite_which_overrides_the_defaults():
    t = resolve_thresholds({"latency": "3%", "memory": "20%"}, ["memory=15%"])
    assert t["latency_p50"].text == "3%"
    assert t["memory_peak"].text == "15%"
    assert t["size"].text == "2%" and t["accuracy"].text == "0.5pt"


def test_suite_compare_table_is_optional_and_validated(tmp_path):
    plain = write_suite(tmp_path, SUITE)
    assert load_suite(plain).compare == CompareConfig()
    assert load_compare_config(plain) == CompareConfig()

    custom = write_suite(
        tmp_path,
        SUITE
        + """
        [compare]
        latency = "3%"
        accuracy = "1pt"
        alpha = 0.01
        interleave = true
        rounds = 12
        max_rounds = 40
        """,
        name="custom.toml",
    )
    config = load_suite(custom).compare
    assert config.limits() == {"latency": "3%", "memory": "10%", "size": "2%", "accuracy": "1pt"}
    assert (config.alpha, config.interleave, config.rounds, config.max_rounds) == (
        0.01,
        True,
        12,
        40,
    )
    assert load_compare_config(custom) == config


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ('latency = "5"', "compare.latency", "a limit in percent such as '5%'"),
        ('accuracy = "1%"', "compare.accuracy", "percentage points"),
        ("alpha = 0.7", "compare.alpha", "less than 0.5"),
        ("rounds = 2", "compare.rounds", "greater than or equal to 6"),
        ("rounds = 30\nmax_rounds = 20", "compare", "max_rounds (20) >= rounds (30)"),
        ('latncy = "5%"', "compare.latncy", "allowed here: accuracy, alpha"),
    ],
)
def test_bad_compare_values_name_the_file_key_and_expectation(tmp_path, table, key, expected):
    path = write_suite(tmp_path, SUITE + "\n[compare]\n" + table + "\n")
    for load in (load_suite, load_compare_config):
        with pytest.raises(ConfigError) as info:
            load(path)
        assert info.value.file == str(path) and info.value.key == key
        assert expected in info.value.expected
