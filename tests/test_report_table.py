"""The comparative table from hand-built cells: ratios against the baseline of the same
runtime, the note column (int8 format, unstructured sparsity told honestly) and failed
cells with their reasons."""

from __future__ import annotations

from typing import Any

from harness.reports.table import COLUMNS, build_rows, render_csv, render_markdown
from harness.results.store import CellRecord

COL = {name: i for i, name in enumerate(COLUMNS)}


def cell(
    variant: str,
    runtime: str = "onnxruntime",
    *,
    recipes: tuple[str, ...] = (),
    p50: float = 2.0,
    size: int = 100_000,
    export_notes: dict[str, Any] | None = None,
    transform_notes: list[dict[str, Any]] | None = None,
    emulated: bool = False,
    status: str = "ok",
    reason: str | None = None,
    model: str = "digits-cnn",
) -> CellRecord:
    result: dict[str, Any] = {"lineage": [{"recipe": r, "params": {}} for r in recipes]}
    if status == "ok":
        result.update(
            {
                "latency_ms": {"p50": p50, "p90": p50 * 1.2},
                "memory_mb": {"peak": 80.0},
                "accuracy": 0.99,
                "agreement": 1.0,
                "export_notes": export_notes or {},
                "transform_notes": transform_notes or [],
            }
        )
    return CellRecord(
        model=model,
        variant=variant,
        runtime=runtime,
        device="local",
        config_hash="h",
        status=status,
        reason=reason,
        emulated=emulated,
        size_bytes=size if status == "ok" else None,
        result=result,
    )


def sparse_notes(sparsity: float) -> list[dict[str, Any]]:
    return [{"recipe": "prune-unstructured", "achieved_sparsity": sparsity, "seconds": 1.0}]


CELLS = [
    cell("fp32", export_notes={"quant_format": "fp32", "gzip_bytes": 90_000}),
    cell(
        "int8",
        recipes=("int8-static",),
        p50=0.5,
        size=25_000,
        export_notes={"quant_format": "QDQ U8S8 per-channel", "gzip_bytes": 20_000},
    ),
    cell(
        "sparse",
        recipes=("prune-unstructured",),
        export_notes={"quant_format": "fp32", "gzip_bytes": 49_500},
        transform_notes=sparse_notes(0.5),
    ),
    cell(
        "sparse-int8",
        recipes=("prune-unstructured", "int8-static"),
        p50=0.5,
        size=25_000,
        export_notes={"quant_format": "QDQ U8S8 per-channel reduce-range", "gzip_bytes": 13_500},
        transform_notes=sparse_notes(0.7712),
    ),
    cell(
        "fp16",
        recipes=("fp16",),
        status="failed",
        reason="unsupported: fp16 is not supported by onnxruntime on x86_64: the CPU "
        "execution provider has no fp16 kernels for Conv/Gemm/MatMul on x86",
    ),
    cell("fp32", "executorch", p50=4.0, export_notes={"quant_format": "fp32"}),
    cell(
        "qat",
        "executorch",
        recipes=("int8-qat",),
        p50=1.0,
        size=33_000,
        export_notes={"quant_format": "XNNPACK pt2e QAT int8 symmetric per-channel"},
        emulated=True,
    ),
    cell(
        "sparse",
        "executorch",
        recipes=("prune-unstructured",),
        export_notes={"quant_format": "fp32", "gzip_bytes": 49_459},
        transform_notes=sparse_notes(0.5),
    ),
    cell(
        "dyn",
        "executorch",
        recipes=("int8-dynamic",),
        export_notes={"quant_format": "XNNPACK pt2e dynamic int8 symmetric per-channel"},
    ),
]


def rows_by_key() -> dict[tuple[str, str], tuple[str, ...]]:
    rows = build_rows(CELLS, {"fp32"})
    assert len(rows) == len(CELLS)
    return {(r.values[COL["runtime"]], r.values[COL["variant"]]): r.values for r in rows}


def test_ratios_against_the_same_runtimes_baseline() -> None:
    rows = rows_by_key()
    base = rows[("onnxruntime", "fp32")]
    assert base[COL["speedup"]] == "1.00x" and base[COL["size x"]] == "1.00"
    assert base[COL["note"]] == ""  # fp32 says nothing
    int8 = rows[("onnxruntime", "int8")]
    assert int8[COL["speedup"]] == "4.00x"
    assert int8[COL["size x"]] == "0.25"
    assert int8[COL["size KB"]] == "24.4"
    assert (int8[COL["accuracy"]], int8[COL["agreement"]]) == ("99.0", "100.0")
    qat = rows[("executorch", "qat")]  # against executorch's fp32, not onnxruntime's
    assert qat[COL["speedup"]] == "4.00x" and qat[COL["size x"]] == "0.33"


def test_quantized_notes_name_the_format_briefly() -> None:
    rows = rows_by_key()
    assert rows[("onnxruntime", "int8")][COL["note"]] == "QDQ U8S8"
    assert rows[("executorch", "qat")][COL["note"]] == "emulated; XNNPACK QAT int8"
    assert rows[("executorch", "dyn")][COL["note"]] == "XNNPACK dynamic int8"


def test_sparse_notes_are_honest() -> None:
    rows = rows_by_key()
    sparse = rows[("onnxruntime", "sparse")]
    assert sparse[COL["note"]] == "sparse 50.0%: gzip 0.55x; dense kernels, no speedup expected"
    assert sparse[COL["speedup"]] == "1.00x" and sparse[COL["size x"]] == "1.00"
    both = rows[("onnxruntime", "sparse-int8")][COL["note"]]
    assert both == (
        "sparse 77.1%: gzip 0.15x; dense kernels, no speedup expected; QDQ U8S8 reduce-range"
    )
    # The executorch baseline has no gzip_bytes (an artifact from before they were
    # recorded): the compressed size is given as it is instead of a made-up ratio.
    et = rows[("executorch", "sparse")][COL["note"]]
    assert et == "sparse 50.0%: gzip 48.3 KB; dense kernels, no speedup expected"


def test_failed_rows_keep_their_reason() -> None:
    row = rows_by_key()[("onnxruntime", "fp16")]
    assert row[COL["status"]] == "FAILED"
    assert all(row[COL[c]] == "-" for c in ("p50 ms", "speedup", "size x", "accuracy"))
    assert row[COL["note"]].startswith("unsupported: fp16 is not supported by onnxruntime")
    assert "no fp16 kernels" in row[COL["note"]]
    assert "FAILED" in render_markdown(build_rows(CELLS))
    assert "no speedup expected" in render_csv(build_rows(CELLS))


def test_no_baseline_means_no_ratios() -> None:
    rows = build_rows([cell("int8", recipes=("int8-static",), model="other")])
    values = rows[0].values
    assert (values[COL["speedup"]], values[COL["size x"]]) == ("-", "-")
    sparse = cell(
        "s",
        recipes=("prune-unstructured",),
        export_notes={},
        transform_notes=[],
        model="other",
    )
    # Without notes the sparsity is not invented either.
    assert build_rows([sparse])[0].values[COL["note"]] == (
        "sparse; dense kernels, no speedup expected"
    )
