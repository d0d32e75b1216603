"""ONNX export for onnxruntime: fp32 via the torch.export-based exporter, int8 via
onnxruntime.quantization (see :mod:`harness.export.ort_quant`).

Runtime-agnostic helpers (staging directory, error wrapping, calibration samples, gzip
size) live in :mod:`harness.export.common`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from harness.errors import ExportError, UnsupportedError
from harness.export.base import Exporter, ExportResult
from harness.export.common import (
    calibration_samples,
    example_args,
    export_error,
    gzip_size,
    staging_dir,
)
from harness.models.base import ModelBundle
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo

INPUT_NAME = "input"
OUTPUT_NAME = "output"


# --------------------------------------------------------------------------------------
# onnxruntime exporter
# --------------------------------------------------------------------------------------

_FP16_X86_MESSAGE = (
    "fp16 is not supported by onnxruntime on {arch}: the CPU execution provider has no "
    "fp16 kernels for Conv/Gemm/MatMul on x86, so an fp16 model would run through "
    "inserted casts (or fail to load) instead of measuring fp16 inference"
)


@contextlib.contextmanager
def _quiet_registry_log() -> Iterator[None]:
    """The exporter logs one warning per torchvision op it cannot register (torchvision
    is not installed here, and no model of ours uses its ops)."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _torch_onnx_export(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: list[str], dest: Path
) -> dict[str, Any]:
    """torch.onnx.export with the torch.export-based (dynamo) exporter, into ``dest``
    (alone in its directory, so a stray external-data file is noticed). The graph's
    inputs are ``names`` (the bundle's input specs), in order, each in its own dtype.

    The TorchScript exporter is deprecated since torch 2.9 and silently bakes
    data-dependent branches into the trace; the dynamo exporter fails loudly instead and
    handles CNNs, MLPs and nn.TransformerEncoder, and translates pt2e quantize/dequantize
    ops into QuantizeLinear/DequantizeLinear. Shapes are static (batch 1).
    """
    progress = io.StringIO()  # the exporter prints its progress to stdout
    try:
        with contextlib.redirect_stdout(progress), torch.no_grad(), _quiet_registry_log():
            torch.onnx.export(
                module,
                tuple(args),
                str(dest),
                input_names=list(names),
                output_names=[OUTPUT_NAME],
                dynamo=True,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as e:
        raise export_error("torch.onnx.export failed", e) from e
    extra = sorted(p.name for p in dest.parent.iterdir() if p != dest)
    if not dest.exists() or extra:
        raise ExportError(
            f"torch.onnx.export did not produce a single self-contained file "
            f"(files written: {sorted(p.name for p in dest.parent.iterdir())})"
        )
    import onnx

    model = onnx.load(str(dest), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"onnx_exporter": "torch.onnx.export(dynamo=True)", "opset": opset}


def input_names(bundle: ModelBundle) -> list[str]:
    return [s.name for s in bundle.input_specs]


def _export_fp32(bundle: ModelBundle, dest: Path) -> dict[str, Any]:
    """The bundle's model as an fp32 ONNX file (on a copy: exporting must not touch it)."""
    return _torch_onnx_export(
        copy.deepcopy(bundle.module).eval(), example_args(bundle), input_names(bundle), dest
    )


def _export_qat(
    bundle: ModelBundle, dest: Path, quant: QuantRequest, target: TargetInfo, workdir: Path
) -> dict[str, Any]:
    """QAT for onnxruntime: pt2e fake-quant fine-tuning in the QDQ format onnxruntime
    would pick for ``target`` (activation dtype, 7-bit weights on x86 without VNNI), then
    the converted model exported as a QDQ ONNX graph.

    The quantization parameters learnt during training (activation ranges, weight
    scales) are the ones in the file: nothing is re-calibrated afterwards, which is the
    point of QAT. onnxruntime fuses the Q/DQ pairs into QLinearConv/QGemm at load time.
    """
    from harness.export import ort_quant
    from harness.export.executorch import qat_pt2e

    fmt = ort_quant.choose_static_format(quant, target)
    weight_range = (-64, 64) if fmt.reduce_range else (-127, 127)
    result = qat_pt2e(
        bundle,
        quant,
        activation_dtype=torch.uint8 if fmt.activations == "uint8" else torch.int8,
        weight_range=weight_range,
    )
    qat_dir = workdir / "qat"
    qat_dir.mkdir()
    exported = qat_dir / "model.onnx"
    notes = _torch_onnx_export(result.module, example_args(bundle), input_names(bundle), exported)
    os.replace(exported, dest)
    notes["int8_weights"] = ort_quant.count_int8_weights(dest)
    notes.update(result.notes)
    notes.update(
        {
            "quant_format": f"QAT {fmt.label}",
            "quant_reason": f"{fmt.reason}; trained in that format (activation dtype "
            f"{fmt.activations}, weights in [{weight_range[0]}, {weight_range[1]}])",
            "qat_method": "pt2e QAT (XNNPACKQuantizer annotations with onnxruntime's "
            "activation dtype and weight range), convert_pt2e, exported as QDQ ONNX by "
            "torch.onnx (dynamo); the learnt scales are kept, no re-calibration",
        }
    )
    return notes


def strip_debug_metadata(path: Path) -> int:
    """Drop the per-node debug metadata torch.onnx writes; returns how many entries.

    The dynamo exporter records each node's Python module path and FX node as
    ``metadata_props``. onnxruntime never reads them, and for a small model they are a
    large share of the file (about 15 KB of digits-cnn's 113 KB fp32 file, more than the
    int8 weights of its QAT file), which would distort every size comparison. Every ONNX
    artifact is stripped, so sizes compare weights and graph only.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        count = 0
        for node in model.graph.node:
            count += len(node.metadata_props)
            del node.metadata_props[:]
            node.doc_string = ""
        if count:
            onnx.save(model, str(path))
    except Exception as e:
        raise export_error("removing debug metadata from the ONNX model failed", e) from e
    return count


def _check_session(path: Path, bundle: ModelBundle) -> None:
    """The artifact must load in an onnxruntime CPU session, take the bundle's inputs
    (same names, in order) and run on the example input."""
    import onnxruntime as ort

    names = input_names(bundle)
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        graph_names = [i.name for i in session.get_inputs()]
        if graph_names != names:
            raise ExportError(
                f"the exported graph's inputs {graph_names} are not the model's inputs {names} "
                "(an input the model does not use is dropped by the exporter)"
            )
        session.run(None, {n: a.numpy() for n, a in zip(names, example_args(bundle), strict=True)})
    except ExportError:
        raise
    except Exception as e:
        raise export_error("onnxruntime cannot run the exported model", e) from e


def _check_request(quant: QuantRequest | None, target: TargetInfo) -> None:
    """Refuse up front what this runtime cannot do on ``target``."""
    if quant is None:
        return
    if quant.mode == "fp16":
        if not target.is_arm:
            raise UnsupportedError(_FP16_X86_MESSAGE.format(arch=target.arch))
        if not {"asimdhp", "fphp"} & target.cpu_features:
            raise UnsupportedError(
                f"fp16 is not supported by onnxruntime on this {target.arch} target: the CPU "
                "has no half-precision arithmetic (asimdhp/fphp), so the CPU execution "
                "provider has no fp16 kernels to run"
            )
        try:
            import onnxconverter_common  # noqa: F401
        except ImportError as e:
            raise UnsupportedError(
                "fp16 for onnxruntime on ARM needs the onnxconverter_common package to "
                "convert the model, and it is not installed"
            ) from e


def _convert_fp16(src: Path, dest: Path) -> dict[str, Any]:
    import onnx
    from onnxconverter_common import float16  # type: ignore[import-not-found]

    try:
        model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dest))
    except Exception as e:
        raise export_error("onnxconverter_common fp16 conversion failed", e) from e
    return {
        "quant_format": "fp16 weights and activations (float32 model inputs/outputs)",
        "quant_reason": "ARM CPU with half-precision arithmetic (asimdhp/fphp)",
    }


class OnnxExporter(Exporter):
    runtime: ClassVar[str] = "onnxruntime"
    suffix: ClassVar[str] = ".onnx"

    def export(
        self,
        bundle: ModelBundle,
        out_path: Path,
        quant: QuantRequest | None,
        target: TargetInfo,
    ) -> ExportResult:
        out_path = Path(out_path)
        _check_request(quant, target)
        with staging_dir(out_path) as tmp:
            final = tmp / f"final{self.suffix}"
            if quant is not None and quant.mode == "qat":
                # QAT exports its own (converted) graph: no fp32 file is needed.
                notes = _export_qat(bundle, final, quant, target, tmp)
            else:
                notes = self._export_post_training(bundle, final, quant, target, tmp)
            notes["debug_metadata_stripped"] = strip_debug_metadata(final)
            _check_session(final, bundle)
            notes["gzip_bytes"] = gzip_size(final)
            os.replace(final, out_path)
        return ExportResult(path=out_path, notes=notes)

    @staticmethod
    def _export_post_training(
        bundle: ModelBundle,
        final: Path,
        quant: QuantRequest | None,
        target: TargetInfo,
        tmp: Path,
    ) -> dict[str, Any]:
        """fp32 export, then (for a quantize step) onnxruntime's own quantization of it."""
        fp32_dir = tmp / "fp32"
        fp32_dir.mkdir()
        fp32 = fp32_dir / "model.onnx"
        notes = _export_fp32(bundle, fp32)
        if quant is None:
            notes["quant_format"] = "fp32"
            os.replace(fp32, final)
        elif quant.mode == "static":
            from harness.export import ort_quant

            notes.update(
                ort_quant.quantize_static_int8(
                    fp32,
                    final,
                    calibration_samples(bundle, quant),
                    input_names(bundle),
                    quant,
                    target,
                    tmp,
                )
            )
        elif quant.mode == "dynamic":
            from harness.export import ort_quant

            notes.update(ort_quant.quantize_dynamic_int8(fp32, final, quant, tmp))
        elif quant.mode == "fp16":
            notes.update(_convert_fp16(fp32, final))
        elif quant.mode == "bf16":
            # A run-time precision: the graph stays fp32 and the session (OpenVINO's) is
            # told to compute in bf16. The registry keeps onnxruntime from such a variant.
            notes["quant_format"] = "bf16 at run time (fp32 graph)"
            os.replace(fp32, final)
        else:  # pragma: no cover - QuantRequest.mode is a closed Literal
            raise UnsupportedError(f"unknown quantization mode {quant.mode!r}")
        return notes

    @classmethod
    def versions(cls) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "torch": torch.__version__,
        }
