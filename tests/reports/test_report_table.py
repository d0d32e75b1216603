"""The comparative table from hand-built cells: ratios against the baseline of the same
model, runtime and device, the note column (int8 format, unstructured sparsity told
honestly), failed and invalid cells with their reasons, accuracy delta and power source,
the grouping by model and device, and the JSON's verdict and baseline comparison."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.reports.cells import cell_to_dict, cells_to_dicts, validity_reasons, verdict
from harness.reports.table import COLUMNS, LEGEND, build_rows, render_csv, render_markdown
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


# --- the reports issue: verdicts, accuracy delta, power, grouping, JSON comparison --------


def measured(
    variant: str,
    device: str = "local",
    *,
    model: str = "digits-cnn",
    recipes: tuple[str, ...] = (),
    p50: float = 2.0,
    accuracy: float | None = 0.99,
    validity: object = "ok",
    power_source: str | None = "measured:rapl",
    energy_mj: float | None = 0.5,
) -> CellRecord:
    base = cell(variant, recipes=recipes, p50=p50, model=model)
    result = {
        **base.result,
        "accuracy": accuracy,
        "validity": validity,
        "power_source": power_source,
        "energy_mj": energy_mj,
    }
    return CellRecord(
        model=model,
        variant=variant,
        runtime="onnxruntime",
        device=device,
        config_hash="h",
        status="ok",
        size_bytes=base.size_bytes,
        result=result,
    )


def test_accuracy_delta_validity_and_power_columns() -> None:
    cells = [
        measured("fp32", accuracy=0.975),
        measured("int8", recipes=("int8-static",), p50=1.0, accuracy=0.9611, energy_mj=0.25),
        measured("hot", recipes=("int8-static",), validity=["throttled", "unstable"]),
        measured("model", recipes=("int8-static",), power_source="modelled", accuracy=None),
    ]
    rows = {r.value("variant"): r for r in build_rows(cells)}
    assert rows["fp32"].value("acc Δ pt") == "+0.0"
    assert rows["int8"].value("acc Δ pt") == "-1.4"  # 96.11 - 97.5 points
    assert rows["int8"].value("speedup") == "2.00x"
    assert (rows["int8"].value("energy mJ"), rows["int8"].value("power")) == (
        "0.250",
        "measured:rapl",
    )
    hot = rows["hot"]
    assert (hot.value("status"), hot.verdict, hot.ok) == ("INVALID", "invalid", True)
    assert hot.value("validity") == "throttled, unstable"
    assert hot.value("p50 ms") == "2.000"  # an invalid cell keeps its numbers, marked
    assert rows["model"].value("power") == "modelled"
    assert rows["model"].value("acc Δ pt") == "-"  # no accuracy, no delta
    assert rows["fp32"].value("validity") == "ok"


def test_an_emulated_cell_names_its_factor_and_its_reasons_briefly() -> None:
    loaded = "host_loaded: 1.5 other runnable tasks per CPU (procs_running [4, 6] on 2 CPUs)"
    base = measured("int8", "pi4-emulated", recipes=("int8-static",), validity=[loaded])
    caps = {"speed_factor": 0.125, "precision": "int8", "precision_from": "export notes"}
    emulated = dataclasses.replace(
        base, emulated=True, result={**base.result, "emulation": {"caps": caps}}
    )
    [row] = build_rows([emulated])
    # The numbers stay in the cell's JSON; the table names the reason on one line.
    assert row.value("validity") == "host_loaded"
    assert validity_reasons(emulated) == [loaded]
    assert row.value("note").startswith("emulated x0.125 (int8)")
    # A record from before per-precision factors: just "emulated".
    old = dataclasses.replace(base, emulated=True)
    assert build_rows([old])[0].value("note") == "emulated"


def test_failed_row_has_a_dash_in_every_measured_column() -> None:
    failed = cell("fp16", recipes=("fp16",), status="failed", reason="unsupported: no fp16")
    row = build_rows([failed])[0]
    assert (row.verdict, row.ok, row.value("status")) == ("failed", False, "FAILED")
    assert all(row.value(c) == "-" for c in COLUMNS[5:-1])
    assert row.value("note") == "unsupported: no fp16"
    assert row.cell_id == "digits-cnn/fp16/onnxruntime/local"


def test_baseline_is_per_model_runtime_and_device_and_groups_keep_run_order() -> None:
    cells = [
        measured("fp32", "pi4-emulated", model="mlp", p50=8.0),
        measured("fp32", "local", model="mlp", p50=2.0),
        measured("int8", "pi4-emulated", model="mlp", recipes=("int8-static",), p50=4.0),
        measured("int8", "local", model="mlp", recipes=("int8-static",), p50=1.0),
        measured("fp32", "local", model="cnn", p50=3.0),
    ]
    rows = build_rows(cells)
    # mlp first (the run met it first), pi4-emulated before local, then cnn.
    assert [r.group for r in rows] == [
        ("mlp", "pi4-emulated"),
        ("mlp", "pi4-emulated"),
        ("mlp", "local"),
        ("mlp", "local"),
        ("cnn", "local"),
    ]
    speedups = {(r.value("device"), r.value("variant")): r.value("speedup") for r in rows[:4]}
    assert speedups[("pi4-emulated", "int8")] == "2.00x"  # against pi4-emulated's fp32
    assert speedups[("local", "int8")] == "2.00x"


def test_markdown_has_one_table_per_model_and_device() -> None:
    cells = [measured("fp32", "local"), measured("fp32", "pi4-emulated")]
    text = render_markdown(build_rows(cells))
    assert "### digits-cnn on local" in text and "### digits-cnn on pi4-emulated" in text
    assert text.count("| runtime | variant | status |") == 2
    assert LEGEND in text


def test_json_adds_verdict_and_comparison_to_the_baseline() -> None:
    cells = [
        measured("fp32", accuracy=0.975),
        measured("int8", recipes=("int8-static",), p50=0.5, accuracy=0.9611),
        cell("fp16", recipes=("fp16",), status="failed", reason="unsupported: no fp16"),
        measured("alone", model="other", recipes=("int8-static",)),
    ]
    dicts = {d["variant"]: d for d in cells_to_dicts(cells)}
    assert dicts["int8"]["verdict"] == "ok"
    versus = dicts["int8"]["vs_baseline"]
    assert versus["variant"] == "fp32" and versus["speedup"] == 4.0
    assert versus["size_ratio"] == 1.0
    assert versus["accuracy_delta_points"] == pytest.approx(-1.39)
    assert dicts["fp16"]["verdict"] == "failed" and dicts["fp16"]["vs_baseline"] is None
    assert dicts["alone"]["vs_baseline"] is None  # no baseline for that model
    # The per-cell shape keeps every field it had.
    assert set(cell_to_dict(cells[0])) < set(dicts["fp32"])


def test_named_baseline_variants_count_as_baselines() -> None:
    named = measured("reference", recipes=("int8-static",), p50=4.0)
    other = measured("int8", recipes=("int8-static",), p50=2.0)
    rows = {r.value("variant"): r for r in build_rows([named, other], {"reference"})}
    assert rows["int8"].value("speedup") == "2.00x"
    assert verdict(named) == "ok" and validity_reasons(named) == []
