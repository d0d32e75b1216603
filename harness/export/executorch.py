"""ExecuTorch export (.pte) lowered to the XNNPACK delegate; int8 through pt2e.

Flow: ``torch.export.export`` -> (for int8: ``prepare_pt2e`` with the XNNPACKQuantizer,
calibration, ``convert_pt2e``, export again) -> ``to_edge_transform_and_lower`` with
``XnnpackPartitioner`` -> ``to_executorch`` -> the program buffer.

QAT (:func:`qat_pt2e`, also used by the ONNX exporter) replaces calibration by a short
fine-tuning run under fake quantization: ``prepare_qat_pt2e`` -> train -> ``convert_pt2e``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import operator
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

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
from harness.models.inputs import InputSpec, batch_arrays, first_output
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo

_FP16_FEATURES = {"asimdhp", "fphp"}


class _Fp16Wrapper(torch.nn.Module):
    """Runs an fp16 copy of the model behind float32 inputs/outputs, so the artifact
    keeps the same interface as every other variant; the casts sit at the graph edges.
    Integer inputs (token ids) pass through unchanged."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> Any:
        out = self.module(*(a.to(torch.float16) if a.is_floating_point() else a for a in args))
        if isinstance(out, torch.Tensor):
            return out.to(torch.float32)
        return out


def _check_request(quant: QuantRequest | None, target: TargetInfo) -> None:
    if quant is None:
        return
    if quant.mode == "fp16" and not (target.is_arm and _FP16_FEATURES & target.cpu_features):
        where = (
            f"x86 ({target.arch})"
            if not target.is_arm
            else f"this {target.arch} CPU without asimdhp/fphp"
        )
        raise UnsupportedError(
            f"fp16 is not supported by executorch/XNNPACK on {where}: XNNPACK has no native "
            "fp16 kernels for this CPU (they need ARM half-precision arithmetic, "
            "asimdhp/fphp); here fp16 would only be emulated through conversions"
        )
    if quant.mode in ("static", "dynamic", "qat") and quant.activation_dtype == "uint8":
        raise UnsupportedError(
            "executorch/XNNPACK int8 uses signed int8 activations (XNNPACKQuantizer); "
            "activation_dtype='uint8' cannot be honoured"
        )


def _quantize_pt2e(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    quant: QuantRequest,
    calib: list[tuple[torch.Tensor, ...]],
) -> torch.nn.Module:
    """pt2e post-training quantization for XNNPACK (static or dynamic activations)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    dynamic = quant.mode == "dynamic"
    graph = export_for_pt2e(module, args)
    try:
        # prepare_pt2e folds BatchNorm into the convs before annotating anyway; doing it
        # here lets a graph left without BatchNorm skip the conv-bn pattern tracing.
        _fuse_conv_bn_(graph)  # type: ignore[arg-type]
        has_bn = any("batch_norm" in str(n.target) for n in graph.graph.nodes)
        quantizer = XNNPACKQuantizer() if has_bn or dynamic else _folded_bn_quantizer()
        quantizer.set_global(
            get_symmetric_quantization_config(is_per_channel=quant.per_channel, is_dynamic=dynamic)
        )
        prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
        calibrate_pt2e(prepared, calib, args)
        return convert_pt2e(prepared)
    except Exception as e:
        raise export_error("pt2e quantization (XNNPACKQuantizer) failed", e) from e


# --------------------------------------------------------------------------------------
# Quantization-aware training (pt2e), shared with the ONNX exporter
# --------------------------------------------------------------------------------------

QAT_BATCH_SIZE = 32


@dataclass
class QatResult:
    """The converted (int8 Q/DQ) graph module, batch dimension still dynamic when the
    model allowed it, and what the training did (for the export notes)."""

    module: torch.nn.Module
    notes: dict[str, Any]


def _qat_config(
    per_channel: bool, activation_dtype: torch.dtype, weight_range: tuple[int, int]
) -> Any:
    """XNNPACK's symmetric QAT config, optionally with uint8 activations / narrower weights.

    XNNPACKQuantizer decides *where* Q/DQ pairs go (conv, linear, add, pooling ...), which
    matches what onnxruntime's QDQ fusions expect too; the dtype and ranges decide *which
    grid*, so the ONNX exporter can train in the format onnxruntime will run.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(
        is_per_channel=per_channel,
        is_qat=True,
        weight_qmin=weight_range[0],
        weight_qmax=weight_range[1],
    )
    if activation_dtype == torch.uint8:
        act = replace(config.input_activation, dtype=torch.uint8, quant_min=0, quant_max=255)
        config = replace(config, input_activation=act, output_activation=act)
    return config


