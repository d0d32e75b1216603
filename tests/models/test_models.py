"""The model zoo, the digits split and the user-model loaders, with real (tiny) training."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from harness.errors import ConfigError, ModelError
from harness.models import ZOO, build_model, get_zoo_model, list_models
from harness.models.base import FileModel, ModelBundle
from harness.models.digits import (
    as_flat,
    as_images,
    as_sequence,
    as_upsampled,
    load_digits_split,
)
from harness.models.loaders import load_factory_model, load_file_model
from harness.models.zoo import cache_file

SMALL = {
    "digits-cnn": {"width": 4, "epochs": 1},
    "mlp": {"hidden": 16, "epochs": 1},
    "transformer": {"d_model": 8, "heads": 2, "layers": 1, "ff": 16, "epochs": 1},
    "mobilenet_v2": {"width_mult": 0.25, "input_size": 32},
    "resnet18": {"width_mult": 0.25, "input_size": 32},
}
INPUT_SHAPES = {
    "digits-cnn": (1, 8, 8),
    "mlp": (64,),
    "transformer": (8, 8),
    "mobilenet_v2": (3, 32, 32),
    "resnet18": (3, 32, 32),
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


# ------------------------------------------------------------------------------- digits


def test_split_is_fixed_stratified_and_calibration_comes_from_train() -> None:
    a, b = load_digits_split(), load_digits_split()
    assert np.array_equal(a.train_idx, b.train_idx)
    assert np.array_equal(a.test_idx, b.test_idx)
    assert np.array_equal(a.calib_idx, b.calib_idx)
    assert len(a.train_idx) + len(a.test_idx) == 1797
    assert not set(a.train_idx) & set(a.test_idx)
    assert set(a.calib_idx) <= set(a.train_idx)
    assert not set(a.calib_idx) & set(a.test_idx)
    assert len(a.test_idx) == pytest.approx(0.2 * 1797, abs=1)
    # Stratified: every class keeps its share of the test split (within one image).
    counts_all = np.bincount(np.concatenate([a.train_y, a.test_y]))
    assert np.all(np.abs(np.bincount(a.test_y) - 0.2 * counts_all) <= 1)
    for x in (a.train_x, a.test_x, a.calib_x):
        assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert a.train_y.dtype == np.int64
    # Another seed gives another split.
    assert not np.array_equal(load_digits_split(seed=1).test_idx, a.test_idx)


def test_input_forms() -> None:
    x = load_digits_split().test_x[:5]
    assert as_flat(x).shape == (5, 64)
    assert as_images(x).shape == (5, 1, 8, 8)
    seq = as_sequence(x)
    assert seq.shape == (5, 8, 8)
    assert np.array_equal(seq[:, 2], x[:, 16:24])  # token 2 is image row 2
    up = as_upsampled(x, 32, channels=3)
    assert up.shape == (5, 3, 32, 32) and up.dtype == np.float32
    assert np.array_equal(up[:, 0], up[:, 2])


# ----------------------------------------------------------------------------------- zoo


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_builds_and_runs(name: str, cache_dir: Path) -> None:
    bundle = build_model(name, SMALL[name], cache_dir)
    assert isinstance(bundle, ModelBundle)
    assert not bundle.module.training
    assert all(p.dtype == torch.float32 for p in bundle.module.parameters())
    assert tuple(bundle.example_input.shape) == (1, *INPUT_SHAPES[name])
    with torch.no_grad():
        out = bundle.module(bundle.example_input)
        batch = bundle.module(torch.from_numpy(bundle.data.eval_inputs[:7]))
    assert out.shape == (1, 10) and batch.shape == (7, 10)
    assert torch.isfinite(batch).all()

    data = bundle.data
    assert data.calib_inputs.dtype == np.float32 and data.eval_inputs.dtype == np.float32
    assert data.calib_inputs.shape[1:] == INPUT_SHAPES[name]
    zoo = get_zoo_model(name)
    assert data.has_labels == zoo.has_labels
    if zoo.has_labels:
        assert data.eval_labels.dtype == np.int64 and data.train_labels.dtype == np.int64
        assert len(data.train_inputs) == len(data.train_labels)
        assert 0.0 <= bundle.info["accuracy"] <= 1.0
    else:  # random weights: seeded normal inputs, no task
        assert (len(data.calib_inputs), len(data.eval_inputs)) == (256, 64)
        assert data.train_inputs is None and "accuracy" not in bundle.info
        # BatchNorm statistics were set from the calibration data, not left at 0/1.
        bn = next(m for m in bundle.module.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert batch.argmax(1).unique().numel() > 1  # not a constant classifier
    assert bundle.identity["zoo"] == name
    assert bundle.identity["params"] == zoo.Params(**SMALL[name]).model_dump(mode="json")
    n_params = sum(p.numel() for p in bundle.module.parameters())
    assert bundle.info["params_count"] == n_params and bundle.info["macs"] > 0
    assert isinstance(zoo.architecture(SMALL[name]), torch.nn.Module)


def test_random_vision_model_is_seeded() -> None:
    a = build_model("resnet18", {"width_mult": 0.25, "input_size": 32}, None)
    b = build_model("resnet18", {"width_mult": 0.25, "input_size": 32}, None)
    c = build_model("resnet18", {"width_mult": 0.25, "input_size": 32, "seed": 1}, None)
    assert np.array_equal(a.data.calib_inputs, b.data.calib_inputs)
    assert torch.equal(a.module.conv1.weight, b.module.conv1.weight)
    assert not torch.equal(a.module.conv1.weight, c.module.conv1.weight)


def test_vision_model_on_digits_has_labels(cache_dir: Path) -> None:
    params = {
        "width_mult": 0.25,
        "input_size": 32,
        "in_channels": 1,
        "dataset": "digits",
        "epochs": 2,
    }
    bundle = build_model("resnet18", params, cache_dir)
    assert bundle.data.has_labels
    assert bundle.data.train_inputs.shape[1:] == (1, 32, 32)
    assert bundle.example_input.shape == (1, 1, 32, 32)
    assert bundle.info["accuracy"] > 0.3  # two epochs, tiny width: above chance


def test_training_is_deterministic() -> None:
    state = torch.random.get_rng_state()
    a = build_model("digits-cnn", {"width": 4, "epochs": 2}, None)
    b = build_model("digits-cnn", {"width": 4, "epochs": 2}, None)
    for (ka, va), (kb, vb) in zip(
        a.module.state_dict().items(), b.module.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG untouched


@pytest.mark.slow
def test_digits_cnn_default_accuracy_and_cache(cache_dir: Path) -> None:
    t0 = time.perf_counter()
    first = build_model("digits-cnn", {}, cache_dir)
    t_first = time.perf_counter() - t0
    assert first.info["accuracy"] >= 0.95
    assert first.info["weights"] == "trained"
    path = cache_file(cache_dir, "digits-cnn", get_zoo_model("digits-cnn").Params())
    assert path is not None and path.parent == cache_dir / "zoo" and path.is_file()
    assert path.name.startswith("digits-cnn-")

    t0 = time.perf_counter()
    second = build_model("digits-cnn", {}, cache_dir)
    t_second = time.perf_counter() - t0
    assert second.info["weights"] == "cache"
    assert t_second < t_first
    for k, v in first.module.state_dict().items():
        assert torch.equal(v, second.module.state_dict()[k])
    assert second.info["accuracy"] == first.info["accuracy"]
    # Other parameters hash to another file: a different model is never loaded.
    other = cache_file(cache_dir, "digits-cnn", get_zoo_model("digits-cnn").Params(epochs=11))
    assert other != path


def test_transformer_exports_with_torch_export() -> None:
    bundle = build_model("transformer", SMALL["transformer"], None)
    ep = torch.export.export(bundle.module, (bundle.example_input,))
    x = torch.from_numpy(bundle.data.eval_inputs[:1])
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), bundle.module(x), atol=1e-5)


@pytest.mark.parametrize(
    "name, params",
    [
        ("digits-cnn", {"widht": 8}),  # unknown key
        ("digits-cnn", {"width": 0}),
        ("digits-cnn", {"epochs": -1}),
        ("mlp", {"hidden": [64, 0]}),
        ("transformer", {"d_model": 30, "heads": 4}),
        ("resnet18", {"input_size": 16}),
        ("resnet18", {"dataset": "imagenet"}),
        ("mobilenet_v2", {"width_mult": 0}),
        ("mobilenet_v2", {"dataset": "digits", "num_classes": 5}),
        ("mobilenet_v2", {"batch_size": 1}),  # BatchNorm cannot train on one sample
    ],
)
def test_invalid_params_raise_validation_error(name: str, params: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        build_model(name, params, None)


def test_training_batch_size_is_part_of_the_weight_cache_key(tmp_path: Path) -> None:
    from harness.models.zoo import cache_file

    p = get_zoo_model("mobilenet_v2").Params
    a = cache_file(tmp_path, "mobilenet_v2", p(dataset="digits"))
    b = cache_file(tmp_path, "mobilenet_v2", p(dataset="digits", batch_size=32))
    assert a != b


def test_mlp_width_and_list_are_the_same_model() -> None:
    p = get_zoo_model("mlp").Params
    assert p(hidden=32).model_dump() == p(hidden=[32]).model_dump()


def test_list_models() -> None:
    models = {m["name"]: m for m in list_models()}
    assert set(models) == set(ZOO)
    assert models["digits-cnn"]["has_labels"] is True
    assert models["resnet18"]["has_labels"] is False
    assert models["digits-cnn"]["params"]["width"] == 16
    assert models["mobilenet_v2"]["params"]["dataset"] == "random"
    assert all(m["description"] for m in models.values())


def test_import_is_light() -> None:
    code = (
        "import sys, harness.models, harness.models.base; "
        "bad = {'sklearn', 'torch_pruning', 'onnx', 'executorch'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------- loaders

FACTORY_SRC = """
import torch

