"""The models users ship, through every shipped preset (recipes/*.toml) on both runtimes:
each cell is measured, or fails with the true reason, never as an internal error; and a
degenerate fp32 baseline cannot hide a bad variant behind 100% agreement.

Slow: about 50 real exports (ONNX and ExecuTorch, int8, QAT, pruning with fine-tuning)
of three tiny models, a few minutes on two cores.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import onnx
import pytest

from harness.artifacts import ArtifactStore
from harness.models.loaders import load_file_model
from harness.reports.fit import fit_report
from harness.reports.table import build_rows
from harness.results.store import CellRecord, ResultsStore
from harness.suite.config import Budget, load_suite
from harness.suite.walk import SuiteWalker
from tests.suite_files import REPO
from tests.user_models import gru_tagger, two_input

pytestmark = pytest.mark.slow

PRESETS = sorted(p.stem for p in (REPO / "recipes").glob("*.toml"))
RUNTIMES = ("onnxruntime", "executorch")
MODELS = {
    "gru-tagger": "tests.user_models.gru_tagger:make",
    "two-input": "tests.user_models.two_input:make",
    "kws-cnn": "tests.user_models.kws_cnn:make",
}
MEASURE = """
[measure]
warmup_count = 1
warmup_seconds = 0.0
min_count = 5
min_seconds = 0.0
max_seconds = 5
trials = 1
timeout_seconds = 180
"""

# The cells that must fail, and the reason they must give (anything else must be ok).
EXPECTED_FAILURES = {
    ("gru-tagger", "distill-half"): r"recipe_error: distill: 'gru-tagger' has no labelled "
    r"train set",
    ("two-input", "distill-half"): r"recipe_error: distill: 'two-input' has no labelled train set",
    ("kws-cnn", "distill-half"): r"recipe_error: distill: 'kws-cnn' is not a zoo model",
    ("gru-tagger", "low-rank-50"): r"recipe_error: low-rank: no layer of 'gru-tagger' was "
    r"factorized .*gru: nn\.GRU is not factorized",
    ("gru-tagger", "prune-channels-50"): r"recipe_error: prune-channels: nothing was pruned in "
    r"'gru-tagger'.*torch_pruning does not prune recurrent layers \(gru\)",
}
# Where the CPU has no fp16 kernels (x86) the exporters refuse fp16 up front.
FP16_REFUSED = r"unsupported: fp16 is not supported by (onnxruntime|executorch/XNNPACK)"
# bf16 is a run-time precision only OpenVINO offers: the other runtimes refuse the variant.
BF16_REFUSED = r"unsupported: (onnxruntime|executorch) does not run bf16 variants"


def _suite(directory: Path, models: dict[str, str], variants: list[str], runtimes) -> Path:
    body = f"""
    name = "user-models"
    recipe_dirs = ["{REPO / "recipes"}"]
    device_dirs = ["{REPO / "devices"}"]
    runtimes = {list(runtimes)!r}
    devices = ["local"]
    """
    for name, factory in models.items():
        body += f'\n[[models]]\nname = "{name}"\nfactory = "{factory}"\n'
    body += "\n[variants]\nfp32 = []\n" + "".join(f'{v} = ["{v}"]\n' for v in variants)
    path = directory / "suite.toml"
    path.write_text(textwrap.dedent(body) + MEASURE)
    return path


def _walk(suite: Path, results: Path) -> tuple[int, list[CellRecord]]:
    walker = SuiteWalker(load_suite(suite), results)
    try:
        summary = walker.walk()
    finally:
        walker.close()
    with ResultsStore(results / "harness.db") as store:
        return summary.run_id, store.cells(summary.run_id)


@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The results directory of the matrix run and its cells by (model, variant, runtime)."""
    directory = tmp_path_factory.mktemp("user-models")
    results = directory / "results"
    _, cells = _walk(_suite(directory, MODELS, PRESETS, RUNTIMES), results)
    return results, {(c.model, c.variant, c.runtime): c for c in cells}


@pytest.fixture
def matrix(matrix_run: tuple[Path, dict]) -> dict[tuple[str, str, str], CellRecord]:
    return matrix_run[1]


def test_every_preset_on_both_runtimes_is_measured_or_fails_with_its_true_reason(matrix) -> None:
    assert len(PRESETS) >= 8
    assert set(matrix) == {
        (m, v, r) for m in MODELS for v in ["fp32", *PRESETS] for r in RUNTIMES
    }, "every cell is recorded"
    wrong = []
    for (model, variant, runtime), cell in sorted(matrix.items()):
        expected = EXPECTED_FAILURES.get((model, variant))
        if variant == "fp16" and cell.status != "ok":
            expected = FP16_REFUSED
        if variant == "bf16":
            expected = BF16_REFUSED
        if expected is None:
            if cell.status != "ok":
                wrong.append(f"{model}/{variant}/{runtime} failed: {cell.reason}")
        elif cell.status == "ok" or not re.match(expected, cell.reason or ""):
            wrong.append(f"{model}/{variant}/{runtime}: {cell.status} {cell.reason!r}")
    assert not wrong, "\n".join(wrong)
    assert not [c for c in matrix.values() if (c.reason or "").startswith("internal_error")]