def _folded_bn_quantizer() -> Any:
    """An XNNPACKQuantizer without the conv-BatchNorm patterns, for graphs whose
    BatchNorms are already folded into their convs.

    Those patterns cannot match such a graph, but annotating them anyway traces 18
    pattern graphs through torch.export: about 4 s of every static int8 or QAT export on
    this box (digits-cnn's static .pte went from ~8 s to ~3 s, byte-identical). Everything
    else (conv, linear, add, pooling, ...) is annotated exactly as by the stock quantizer.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class _FoldedBnXnnpackQuantizer(XNNPACKQuantizer):
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if "_bn" not in p.name]

    return _FoldedBnXnnpackQuantizer()


def _export_for_qat(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...]
) -> tuple[torch.fx.GraphModule, bool]:
    """``torch.export`` with a dynamic batch dimension (batched training), else batch 1.

    The artifact itself is exported later at batch 1; only training wants batches. A model
    whose code only works at one batch size (it flattens the whole input, or reshapes to a
    fixed size) is exported at batch 1 and trained one sample at a time, which is slower
    but the same maths.
    """
    from torch.export import Dim

    doubled = tuple(torch.cat([a, a]) for a in args)
    try:
        batch = Dim("batch", min=1, max=1 << 16)
        dynamic = tuple({0: batch} for _ in args)
        graph = torch.export.export(module, doubled, dynamic_shapes=dynamic).module()
        return graph, True  # type: ignore[return-value]
    except Exception:
        pass
    try:
        return torch.export.export(module, args).module(), False  # type: ignore[return-value]
    except Exception as e:
        raise export_error("torch.export.export failed", e) from e


def _as_batch(inputs: Any, specs: tuple[InputSpec, ...], what: str) -> tuple[torch.Tensor, ...]:
    """A data batch as one tensor per input, each in its spec's dtype and sample shape."""
    arrays = batch_arrays(inputs)
    if len(arrays) != len(specs):
        raise ExportError(f"QAT: {what} have {len(arrays)} inputs, the model {len(specs)}")
    out = []
    for spec, array in zip(specs, arrays, strict=True):
        x = torch.as_tensor(np.ascontiguousarray(array, dtype=spec.dtype))
        if len(x) == 0:
            raise ExportError(f"QAT needs {what}, got none")
        if x[0].numel() != math.prod(spec.sample_shape):
            raise ExportError(
                f"QAT: {what} ({spec.name}) have shape {tuple(x.shape[1:])} per sample, which "
                f"does not fit the example input shape {list(spec.shape)}"
            )
        out.append(x.reshape(len(x), *spec.sample_shape))
    return tuple(out)


