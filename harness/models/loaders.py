"""User models: a Python factory ("package.module:factory") or a ready .onnx/.pte file.

Factories give full PyTorch modules, so every recipe applies; files are benchmark-only.
Identities hash the source/file contents, so editing a factory's module or replacing a
file invalidates cached variants and results instead of silently reusing them.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import ConfigError, ModelError
from harness.models.base import FileModel, ModelBundle, TaskData

__all__ = ["FACTORY_CALIB", "FACTORY_EVAL", "load_factory_model", "load_file_model", "sha256_file"]

FACTORY_CALIB = 128
FACTORY_EVAL = 64
FACTORY_SEED = 0


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (model files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve_factory(spec: str) -> tuple[Any, Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(None, "model.factory", "'package.module:factory'", spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            None,
            "model.factory",
            f"an importable module (is {module_name!r} on sys.path / next to the suite?); "
            f"import failed with {type(exc).__name__}: {exc}",
            spec,
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(None, "model.factory", f"a callable {attr!r} in {module_name}", spec)
    return module, factory


def load_factory_model(spec: str, cache_dir: Path | str | None = None) -> ModelBundle:
    """Call a user factory and wrap what it returns as a :class:`ModelBundle`.

    The factory takes no arguments (or a ``cache_dir`` keyword, passed through so it can
    cache its own weights) and returns either a ready ModelBundle or ``(module,
    example_input)``. For the tuple form there is no task: calibration (128) and eval
    (64) inputs are seeded standard-normal tensors shaped like ``example_input``, and
    quality is agreement with the fp32 module.
    """
    py_module, factory = _resolve_factory(spec)
    kwargs: dict[str, Any] = {}
    try:
        if "cache_dir" in inspect.signature(factory).parameters:
            kwargs["cache_dir"] = Path(cache_dir) if cache_dir is not None else None
    except (TypeError, ValueError):  # builtins without a signature
        pass
    try:
        result = factory(**kwargs)
    except Exception as exc:
        # The user's own code failed: a model error to report with its traceback, not a
        # fault of the harness.
        raise ModelError(f"model factory {spec} raised {type(exc).__name__}: {exc}") from exc

    source = inspect.getsourcefile(py_module) if hasattr(py_module, "__file__") else None
    identity: dict[str, Any] = {"factory": spec}
    if source and Path(source).is_file():
        identity["source_sha256"] = sha256_file(source)
    name = spec.partition(":")[2]

    from harness.models.architectures import model_stats

    if isinstance(result, ModelBundle):
        result.module = result.module.float().eval()
        result.identity = {**identity, **(result.identity or {})}
        result.info = {**model_stats(result.module, result.example_input), **result.info}
        return result
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ConfigError(
            None,
            "model.factory",
            "a factory returning a ModelBundle or a (module, example_input) tuple",
            f"{spec} returned {type(result).__name__}",
        )
    module, example = result
    if not isinstance(module, torch.nn.Module) or not isinstance(example, torch.Tensor):
        raise ConfigError(
            None,
            "model.factory",
            "(torch.nn.Module, torch.Tensor)",
            f"({type(module).__name__}, {type(example).__name__})",
        )
    module = module.float().eval()
    example = example.detach().float()
    if example.dim() == 0:
        raise ConfigError(None, "model.factory", "a batched example_input", tuple(example.shape))
    shape = tuple(example.shape[1:])
    rng = np.random.default_rng(FACTORY_SEED)
    data = TaskData(
        calib_inputs=rng.standard_normal((FACTORY_CALIB, *shape), dtype=np.float32),
        eval_inputs=rng.standard_normal((FACTORY_EVAL, *shape), dtype=np.float32),
    )
    example = example[:1].clone()
    return ModelBundle(
        name=name,
        module=module,
        example_input=example,
        data=data,
        identity=identity,
        info=model_stats(module, example),
    )


def _onnx_input_shape(path: Path) -> list[int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ConfigError(
            path, "model.file", "an ONNX model with exactly one input", f"{len(inputs)} inputs"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    # Symbolic (dim_param) or unknown dims, typically the batch: benchmark at 1.
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims]


def _pte_input_shape(path: Path) -> list[int] | None:
    try:
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(path)
        meta = program.metadata("forward")
        if meta.num_inputs() != 1:
            return None
        return [int(s) for s in meta.input_tensor_meta(0).sizes()]
    except Exception:
        return None


def load_file_model(path: Path | str, input_shape: list[int] | None = None) -> FileModel:
    """Describe a ready .onnx (onnxruntime) or .pte (executorch) file for benchmarking.

    The input shape comes from the file (ONNX graph input; ExecuTorch method metadata);
    ``input_shape`` overrides it and is required when a .pte's metadata cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "model.file", "an existing .onnx or .pte file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        runtime = "onnxruntime"
        shape = list(input_shape) if input_shape else _onnx_input_shape(path)
    elif suffix == ".pte":
        runtime = "executorch"
        shape = list(input_shape) if input_shape else _pte_input_shape(path)
        if shape is None:
            raise ConfigError(
                path,
                "model.input_shape",
                "the input shape (e.g. [1, 3, 224, 224]): it could not be read from the "
                ".pte's method metadata",
            )
    else:
        raise ConfigError(path, "model.file", "a file ending in .onnx or .pte", path.suffix)
    if not shape or any(int(d) < 1 for d in shape):
        raise ConfigError(path, "model.input_shape", "positive dimensions", shape)
    return FileModel(
        name=path.stem,
        path=str(path),
        runtime=runtime,
        input_shape=[int(d) for d in shape],
        identity={"file": str(path), "sha256": sha256_file(path)},
    )
