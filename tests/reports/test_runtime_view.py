"""The cross-runtime view: one model's variants on every runtime side by side (a plot with
a panel per device and the fidelity under the latency) and the per-op profiles of one
variant on two or more runtimes compared by op category, in markdown, the terminal and
the HTML page."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from harness.cli import main
from harness.reports.html import render_html
from harness.reports.ops import (
    CATEGORIES,
    OPS_HEADING,
    op_category,
    op_comparison,
    render_ops_markdown,
    render_ops_rich,
)
from harness.reports.plots import make_plots, runtimes_side_by_side
from harness.results.store import CellRecord, ResultsStore
from tests.reports.test_report_plots import assert_plot_overlaps_nothing
from tests.results_builders import add_cell, new_run

# Op names as each runtime's profile gives them (from real profiles of a small conv net:
# see test_real_profiles_of_every_runtime_fall_into_their_categories), and a few the
# quantized variants add.
NAMES: dict[str, dict[str, str]] = {
    "onnxruntime": {
        "Conv": "conv",
        "FusedConv": "conv",
        "QLinearConv": "conv",
        "Gemm": "matmul",
        "QGemm": "matmul",
        "MatMul": "matmul",
        "DynamicQuantizeMatMul": "matmul",
        "MaxPool": "pool",
        "NhwcMaxPool": "pool",
        "GlobalAveragePool": "pool",
        "QLinearGlobalAveragePool": "pool",
        "Relu": "activation",
        "Softmax": "activation",
        "Add": "elementwise",
        "QLinearAdd": "elementwise",
        "BatchNormalization": "normalization",
        "LayerNormalization": "normalization",
        "Transpose": "layout",
        "Reshape": "layout",
        "Flatten": "layout",
        "ReorderOutput": "layout",
        "QuantizeLinear": "quantize",
        "DequantizeLinear": "quantize",
        "DynamicQuantizeLinear": "quantize",
        "Cast": "other",
    },
    "executorch": {
        "Convolution (NHWC, F32) IGEMM": "conv",
        "Convolution (NHWC, QD8, F32, QC8W) IGEMM": "conv",
        "Convolution (NHWC, QC8) IGEMM": "conv",
        "Fully Connected (NC, F32) GEMM": "matmul",
        "Fully Connected (NC, QD8, F32, QC8W) GEMM": "matmul",
        "Fully Connected (NC, QS8, QC8W) GEMM": "matmul",
        "Fully Connected (NC, QDU8, F32, QC8W) GEMM": "matmul",
        "Max Pooling (NHWC, S8)": "pool",
        "Mean (ND)": "pool",
        "Transpose (ND, X8)": "layout",
        "Convert (NC)": "quantize",
        "Max Pooling (NHWC, F32)": "pool",
        "Mean (ND) Reduce2": "pool",
        "Global Average Pooling (NWC, F32)": "pool",
        "Clamp (NC, F32)": "activation",
        "Add (ND, F32)": "elementwise",
        "Transpose (ND, X32)": "layout",
        "Static Reshape (NC)": "layout",
        "Copy (NC, X32)": "layout",
        "Convert (NC, F32, QD8)": "quantize",
        "convolution.out": "conv",
        "addmm.out": "matmul",
        "aten.mm.default": "matmul",
        "max_pool2d_with_indices.out": "pool",
        "mean.out": "pool",
        "relu.out": "activation",
        "aten.add.Tensor": "elementwise",
        "_native_batch_norm_legit_no_training.out": "normalization",
        "permute_copy.out": "layout",
        "aten.view_copy.default": "layout",
        "native_call_aten.view_copy.default": "layout",
        "quantized_decomposed.quantize_per_tensor.out": "quantize",
        "quantized_decomposed.dequantize_per_tensor.default": "quantize",
        "DELEGATE_CALL": "other",
        "topk.values": "other",
    },
    "openvino": {
        "Convolution": "conv",
        "GroupConvolution": "conv",
        "FullyConnected": "matmul",
        "FullyConnectedQuantizedLegacy": "matmul",
        "MatMul": "matmul",
        "MaxPool": "pool",
        "AvgPool": "pool",
        "ReduceMean": "pool",
        "Relu": "activation",
        "SoftMax": "activation",
        "Eltwise": "elementwise",
        "Subgraph": "elementwise",
        "MVN": "normalization",
        "Reorder": "layout",
        "Reshape": "layout",
        "Transpose": "layout",
        "FakeQuantize": "quantize",
        "Parameter": "other",
        "Result": "other",
    },
    "litert": {  # no table of its own: the generic one, without case
        "CONV_2D": "conv",
        "DEPTHWISE_CONV_2D": "conv",
        "FULLY_CONNECTED": "matmul",
        "MAX_POOL_2D": "pool",
        "MEAN": "pool",
        "LOGISTIC": "activation",
        "ADD": "elementwise",
        "RESHAPE": "layout",
        "QUANTIZE": "quantize",
        "DEQUANTIZE": "quantize",
        "TfLiteXNNPackDelegate": "other",
    },
}


@pytest.mark.parametrize(
    ("runtime", "name", "category"),
    [(r, n, c) for r, names in NAMES.items() for n, c in names.items()],
)
def test_each_runtime_s_op_names_fall_into_their_category(
    runtime: str, name: str, category: str
) -> None:
    assert category in CATEGORIES
    assert op_category(runtime, name) == category


# --- op_comparison on cells built here --------------------------------------------------


def _profile(ops: list[tuple[str, float]], total: float | None = None, **extra: Any) -> dict:
    listed = sum(ms for _, ms in ops)
    grand = total if total is not None else listed
    return {
        "tool": extra.pop("tool", "profiler"),
        "runs": 20,
        "ops_total_ms": grand,
        "op_kinds": extra.pop("op_kinds", len(ops)),
        "ops": [
            {"op": op, "count": 1, "total_ms": ms, "mean_ms": ms, "share": ms / grand}
            for op, ms in ops
        ],
        **extra,
    }


def _cell(
    runtime: str,
    profile: dict | None,
    *,
    variant: str = "fp32",
    device: str = "local",
    status: str = "ok",
    p50: float = 1.0,
    **result: Any,
) -> CellRecord:
    body = {"latency_ms": {"p50": p50}, "validity": "ok", **result}
    if profile is not None:
        body["profile"] = profile
    reason = None if status == "ok" else "unsupported: not for this runtime"
    return CellRecord("net", variant, runtime, device, "cfg", status, reason, result=body)


ORT = _profile([("Conv", 0.6), ("Gemm", 0.2), ("Relu", 0.05), ("QuantizeLinear", 0.05)], 1.0,
               op_kinds=6)  # fmt: skip
ET = _profile(
    [
        ("Convolution (NHWC, F32) IGEMM", 0.9),
        ("Convolution (NHWC, F32) GEMM", 0.3),
        ("Fully Connected (NC, F32) GEMM", 0.4),
        ("DELEGATE_CALL", 0.1),
    ]
)


def test_op_comparison_sums_each_category_per_runtime_and_names_its_ops() -> None:
    cells = [
        _cell("onnxruntime", ORT),
        _cell("executorch", ET),
        _cell("openvino", None),  # measured without a profile: not compared
    ]
    (comparison,) = op_comparison(cells)
    assert (comparison.model, comparison.variant, comparison.device) == ("net", "fp32", "local")
    assert comparison.runtimes == ("onnxruntime", "executorch")
    rows = {row.category: row for row in comparison.rows}
    assert list(rows) == ["conv", "matmul", "activation", "quantize", "other"]  # CATEGORIES order
    conv = rows["conv"].by_runtime
    assert conv["onnxruntime"].ms == pytest.approx(0.6)
    assert conv["onnxruntime"].share == pytest.approx(0.6)
    assert conv["executorch"].ms == pytest.approx(1.2)
    assert conv["executorch"].share == pytest.approx(1.2 / 1.7)
    # The slowest raw names first, with their ms.
    assert [name for name, _ in conv["executorch"].ops] == [
        "Convolution (NHWC, F32) IGEMM",
        "Convolution (NHWC, F32) GEMM",
    ]
    assert "executorch" not in rows["activation"].by_runtime
    assert rows["other"].by_runtime["executorch"].ops == (("DELEGATE_CALL", 0.1),)
    ort, et = comparison.profiles
    # onnxruntime listed 0.9 of its 1.0 ms (4 of 6 op kinds); ExecuTorch listed them all.
    assert ort.not_listed_ms == pytest.approx(0.1) and ort.listed == 4 and ort.op_kinds == 6
    assert et.not_listed_ms == 0.0
    # Every op listed, but their sum a rounding away from the total: nothing is left out.
    rounded = _profile([("Conv", 0.1), ("Gemm", 0.7), ("Relu", 0.3)], total=1.1)
    (again,) = op_comparison([_cell("onnxruntime", rounded), _cell("executorch", ET)])
    assert again.profiles[0].not_listed_ms == 0.0
    assert comparison.top == 4
    data = comparison.to_dict()
    assert data["categories"][0]["runtimes"]["executorch"]["ms"] == pytest.approx(1.2)
    assert data["profiles"][0]["not_listed_ms"] == pytest.approx(0.1)


def test_only_variants_two_runtimes_profiled_are_compared() -> None:
    cells = [
        _cell("onnxruntime", ORT),  # alone on its device and variant
        _cell("onnxruntime", ORT, variant="int8"),
        _cell("executorch", ET, variant="int8", status="failed"),  # failed: no numbers
        _cell("onnxruntime", ORT, device="pi4"),
        _cell("executorch", _profile([]), device="pi4"),  # a profile without ops
        _cell("openvino", {"tool": "etdump", "ops": None}, device="pi4"),  # not built
        _cell("onnxruntime", ORT, variant="int8", device="pi4"),
        _cell("openvino", _profile([("Convolution", 0.5)]), variant="int8", device="pi4"),
        _cell("executorch", ET, variant="int8", device="pi4"),
    ]
    (comparison,) = op_comparison(cells)
    assert comparison.title == "net int8 on pi4"
    assert comparison.runtimes == ("onnxruntime", "openvino", "executorch")
    assert op_comparison([]) == []


def test_the_markdown_names_the_numbers_the_raw_ops_and_what_the_top_n_leaves_out() -> None:
    text = render_ops_markdown(op_comparison([_cell("onnxruntime", ORT), _cell("executorch", ET)]))
    lines = text.splitlines()
    assert lines[0] == f"### {OPS_HEADING}"
    assert "#### net fp32 on local" in lines
    header = next(line for line in lines if line.startswith("| category"))
    assert header == (
        "| category | onnxruntime ms | onnxruntime % | onnxruntime ops | executorch ms | "
        "executorch % | executorch ops |"
    )
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines if line[:2] == "| "}
    assert rows["conv"] == (
        "| conv | 0.6 | 60.0 | Conv (0.6) | 1.2 | 70.6 | Convolution (NHWC, F32) IGEMM "
        "(0.9), Convolution (NHWC, F32) GEMM (0.3) |"
    )
    assert rows["activation"].startswith("| activation | 0.05 | 5.0 | Relu (0.05) | - | - | - |")
    assert rows["(not in the top 4)"] == (
        "| (not in the top 4) | 0.1 | 10.0 | 2 more op kinds | 0 | 0.0 | every op listed |"
    )
    assert rows["all ops"].startswith("| all ops | 1 | 100.0 | profiler, 20 runs | 1.7 |")
    assert "profile.top" in text  # the legend says the profiles list only their top ops
    assert render_ops_markdown([]) == ""


def test_the_terminal_tables_have_the_same_numbers() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    render_ops_rich(op_comparison([_cell("onnxruntime", ORT), _cell("executorch", ET)]), console)
    text = console.export_text()
    assert OPS_HEADING in text and "net fp32 on local" in text
    assert "(not in the top 4)" in text and "Conv (0.6)" in text and "70.6" in text


def _store_with_profiles(path: Path) -> tuple[Path, int]:
    with ResultsStore(path / "harness.db") as store:
        run = new_run(store, suite="xrt")
        for runtime, profile in (("onnxruntime", ORT), ("executorch", ET)):
            add_cell(store, run, ("net", "fp32", runtime, "local"), extra={"profile": profile})
        add_cell(store, run, ("net", "fp32", "openvino", "local"), status="failed",
                 reason="unsupported: no openvino here")  # fmt: skip
    return path, run


def test_harness_report_markdown_and_table_end_with_the_comparison(tmp_path: Path) -> None:
    results, run = _store_with_profiles(tmp_path)
    out = tmp_path / "report.md"
    args = ["report", str(run), "--results", str(results)]
    assert main([*args, "--format", "markdown", "-o", str(out)]) == 0
    text = out.read_text()
    variants, ops = text.split(f"### {OPS_HEADING}")
    assert "Variants:" in variants and "| conv | 0.6 | 60.0 | Conv (0.6) |" in ops
    table = tmp_path / "report.txt"
    assert main([*args, "-o", str(table)]) == 0
    assert OPS_HEADING in table.read_text()


def test_the_html_page_has_a_table_per_compared_variant_and_the_runtimes_plot(
    tmp_path: Path,
) -> None:
    results, run = _store_with_profiles(tmp_path)
    assert main(["report", str(run), "--results", str(results), "--format", "html"]) == 0
    page = (results / "reports" / f"run-{run}.html").read_text()
    assert f'<h2 id="ops">{OPS_HEADING}</h2>' in page
    assert 'data-ops="net/fp32/local"' in page
    assert '<tr data-op-category="conv"><td>conv</td><td class="num">0.6</td>' in page
    assert 'data-plot="runtimes-net"' in page


def test_a_page_without_profiles_says_how_to_get_them() -> None:
    from harness.results.store import RunRecord

    run = RunRecord(1, "s", "/s.toml", "2026", None, "complete", "0.1", None, "fp", {}, {})
    page = render_html(run, [_cell("onnxruntime", None)], [])
    assert 'id="no-ops"' in page and "profile = true" in page


# --- the side-by-side plot --------------------------------------------------------------


def _bench(
    variant: str, runtime: str, device: str, p50: float, status: str = "ok", **result: Any
) -> CellRecord:
    reason = None if status == "ok" else "unsupported: the runtime has no fp16 kernels"
    body = {"latency_ms": {"p50": p50}, "validity": "ok", **result} if status == "ok" else {}
    return CellRecord("net", variant, runtime, device, "cfg", status, reason, result=body)


def _points(plot: Any) -> list[str]:
    return [r.text for r in plot.regions if r.kind == "point"]


def _labels(plot: Any) -> list[str]:
    return [r.text for r in plot.regions if r.kind == "label"]


RUNTIMES3 = ("onnxruntime", "executorch", "openvino")


def _three_runtime_cells() -> list[CellRecord]:
    cells = []
    for device, scale in (("local", 1.0), ("pi4", 4.0)):
        for v, variant in enumerate(("fp32", "int8", "fp16")):
            for r, runtime in enumerate(RUNTIMES3):
                if variant == "fp16" and runtime != "openvino":
                    cells.append(_bench(variant, runtime, device, 0, status="failed"))
                    continue
                if device == "pi4" and runtime == "openvino":
                    continue  # never run there: a gap saying "not run"
                snr = 90.0 if variant == "fp32" else 30.0 + r
                cells.append(
                    _bench(variant, runtime, device, scale * (1 + v) * (1 + 0.3 * r), snr_db=snr)
                )
    return cells


def test_one_bar_per_measured_cell_and_a_word_in_each_gap() -> None:
    cells = _three_runtime_cells()
    plot = runtimes_side_by_side(cells, "net")
    assert plot is not None and plot.name == "runtimes-net"
    measured = [c for c in cells if c.status == "ok"]
    # A latency bar and an SNR bar per measured cell.
    assert len(_points(plot)) == 2 * len(measured)
    for c in measured:
        say = f"{c.variant} / {c.runtime} on {c.device}: p50 {c.result.latency.p50_ms:.3g} ms"
        assert sum(1 for text in _points(plot) if text.startswith(say)) == 2, say
    gaps = [t for t in _labels(plot) if "p50" not in t]
    # fp16 failed on two runtimes on both devices; openvino never ran on pi4 (3 variants).
    assert sum("unsupported" in t for t in gaps) == 4
    assert sum(t.endswith("not run") for t in gaps) == 3
    assert len(gaps) == 4 + 3
    panels = [r.text for r in plot.regions if r.kind == "panel"]
    assert panels == [
        "on local: p50",
        "on local: SNR vs fp32",
        "on pi4: p50",
        "on pi4: SNR vs fp32",
    ]
    assert_plot_overlaps_nothing(plot)
    rows = {(row[0], row[1]): row[2:] for row in plot.key_rows}
    assert rows[("fp16", "onnxruntime")] == ("failed: unsupported", "failed: unsupported")
    assert rows[("fp32", "openvino")] == ("1.6 ms, 90.0 dB", "not run")
    assert rows[("int8", "executorch")][0] == "2.6 ms, 31.0 dB"


def test_the_gap_labels_and_numbers_are_ink_where_their_boxes_are() -> None:
    plot = runtimes_side_by_side(_three_runtime_cells(), "net")
    assert plot is not None
    image = np.asarray(Image.open(io.BytesIO(plot.png)).convert("L"))
    assert image.shape == (plot.size[1], plot.size[0])
    for region in plot.regions:
        if region.kind == "label":
            x0, y0, x1, y1 = region.box
            assert image[y0:y1, x0:x1].min() < 160, region


def test_spread_latencies_get_a_log_axis_and_negative_snr_a_bar_downwards() -> None:
    cells = [
        _bench("fp32", "onnxruntime", "local", 0.05, snr_db=90.0),
        _bench("fp32", "executorch", "local", 40.0, snr_db=85.0),  # a portable kernel
        _bench("int8", "onnxruntime", "local", 0.03, snr_db=-3.0),  # broken quantization
        _bench("int8", "executorch", "local", 30.0, snr_db=20.0, validity=["unstable: cv"]),
    ]
    plot = runtimes_side_by_side(cells, "net")
    assert plot is not None
    assert_plot_overlaps_nothing(plot)
    assert any(t.endswith("(invalid)") for t in _points(plot))


def test_without_fidelity_there_is_one_row_and_agreement_when_there_is_no_snr() -> None:
    plain = [_bench("fp32", r, "local", 1.0 + i) for i, r in enumerate(RUNTIMES3)]
    plot = runtimes_side_by_side(plain, "net")
    assert plot is not None
    assert [r.text for r in plot.regions if r.kind == "panel"] == ["on local: p50"]
    assert_plot_overlaps_nothing(plot)
    agreeing = [
        _bench("fp32", r, "local", 1.0 + i, agreement=0.99) for i, r in enumerate(RUNTIMES3)
    ]
    plot = runtimes_side_by_side(agreeing, "net")
    assert plot is not None and plot.key_rows[0][2] == "1 ms, 99.0%"
    assert runtimes_side_by_side([_bench("fp32", "onnxruntime", "l", 0, "failed")], "net") is None


def test_make_plots_shows_it_only_for_a_model_measured_on_two_runtimes() -> None:
    one = [_bench("fp32", "onnxruntime", "local", 1.0, snr_db=90.0),
           _bench("fp32", "executorch", "local", 0, status="failed")]  # fmt: skip
    assert not any(p.name.startswith("runtimes-") for p in make_plots(one, {}))
    two = [*one, _bench("int8", "executorch", "local", 0.5, snr_db=30.0)]
    assert [p.name for p in make_plots(two, {}) if p.name.startswith("runtimes-")] == [
        "runtimes-net"
    ]


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_golden_runtimes_plots_overlap_nothing(tmp_path: Path) -> None:
    from tests.golden.build_golden_db import MODEL_VARIANTS, golden_copy

    golden_copy(tmp_path)
    with ResultsStore(tmp_path / "harness.db") as store:
        cells = store.cells(4)
    plots = {p.name: p for p in make_plots(cells, {}) if p.name.startswith("runtimes-")}
    assert set(plots) == {f"runtimes-{m}" for m in MODEL_VARIANTS}
    for plot in plots.values():
        assert_plot_overlaps_nothing(plot)
    # digits-cnn's fp16 failed on both runtimes: its gaps say why.
    assert sum("unsupported" in t for t in _labels(plots["runtimes-digits-cnn"])) == 4


# --- real profiles --------------------------------------------------------------------


def _conv_net_artifacts(directory: Path) -> tuple[dict[str, tuple[str, Path]], np.ndarray]:
    """A small conv net as ONNX fp32, ONNX QDQ int8, XNNPACK .pte files (fp32 and int8)
    and a portable .pte, each with the runtime that runs it (OpenVINO on the ONNX files
    when it is installed)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge, to_edge_transform_and_lower
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    fp32 = directory / "m.onnx"
    torch.onnx.export(model, (x,), str(fp32), input_names=["input"], dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": x.numpy()}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    int8 = directory / "q.onnx"
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ)
    xnnpack = directory / "m.pte"
    lowered = to_edge_transform_and_lower(
        torch.export.export(model, (x,)), partitioner=[XnnpackPartitioner()]
    )
    xnnpack.write_bytes(lowered.to_executorch().buffer)
    # int8 as the harness's ExecuTorch exporter makes it: pt2e with the XNNPACKQuantizer.
    graph = torch.export.export(model, (x,)).module()
    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    prepared(x)
    quantized = to_edge_transform_and_lower(
        torch.export.export(convert_pt2e(prepared), (x,)), partitioner=[XnnpackPartitioner()]
    )
    xnnpack_int8 = directory / "q.pte"
    xnnpack_int8.write_bytes(quantized.to_executorch().buffer)
    portable = directory / "portable.pte"
    portable.write_bytes(to_edge(torch.export.export(model, (x,))).to_executorch().buffer)
    artifacts = {
        "fp32/onnxruntime": ("onnxruntime", fp32),
        "int8/onnxruntime": ("onnxruntime", int8),
        "fp32/executorch": ("executorch", xnnpack),
        "int8/executorch": ("executorch", xnnpack_int8),
        "portable/executorch": ("executorch", portable),
    }
    try:
        import openvino  # noqa: F401

        artifacts["fp32/openvino"] = ("openvino", fp32)
        artifacts["int8/openvino"] = ("openvino", int8)
    except ImportError:
        pass
    return artifacts, x.numpy()


