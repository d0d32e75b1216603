"""What a model takes: one typed :class:`InputSpec` per input.

The spec flows model -> pipeline -> job -> runner: the loader derives it from a factory's
example input (or reads it from a ready .onnx/.pte file), the pipeline stores it with the
evaluation inputs, the job carries it (``"inputs"``, job schema 3) and the runner builds
its timing inputs from it, so an int64 token-id input stays int64 everywhere and a model
with two inputs gets two.

A *batch* of inputs is one numpy array (a model with one input, the common case, so
code that handles a plain array keeps working) or a tuple of arrays in the order of the
specs, all with the same first (batch) dimension. Models whose example input is a dict
are called with positional arguments in the dict's order through
:class:`harness.models.adapters.KeywordInputs`,
so exporters, runtimes and the runner only ever see positional inputs.

Which integer ids are valid (``id_range``, half-open ``[low, high)``) is decided once, at
load time, in this order (see :func:`integer_ranges`): the range the factory declares;
else, for a model with exactly one integer input, ``[0, num_embeddings)`` of its smallest
``nn.Embedding``/``nn.EmbeddingBag`` when the example's ids fit in it; else the example's
own values ``[min, max + 1)``, which are known to run. Evaluation and timing inputs are
drawn uniformly from that range.

Only numpy is imported at module level: job building and reports import this module
without paying for torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "FLOAT_DTYPES",
    "INPUT_DTYPES",
    "Batch",
    "InputSpec",
    "batch_arrays",
    "batch_len",
    "call_module",
    "example_args",
    "first_output",
    "generate_batch",
    "load_batch",
    "pack_batch",
    "save_batch",
    "specs_from_dicts",
    "specs_to_dicts",
    "take",
    "to_tensors",
]

FLOAT_DTYPES = ("float32", "float16")
INTEGER_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")
INPUT_DTYPES = FLOAT_DTYPES + INTEGER_DTYPES
SINGLE_INPUT_NAME = "input"  # the ONNX input name of a one-input model (as before specs)

Batch = np.ndarray | tuple[np.ndarray, ...]


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, example shape (batch first), numpy dtype name and, for
    integer inputs, the valid ids ``[low, high)`` and where that range came from."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    id_range: tuple[int, int] | None = None
    range_source: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in INPUT_DTYPES:
            raise ValueError(
                f"input {self.name!r}: dtype {self.dtype!r} is not one of {', '.join(INPUT_DTYPES)}"
            )
        if not self.shape or any(int(d) < 1 for d in self.shape):
            raise ValueError(f"input {self.name!r}: shape {list(self.shape)} needs positive dims")
        if self.id_range is not None:
            low, high = self.id_range
            if self.is_float or high <= low:
                raise ValueError(
                    f"input {self.name!r}: id_range {list(self.id_range)} must be [low, high) "
                    "with high > low, on an integer input"
                )

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    def with_batch(self, batch: int) -> InputSpec:
        return replace(self, shape=(int(batch), *self.shape[1:]))

    def generate(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` samples: standard normal for floats, uniform ids in ``id_range`` for
        integers (zeros when no range is known: id 0 is the one every table has)."""
        shape = (count, *self.sample_shape)
        if self.is_float:
            return rng.standard_normal(shape, dtype=np.float32).astype(self.dtype, copy=False)
        low, high = self.id_range if self.id_range is not None else (0, 1)
        if self.dtype == "bool":
            return rng.integers(max(low, 0), min(high, 2), size=shape).astype(bool)
        return rng.integers(low, high, size=shape, dtype=np.int64).astype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in jobs, caches and cell results."""
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.id_range is not None:
            out["range"] = list(self.id_range)
        if self.range_source is not None:
            out["range_source"] = self.range_source
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        given = data.get("range")
        return cls(
            name=str(data["name"]),
            shape=tuple(int(d) for d in data["shape"]),
            dtype=str(data["dtype"]),
            id_range=(int(given[0]), int(given[1])) if given is not None else None,
            range_source=data.get("range_source"),
        )


def specs_to_dicts(specs: Sequence[InputSpec]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in specs]


def specs_from_dicts(data: Sequence[Mapping[str, Any]]) -> tuple[InputSpec, ...]:
    return tuple(InputSpec.from_dict(d) for d in data)


# --- batches (numpy) -------------------------------------------------------------------


def batch_arrays(batch: Batch) -> tuple[np.ndarray, ...]:
    """The batch as one array per input."""
    return tuple(batch) if isinstance(batch, tuple) else (batch,)


def pack_batch(arrays: Sequence[np.ndarray]) -> Batch:
    """One array for a one-input model, else a tuple (the inverse of batch_arrays)."""
    arrays = tuple(arrays)
    return arrays[0] if len(arrays) == 1 else arrays


def batch_len(batch: Batch) -> int:
    return len(batch_arrays(batch)[0])


def take(batch: Batch, index: Any) -> Batch:
    """Rows ``index`` (a slice or index array) of every input."""
    return pack_batch([a[index] for a in batch_arrays(batch)])


def generate_batch(specs: Sequence[InputSpec], rng: np.random.Generator, count: int) -> Batch:
    return pack_batch([s.generate(rng, count) for s in specs])


def save_batch(directory: Path, stem: str, batch: Batch, specs: Sequence[InputSpec]) -> Path:
    """Write the batch where the runner can read it without torch: ``<stem>.npy`` for a
    one-input model, ``<stem>.npz`` (one array per input name) otherwise. Atomic."""
    arrays = batch_arrays(batch)
    if len(arrays) == 1:
        path = directory / f"{stem}.npy"
        tmp = directory / f".{stem}.tmp.npy"
        np.save(tmp, np.ascontiguousarray(arrays[0]))
    else:
        path = directory / f"{stem}.npz"
        tmp = directory / f".{stem}.tmp.npz"
        np.savez(
            tmp, **{s.name: np.ascontiguousarray(a) for s, a in zip(specs, arrays, strict=True)}
        )
    tmp.replace(path)
    return path


def load_batch(path: Path, specs: Sequence[InputSpec]) -> Batch:
    if Path(path).suffix == ".npz":
        with np.load(path) as archive:
            return pack_batch([archive[s.name] for s in specs])
    return np.load(path)


# --- torch side --------------------------------------------------------------------------


def to_tensors(batch: Batch) -> tuple[torch.Tensor, ...]:
    """Each input as a tensor of its own dtype (float64 arrays become float32: modules
    run in fp32); integer ids stay integers."""
    import torch

    out = []
    for array in batch_arrays(batch):
        if isinstance(array, torch.Tensor):
            tensor = array.detach()
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.is_floating_point():
            tensor = tensor.float()
        out.append(tensor)
    return tuple(out)


def example_args(example: Any) -> tuple[torch.Tensor, ...]:
    """A bundle's example input (one tensor, or a tuple of them) as positional args."""
    return tuple(example) if isinstance(example, (tuple, list)) else (example,)


