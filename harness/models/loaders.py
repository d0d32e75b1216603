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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import ConfigError, ModelError
from harness.models.adapters import KeywordInputs
from harness.models.architectures import model_stats
from harness.models.base import FileModel, ModelBundle, TaskData
from harness.models.inputs import (
    SINGLE_INPUT_NAME,
    Batch,
    InputSpec,
    batch_len,
    call_module,
    generate_batch,
    integer_ranges,
    pack_batch,
    positional_names,
    take,
    to_tensors,
)

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


FACTORY_DATA_KEYS = (
    "eval_inputs",
    "eval_labels",
    "calib_inputs",
    "train_inputs",
    "train_labels",
    "id_ranges",
    "output",
)
# What the first output is, data["output"]: class scores (the default; scored by
# accuracy, top-1 agreement, cosine and SNR) or an embedding (a vector whose largest
# coordinate means nothing: scored by cosine and SNR only, agreement not reported).
OUTPUT_KINDS = ("classes", "embedding")


def load_factory_model(spec: str, cache_dir: Path | str | None = None) -> ModelBundle:
    """Call a user factory and wrap what it returns as a :class:`ModelBundle`.

    The factory takes no arguments (or a ``cache_dir`` keyword, passed through so it can
    cache its own weights) and returns one of:

    * ``(module, example_input)``;
    * ``(module, example_input, data)`` with ``data`` a dict of any of
      :data:`FACTORY_DATA_KEYS` (see :func:`_task_data`); ``data["output"] =
      "embedding"`` marks the first output as an embedding (``info["output"]``), scored
      by cosine and SNR without top-1 agreement;
    * a ready :class:`ModelBundle`.

    ``example_input`` is a tensor, a tuple of tensors (``module(*inputs)``) or a dict of
    tensors (``module(**inputs)``), batch first; floats run in float32, integer inputs
    (token ids) keep their dtype. Without ``data`` there is no task: calibration (128)
    and eval (64) inputs are seeded samples shaped like the example (standard normal
    floats, integer ids drawn from each input's id range, see
    :func:`harness.models.inputs.integer_ranges`), and quality is fidelity to the fp32
    module.
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

    if isinstance(result, ModelBundle):
        return _normalised_bundle(spec, result, identity)
    if not (isinstance(result, tuple) and len(result) in (2, 3)):
        raise ConfigError(
            None,
            "model.factory",
            "a factory returning a ModelBundle, (module, example_input) or "
            "(module, example_input, data)",
            f"{spec} returned {type(result).__name__}",
        )
    module, example = result[0], result[1]
    data = result[2] if len(result) == 3 else None
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(
            None,
            "model.factory",
            "(torch.nn.Module, example_input[, data])",
            f"({type(module).__name__}, {type(example).__name__})",
        )
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            None, "model.factory", "data as a dict (eval_inputs, eval_labels, ...)", type(data)
        )
    module, args, specs = _example_inputs(spec, module.float().eval(), example)
    specs = _with_ranges(spec, module, specs, args, (data or {}).get("id_ranges"))
    task = _task_data(spec, data or {}, specs)
    output = _output_kind(data or {})
    _check_runs(spec, module, args, specs, task)
    info: dict[str, Any] = model_stats(module, args)
    if output != "classes":
        info["output"] = output
    return ModelBundle(
        name=name,
        module=module,
        example_input=pack_args(args),
        data=task,
        identity=identity,
        info=info,
        inputs=specs,
    )


def _output_kind(data: dict[str, Any]) -> str:
    """``data["output"]`` (one of :data:`OUTPUT_KINDS`, "classes" when absent); an
    embedding has no classes, so no labels either."""
    output = data.get("output", "classes")
    if output not in OUTPUT_KINDS:
        raise ConfigError(None, "model.factory", "data['output'] among " + ", ".join(OUTPUT_KINDS),
                          output)  # fmt: skip
    if output == "embedding" and (
        data.get("eval_labels") is not None or data.get("train_labels") is not None
    ):
        raise ConfigError(
            None,
            "model.factory",
            "no eval_labels or train_labels with data['output'] = 'embedding' (an embedding "
            "has no classes to compare labels with)",
        )
    return output


def pack_args(args: tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """One tensor for a one-input model (what the zoo's bundles hold), else the tuple."""
    return args[0] if len(args) == 1 else args


def _normalised_bundle(spec: str, bundle: ModelBundle, identity: dict[str, Any]) -> ModelBundle:
    """A factory's own ModelBundle with its example, specs and data in canonical form."""
    module, args, specs = _example_inputs(spec, bundle.module.float().eval(), bundle.example_input)
    if bundle.inputs:
        if [s.name for s in bundle.inputs] != [s.name for s in specs]:
            raise ConfigError(
                None,
                "model.factory",
                f"ModelBundle.inputs named like the example's inputs {[s.name for s in specs]}",
                [s.name for s in bundle.inputs],
            )
        specs = tuple(bundle.inputs)
    specs = _with_ranges(spec, module, specs, args, None)
    d = bundle.data
    task = TaskData(
        calib_inputs=_batch(spec, "data.calib_inputs", d.calib_inputs, specs),
        eval_inputs=_batch(spec, "data.eval_inputs", d.eval_inputs, specs),
        eval_labels=None if d.eval_labels is None else np.asarray(d.eval_labels),
        train_inputs=(
            None
            if d.train_inputs is None
            else _batch(spec, "data.train_inputs", d.train_inputs, specs)
        ),
        train_labels=None if d.train_labels is None else np.asarray(d.train_labels),
    )
    _check_runs(spec, module, args, specs, task)
    return replace(
        bundle,
        module=module,
        example_input=pack_args(args),
        data=task,
        identity={**identity, **(bundle.identity or {})},
        info={**model_stats(module, args), **bundle.info},
        inputs=specs,
    )


_NUMPY_DTYPES = {
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


def _example_inputs(
    spec: str, module: torch.nn.Module, example: Any
) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], tuple[InputSpec, ...]]:
    """The module to call positionally, the example's tensors (batch 1) and their specs.

    A dict example wraps the module in :class:`KeywordInputs` (inputs named after the
    keys); a tuple names its inputs after the forward's parameters.
    """
    if isinstance(example, torch.Tensor):
        names, tensors = [SINGLE_INPUT_NAME], [example]
    elif isinstance(example, (tuple, list)) and example:
        tensors = list(example)
        names = positional_names(module, len(tensors)) if len(tensors) > 1 else [SINGLE_INPUT_NAME]
    elif isinstance(example, dict) and example and all(isinstance(k, str) for k in example):
        names, tensors = list(example), list(example.values())
        module = KeywordInputs(module, names).eval()
    else:
        raise ConfigError(
            None,
            "model.factory",
            "example_input as a tensor, a non-empty tuple of tensors or a dict of tensors",
            f"{spec} gave {type(example).__name__}",
        )
    args, specs = [], []
    for name, tensor in zip(names, tensors, strict=True):
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError(
                None, "model.factory", f"example input {name!r} as a tensor", type(tensor).__name__
            )
        if tensor.dim() == 0:
            raise ConfigError(
                None, "model.factory", f"a batched example input {name!r}", tuple(tensor.shape)
            )
        tensor = tensor.detach()[:1].clone()
        if tensor.is_floating_point():
            tensor, dtype = tensor.float(), "float32"
        elif tensor.dtype in _NUMPY_DTYPES:
            dtype = _NUMPY_DTYPES[tensor.dtype]
        else:
            raise ConfigError(
                None,
                "model.factory",
                f"example input {name!r} of a float or integer dtype",
                str(tensor.dtype),
            )
        args.append(tensor)
        specs.append(InputSpec(name, tuple(int(d) for d in tensor.shape), dtype))
    return module, tuple(args), tuple(specs)


