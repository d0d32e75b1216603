"""Helpers every exporter shares: atomic staging, readable export errors, the
calibration inputs and the gzip size recorded for each artifact."""

from __future__ import annotations

import contextlib
import gzip
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from harness.errors import ExportError
from harness.models.base import ModelBundle
from harness.models.inputs import batch_arrays
from harness.recipes.base import QuantRequest

MAX_MESSAGE_CHARS = 2000

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _exc_text(exc: BaseException) -> str:
    msg = _ANSI_ESCAPE.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def export_error(prefix: str, exc: BaseException) -> ExportError:
    """An :class:`ExportError` reading ``"<prefix>: <Type>: <message>"``.

    Exporters wrap the real failure (torch.onnx wraps torch.export's error, for example);
    the innermost ``__cause__`` names the actual problem, so it comes first and the
    wrappers' first lines follow. The text is cut to about ``MAX_MESSAGE_CHARS``.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 5:
        chain.append(current)
        current = current.__cause__
    root = chain[-1]
    tail = ""
    if len(chain) > 1:
        wrappers = [_exc_text(e).splitlines()[0][:200] for e in chain[:-1]]
        tail = "\n(raised as " + " <- ".join(wrappers) + ")"
    head = f"{prefix}: {_exc_text(root)}"
    budget = MAX_MESSAGE_CHARS - len(tail)
    if len(head) > budget:
        head = head[: max(budget - 16, 200)].rstrip() + " ... [truncated]"
    return ExportError(head + tail)


@contextlib.contextmanager
def staging_dir(out_path: Path) -> Iterator[Path]:
    """A scratch directory next to ``out_path``, removed on exit.

    Exporters build the artifact (and any intermediate file) in it and ``os.replace``
    the finished file onto ``out_path``; the rename stays on one filesystem, so a failed
    or interrupted export never leaves a partial file at ``out_path``.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def calibration_samples(bundle: ModelBundle, quant: QuantRequest) -> list[tuple[np.ndarray, ...]]:
    """The first ``quant.calibration_samples`` calibration inputs in dataset order, each
    one array per model input shaped like that input's example (batch 1).

    Every input is fed, in its own dtype (a graph cannot run without its token ids), but
    only float inputs are quantized: integer inputs (ids, masks) carry no range to
    calibrate, and both quantizers observe float tensors only.
    """
    specs = bundle.input_specs
    arrays = batch_arrays(bundle.data.calib_inputs)
    if len(arrays) != len(specs):
        raise ExportError(
            f"{bundle.name}: calibration data has {len(arrays)} inputs, the model {len(specs)}"
        )
    count = min(quant.calibration_samples, len(arrays[0]))
    if count == 0:
        raise ExportError(f"{bundle.name}: static quantization needs calibration inputs, got none")
    samples = []
    for i in range(count):
        sample = []
        for spec, array in zip(specs, arrays, strict=True):
            arr = np.ascontiguousarray(array[i], dtype=spec.dtype)
            if arr.size != int(np.prod(spec.shape)):
                raise ExportError(
                    f"{bundle.name}: calibration input {i} ({spec.name}) has shape "
                    f"{list(arr.shape)}, which does not fit the example input shape "
                    f"{list(spec.shape)}"
                )
            sample.append(arr.reshape(spec.shape))
        samples.append(tuple(sample))
    return samples


def example_args(bundle: ModelBundle) -> tuple[torch.Tensor, ...]:
    """The example input as positional args: float inputs float32, integers as they are."""
    return tuple(
        (a.float() if a.is_floating_point() else a).detach().contiguous()
        for a in bundle.example_args
    )


GZIP_LEVEL = 6


def gzip_size(path: Path) -> int:
    """Bytes of ``path`` after gzip at level 6 (the ``gzip`` command's default).

    Recorded for every artifact as ``gzip_bytes``: the size a download or an OTA update
    costs, and the only size in which zeroed weights (unstructured sparsity) show up,
    since dense formats store the zeros as they are.
    """
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=GZIP_LEVEL, mtime=0))


def export_for_pt2e(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> torch.nn.Module:
    """The module as the graph pt2e quantizers annotate (``torch.export``'s module)."""
    try:
        return torch.export.export(module, args).module()
    except Exception as e:
        raise export_error("torch.export.export failed", e) from e


def calibrate_pt2e(
    prepared: torch.nn.Module,
    calib: list[tuple[torch.Tensor, ...]],
    args: tuple[torch.Tensor, ...],
) -> None:
    """Run a prepared pt2e graph's observers over the calibration samples, in dataset
    order with a fixed seed and without touching the caller's RNG. Dynamic activations
    need no calibration; one pass on ``args`` still runs the observers."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for sample in calib or [args]:
            prepared(*sample)