def first_output(output: Any) -> torch.Tensor:
    """The tensor that is scored: the model's output, or the first leaf of a tuple, list
    or dict of outputs (the same one the runtimes return first, since exporters flatten
    outputs in that order)."""
    import torch

    while not isinstance(output, torch.Tensor):
        if isinstance(output, Mapping) and output:
            output = next(iter(output.values()))
        elif isinstance(output, (tuple, list)) and output:
            output = output[0]
        else:
            raise TypeError(f"the model returned {type(output).__name__}, not a tensor")
    return output


def call_module(module: Any, args: Sequence[torch.Tensor]) -> torch.Tensor:
    """``module(*args)``'s first output."""
    return first_output(module(*args))


def positional_names(module: Any, count: int) -> list[str]:
    """Names for a tuple example's inputs: the forward's own parameter names when they
    are plain positional parameters, else ``input_0``, ``input_1``, ..."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    plain = [p.name for p in params if p.kind in kinds]
    if len(plain) >= count and len(set(plain[:count])) == count:
        return plain[:count]
    return [f"input_{i}" for i in range(count)]


def integer_ranges(
    module: Any, specs: Sequence[InputSpec], examples: Sequence[np.ndarray]
) -> list[tuple[tuple[int, int], str] | None]:
    """The id range of each integer input that has none yet (None for float inputs and
    inputs already ranged); see the module docstring for the rule."""
    import torch

    integer = [i for i, s in enumerate(specs) if not s.is_float]
    tables = [
        int(m.num_embeddings)
        for m in module.modules()
        if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))
    ]
    out: list[tuple[tuple[int, int], str] | None] = []
    for i, spec in enumerate(specs):
        if spec.is_float or spec.id_range is not None:
            out.append(None)
            continue
        values = examples[i]
        low, high = int(values.min()), int(values.max()) + 1
        if spec.dtype == "bool":
            out.append(((0, 2), "bool"))
        elif len(integer) == 1 and tables and low >= 0 and high <= min(tables):
            out.append(((0, min(tables)), f"nn.Embedding num_embeddings={min(tables)}"))
        else:
            out.append(((low, high), f"example values [{low}, {high})"))
    return out