def _with_ranges(
    spec: str,
    module: torch.nn.Module,
    specs: tuple[InputSpec, ...],
    args: tuple[torch.Tensor, ...],
    declared: Any,
) -> tuple[InputSpec, ...]:
    """Each integer input with its id range: declared by the factory, else found."""
    specs = list(specs)
    if declared is not None:
        names = {s.name: i for i, s in enumerate(specs)}
        if not isinstance(declared, dict):
            raise ConfigError(
                None, "model.factory", "data['id_ranges'] as {input name: [low, high)}", declared
            )
        for name, given in declared.items():
            i = names.get(name)
            if i is None or specs[i].is_float:
                integer = [s.name for s in specs if not s.is_float]
                raise ConfigError(
                    None,
                    "model.factory",
                    f"data['id_ranges'] keys among the integer inputs {integer}",
                    name,
                )
            try:
                low, high = (int(v) for v in given)
                specs[i] = replace(specs[i], id_range=(low, high), range_source="factory")
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    None,
                    "model.factory",
                    f"data['id_ranges'][{name!r}] as [low, high) with high > low",
                    given,
                ) from exc
    found = integer_ranges(module, specs, [a.numpy() for a in args])
    for i, hit in enumerate(found):
        if hit is not None:
            specs[i] = replace(specs[i], id_range=hit[0], range_source=hit[1])
    return tuple(specs)


