"""int8 quantization of an fp32 ONNX file with onnxruntime.quantization.

Imported lazily by :mod:`harness.export.onnx` only when a quantized variant is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from harness.export.common import export_error
from harness.export.onnx import INPUT_NAME
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo


@dataclass(frozen=True)
class StaticFormat:
    """The QDQ flavour chosen for a target CPU."""

    activations: Literal["uint8", "int8"]
    per_channel: bool
    reduce_range: bool
    reason: str

    @property
    def label(self) -> str:
        pair = "U8S8" if self.activations == "uint8" else "S8S8"
        granularity = "per-channel" if self.per_channel else "per-tensor"
        extra = " reduce-range" if self.reduce_range else ""
        return f"QDQ {pair} {granularity}{extra}"


def choose_static_format(quant: QuantRequest, target: TargetInfo) -> StaticFormat:
    """U8 activations/S8 weights on x86, S8S8 on ARM, unless ``activation_dtype`` forces one.

    On x86 without VNNI the U8S8 kernels (vpmaddubsw) can saturate their int16
    intermediate sums, which onnxruntime avoids with 7-bit weights (``reduce_range``).
    """
    x86_no_vnni = not target.is_arm and not target.has_vnni
    if quant.activation_dtype == "uint8":
        return StaticFormat(
            "uint8", quant.per_channel, x86_no_vnni, "forced by activation_dtype='uint8'"
        )
    if quant.activation_dtype == "int8":
        return StaticFormat("int8", quant.per_channel, False, "forced by activation_dtype='int8'")
    if target.is_arm:
        dot = " (SDOT/I8MM int8 dot products)" if {"asimddp", "i8mm"} & target.cpu_features else ""
        return StaticFormat(
            "int8",
            quant.per_channel,
            False,
            f"ARM: onnxruntime's int8 kernels{dot} take symmetric S8 activations/S8 weights",
        )
    if target.has_vnni:
        vnni = "AVX512-VNNI" if "avx512_vnni" in target.cpu_features else "AVX-VNNI"
        return StaticFormat(
            "uint8",
            quant.per_channel,
            False,
            f"x86 with {vnni}: U8 activations/S8 weights use VNNI kernels",
        )
    return StaticFormat(
        "uint8",
        quant.per_channel,
        True,
        "x86 without VNNI: U8 activations/S8 weights with 7-bit weights (reduce_range) to "
        "avoid int16 saturation in the AVX2 U8S8 kernels",
    )


class SampleReader(CalibrationDataReader):
    """Feeds calibration samples one at a time, always in the same order.

    A sample is one array (a one-input model) or a tuple with one array per input in
    ``input_names`` order; integer inputs are fed as they are (the graph needs them) and
    the quantizer calibrates only the float tensors they lead to.
    """

    def __init__(
        self,
        samples: Sequence[np.ndarray | tuple[np.ndarray, ...]],
        input_names: Sequence[str] = (INPUT_NAME,),
    ):
        names = list(input_names)
        self._feeds = []
        for sample in samples:
            arrays = sample if isinstance(sample, tuple) else (sample,)
            if len(arrays) != len(names):
                raise ValueError(f"a calibration sample has {len(arrays)} inputs, not {names}")
            self._feeds.append(dict(zip(names, arrays, strict=True)))
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self._feeds):
            return None
        feed = self._feeds[self._pos]
        self._pos += 1
        return feed

    def rewind(self) -> None:
        self._pos = 0

    def __len__(self) -> int:
        return len(self._feeds)


def _preprocess(src: Path, dest: Path) -> dict[str, Any]:
    """``quant_pre_process``: shape inference and the basic graph optimizations (Conv+BN
    folding etc.) that the quantizer expects. Symbolic shape inference does not handle
    every op, so a failure there retries without it."""
    try:
        quant_pre_process(str(src), str(dest))
        return {}
    except Exception as first:
        try:
            quant_pre_process(str(src), str(dest), skip_symbolic_shape=True)
        except Exception as e:
            raise export_error("onnxruntime quant_pre_process failed", e) from e
        first_line = str(first).strip().splitlines()[0][:200] if str(first).strip() else ""
        return {
            "preprocess": "symbolic shape inference skipped after "
            f"{type(first).__name__}: {first_line}"
        }


def quantize_static_int8(
    fp32: Path,
    dest: Path,
    samples: Sequence[np.ndarray | tuple[np.ndarray, ...]],
    input_names: Sequence[str],
    quant: QuantRequest,
    target: TargetInfo,
    workdir: Path,
) -> dict[str, Any]:
    fmt = choose_static_format(quant, target)
    pre = workdir / "preprocessed.onnx"
    notes: dict[str, Any] = _preprocess(fp32, pre)
    act_type = QuantType.QUInt8 if fmt.activations == "uint8" else QuantType.QInt8
    try:
        quantize_static(
            str(pre),
            str(dest),
            SampleReader(samples, input_names),
            quant_format=QuantFormat.QDQ,
            per_channel=fmt.per_channel,
            reduce_range=fmt.reduce_range,
            activation_type=act_type,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    except Exception as e:
        raise export_error("onnxruntime quantize_static failed", e) from e
    notes.update(
        {
            "quant_format": fmt.label,
            "quant_reason": fmt.reason,
            "calibration_samples": len(samples),
            "calibration_method": "MinMax",
            "int8_weights": count_int8_weights(dest),
        }
    )
    return notes


def unshare_gemm_weights(model: onnx.ModelProto) -> int:
    """Give every Gemm its own weight initializer; returns how many were copied.

    ``quantize_dynamic`` rewrites ``Gemm(transB=1)`` as MatMul by transposing the weight
    initializer in place, once per Gemm. The ONNX exporter deduplicates identical
    initializers, so when several Gemms share a weight (e.g. the cloned layers of a
    freshly built nn.TransformerEncoder) the weight is transposed several times and the
    quantized model silently computes garbage.
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    copied = 0
    for node in graph.node:
        if node.op_type != "Gemm" or len(node.input) < 2:
            continue
        name = node.input[1]
        if name not in initializers or uses.get(name, 0) < 2:
            continue
        clone = onnx.TensorProto()
        clone.CopyFrom(initializers[name])
        clone.name = f"{name}__unshared_{copied}"
        graph.initializer.append(clone)
        node.input[1] = clone.name
        uses[name] -= 1
        copied += 1
    return copied