@pytest.mark.slow
def test_real_profiles_of_every_runtime_fall_into_their_categories(tmp_path: Path) -> None:
    from harness.runner.bench_runner import SESSIONS

    artifacts, x = _conv_net_artifacts(tmp_path)
    cells = []
    for key, (runtime, path) in artifacts.items():
        variant = key.split("/")[0]
        job = {"artifact": str(path), "runtime_options": {}, "profile": {"count": 5, "top": 30}}
        profile = SESSIONS[runtime].profile(job, [x], 1, tempfile.mkdtemp(dir=tmp_path))
        names = [row["op"] for row in profile["ops"]]
        categories = {op_category(runtime, name) for name in names}
        # Two convs, a pool and the linear layer: every runtime names them its own way.
        assert {"conv", "matmul", "pool"} <= categories, (key, names)
        unknown = [n for n in names if op_category(runtime, n) == "other"]
        assert unknown == [], (key, unknown)
        if variant == "int8" and runtime in ("onnxruntime", "executorch"):
            assert "quantize" in categories, names  # the int8/float conversions
        cells.append(
            CellRecord(
                "net",
                "fp32" if variant == "portable" else variant,
                runtime,
                "local",
                "cfg",
                "ok",
                result={"latency_ms": {"p50": 1.0}, "profile": profile},
            )
        )
    comparisons = {c.variant: c for c in op_comparison(cells)}
    assert set(comparisons) == {"fp32", "int8"}
    for comparison in comparisons.values():
        conv = next(row for row in comparison.rows if row.category == "conv")
        assert set(conv.by_runtime) == set(comparison.runtimes) and len(comparison.runtimes) >= 2
        assert all(ops.ms > 0 for ops in conv.by_runtime.values())
    text = render_ops_markdown(list(comparisons.values()))
    assert "| conv |" in text and "#### net fp32 on local" in text