def _batch(spec: str, key: str, value: Any, specs: tuple[InputSpec, ...]) -> Batch:
    """A factory's batch (array or tensor for a one-input model; tuple/list in input
    order or dict by input name for several) as numpy arrays of the specs' dtypes."""
    if isinstance(value, dict):
        missing = [s.name for s in specs if s.name not in value]
        extra = sorted(set(value) - {s.name for s in specs})
        if missing or extra:
            raise ConfigError(
                None, "model.factory", f"{key} keyed by the inputs {[s.name for s in specs]}",
                sorted(value),
            )  # fmt: skip
        parts = [value[s.name] for s in specs]
    elif isinstance(value, (tuple, list)) and len(specs) > 1:
        parts = list(value)
    else:
        parts = [value]
    if len(parts) != len(specs):
        raise ConfigError(
            None, "model.factory", f"{key} with one batch per input ({len(specs)})", len(parts)
        )
    arrays = []
    for s, part in zip(specs, parts, strict=True):
        array = part.detach().cpu().numpy() if isinstance(part, torch.Tensor) else np.asarray(part)
        if array.ndim == len(s.sample_shape):  # a single sample: make it a batch of one
            array = array[None]
        if tuple(array.shape[1:]) != s.sample_shape or len(array) == 0:
            raise ConfigError(
                None,
                "model.factory",
                f"{key} for input {s.name!r} shaped (N, {', '.join(map(str, s.sample_shape))})",
                list(array.shape),
            )
        if not s.is_float and array.dtype.kind == "f":
            raise ConfigError(
                None,
                "model.factory",
                f"{key} for input {s.name!r} as integer ids ({s.dtype})",
                str(array.dtype),
            )
        arrays.append(np.ascontiguousarray(array, dtype=s.dtype))
    if len({len(a) for a in arrays}) != 1:
        raise ConfigError(
            None, "model.factory", f"{key} with the same N for every input",
            [len(a) for a in arrays],
        )  # fmt: skip
    return pack_batch(arrays)


def _labels(spec: str, key: str, value: Any, count: int) -> np.ndarray:
    labels = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if labels.ndim == 0 or len(labels) != count or labels.dtype.kind not in "iub":
        raise ConfigError(
            None,
            "model.factory",
            f"{key} as {count} integer class ids (one per input sample)",
            f"{labels.dtype} array of shape {list(labels.shape)}",
        )
    return labels.astype(np.int64)


def _task_data(spec: str, data: dict[str, Any], specs: tuple[InputSpec, ...]) -> TaskData:
    """The factory's data, filled in where it gave none.

    Keys (all optional): ``eval_inputs`` and ``eval_labels`` (held-out scoring; labels
    make accuracy a metric), ``calib_inputs`` (quantization calibration and label-free
    fine-tuning; defaults to ``eval_inputs`` when those are given), ``train_inputs`` with
    ``train_labels`` (fine-tuning and distillation), ``id_ranges`` (``{input name:
    [low, high)}`` for integer inputs), ``output`` (``"classes"`` or ``"embedding"``,
    read by :func:`_output_kind`). Batches take the example's form: an array or
    tensor for a one-input model, a tuple in input order or a dict by input name for
    several. What is not given is generated from the specs with a fixed seed.
    """
    unknown = sorted(set(data) - set(FACTORY_DATA_KEYS))
    if unknown:
        raise ConfigError(
            None, "model.factory", "data keys among " + ", ".join(FACTORY_DATA_KEYS), unknown
        )
    rng = np.random.default_rng(FACTORY_SEED)
    calib = generate_batch(specs, rng, FACTORY_CALIB)
    evals = generate_batch(specs, rng, FACTORY_EVAL)
    eval_labels = train = train_labels = None
    if data.get("eval_inputs") is not None:
        evals = _batch(spec, "data['eval_inputs']", data["eval_inputs"], specs)
        calib = evals
    elif data.get("eval_labels") is not None:
        raise ConfigError(None, "model.factory", "eval_labels together with eval_inputs")
    if data.get("eval_labels") is not None:
        eval_labels = _labels(spec, "data['eval_labels']", data["eval_labels"], batch_len(evals))
    if data.get("calib_inputs") is not None:
        calib = _batch(spec, "data['calib_inputs']", data["calib_inputs"], specs)
    if (data.get("train_inputs") is None) != (data.get("train_labels") is None):
        raise ConfigError(None, "model.factory", "train_inputs and train_labels together")
    if data.get("train_inputs") is not None:
        train = _batch(spec, "data['train_inputs']", data["train_inputs"], specs)
        train_labels = _labels(spec, "data['train_labels']", data["train_labels"], batch_len(train))
    return TaskData(
        calib_inputs=calib,
        eval_inputs=evals,
        eval_labels=eval_labels,
        train_inputs=train,
        train_labels=train_labels,
    )


