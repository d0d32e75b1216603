"""User models: a Python factory ("package.module:factory") or a ready .onnx/.pte file.

Factories give full PyTorch modules, so every recipe applies; files are benchmark-only.
Identities hash the source/file contents, so editing a factory's module or replacing a
file invalidates cached variants and results instead of silently reusing them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
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
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            # The module itself (or its package) is not there: a typo or a path problem.
            raise ConfigError(
                None,
                "model.factory",
                f"an importable module (is {module_name!r} on sys.path / next to the "
                f"suite?); import failed with {type(exc).__name__}: {exc}",
                spec,
            ) from exc
        raise _import_failed(module_name, exc) from exc  # something it imports is missing
    except (Exception, SystemExit) as exc:
        # The user's module is there but its code fails as it loads (SyntaxError,
        # NameError, anything at import): their error, with its traceback chained.
        raise _import_failed(module_name, exc) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(None, "model.factory", f"a callable {attr!r} in {module_name}", spec)
    return module, factory


def _import_failed(module_name: str, exc: BaseException) -> ModelError:
    try:
        spec = importlib.util.find_spec(module_name)
        where = f" ({spec.origin})" if spec is not None and spec.origin else ""
    except Exception:  # its package is the part that fails to import
        where = ""
    return ModelError(
        f"factory module {module_name!r}{where} failed to import: {type(exc).__name__}: {exc}"
    )


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


def _invalid(path: Path, kind: str, why: str) -> ModelError:
    return ModelError(f"{path}: not a valid {kind} ({why})")


def _read_onnx(path: Path) -> Any:
    """The file's ModelProto (weights left on disk), or a ModelError saying what is wrong.

    A file cut short mid-field does not parse; one cut at a field boundary parses but
    lacks the graph or the opsets that follow it, so both are required.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        size = path.stat().st_size
        raise _invalid(path, "ONNX file", f"{type(exc).__name__}: {exc}; {size} bytes") from exc
    if not model.HasField("graph"):
        problem = "it holds no graph"
    elif not model.graph.output:
        problem = "its graph has no outputs"
    elif not model.opset_import:
        problem = "it names no opset"
    else:
        return model
    raise _invalid(path, "ONNX file", f"{problem}: cut short, or not an ONNX model")


def _onnx_input_shape(path: Path, model: Any = None) -> list[int]:
    model = _read_onnx(path) if model is None else model
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ConfigError(
            path, "model.file", "an ONNX model with exactly one input", f"{len(inputs)} inputs"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    # Symbolic (dim_param) or unknown dims, typically the batch: benchmark at 1.
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims]


_PTE_HEAD_BYTES = 64


def _check_pte_header(path: Path) -> None:
    """The .pte's own header against its size: the file identifier at byte 4, and the
    extended header's program and segment sizes (a file cut short is smaller)."""
    with open(path, "rb") as f:
        head = f.read(_PTE_HEAD_BYTES)
    size = path.stat().st_size
    kind = "ExecuTorch program"
    if len(head) < 8 or head[4:6] != b"ET":
        found = head[4:8] if len(head) >= 8 else f"{size} bytes"
        raise _invalid(path, kind, f"no ExecuTorch file identifier at byte 4, found {found!r}")
    if head[8:12] != b"eh00" or len(head) < 32:
        return  # no extended header (older programs): nothing more to compare
    length = int.from_bytes(head[12:16], "little")
    program_size = int.from_bytes(head[16:24], "little")
    segment_base = int.from_bytes(head[24:32], "little")
    segment_data = int.from_bytes(head[32:40], "little") if length >= 32 else 0
    expected = max(program_size, segment_base + segment_data if segment_base else 0)
    if size < expected:
        raise _invalid(
            path, kind, f"cut short: its header says {expected} bytes, the file has {size}"
        )


def _read_pte(path: Path) -> Any | None:
    """The loaded program (None when no ExecuTorch runtime is installed here to ask),
    or a ModelError when the file is not a program the runtime can load."""
    _check_pte_header(path)
    try:
        from executorch.runtime import Runtime
    except ImportError:
        return None
    try:
        return Runtime.get().load_program(path)
    except Exception as exc:
        raise _invalid(path, "ExecuTorch program", f"the runtime could not load it: {exc}") from exc


def _pte_input_shape(program: Any) -> list[int] | None:
    if program is None:
        return None
    try:
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
    A file that is not a valid model (cut short, another format) raises ModelError
    ``"<path>: not a valid ONNX file (...)"`` (or ExecuTorch program).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "model.file", "an existing .onnx or .pte file")
    suffix = path.suffix.lower()
    # The file is read even when input_shape is given: a damaged one is the user's
    # model error, named here, not a runtime failure on the device later.
    if suffix == ".onnx":
        runtime = "onnxruntime"
        model = _read_onnx(path)
        shape = list(input_shape) if input_shape else _onnx_input_shape(path, model)
    elif suffix == ".pte":
        runtime = "executorch"
        program = _read_pte(path)
        shape = list(input_shape) if input_shape else _pte_input_shape(program)
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
