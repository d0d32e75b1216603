"""Models defined in code: the registry, their parameters and how each one is built.

The registry maps a public name to ``"module:Class"`` and is resolved lazily (like the
recipe and exporter registries), so a third-party model can be registered the same way.
Models trained on the digits are trained once per parameter set and their weights cached
under ``cache_dir / "zoo"``; the file name hashes the validated parameters, the torch
version and :data:`CODE_REVISION`, so changing any of them retrains instead of loading
weights that no longer match.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from harness.models import architectures as arch
from harness.models.base import ModelBundle, TaskData, ZooModel
from harness.models.digits import as_flat, as_images, as_sequence, as_upsampled, load_digits_split
from harness.plugins import resolve

__all__ = [
    "CODE_REVISION",
    "ZOO",
    "ZooParams",
    "build_model",
    "cache_file",
    "get_zoo_model",
    "list_models",
    "suite_snippet",
]

ZOO: dict[str, str] = {
    "digits-cnn": "harness.models.zoo:DigitsCnnModel",
    "mlp": "harness.models.zoo:MlpModel",
    "transformer": "harness.models.zoo:TransformerModel",
    "mobilenet_v2": "harness.models.zoo:MobileNetV2Model",
    "resnet18": "harness.models.zoo:ResNet18Model",
}

# Bump when an architecture or the training procedure changes: cached weights from an
# older revision must not be loaded into (or stand in for) the new definition.
CODE_REVISION = 1

RANDOM_CALIB = 256
RANDOM_EVAL = 64
TRAIN_BATCH = 64


def get_zoo_model(name: str) -> ZooModel:
    """An instance of the zoo model registered as ``name`` (KeyError if unknown)."""
    return resolve(ZOO[name])()


def build_model(
    name: str, params: dict[str, Any] | None, cache_dir: Path | str | None
) -> ModelBundle:
    """Validate ``params`` against the model's ``Params`` and build the ready model.

    ``pydantic.ValidationError`` propagates unchanged so the caller can name the suite
    file and key. ``cache_dir=None`` disables the weight cache (always trains).
    """
    zoo = get_zoo_model(name)
    validated = zoo.Params.model_validate(params or {})
    return zoo.build(validated, Path(cache_dir) if cache_dir is not None else None)


def list_models() -> list[dict[str, Any]]:
    """Name, description, whether it has labels, and every parameter with its default and
    help text, for ``harness models list``."""
    out = []
    for name in ZOO:
        zoo = get_zoo_model(name)
        fields = zoo.Params.model_fields
        defaults = zoo.Params().model_dump(mode="json")
        out.append(
            {
                "name": name,
                "description": zoo.description,
                "has_labels": zoo.has_labels,
                "params": defaults,
                "param_help": {k: (f.description or "") for k, f in fields.items()},
            }
        )
    return out


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _toml_value(value: Any) -> str:
    """A JSON-mode default as a TOML value: TOML's strings, numbers, booleans and arrays
    are written as JSON writes them (``json.dumps`` gives ``true``, ``1e-05``, ``"x"``)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return repr(value)  # 1.0 stays a float: an int would fail a float-only field
    return json.dumps(value)


def suite_snippet(model: dict[str, Any]) -> str:
    """A ready-to-paste ``[[models]]`` table for one entry of :func:`list_models`, every
    parameter at its default (a default of None, which TOML cannot hold, is a comment)."""
    lines = [
        "[[models]]",
        f"name = {json.dumps(model['name'])}",
        f"zoo = {json.dumps(model['name'])}",
    ]
    params = model.get("params") or {}
    given = {k: v for k, v in params.items() if v is not None}
    if given:
        lines.append(f"params = {_toml_value(given)}")
    lines += [f"# {k}: no default (unset)" for k, v in params.items() if v is None]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- parameters