def _check_runs(
    spec: str,
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    specs: tuple[InputSpec, ...],
    data: TaskData,
) -> None:
    """The module runs on the example and on one eval sample, and labels fit its output
    (its first output without the last, class axis)."""
    try:
        with torch.no_grad():
            out = call_module(module, args)
            call_module(module, to_tensors(take(data.eval_inputs, slice(0, 1))))
    except Exception as exc:
        ranges = "; ".join(
            f"input {s.name!r}: ids in [{s.id_range[0]}, {s.id_range[1]}) from {s.range_source}"
            for s in specs
            if s.id_range is not None
        )
        hint = f" ({ranges}; declare data['id_ranges'] if that is wrong)" if ranges else ""
        raise ModelError(
            f"model factory {spec}: the module fails on its inputs{hint}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for key in ("eval_labels", "train_labels"):
        labels = getattr(data, key)
        if labels is not None and tuple(labels.shape[1:]) != tuple(out.shape[1:-1]):
            raise ConfigError(
                None,
                "model.factory",
                f"data['{key}'] shaped (N, {', '.join(map(str, out.shape[1:-1]))}): the "
                f"model's output {list(out.shape)} without its last (class) axis",
                list(labels.shape),
            )


# ONNX TensorProto element types and ExecuTorch ScalarType codes a runner can feed.
_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 5: "int16", 3: "int8",
                2: "uint8", 9: "bool"}  # fmt: skip
_PTE_DTYPES = {6: "float32", 5: "float16", 4: "int64", 3: "int32", 2: "int16", 1: "int8",
               0: "uint8", 11: "bool"}  # fmt: skip


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


def _onnx_inputs(path: Path, model: Any) -> tuple[InputSpec, ...]:
    """One spec per graph input (initializers listed as inputs are weights, not inputs).
    Symbolic (dim_param) or unknown dims, typically the batch, are benchmarked at 1."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise ConfigError(path, "model.file", "an ONNX model with at least one input", 0)
    specs = []
    for graph_input in inputs:
        tensor = graph_input.type.tensor_type
        dtype = _ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise ConfigError(
                path,
                "model.file",
                f"input {graph_input.name!r} of a dtype the runner feeds "
                f"({', '.join(sorted(set(_ONNX_DTYPES.values())))})",
                f"ONNX elem_type {tensor.elem_type}",
            )
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                for d in tensor.shape.dim]  # fmt: skip
        specs.append(InputSpec(graph_input.name, tuple(dims) or (1,), dtype))
    return tuple(specs)


def _pte_inputs(program: Any) -> tuple[InputSpec, ...] | None:
    """Specs from the .pte's ``forward`` metadata (named ``input_<i>``: a .pte keeps no
    input names); None when the metadata cannot be read (or no runtime is here)."""
    if program is None:
        return None
    try:
        meta = program.metadata("forward")
        specs = []
        for i in range(meta.num_inputs()):
            tensor = meta.input_tensor_meta(i)
            dtype = _PTE_DTYPES.get(int(tensor.dtype()))
            if dtype is None:
                return None
            name = SINGLE_INPUT_NAME if meta.num_inputs() == 1 else f"input_{i}"
            specs.append(InputSpec(name, tuple(int(s) for s in tensor.sizes()), dtype))
        return tuple(specs) or None
    except Exception:
        return None


def onnx_file_inputs(path: Path) -> tuple[InputSpec, ...]:
    """A ready .onnx file's inputs (the registry's reader for onnxruntime)."""
    return _onnx_inputs(path, _read_onnx(path))


def pte_file_inputs(path: Path) -> tuple[InputSpec, ...] | None:
    """A ready .pte file's inputs, None when its metadata cannot be read here."""
    return _pte_inputs(_read_pte(path))