def qat_pt2e(
    bundle: ModelBundle,
    quant: QuantRequest,
    *,
    activation_dtype: torch.dtype = torch.int8,
    weight_range: tuple[int, int] = (-127, 127),
) -> QatResult:
    """Quantization-aware fine-tuning with pt2e; returns the converted model.

    ``torch.export`` (eval mode) -> BatchNorm folded into the preceding conv ->
    ``prepare_qat_pt2e`` (XNNPACKQuantizer, ``is_qat=True``) -> observers warmed up on
    ``quant.calibration_samples`` calibration inputs -> ``quant.qat_epochs`` epochs of
    Adam (cosine decay from ``quant.qat_lr``, batch 32) -> observers frozen ->
    ``convert_pt2e``.

    Loss: cross-entropy on the train split; without labels, KL to the fp32 model's outputs
    on the calibration inputs (as :func:`harness.recipes.training.finetune` does).

    BatchNorm is folded first (frozen statistics; torchao's ``_fuse_conv_bn_``, the same
    helper ``prepare_pt2e`` uses for PTQ) instead of using pt2e's train-mode conv-bn
    fusion: for a short fine-tune of a trained model frozen statistics are the usual
    choice anyway, and folding the fused pattern back at ``convert_pt2e`` re-traces about
    a hundred pattern graphs (~30-50 s here even for digits-cnn). Nothing runs in train
    mode, so dropout stays off.
    """
    try:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
        from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
        from torchao.quantization.pt2e.utils import _fuse_conv_bn_
    except ImportError as e:
        raise UnsupportedError(
            f"QAT needs torchao's pt2e QAT and executorch's XNNPACKQuantizer ({e})"
        ) from e
    from harness.recipes.training import predict_logits, torch_threads, training_threads

    started = time.perf_counter()
    x = example_args(bundle)
    specs = bundle.input_specs
    module = copy.deepcopy(bundle.module).float().eval()
    data = bundle.data
    graph, batched = _export_for_qat(module, x)
    if data.train_inputs is not None and data.train_labels is not None:
        inputs = _as_batch(data.train_inputs, specs, "train inputs")
        labels: torch.Tensor | None = torch.as_tensor(data.train_labels, dtype=torch.int64)
        soft = None
        source = "hard labels (train split)"
    else:
        inputs = _as_batch(data.calib_inputs, specs, "calibration inputs")
        labels = None
        if batched:
            soft = predict_logits(module, inputs)
        else:
            soft = torch.cat(
                [
                    predict_logits(module, tuple(t[i : i + 1] for t in inputs))
                    for i in range(len(inputs[0]))
                ]
            )
        source = "self-distillation on calibration inputs (no labels)"
    samples = calibration_samples(bundle, quant)
    calib = tuple(
        torch.from_numpy(np.concatenate([s[i] for s in samples])) for i in range(len(specs))
    )
    threads = training_threads(module, x)

    bn_before = sum(1 for n in graph.graph.nodes if "batch_norm" in str(n.target))
    try:
        _fuse_conv_bn_(graph)
        bn_left = sum(1 for n in graph.graph.nodes if "batch_norm" in str(n.target))
        config = _qat_config(quant.per_channel, activation_dtype, weight_range)
        quantizer = _folded_bn_quantizer() if bn_left == 0 else XNNPACKQuantizer()
        prepared = prepare_qat_pt2e(graph, quantizer.set_global(config))
    except Exception as e:
        raise export_error("pt2e prepare_qat_pt2e (XNNPACKQuantizer) failed", e) from e

    def run(xb: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if batched:
            return first_output(prepared(*xb))
        return torch.cat(
            [first_output(prepared(*(t[i : i + 1] for t in xb))) for i in range(len(xb[0]))]
        )

    with torch.random.fork_rng(devices=[]), torch_threads(threads):
        torch.manual_seed(0)
        try:
            with torch.no_grad():  # observers start from measured ranges, not the first batch
                for start in range(0, len(calib[0]), QAT_BATCH_SIZE):
                    run(tuple(t[start : start + QAT_BATCH_SIZE] for t in calib))
        except Exception as e:
            # The first run of the prepared graph: one the quantizer's rewrite broke is an
            # export failure with the quantizer's reason, not a fault of the harness.
            raise export_error("pt2e QAT: the prepared graph fails on calibration inputs", e) from e
        history = _train_qat(run, prepared.parameters(), inputs, labels, soft, quant)
    prepared.apply(disable_observer)
    try:
        converted = convert_pt2e(prepared)
        move_exported_model_to_eval(converted)
    except Exception as e:
        raise export_error("pt2e convert_pt2e after QAT failed", e) from e
    # Exported modules refuse .eval(); the flag still tells exporters this is inference.
    for sub in converted.modules():
        sub.training = False

    notes: dict[str, Any] = {
        "qat_epochs": quant.qat_epochs,
        "qat_lr": quant.qat_lr,
        "qat_batch": QAT_BATCH_SIZE if batched else "1 sample at a time (batch pinned)",
        "qat_training": source,
        "qat_history": history,
        "calibration_samples": len(calib[0]),
        "qat_seconds": round(time.perf_counter() - started, 2),
    }
    if bn_before:
        notes["qat_batchnorm"] = (
            f"{bn_before - bn_left} of {bn_before} folded into the preceding conv before "
            "training (statistics frozen)"
        )
    return QatResult(module=converted, notes=notes)


def _train_qat(
    run: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
    parameters: Any,
    inputs: tuple[torch.Tensor, ...],
    labels: torch.Tensor | None,
    soft: torch.Tensor | None,
    quant: QuantRequest,
) -> list[dict[str, float]]:
    """The fine-tuning loop; returns loss and accuracy (or agreement) per epoch."""
    from harness.recipes.training import class_logits, distillation_loss

    n = len(inputs[0])
    epochs = quant.qat_epochs
    total = max(1, epochs * math.ceil(n / QAT_BATCH_SIZE))
    params = [p for p in parameters if p.requires_grad]
    opt = torch.optim.Adam(params, lr=quant.qat_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    gen = torch.Generator().manual_seed(0)
    history: list[dict[str, float]] = []
    metric = "accuracy" if labels is not None else "agreement"
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        loss_sum, hits, positions = 0.0, 0, 0
        for start in range(0, n, QAT_BATCH_SIZE):
            idx = perm[start : start + QAT_BATCH_SIZE]
            out = run(tuple(t[idx] for t in inputs))
            if labels is not None:
                target = labels[idx]
                loss = F.cross_entropy(*class_logits(out, target))  # type: ignore[arg-type]
            else:
                assert soft is not None
                target = soft[idx].argmax(-1)
                loss = distillation_loss(out, soft[idx], None, 0.0, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.item()) * len(idx)
            hits += int((out.argmax(-1) == target).sum().item())
            positions += target.numel()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(loss_sum / n, 5),
                metric: round(hits / max(positions, 1), 4),
            }
        )
    return history


