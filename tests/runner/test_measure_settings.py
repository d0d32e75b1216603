"""The one table of measure settings agrees with the runner that travels to the board.

The runner cannot import the harness, so it keeps its own defaults and bounds; these
tests walk every setting of the table and hold the runner (and the suite's validation,
built from the table) to it: the same default at the setting's job key, a value just
outside each bound refused, one just inside accepted.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from harness.configfile import validate
from harness.errors import ConfigError
from harness.runner import bench_runner
from harness.runner.job import make_job
from harness.runner.settings import MEASURE_SETTINGS, MeasureSettings, Setting
from harness.suite.config import MeasureConfig

IN_JOB = [s for s in MEASURE_SETTINGS if s.job_key is not None]
BOUNDED = [(s, bound) for s in MEASURE_SETTINGS for bound in s.bounds()]


def _step(setting: Setting) -> float:
    return 1 if setting.type is int else 1e-6


def _outside_and_inside(setting: Setting, bound: str) -> tuple[float, float]:
    """A value just outside ``bound`` and one just inside it."""
    limit, step = setting.bounds()[bound], _step(setting)
    return {
        "ge": (limit - step, limit),
        "gt": (limit, limit + step),
        "le": (limit + step, limit),
        "lt": (limit, limit - step),
    }[bound]


def _job_with(setting: Setting, value: Any) -> dict[str, Any]:
    job = make_job("onnxruntime", "m.onnx", [1, 4], MeasureSettings())
    assert setting.job_key is not None
    *sections, key = setting.job_key
    target = job
    for section in sections:
        target = target[section]
    target[key] = value
    return job


def _runner_refuses(job: dict[str, Any], key: str) -> bool:
    with pytest.raises(bench_runner.JobError) as err:
        bench_runner.validate_job(copy.deepcopy(job))
    return f"key '{key}'" in str(err.value)


def _id(item: Any) -> str:
    return item.name if isinstance(item, Setting) else str(item)


@pytest.mark.parametrize("setting", IN_JOB, ids=_id)
def test_the_runner_defaults_every_setting_as_the_table_does(setting: Setting):
    assert setting.job_key is not None
    default: Any = bench_runner._DEFAULTS
    for part in setting.job_key:
        assert isinstance(default, dict) and part in default, setting.job_key
        default = default[part]
    assert default == setting.default and type(default) is type(setting.default)


def test_the_suite_and_the_settings_default_as_the_table_does():
    measured = {s.name: s.default for s in MEASURE_SETTINGS if s.measured}
    assert dict(vars(MeasureSettings())) == measured
    assert MeasureConfig().settings() == MeasureSettings()
    assert MeasureConfig().model_dump() == {s.name: s.default for s in MEASURE_SETTINGS}


@pytest.mark.parametrize(("setting", "bound"), BOUNDED, ids=_id)
def test_a_value_just_outside_a_bound_is_refused_and_one_inside_accepted(
    setting: Setting, bound: str
):
    outside, inside = _outside_and_inside(setting, bound)
    with pytest.raises(ConfigError) as err:
        validate(MeasureConfig, {setting.name: outside}, "suite.toml", key_prefix="measure")
    assert err.value.key == f"measure.{setting.name}"
    validate(MeasureConfig, {setting.name: inside}, "suite.toml", key_prefix="measure")
    if setting.job_key is None:
        return
    key = ".".join(setting.job_key)
    assert _runner_refuses(_job_with(setting, outside), key), (setting.name, outside)
    bench_runner.validate_job(_job_with(setting, inside))


@pytest.mark.parametrize("setting", IN_JOB, ids=_id)
def test_the_runner_is_no_stricter_than_the_table(setting: Setting):
    """What the suite accepts beyond its bounds' edges reaches a runner that takes it:
    a large value where the table has no upper bound, null where it allows null; and
    an integer setting refuses a fraction on both sides."""
    if setting.type is bool:
        bench_runner.validate_job(_job_with(setting, not setting.default))
        return
    if not {"le", "lt"} & set(setting.bounds()):
        bench_runner.validate_job(_job_with(setting, setting.type(10**6)))
    if setting.nullable:
        bench_runner.validate_job(_job_with(setting, None))
    if setting.type is int:
        assert _runner_refuses(_job_with(setting, 1.5), ".".join(setting.job_key or ()))
        with pytest.raises(ConfigError):
            validate(MeasureConfig, {setting.name: 1.5}, "suite.toml", key_prefix="measure")


def test_make_job_puts_each_setting_at_its_job_key():
    # Values unlike every default, so a setting sent to the wrong key shows.
    given = {}
    for index, s in enumerate(MEASURE_SETTINGS):
        if s.measured:
            given[s.name] = (not s.default) if s.type is bool else s.type(index + 2)
    given.update(adaptive_ci=0.05, max_cv=0.5, cooldown_c=70.0, trials=1)
    settings = MeasureSettings(**given)
    job = make_job("onnxruntime", "m.onnx", [1, 4], settings)
    merged = bench_runner.validate_job(job)
    for s in IN_JOB:
        assert s.job_key is not None
        value: Any = merged
        for part in s.job_key:
            value = value[part]
        assert value == given[s.name], s.name
