"""LiteRT export (.tflite, the former TensorFlow Lite) with litert-torch; int8 through pt2e.

Flow: fp32 ``litert_torch.convert(module, args)``; int8 static: ``torch.export.export`` ->
``prepare_pt2e`` with litert-torch's PT2EQuantizer -> calibration on the harness's
calibration inputs -> ``convert_pt2e`` -> ``litert_torch.convert(..., quant_config=...)``,
which lowers the Q/DQ pairs to int8 TFLite kernels (int8 inputs and outputs, each with its
per-tensor scale; the runner quantizes and dequantizes). Dynamic int8 quantizes weights
only (TFLite's dynamic-range kernels). fp16, bf16 and QAT are not built for LiteRT.

litert-torch comes with the ``litert`` extra (``pip install -c constraints-litert.txt -e
'.[litert]'``); this module is imported only when an artifact is built.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness.errors import ExportError, UnsupportedError
from harness.export.base import Exporter, ExportResult
from harness.export.common import (
    calibrate_pt2e,
    calibration_samples,
    example_args,
    export_error,
    export_for_pt2e,
    gzip_size,
    staging_dir,
)
from harness.models.base import ModelBundle
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo

INSTALL_HINT = "pip install -c constraints-litert.txt -e '.[litert]'"


def _check_request(quant: QuantRequest | None) -> None:
    if quant is None or quant.mode in ("static", "dynamic"):
        if quant is not None and quant.activation_dtype == "uint8":
            raise UnsupportedError(
                "LiteRT pt2e int8 uses signed int8 activations (litert-torch's PT2EQuantizer); "
                "activation_dtype='uint8' cannot be honoured"
            )
        return
    raise UnsupportedError(
        f"the LiteRT exporter does not build {quant.mode} variants (it builds fp32, "
        "int8-static and int8-dynamic)"
    )


@contextlib.contextmanager
def _quiet_litert() -> Iterator[None]:
    """litert-torch prints a progress line per conversion step (rich, to stdout), and its
    MLIR converter and the interpreter (XNNPACK delegate) log to file descriptor 2; all
    would interleave with the CLI's own progress. Python exceptions still carry the
    failure."""
    saved_env = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    sys.stderr.flush()
    saved_fd = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        if saved_env is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = saved_env


def _import_litert_torch() -> Any:
    try:
        import litert_torch
    except ImportError as e:
        raise UnsupportedError(
            f"LiteRT export needs litert-torch, which is not installed ({e}); "
            f"install it with: {INSTALL_HINT}"
        ) from e
    return litert_torch


def _quantize_pt2e(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    quant: QuantRequest,
    calib: list[tuple[torch.Tensor, ...]],
) -> tuple[torch.nn.Module, Any, dict[str, int]]:
    """pt2e post-training quantization with litert-torch's quantizer; returns the
    converted graph, the quant_config that tells the converter how it was made, and what
    the quantizer printed (by line, with counts)."""
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = quant.mode == "dynamic"
    graph = export_for_pt2e(module, args)
    try:
        quantizer = PT2EQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=quant.per_channel, is_dynamic=dynamic)
        )
        # The annotator prints a line for each pattern it leaves unfused ("Relu partition
        # has more than one output node": ResNet's add + ReLU whose output feeds two
        # ops); kept for the notes instead of interleaving with the CLI's progress.
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
        messages = Counter(line.strip() for line in printed.getvalue().splitlines())
        messages.pop("", None)
        calibrate_pt2e(prepared, calib, args)
        # Weights stay as float + Q/DQ (fold_quantize=False): the converter matches
        # those patterns to TFLite's quantized kernels.
        converted = convert_pt2e(prepared, fold_quantize=False)
    except Exception as e:
        raise export_error("pt2e quantization (litert-torch PT2EQuantizer) failed", e) from e
    # Exported modules refuse .eval(); the flag tells litert-torch this is inference.
    for sub in converted.modules():
        sub.training = False
    return converted, QuantConfig(pt2e_quantizer=quantizer), dict(messages)


def _convert(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, quant_config: Any
) -> None:
    litert_torch = _import_litert_torch()
    try:
        with _quiet_litert():
            edge_model = litert_torch.convert(module, args, quant_config=quant_config)
            edge_model.export(str(path))
    except Exception as e:
        raise export_error("litert_torch.convert failed", e) from e


def _graph_notes(path: Path) -> dict[str, Any]:
    """The .tflite's ops by kind, as the converter wrote them (no delegate applied)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        interpreter = Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
        return {"tflite_ops": dict(sorted(ops.items()))}
    except Exception as e:  # informational only
        return {"tflite_ops_error": f"{type(e).__name__}: {e}"[:300]}


