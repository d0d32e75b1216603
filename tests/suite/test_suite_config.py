"""Suite validation: every error names the file, the key and what was expected."""

import pytest

from harness.errors import ConfigError
from harness.recipes.config import list_presets
from harness.suite.config import load_suite
from harness.suite.walk import expand
from tests.suite_files import REPO, write_suite

BASE = """
name = "t"
runtimes = ["onnxruntime"]
devices = ["local"]

[[models]]
name = "tiny"
factory = "tinymodel:make"

[variants]
fp32 = []
"""


def _error(tmp_path, body) -> ConfigError:
    path = write_suite(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    # The suite file is named even when the fault is in a preset it uses.
    assert str(path) in str(info.value)
    return info.value


def test_valid_suite_expands_to_matrix(tiny_suite):
    suite = load_suite(tiny_suite)
    cells = expand(suite)
    assert [c.key for c in cells] == [
        ("tiny", "fp32", "onnxruntime", "local"),
        ("tiny", "fp32", "executorch", "local"),
        ("tiny", "int8", "onnxruntime", "local"),
        ("tiny", "int8", "executorch", "local"),
    ]
    assert suite.variants["int8"].steps[0].params["calibration_samples"] == 128


def test_unknown_top_level_key(tmp_path):
    err = _error(tmp_path, BASE.replace('name = "t"', 'name = "t"\ncolour = "red"'))
    assert err.key == "colour" and "allowed here" in err.expected and "variants" in err.expected


def test_unknown_nested_key(tmp_path):
    err = _error(tmp_path, BASE + "[measure]\nmin_cnt = 3\n")
    assert (
        err.key == "measure.min_cnt"
        and "min_count" in err.expected
        and "allowed here" in err.expected
    )


def test_wrong_type(tmp_path):
    err = _error(tmp_path, BASE + "[measure]\nmin_count = 'many'\n")
    assert err.key == "measure.min_count" and "integer" in err.expected and err.got == "many"


def test_out_of_range_value(tmp_path):
    err = _error(tmp_path, BASE + "[measure]\nthreads = 0\n")
    assert err.key == "measure.threads" and "greater than or equal to 1" in err.expected


def test_unknown_zoo_model(tmp_path):
    err = _error(tmp_path, BASE.replace('factory = "tinymodel:make"', 'zoo = "resnet19"'))
    assert err.key == "models[0].zoo" and "resnet18" in err.expected


def test_missing_factory_module(tmp_path):
    err = _error(tmp_path, BASE.replace("tinymodel:make", "nosuchmodule:make"))
    assert err.key == "models[0].factory" and "importable" in err.expected


def test_missing_model_file(tmp_path):
    err = _error(tmp_path, BASE.replace('factory = "tinymodel:make"', 'file = "absent.onnx"'))
    assert err.key == "models[0].file" and "not found" in err.expected


def test_two_model_sources(tmp_path):
    err = _error(
        tmp_path,
        BASE.replace('factory = "tinymodel:make"', 'factory = "tinymodel:make"\nzoo = "mlp"'),
    )
    assert err.key == "models[0]" and "exactly one" in err.expected


def test_missing_preset(tmp_path):
    err = _error(tmp_path, BASE + 'int8 = ["int8-statik"]\n')
    assert err.key == "variants.int8[0]" and "int8-static" in err.expected


def test_unknown_inline_recipe(tmp_path):
    err = _error(tmp_path, BASE + 'x = [{ recipe = "quantum" }]\n')
    assert err.key == "variants.x[0].recipe" and "int8-static" in err.expected


def test_inline_recipe_parameter_out_of_range(tmp_path):
    err = _error(tmp_path, BASE + 'x = [{ recipe = "int8-static", calibration_samples = 0 }]\n')
    assert err.key == "variants.x[0].calibration_samples"


def test_bad_preset_file_names_the_preset(tmp_path):
    presets = tmp_path / "recipes"
    presets.mkdir()
    (presets / "broken.toml").write_text('[[steps]]\nrecipe = "int8-static"\nper_chanel = true\n')
    err = _error(tmp_path, BASE + 'x = ["broken"]\n')
    assert err.file == str(presets / "broken.toml") and err.key == "steps[0].per_chanel"
    assert "per_channel" in err.expected


def test_quantize_step_must_be_last(tmp_path):
    err = _error(tmp_path, BASE + 'x = ["int8-static", "int8-dynamic"]\n')
    assert err.key == "variants.x"


def test_unknown_device_and_runtime(tmp_path):
    err = _error(tmp_path, BASE.replace('devices = ["local"]', 'devices = ["pi9"]'))
    assert err.key == "devices[0]"
    err = _error(tmp_path, BASE.replace('runtimes = ["onnxruntime"]', 'runtimes = ["tflite"]'))
    assert err.key == "runtimes[0]"


def test_missing_required_key(tmp_path):
    err = _error(tmp_path, BASE.replace('name = "t"\n', ""))
    assert err.key == "name" and "required" in err.expected


def test_toml_syntax_error(tmp_path):
    err = _error(tmp_path, BASE + "[measure\n")
    assert err.key == "<syntax>"


def test_budget_for_unknown_device(tmp_path):
    err = _error(tmp_path, BASE + "[budgets.pi4]\np90_ms = 3\n")
    assert err.key == "budgets.pi4"
    assert "board of a listed emulated device" in err.expected


def test_budget_for_the_board_an_emulated_device_stands_for(tmp_path):
    body = BASE.replace('devices = ["local"]', 'devices = ["pi4-emulated"]')
    suite = load_suite(write_suite(tmp_path, body + "[budgets.pi4]\np90_ms = 3\n"))
    assert suite.budgets["pi4"].p90_ms == 3


def test_shipped_suites_and_presets_validate():
    suites = [*(REPO / "suites").glob("*.toml"), *(REPO / "benchmarks").glob("*.toml")]
    assert len(suites) >= 2
    for suite in suites:
        assert expand(load_suite(suite))
    presets = list_presets([REPO / "recipes"])
    assert {"int8-static", "int8-qat", "prune-channels-50", "distill-half", "low-rank-50"} <= {
        p.name for p in presets
    }
    assert all(p.steps for p in presets)


@pytest.mark.parametrize(
    ("step", "key"),
    [
        ('recipe = "prune-unstructured"\nsparsity = 1.5', "steps[0].sparsity"),
        ('recipe = "low-rank"\nrank_ratio = 0', "steps[0].rank_ratio"),
        ('recipe = "distill"\ntemperature = -1', "steps[0].temperature"),
        ('recipe = "prune-channels"\nratio = 0', "steps[0].ratio"),
        ('recipe = "quantum-annealing"', "steps[0].recipe"),
    ],
)
def test_invalid_recipe_values_name_the_preset_file_and_key(tmp_path, step, key):
    presets = tmp_path / "recipes"
    presets.mkdir()
    (presets / "mine.toml").write_text(f"[[steps]]\n{step}\n")
    err = _error(tmp_path, BASE + 'x = ["mine"]\n')
    assert err.file == str(presets / "mine.toml") and err.key == key


def test_exclude_drops_matching_cells_and_checks_its_names(tmp_path):
    body = BASE.replace('devices = ["local"]', 'devices = ["local", "pi4-emulated"]').replace(
        'runtimes = ["onnxruntime"]', 'runtimes = ["onnxruntime", "executorch"]'
    )
    rule = '[[exclude]]\ndevice = "pi4-emulated"\nruntime = "executorch"\n'
    cells = expand(load_suite(write_suite(tmp_path, body + rule)))
    assert {(c.runtime, c.device.name) for c in cells} == {
        ("onnxruntime", "local"),
        ("executorch", "local"),
        ("onnxruntime", "pi4-emulated"),
    }
    err = _error(tmp_path, body + '[[exclude]]\ndevice = "pi4-emulatd"\n')
    assert err.key == "exclude[0].device" and "pi4-emulated" in err.expected
    err = _error(tmp_path, body + "[[exclude]]\n")
    assert err.key == "exclude[0]"