def test_measured_cells_record_their_inputs_and_fidelity(matrix) -> None:
    expected_inputs = {
        "gru-tagger": [("input", [1, gru_tagger.SEQ], "int64", [0, gru_tagger.VOCAB])],
        "two-input": [
            ("image", [1, 1, 8, 8], "float32", None),
            ("category", [1], "int64", [0, two_input.CATEGORIES]),
        ],
        "kws-cnn": [("input", [1, 1, 49, 10], "float32", None)],
    }
    for (model, variant, runtime), cell in matrix.items():
        if cell.status != "ok":
            continue
        r = cell.result
        inputs = [(i["name"], i["shape"], i["dtype"], i.get("range")) for i in r["inputs"]]
        assert inputs == expected_inputs[model], (model, variant, runtime)
        assert -200 <= r["snr_db"] <= 200 and -1 <= r["cosine"] <= 1
        assert 0 <= r["agreement"] <= 1
        assert (r["accuracy"] is not None) == (model == "kws-cnn")
        if variant == "fp32":
            # The same fp32 model in another runtime: float rounding apart, identical.
            assert r["snr_db"] > 80 and r["agreement"] == 1.0, (model, runtime)


def test_integer_inputs_stay_integer_and_are_not_quantized(matrix_run) -> None:
    results, matrix = matrix_run
    cell = matrix[("two-input", "int8-static", "onnxruntime")]
    artifact = ArtifactStore(results / "artifacts").get(cell.artifact_hash)
    specs = load_file_model(artifact.path).inputs
    assert [(s.name, s.dtype) for s in specs] == [("image", "float32"), ("category", "int64")]
    graph = onnx.load(str(artifact.path)).graph
    consumers = {n.op_type for n in graph.node if "category" in n.input}
    assert consumers == {"Gather"}  # the embedding lookup, no QuantizeLinear on ids
    assert any(n.op_type == "QuantizeLinear" and "image" in n.input for n in graph.node)
    pte = matrix[("gru-tagger", "int8-static", "executorch")]
    assert pte.status == "ok" and pte.result["inputs"][0]["dtype"] == "int64"


def test_dynamic_int8_convolutions_on_onnxruntime_carry_their_known_cause(matrix) -> None:
    cell = matrix[("kws-cnn", "int8-dynamic", "onnxruntime")]
    hints = cell.result["export_notes"]["speed_hints"]
    assert any(h.startswith("ConvInteger x") for h in hints), hints
    # The table names that cause whenever the variant is over 2x slower than fp32 (how
    # much slower depends on the machine, so only the wording is checked here).
    row = {
        r.value("variant"): r
        for r in build_rows(
            [matrix[("kws-cnn", v, "onnxruntime")] for v in ("fp32", "int8-dynamic")]
        )
    }["int8-dynamic"]
    speedup = float(row.value("speedup").rstrip("x"))
    if speedup < 0.5:
        assert "slower than baseline: ConvInteger x" in row.value("note")
    else:
        assert "slower than baseline" not in row.value("note")
    assert (
        "speed_hints"
        not in matrix[("kws-cnn", "int8-static", "onnxruntime")].result["export_notes"]
    )


def test_a_degenerate_baseline_is_flagged_and_snr_budgets_separate_the_variants(
    tmp_path: Path,
) -> None:
    suite = _suite(
        tmp_path,
        {"biased": "tests.user_models.biased_mlp:make"},
        ["low-rank-50", "int8-static"],
        ["onnxruntime"],
    )
    run_id, cells = _walk(suite, tmp_path / "results")
    by_variant = {c.variant: c for c in cells}
    assert all(c.status == "ok" for c in cells), [c.reason for c in cells]
    for cell in cells:
        reasons = cell.result["baseline_degenerate"]
        assert [r.split(":")[0] for r in reasons] == ["one class", "near-constant outputs"]
        assert cell.result["agreement"] == 1.0  # what agreement alone would report
    fp32, low_rank = by_variant["fp32"].result, by_variant["low-rank-50"].result
    assert fp32["snr_varying_db"] > 80
    assert low_rank["snr_varying_db"] < 20 < fp32["snr_varying_db"]
    notes = {r.value("variant"): r.value("note") for r in build_rows(cells)}
    assert all("degenerate fp32 (one class, near-constant outputs)" in n for n in notes.values())

    # Between the two on the raw SNR too: the bias inflates both, but the budget reads
    # the input-dependent SNR of this near-constant model, which the low-rank variant
    # misses by far.
    floor = round(low_rank["snr_db"] - 1)
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        report = fit_report(store, run_id, {"local": Budget(min_snr_db=floor)}).to_dict()
    verdicts = {v["variant"]: v["verdict"] for v in report["devices"][0]["variants"]}
    assert verdicts["fp32"] == "fits" and verdicts["low-rank-50"] == "breaks"