def _check_model(path: Path, args: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """The .tflite must load in the runner's LiteRT session and run on the example input;
    returns which of its inputs/outputs are quantized (for the notes)."""
    from harness.runner.bench_runner import LiteRtSession

    try:
        with _quiet_litert():
            session = LiteRtSession(str(path), 1)
            session.infer([a.numpy() for a in args])
    except Exception as e:
        raise export_error("the LiteRT interpreter cannot run the converted model", e) from e
    return session.quantized_io()


class LiteRtExporter(Exporter):
    runtime: ClassVar[str] = "litert"
    suffix: ClassVar[str] = ".tflite"

    def export(
        self,
        bundle: ModelBundle,
        out_path: Path,
        quant: QuantRequest | None,
        target: TargetInfo,
    ) -> ExportResult:
        out_path = Path(out_path)
        _check_request(quant)
        _import_litert_torch()  # before any step: without it every mode says how to install
        x = example_args(bundle)
        module = copy.deepcopy(bundle.module).float().eval()
        granularity = "per-channel" if quant is None or quant.per_channel else "per-tensor"
        notes: dict[str, Any] = {}
        quant_config = None
        messages: dict[str, int] = {}
        if quant is None:
            notes["quant_format"] = "fp32"
        elif quant.mode == "static":
            calib = [
                tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in s)
                for s in calibration_samples(bundle, quant)
            ]
            module, quant_config, messages = _quantize_pt2e(module, x, quant, calib)
            notes.update(
                {
                    "quant_format": f"LiteRT pt2e int8 symmetric {granularity}",
                    "quant_reason": "litert-torch PT2EQuantizer: int8 activations (static, "
                    "histogram-calibrated) and symmetric int8 weights, lowered to TFLite's "
                    "int8 kernels (XNNPACK on ARM and x86); int8 model inputs/outputs",
                    "calibration_samples": len(calib),
                }
            )
        else:  # dynamic
            module, quant_config, messages = _quantize_pt2e(module, x, quant, [])
            notes.update(
                {
                    "quant_format": f"LiteRT pt2e dynamic int8 symmetric {granularity}",
                    "quant_reason": "litert-torch PT2EQuantizer is_dynamic=True: int8 "
                    "weights, activations quantized at run time by TFLite's dynamic-range "
                    "kernels; float inputs/outputs",
                }
            )
        if messages:
            notes["quantizer_messages"] = messages
        with staging_dir(out_path) as tmp:
            staged = tmp / f"model{self.suffix}"
            _convert(module, x, staged, quant_config)
            if not staged.is_file():
                raise ExportError("litert_torch.convert wrote no .tflite file")
            notes["io"] = _check_model(staged, x)
            notes.update(_graph_notes(staged))
            notes["gzip_bytes"] = gzip_size(staged)
            os.replace(staged, out_path)
        return ExportResult(path=out_path, notes=notes)

    @classmethod
    def versions(cls) -> dict[str, str]:
        # Package metadata: importing litert_torch just for its version loads jax.
        from importlib.metadata import PackageNotFoundError, version

        out = {"torch": torch.__version__}
        for package in ("litert-torch", "ai-edge-litert", "torchao"):
            try:
                out[package] = version(package)
            except PackageNotFoundError:
                out[package] = "absent"
        return out