class ZooParams(BaseModel):
    """Base for every zoo model's parameters: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, description="seed for weight init, batch order and random data")


class DigitsCnnParams(ZooParams):
    width: int = Field(16, ge=1, le=512, description="base channels (stages: w, 2w, 4w)")
    epochs: int = Field(12, ge=0, le=1000, description="training epochs on the train split")
    lr: float = Field(3e-3, gt=0, le=1, description="Adam learning rate (cosine decay)")


class MlpParams(ZooParams):
    hidden: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [128, 64],
        min_length=1,
        description="hidden layer widths (an int means one hidden layer)",
    )
    epochs: int = Field(30, ge=0, le=1000, description="training epochs on the train split")
    lr: float = Field(5e-3, gt=0, le=1, description="Adam learning rate (cosine decay)")

    @field_validator("hidden", mode="before")
    @classmethod
    def _width_to_list(cls, v: Any) -> Any:
        # One spelling per model: 128 and [128] must hash (and cache) the same.
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v


class TransformerParams(ZooParams):
    d_model: int = Field(32, ge=2, le=4096, description="token embedding width")
    heads: int = Field(4, ge=1, le=64, description="attention heads (must divide d_model)")
    layers: int = Field(2, ge=1, le=48, description="encoder layers")
    ff: int = Field(64, ge=1, le=65536, description="feed-forward hidden width")
    epochs: int = Field(30, ge=0, le=1000, description="training epochs on the train split")
    lr: float = Field(4e-3, gt=0, le=1, description="Adam learning rate (cosine decay)")

    @model_validator(mode="after")
    def _heads_divide(self) -> TransformerParams:
        if self.d_model % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide d_model ({self.d_model})")
        return self


class VisionParams(ZooParams):
    width_mult: float = Field(1.0, gt=0, le=4, description="channel multiplier")
    input_size: int = Field(64, ge=32, le=512, description="square input side (>= 32)")
    in_channels: int = Field(3, ge=1, le=64, description="input channels")
    num_classes: int = Field(10, ge=1, le=100_000, description="classifier outputs")
    dataset: Literal["random", "digits"] = Field(
        "random",
        description="'random': seeded random weights and normal inputs, no labels; "
        "'digits': train on digits upsampled to input_size",
    )
    epochs: int = Field(3, ge=0, le=1000, description="training epochs (dataset=digits only)")
    lr: float = Field(1e-3, gt=0, le=1, description="Adam learning rate (dataset=digits only)")
    batch_size: int = Field(
        TRAIN_BATCH, ge=2, le=4096, description="training batch size (dataset=digits only)"
    )

    @model_validator(mode="after")
    def _digits_has_ten_classes(self) -> VisionParams:
        if self.dataset == "digits" and self.num_classes != 10:
            raise ValueError("dataset='digits' has 10 classes: num_classes must be 10")
        return self


class MobileNetV2Params(VisionParams):
    # Depthwise nets converge more slowly from scratch on 1.4k images than ResNet does.
    epochs: int = Field(15, ge=0, le=1000, description="training epochs (dataset=digits only)")
    lr: float = Field(5e-3, gt=0, le=1, description="Adam learning rate (dataset=digits only)")


# ------------------------------------------------------------------------------- helpers


def _validate(params_cls: type[BaseModel], params: Any) -> Any:
    if isinstance(params, params_cls):
        return params
    if isinstance(params, BaseModel):
        params = params.model_dump()
    return params_cls.model_validate(params or {})


def cache_file(cache_dir: Path | None, name: str, params: BaseModel) -> Path | None:
    """Where the trained weights of ``name`` with ``params`` live (None: no caching)."""
    if cache_dir is None:
        return None
    key = json.dumps(
        {
            "name": name,
            "params": params.model_dump(mode="json"),
            "torch": torch.__version__,
            "revision": CODE_REVISION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / "zoo" / f"{name}-{digest}.pt"


def _save_atomic(obj: Any, path: Path) -> None:
    # Several suites may build the same model at once: write to a temp file in the same
    # directory and rename, so a reader never sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _seeded_architecture(zoo: ZooModel, params: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        return zoo.architecture(params)


def _threads_for(module: nn.Module, data: TaskData) -> Any:
    """Run a small model's build on one thread (see ``training_threads`` for why)."""
    from harness.recipes.training import torch_threads, training_threads

    return torch_threads(training_threads(module, torch.from_numpy(data.calib_inputs[:1])))


def _trained_module(
    zoo: ZooModel, params: Any, data: TaskData, cache_dir: Path | None, module: nn.Module
) -> tuple[nn.Module, dict[str, Any]]:
    """Load the cached weights into ``module`` or train it on the train split (and cache)."""
    from harness.recipes.training import train_classifier

    path = cache_file(cache_dir, zoo.name, params)
    if path is not None and path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(saved["state_dict"])
            return module.eval(), {"weights": "cache", "train_seconds": saved.get("seconds")}
        except Exception:  # corrupt or stale file: retrain and overwrite it
            module = _seeded_architecture(zoo, params)
    assert data.train_inputs is not None and data.train_labels is not None
    t0 = time.perf_counter()
    train_classifier(
        module,
        data.train_inputs,
        data.train_labels,
        epochs=params.epochs,
        lr=params.lr,
        seed=params.seed,
        batch_size=getattr(params, "batch_size", TRAIN_BATCH),
    )
    seconds = round(time.perf_counter() - t0, 3)
    if path is not None:
        _save_atomic({"state_dict": module.state_dict(), "seconds": seconds}, path)
    return module.eval(), {"weights": "trained", "train_seconds": seconds}


def _bundle(
    name: str, module: nn.Module, data: TaskData, params: BaseModel, extra: dict[str, Any]
) -> ModelBundle:
    from harness.recipes.training import evaluate_accuracy

    module = module.float().eval()
    example = torch.from_numpy(data.calib_inputs[:1].copy())
    info: dict[str, Any] = arch.model_stats(module, example)
    if data.eval_labels is not None:
        info["accuracy"] = round(evaluate_accuracy(module, data.eval_inputs, data.eval_labels), 6)
    info.update(extra)
    return ModelBundle(
        name=name,
        module=module,
        example_input=example,
        data=data,
        identity={"zoo": name, "params": params.model_dump(mode="json")},
        info=info,
    )


