"""ExecuTorch export (.pte) lowered to the XNNPACK delegate; int8 through pt2e.

Flow: ``torch.export.export`` -> (for int8: ``prepare_pt2e`` with the XNNPACKQuantizer,
calibration, ``convert_pt2e``, export again) -> ``to_edge_transform_and_lower`` with
``XnnpackPartitioner`` -> ``to_executorch`` -> the program buffer.
"""

from __future__ import annotations

import copy
import operator
import os
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import torch

from harness.errors import UnsupportedError
from harness.export.base import Exporter, ExportResult
from harness.export.onnx import calibration_samples, example_input, export_error, staging_dir
from harness.models.base import ModelBundle
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo

_FP16_FEATURES = {"asimdhp", "fphp"}


class _Fp16Wrapper(torch.nn.Module):
    """Runs an fp16 copy of the model behind float32 inputs/outputs, so the artifact
    keeps the same interface as every other variant; the casts sit at the graph edges."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> Any:
        out = self.module(x.to(torch.float16))
        if isinstance(out, torch.Tensor):
            return out.to(torch.float32)
        return out


def _check_request(quant: QuantRequest | None, target: TargetInfo) -> None:
    if quant is None:
        return
    if quant.mode == "qat":
        raise UnsupportedError("QAT is not implemented yet for executorch")
    if quant.mode == "fp16" and not (target.is_arm and _FP16_FEATURES & target.cpu_features):
        where = (
            f"x86 ({target.arch})"
            if not target.is_arm
            else f"this {target.arch} CPU without asimdhp/fphp"
        )
        raise UnsupportedError(
            f"fp16 is not supported by executorch/XNNPACK on {where}: XNNPACK's native fp16 "
            "kernels need ARM half-precision arithmetic (asimdhp/fphp); elsewhere fp16 "
            "would only be emulated through conversions"
        )
    if quant.mode in ("static", "dynamic") and quant.activation_dtype == "uint8":
        raise UnsupportedError(
            "executorch/XNNPACK int8 uses signed int8 activations (XNNPACKQuantizer); "
            "activation_dtype='uint8' cannot be honoured"
        )


def _quantize_pt2e(
    module: torch.nn.Module,
    x: torch.Tensor,
    quant: QuantRequest,
    calib: list[torch.Tensor],
) -> torch.nn.Module:
    """pt2e post-training quantization for XNNPACK (static or dynamic activations)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = quant.mode == "dynamic"
    quantizer = XNNPACKQuantizer()
    quantizer.set_global(
        get_symmetric_quantization_config(is_per_channel=quant.per_channel, is_dynamic=dynamic)
    )
    try:
        graph = torch.export.export(module, (x,)).module()
    except Exception as e:
        raise export_error("torch.export.export failed", e) from e
    try:
        prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
        # Calibrate in dataset order with a fixed seed, without touching the caller's RNG.
        # Dynamic activations need no calibration; one pass still runs the observers.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            for sample in calib or [x]:
                prepared(sample)
        return convert_pt2e(prepared)
    except Exception as e:
        raise export_error("pt2e quantization (XNNPACKQuantizer) failed", e) from e


def _delegation_notes(graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    """How many ops run inside XNNPACK vs in ExecuTorch's portable kernels."""
    delegated = 0
    subgraphs = 0
    outside: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and str(node.target).startswith("lowered_module"):
            subgraphs += 1
            lowered = getattr(graph_module, str(node.target))
            delegated += sum(
                1 for n in lowered.original_module.graph.nodes if n.op == "call_function"
            )
        elif node.op == "call_function" and node.target is not operator.getitem:
            name = getattr(node.target, "__name__", str(node.target))  # "aten.any.dim"
            if "executorch_call_delegate" not in name:
                outside[name] += 1
    return {
        "xnnpack_subgraphs": subgraphs,
        "xnnpack_delegated_ops": delegated,
        "non_delegated_ops": sum(outside.values()),
        "non_delegated_by_op": dict(sorted(outside.items())),
    }


def _lower(module: torch.nn.Module, x: torch.Tensor) -> tuple[bytes, dict[str, Any]]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        program = torch.export.export(module, (x,))
    except Exception as e:
        raise export_error("torch.export.export failed", e) from e
    try:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    except Exception as e:
        raise export_error("executorch to_edge_transform_and_lower (XNNPACK) failed", e) from e
    try:
        notes = _delegation_notes(edge.exported_program().graph_module)
    except Exception as e:  # informational only
        notes = {"delegation_info_error": f"{type(e).__name__}: {e}"[:300]}
    try:
        buffer = edge.to_executorch().buffer
    except Exception as e:
        raise export_error("executorch to_executorch failed", e) from e
    return buffer, notes


def _check_program(path: Path, x: torch.Tensor) -> None:
    """The .pte must load in the ExecuTorch runtime and run on the example input."""
    from executorch.runtime import Runtime

    try:
        method = Runtime.get().load_program(str(path)).load_method("forward")
        if method is None:
            raise RuntimeError("the program has no 'forward' method")
        method.execute([x])
    except Exception as e:
        raise export_error("the executorch runtime cannot run the exported program", e) from e


class ExecuTorchExporter(Exporter):
    runtime: ClassVar[str] = "executorch"
    suffix: ClassVar[str] = ".pte"

    def export(
        self,
        bundle: ModelBundle,
        out_path: Path,
        quant: QuantRequest | None,
        target: TargetInfo,
    ) -> ExportResult:
        out_path = Path(out_path)
        _check_request(quant, target)
        x = example_input(bundle)
        module = copy.deepcopy(bundle.module).eval()
        notes: dict[str, Any] = {}
        if quant is None:
            notes["quant_format"] = "fp32"
        elif quant.mode in ("static", "dynamic"):
            calib = (
                [torch.from_numpy(s) for s in calibration_samples(bundle, quant)]
                if quant.mode == "static"
                else []
            )
            module = _quantize_pt2e(module, x, quant, calib)
            granularity = "per-channel" if quant.per_channel else "per-tensor"
            if quant.mode == "static":
                notes.update(
                    {
                        "quant_format": f"XNNPACK pt2e int8 symmetric {granularity}",
                        "quant_reason": "XNNPACKQuantizer: int8 activations (static, "
                        "histogram-calibrated) and symmetric int8 weights, the layout XNNPACK's "
                        "QS8 kernels run on ARM and x86",
                        "calibration_samples": len(calib),
                    }
                )
            else:
                notes.update(
                    {
                        "quant_format": f"XNNPACK pt2e dynamic int8 symmetric {granularity}",
                        "quant_reason": "XNNPACKQuantizer is_dynamic=True: int8 weights, "
                        "activations quantized at run time (linear layers only)",
                    }
                )
        else:  # fp16 on an ARM target with half-precision arithmetic
            module = _Fp16Wrapper(module.half()).eval()
            notes.update(
                {
                    "quant_format": "fp16 XNNPACK (float32 inputs/outputs)",
                    "quant_reason": "ARM CPU with half-precision arithmetic (asimdhp/fphp)",
                }
            )
        buffer, delegation = _lower(module, x)
        notes.update(delegation)
        with staging_dir(out_path) as tmp:
            staged = tmp / f"model{self.suffix}"
            staged.write_bytes(buffer)
            _check_program(staged, x)
            os.replace(staged, out_path)
        return ExportResult(path=out_path, notes=notes)

    @classmethod
    def versions(cls) -> dict[str, str]:
        # Package metadata: importing torchao just for its version loads its kernels.
        from importlib.metadata import version

        return {
            "executorch": version("executorch"),
            "torch": torch.__version__,
            "torchao": version("torchao"),
        }