def quantize_dynamic_int8(
    fp32: Path, dest: Path, quant: QuantRequest, workdir: Path
) -> dict[str, Any]:
    pre = workdir / "preprocessed.onnx"
    notes: dict[str, Any] = _preprocess(fp32, pre)
    model = onnx.load(str(pre))
    unshared = unshare_gemm_weights(model)
    if unshared:
        onnx.save(model, str(pre))
        notes["unshared_gemm_weights"] = unshared
    try:
        quantize_dynamic(
            str(pre), str(dest), per_channel=quant.per_channel, weight_type=QuantType.QInt8
        )
    except Exception as e:
        raise export_error("onnxruntime quantize_dynamic failed", e) from e
    granularity = "per-channel" if quant.per_channel else "per-tensor"
    notes.update(
        {
            "quant_format": f"dynamic int8 (S8 weights {granularity}, U8 activations "
            "quantized at run time)",
            "quant_reason": "weights int8 offline, activation ranges computed per inference "
            "(MatMulInteger/ConvInteger); no calibration",
            "int8_weights": count_int8_weights(dest),
        }
    )
    hints = dynamic_speed_hints(dest)
    if hints:
        notes["speed_hints"] = hints
    return notes


def dynamic_speed_hints(path: Path) -> list[str]:
    """What is known to make a dynamically quantized graph slow on onnxruntime's CPU
    provider: every convolution became ConvInteger, which has no fused or vectorised
    int8 kernel there (an im2col and a plain integer GEMM, plus a DynamicQuantizeLinear
    pass over its input and a float rescale of its output on every call). Dynamic int8
    pays off for MatMul-heavy models (transformers, RNN heads), not for CNNs."""
    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    hints = []
    if counts.get("ConvInteger"):
        hints.append(
            f"ConvInteger x{counts['ConvInteger']}: onnxruntime's dynamic int8 convolution "
            "has no optimised CPU kernel (quantize with int8-static for convolutions)"
        )
    return hints


def count_int8_weights(path: Path) -> int:
    """How many initializers of the quantized model are 8-bit integer tensors."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise export_error("onnxruntime quantization wrote an unreadable model", e) from e
    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return sum(
        1 for init in model.graph.initializer if init.data_type in int8 and len(init.dims) > 0
    )