def _digits_data(form: Any) -> TaskData:
    split = load_digits_split()
    return TaskData(
        calib_inputs=form(split.calib_x),
        eval_inputs=form(split.test_x),
        eval_labels=split.test_y,
        train_inputs=form(split.train_x),
        train_labels=split.train_y,
    )


def _calibrate_batchnorm(module: nn.Module, inputs: np.ndarray, batch_size: int = 64) -> None:
    """Set BatchNorm running statistics from forward passes on ``inputs``.

    A freshly initialised network has mean 0 / var 1 running stats, which in eval mode
    lets activations grow or vanish layer after layer; exact per-layer statistics (a
    cumulative average: ``momentum=None``) make the random model behave like a trained
    one numerically, which is what quantization and pruning benchmarks need.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    module.train()
    with torch.no_grad():
        x = torch.from_numpy(inputs)
        for start in range(0, len(x), batch_size):
            module(x[start : start + batch_size])
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m
    module.eval()


# ---------------------------------------------------------------------------- the models


class _DigitsZooModel(ZooModel):
    """A small model trained on the digits train split (weights cached)."""

    has_labels = True

    def _form(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def build(self, params: Any, cache_dir: Any) -> ModelBundle:
        p = _validate(self.Params, params)
        data = _digits_data(self._form)
        module = _seeded_architecture(self, p)
        with _threads_for(module, data):
            module, extra = _trained_module(self, p, data, cache_dir, module)
            return _bundle(self.name, module, data, p, extra)


class DigitsCnnModel(_DigitsZooModel):
    name = "digits-cnn"
    description = "3-stage conv-BN-ReLU CNN on 1x8x8 digits (trained, ~24k params at width 16)"
    Params: ClassVar = DigitsCnnParams

    def _form(self, x: np.ndarray) -> np.ndarray:
        return as_images(x)

    def architecture(self, params: Any) -> nn.Module:
        p = _validate(self.Params, params)
        return arch.DigitsCNN(width=p.width)


class MlpModel(_DigitsZooModel):
    name = "mlp"
    description = "MLP on flat 64-pixel digits (trained)"
    Params: ClassVar = MlpParams

    def _form(self, x: np.ndarray) -> np.ndarray:
        return as_flat(x)

    def architecture(self, params: Any) -> nn.Module:
        p = _validate(self.Params, params)
        return arch.DigitsMLP(hidden=p.hidden)


class TransformerModel(_DigitsZooModel):
    name = "transformer"
    description = "nn.TransformerEncoder on digits, one token per image row (8 tokens x 8 features)"
    Params: ClassVar = TransformerParams

    def _form(self, x: np.ndarray) -> np.ndarray:
        return as_sequence(x)

    def architecture(self, params: Any) -> nn.Module:
        p = _validate(self.Params, params)
        return arch.DigitsTransformer(d_model=p.d_model, heads=p.heads, layers=p.layers, ff=p.ff)


class _VisionZooModel(ZooModel):
    """An ImageNet-style architecture: random weights (default) or trained on digits."""

    has_labels = False  # with the default dataset='random'
    Params: ClassVar = VisionParams

    def build(self, params: Any, cache_dir: Any) -> ModelBundle:
        p = _validate(self.Params, params)
        if p.dataset == "digits":
            data = _digits_data(lambda x: as_upsampled(x, p.input_size, p.in_channels))
            module = _seeded_architecture(self, p)
            with _threads_for(module, data):
                module, extra = _trained_module(self, p, data, cache_dir, module)
                return _bundle(self.name, module, data, p, extra)
        rng = np.random.default_rng(p.seed)
        shape = (p.in_channels, p.input_size, p.input_size)
        data = TaskData(
            calib_inputs=rng.standard_normal((RANDOM_CALIB, *shape), dtype=np.float32),
            eval_inputs=rng.standard_normal((RANDOM_EVAL, *shape), dtype=np.float32),
        )
        module = _seeded_architecture(self, p)
        with _threads_for(module, data):
            _calibrate_batchnorm(module, data.calib_inputs)
            return _bundle(self.name, module, data, p, {"weights": "random init"})


class MobileNetV2Model(_VisionZooModel):
    name = "mobilenet_v2"
    description = (
        "MobileNetV2 (inverted residuals, depthwise convs); random weights or trained on "
        "upsampled digits"
    )
    Params: ClassVar = MobileNetV2Params

    def architecture(self, params: Any) -> nn.Module:
        p = _validate(self.Params, params)
        return arch.MobileNetV2(
            num_classes=p.num_classes, width_mult=p.width_mult, in_channels=p.in_channels
        )


class ResNet18Model(_VisionZooModel):
    name = "resnet18"
    description = "ResNet-18 (BasicBlock stages); random weights or trained on upsampled digits"

    def architecture(self, params: Any) -> nn.Module:
        p = _validate(self.Params, params)
        return arch.ResNet18(
            num_classes=p.num_classes, width_mult=p.width_mult, in_channels=p.in_channels
        )