def _speed_hints(delegation: dict[str, Any]) -> list[str]:
    """What the lowering knows can make the program slow: ops XNNPACK did not take run in
    ExecuTorch's portable kernels (plain C++ loops, one thread)."""
    outside = delegation.get("non_delegated_by_op") or {}
    costly = {op: n for op, n in outside.items() if not _is_cheap_op(op)}
    if not costly:
        return []
    listed = ", ".join(f"{op} x{n}" for op, n in sorted(costly.items(), key=lambda kv: -kv[1]))
    return [f"ops outside XNNPACK, run by portable kernels: {listed}"[:300]]


# Views, copies and casts the portable runtime does in place or in a trivial loop.
_CHEAP_OPS = ("view", "reshape", "squeeze", "unsqueeze", "permute", "expand", "clone",
              "alias", "slice", "select", "getitem", "_to_copy", "dim_order", "full")  # fmt: skip


def _is_cheap_op(name: str) -> bool:
    return any(part in name for part in _CHEAP_OPS)


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


def _lower(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[bytes, dict[str, Any]]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        program = torch.export.export(module, args)
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


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The runtime's C++ cpuinfo code writes diagnostics straight to file descriptor 2
    (not through Python), once per load; they would interleave with the CLI's progress.
    Python-level errors still surface as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_program(path: Path, args: tuple[torch.Tensor, ...]) -> None:
    """The .pte must load in the ExecuTorch runtime and run on the example input."""
    from executorch.runtime import Runtime

    try:
        with _native_stderr_silenced():
            method = Runtime.get().load_program(str(path)).load_method("forward")
            if method is None:
                raise RuntimeError("the program has no 'forward' method")
            method.execute(list(args))
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
        x = example_args(bundle)
        module = copy.deepcopy(bundle.module).eval()
        notes: dict[str, Any] = {}
        granularity = "per-channel" if quant is None or quant.per_channel else "per-tensor"
        if quant is None:
            notes["quant_format"] = "fp32"
        elif quant.mode == "static":
            calib = [
                tuple(torch.from_numpy(a) for a in s) for s in calibration_samples(bundle, quant)
            ]
            module = _quantize_pt2e(module, x, quant, calib)
            notes.update(
                {
                    "quant_format": f"XNNPACK pt2e int8 symmetric {granularity}",
                    "quant_reason": "XNNPACKQuantizer: int8 activations (static, "
                    "histogram-calibrated) and symmetric int8 weights, the layout XNNPACK's "
                    "QS8 kernels run on ARM and x86",
                    "calibration_samples": len(calib),
                }
            )
        elif quant.mode == "dynamic":
            module = _quantize_pt2e(module, x, quant, [])
            notes.update(
                {
                    "quant_format": f"XNNPACK pt2e dynamic int8 symmetric {granularity}",
                    "quant_reason": "XNNPACKQuantizer is_dynamic=True: int8 weights, "
                    "activations quantized at run time (linear layers only)",
                }
            )
        elif quant.mode == "qat":
            result = qat_pt2e(bundle, quant)
            module = result.module
            notes.update(
                {
                    "quant_format": f"XNNPACK pt2e QAT int8 symmetric {granularity}",
                    "quant_reason": "XNNPACKQuantizer(is_qat=True): the int8 layout of "
                    "int8-static (int8 activations, symmetric int8 weights), with the "
                    "weights and ranges fine-tuned under fake quantization",
                    "qat_method": "pt2e QAT: torch.export (dynamic batch) -> "
                    "prepare_qat_pt2e -> fine-tune -> convert_pt2e -> XNNPACK",
                    **result.notes,
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
        hints = _speed_hints(delegation)
        if hints:
            notes["speed_hints"] = hints
        with staging_dir(out_path) as tmp:
            staged = tmp / f"model{self.suffix}"
            staged.write_bytes(buffer)
            _check_program(staged, x)
            notes["gzip_bytes"] = gzip_size(staged)
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