def make():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    return net, torch.randn(2, 3, 8, 8)

def make_bundle(cache_dir=None):
    from harness.models.base import ModelBundle, TaskData
    import numpy as np
    net = torch.nn.Linear(4, 2)
    data = TaskData(calib_inputs=np.zeros((3, 4), np.float32),
                    eval_inputs=np.zeros((3, 4), np.float32),
                    eval_labels=np.zeros(3, np.int64))
    return ModelBundle("lin", net, torch.zeros(1, 4), data, {"mine": str(cache_dir)})

def broken():
    return 42
"""


def test_factory_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_factory_mod.py").write_text(FACTORY_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    bundle = load_factory_model("user_factory_mod:make", tmp_path)
    assert bundle.example_input.shape == (1, 3, 8, 8)
    assert bundle.data.calib_inputs.shape == (128, 3, 8, 8)
    assert bundle.data.eval_inputs.shape == (64, 3, 8, 8)
    assert not bundle.data.has_labels and not bundle.module.training
    assert bundle.identity["factory"] == "user_factory_mod:make"
    assert len(bundle.identity["source_sha256"]) == 64
    assert bundle.info["params_count"] == 3 * 4 * 9 + 4
    again = load_factory_model("user_factory_mod:make", tmp_path)
    assert np.array_equal(again.data.calib_inputs, bundle.data.calib_inputs)

    ready = load_factory_model("user_factory_mod:make_bundle", tmp_path)
    assert ready.name == "lin" and ready.identity["mine"] == str(tmp_path)
    assert ready.identity["factory"] == "user_factory_mod:make_bundle"

    for bad in ("user_factory_mod:broken", "user_factory_mod:missing", "no_such_mod_x:f", "x"):
        with pytest.raises(ConfigError):
            load_factory_model(bad, tmp_path)


def test_onnx_file_loader(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        net,
        (torch.randn(1, 3, 16, 16),),
        str(path),
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
        dynamo=False,
    )
    fm = load_file_model(path)
    assert isinstance(fm, FileModel)
    assert fm.runtime == "onnxruntime"
    assert fm.input_shape == [1, 3, 16, 16]  # the symbolic batch dim reads as 1
    assert fm.name == "tiny" and len(fm.identity["sha256"]) == 64
    assert load_file_model(path, input_shape=[4, 3, 16, 16]).input_shape == [4, 3, 16, 16]

    other = tmp_path / "model.mlmodel"  # a suffix no runtime owns
    other.write_bytes(b"x")
    with pytest.raises(ConfigError):
        load_file_model(other)
    # .tflite belongs to litert: a file that is not one is a model error, read or not.
    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a valid LiteRT model"):
        load_file_model(tmp_path / "model.tflite")
    with pytest.raises(ConfigError):
        load_file_model(tmp_path / "missing.onnx")


@pytest.mark.slow
def test_pte_file_loader(tmp_path: Path) -> None:
    from executorch.exir import to_edge

    net = torch.nn.Sequential(torch.nn.Linear(6, 3)).eval()
    program = to_edge(torch.export.export(net, (torch.randn(2, 6),))).to_executorch()
    path = tmp_path / "tiny.pte"
    path.write_bytes(program.buffer)
    fm = load_file_model(path)
    assert fm.runtime == "executorch" and fm.input_shape == [2, 6]

    assert load_file_model(path, input_shape=[1, 6]).input_shape == [1, 6]

    # Not a program: refused, with or without a given input shape (the runtime on the
    # device would refuse it later as a runtime error, which it is not).
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"not a program")
    for shape in (None, [1, 6]):
        with pytest.raises(ModelError, match=r"garbage\.pte: not a valid ExecuTorch program"):
            load_file_model(garbage, input_shape=shape)