_TFLITE_DTYPES = ("float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


def tflite_file_inputs(path: Path) -> tuple[InputSpec, ...] | None:
    """A ready .tflite file's inputs (the registry's reader for litert), None when
    ai-edge-litert is not installed here to read them.

    Named like a .pte's (``input_<i>``, ``input`` for one): the file's signature names
    (``args_0``) are the converter's. A quantized int8 input is float32 here, since the
    runner quantizes the floats it feeds with the input's scale."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise _invalid(path, "LiteRT model", "no TFL3 file identifier at byte 4")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    try:
        details = Interpreter(model_path=str(path)).get_input_details()
    except Exception as exc:
        raise _invalid(path, "LiteRT model", f"the interpreter could not load it: {exc}") from exc
    specs = []
    for i, detail in enumerate(details):
        dtype = detail["dtype"].__name__
        scale = (detail.get("quantization") or (0.0, 0))[0]
        if scale and dtype in ("int8", "uint8", "int16"):
            dtype = "float32"
        if dtype not in _TFLITE_DTYPES:
            raise ConfigError(
                path,
                "model.file",
                f"input {detail['name']!r} of a dtype the runner feeds "
                f"({', '.join(_TFLITE_DTYPES)})",
                dtype,
            )
        signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
        dims = tuple(d if d > 0 else 1 for d in signature) or (1,)
        name = SINGLE_INPUT_NAME if len(details) == 1 else f"input_{i}"
        specs.append(InputSpec(name, dims, dtype))
    if not specs:
        raise ConfigError(path, "model.file", "a LiteRT model with at least one input", 0)
    return tuple(specs)


def load_file_model(path: Path | str, input_shape: list[int] | None = None) -> FileModel:
    """Describe a ready model file (.onnx, .pte, or another registered runtime's) for
    benchmarking.

    The inputs (name, shape, dtype of each) come from the file, read by the runtime that
    owns its suffix (:mod:`harness.export.registry`: ONNX graph inputs; ExecuTorch method
    metadata). ``input_shape`` overrides the shape of a one-input file and is required
    when the file's inputs cannot be read here (the input is then float32).
    Integer inputs of a file have no known id range: the runner feeds id 0.
    A file that is not a valid model (cut short, another format) raises ModelError
    ``"<path>: not a valid ONNX file (...)"`` (or ExecuTorch program).
    """
    from harness.export.registry import file_suffixes, runtime_spec, suffix_list

    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "model.file", f"an existing {suffix_list()} file")
    suffix = path.suffix.lower()
    runtime = file_suffixes().get(suffix)
    if runtime is None:
        raise ConfigError(path, "model.file", f"a file ending in {suffix_list()}", path.suffix)
    # The file is read even when input_shape is given: a damaged one is the user's
    # model error, named here, not a runtime failure on the device later.
    specs = runtime_spec(runtime).read_file_inputs(path)
    if specs is None and not input_shape:
        raise ConfigError(
            path,
            "model.input_shape",
            f"the input shape (e.g. [1, 3, 224, 224]): it could not be read from the "
            f"{suffix}'s method metadata",
        )
    if input_shape:
        if specs is not None and len(specs) != 1:
            raise ConfigError(
                path,
                "model.input_shape",
                f"no input_shape for a file with {len(specs)} inputs (each shape is read "
                "from the file)",
                list(input_shape),
            )
        if any(not isinstance(d, int) or d < 1 for d in input_shape):
            raise ConfigError(path, "model.input_shape", "positive dimensions", input_shape)
        base = specs[0] if specs else InputSpec(SINGLE_INPUT_NAME, (1,), "float32")
        specs = (replace(base, shape=tuple(int(d) for d in input_shape)),)
    assert specs is not None
    return FileModel(
        name=path.stem,
        path=str(path),
        runtime=runtime,
        inputs=specs,
        identity={"file": str(path), "sha256": sha256_file(path)},
    )
