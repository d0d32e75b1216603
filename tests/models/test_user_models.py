"""Models users ship: integer, several and dict inputs through loader, job and runner;
the fidelity figures (SNR, cosine, degenerate baseline) and where reports show them.

The every-preset matrix on both runtimes is in test_user_models_matrix.py (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import ConfigError, ModelError
from harness.models.adapters import KeywordInputs
from harness.models.inputs import InputSpec, load_batch, save_batch, to_tensors
from harness.models.loaders import load_factory_model, load_file_model
from harness.recipes.training import evaluate_accuracy, predict_logits
from harness.reports.fit import FIT_METRICS, BudgetCheck
from harness.reports.table import COLUMNS, build_rows, slowdown_note
from harness.results.scoring import SNR_CAP_DB, degenerate_reasons, score_outputs, snr_db
from harness.results.store import CellRecord
from harness.runner import RUNNER_PATH
from harness.runner.job import MeasureSettings, make_job
from tests.user_models import gru_tagger, kws_cnn, two_input

FAST = MeasureSettings(
    warmup_count=1, warmup_seconds=0.0, min_count=3, min_seconds=0.0, trials=1, idle_seconds=0.0
)


# --- input specs ------------------------------------------------------------------------


def test_input_spec_round_trips_and_draws_ids_in_range() -> None:
    spec = InputSpec("tokens", (1, 12), "int64", (3, 9), "factory")
    assert InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    ids = spec.generate(np.random.default_rng(0), 500)
    assert ids.dtype == np.int64 and ids.shape == (500, 12)
    assert ids.min() == 3 and ids.max() == 8
    assert InputSpec("x", (1, 4), "float32").generate(np.random.default_rng(0), 2).dtype == (
        np.float32
    )
    with pytest.raises(ValueError, match="id_range"):
        InputSpec("x", (1, 4), "float32", (0, 5))
    with pytest.raises(ValueError, match="dtype"):
        InputSpec("x", (1, 4), "complex64")


def test_npz_batches_round_trip_by_name(tmp_path: Path) -> None:
    specs = (InputSpec("image", (1, 2), "float32"), InputSpec("category", (1,), "int64", (0, 5)))
    batch = (np.ones((3, 2), np.float32), np.array([4, 0, 2]))
    path = save_batch(tmp_path, "eval_inputs", batch, specs)
    assert path.suffix == ".npz"
    with np.load(path) as archive:
        assert sorted(archive.files) == ["category", "image"]
    loaded = load_batch(path, specs)
    assert loaded[1].tolist() == [4, 0, 2] and loaded[1].dtype == np.int64
    single = save_batch(tmp_path, "one", batch[0], specs[:1])
    assert single.suffix == ".npy" and load_batch(single, specs[:1]).shape == (3, 2)


# --- the loader --------------------------------------------------------------------------


def test_token_id_factory_keeps_int64_and_draws_eval_ids_from_the_embedding() -> None:
    bundle = load_factory_model("tests.user_models.gru_tagger:make")
    [spec] = bundle.input_specs
    assert (spec.name, spec.shape, spec.dtype) == ("input", (1, gru_tagger.SEQ), "int64")
    assert spec.id_range == (0, gru_tagger.VOCAB) and "nn.Embedding" in spec.range_source
    for batch in (bundle.data.eval_inputs, bundle.data.calib_inputs):
        assert batch.dtype == np.int64 and 0 <= batch.min() and batch.max() < gru_tagger.VOCAB
    assert bundle.example_input.dtype == torch.int64
    # More than the example's ids: drawn from the whole table, not just what it showed.
    assert len(np.unique(bundle.data.eval_inputs)) > 30
    out = predict_logits(bundle.module, bundle.data.eval_inputs)
    assert tuple(out.shape) == (64, gru_tagger.SEQ, gru_tagger.TAGS)


def test_dict_factory_becomes_named_positional_inputs() -> None:
    module, _ = two_input.make()
    bundle = load_factory_model("tests.user_models.two_input:make")
    assert isinstance(bundle.module, KeywordInputs)
    specs = bundle.input_specs
    assert [(s.name, s.dtype) for s in specs] == [("image", "float32"), ("category", "int64")]
    assert specs[1].id_range == (0, two_input.CATEGORIES) and specs[0].id_range is None
    image, category = bundle.data.eval_inputs
    assert image.dtype == np.float32 and category.dtype == np.int64 and len(image) == 64
    with torch.no_grad():
        wrapped = bundle.module(*to_tensors((image[:5], category[:5])))
        direct = module(image=torch.from_numpy(image[:5]), category=torch.from_numpy(category[:5]))
    assert torch.equal(wrapped, direct)


def _write_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    (tmp_path / "user_inputs_mod.py").write_text(
        "import numpy as np\nimport torch\nfrom torch import nn\n\n" + body
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_inputs_mod", None)
    return "user_inputs_mod:make"


TUPLE_MODEL = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 4)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids, features):
        return self.fc(torch.cat([self.emb(ids).mean(1), features], 1))
"""


def test_tuple_factory_names_inputs_after_forward_and_honours_declared_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _write_factory(
        tmp_path,
        monkeypatch,
        TUPLE_MODEL
        + """
def make():
    torch.manual_seed(0)
    example = (torch.tensor([[1, 2, 3]], dtype=torch.int32), torch.randn(1, 4))
    return Net().eval(), example, {"id_ranges": {"ids": [10, 20]}}
""",
    )
    bundle = load_factory_model(spec)
    ids, features = bundle.input_specs
    assert (ids.name, ids.dtype, ids.id_range, ids.range_source) == (
        "ids",
        "int32",
        (10, 20),
        "factory",
    )
    assert features.name == "features" and features.dtype == "float32"
    drawn = bundle.data.eval_inputs[0]
    assert drawn.dtype == np.int32 and drawn.min() >= 10 and drawn.max() < 20


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ('{"id_ranges": {"features": [0, 5]}}', "integer inputs"),
        ('{"id_ranges": {"ids": [5, 5]}}', "id_ranges"),
        ('{"eval_inputs": (np.zeros((4, 3), np.float32), np.zeros((4, 4)))}', "integer ids"),
        ('{"eval_inputs": (np.zeros((4, 2), np.int64), np.zeros((4, 4)))}', "shaped (N, 3)"),
        ('{"eval_labels": [1, 2]}', "together with eval_inputs"),
        (
            '{"eval_inputs": (np.zeros((4, 3), np.int64), np.zeros((4, 4))), '
            '"eval_labels": np.zeros((4, 2), np.int64)}',
            "without its last (class) axis",
        ),
        ('{"evaluation": 1}', "data keys among"),
    ],
)
def test_bad_factory_data_is_a_config_error_naming_what_was_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returned: str, message: str
) -> None:
    spec = _write_factory(
        tmp_path,
        monkeypatch,
        TUPLE_MODEL
        + f"""
def make():
    return Net().eval(), (torch.tensor([[1, 2, 3]]), torch.randn(1, 4)), {returned}
""",
    )
    with pytest.raises(ConfigError, match=r"model\.factory") as info:
        load_factory_model(spec)
    assert message in str(info.value)


def test_a_wrong_declared_range_fails_naming_the_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _write_factory(
        tmp_path,
        monkeypatch,
        TUPLE_MODEL
        + """
def make():
    return Net().eval(), (torch.tensor([[1, 2, 3]]), torch.randn(1, 4)), {
        "id_ranges": {"ids": [0, 5000]}}
""",
    )
    with pytest.raises(ModelError, match=r"input 'ids': ids in \[0, 5000\) from factory"):
        load_factory_model(spec)


def test_factory_data_with_labels_is_used_as_given() -> None:
    bundle = load_factory_model("tests.user_models.kws_cnn:make")
    data = bundle.data
    assert bundle.input_specs[0].shape == (1, 1, kws_cnn.FRAMES, kws_cnn.COEFFS)
    assert data.eval_inputs.shape == (128, 1, 49, 10) and data.eval_labels.shape == (128,)
    assert data.train_inputs.shape == (768, 1, 49, 10) and data.calib_inputs.shape[0] == 128
    # Trained in the factory on its own labels: accuracy is a real metric (12 classes).
    assert evaluate_accuracy(bundle.module, data.eval_inputs, data.eval_labels) > 0.6


# --- ready files with several or integer inputs -------------------------------------------


def two_input_onnx(path: Path) -> Path:
    """tokens (int64, [1, 6]) -> embedding table [10, 4] -> mean over tokens, times scale
    (float32, [1, 4]): output [1, 4]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(40, dtype=np.float32).reshape(10, 4) / 10
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "tokens"], ["rows"]),
            helper.make_node("ReduceMean", ["rows", "axes"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "scale"], ["output"]),
        ],
        "two",
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, 6]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1]), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_file_with_two_inputs_gives_two_specs(tmp_path: Path) -> None:
    model = load_file_model(two_input_onnx(tmp_path / "two.onnx"))
    assert [(s.name, s.shape, s.dtype) for s in model.inputs] == [
        ("tokens", (1, 6), "int64"),
        ("scale", (1, 4), "float32"),
    ]
    with pytest.raises(ConfigError, match=r"model\.input_shape"):
        load_file_model(tmp_path / "two.onnx", input_shape=[1, 6])


# --- the runner ----------------------------------------------------------------------------


def _run(tmp_path: Path, job: dict) -> tuple[int, dict]:
    job_path, out = tmp_path / "job.json", tmp_path / "result.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run(
        [sys.executable, str(RUNNER_PATH), str(job_path), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, json.loads(out.read_text())


def test_runner_feeds_every_input_in_its_dtype_and_scores_npz_eval_inputs(tmp_path: Path) -> None:
    path = two_input_onnx(tmp_path / "two.onnx")
    specs = (InputSpec("tokens", (1, 6), "int64", (0, 10)), InputSpec("scale", (1, 4), "float32"))
    tokens = np.array([[0, 1, 2, 3, 4, 5], [9, 9, 9, 9, 9, 9], [0, 0, 0, 0, 0, 0]])
    scale = np.full((3, 4), 2.0, np.float32)
    eval_path = save_batch(tmp_path, "eval_inputs", (tokens, scale), specs)
    job = make_job("onnxruntime", str(path), specs, FAST, sysfs_root="/", vcgencmd=None)
    job.update(eval_inputs=str(eval_path), outputs_out=str(tmp_path / "out.npy"))
    code, result = _run(tmp_path, job)
    assert code == 0, result
    assert [(i["name"], i["dtype"], i["range"]) for i in result["inputs"]] == [
        ("tokens", "int64", [0, 10]),
        ("scale", "float32", None),
    ]
    table = np.arange(40, dtype=np.float32).reshape(10, 4) / 10
    expected = table[tokens].mean(axis=1) * 2.0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-6)


def test_runner_casts_integer_widths_and_refuses_a_float_for_ids(tmp_path: Path) -> None:
    path = two_input_onnx(tmp_path / "two.onnx")
    narrow = (InputSpec("tokens", (1, 6), "int32", (0, 10)), InputSpec("scale", (1, 4), "float32"))
    code, result = _run(tmp_path, make_job("onnxruntime", str(path), narrow, FAST, vcgencmd=None))
    assert code == 0, result
    assert result["inputs"][0]["dtype"] == "int64"  # what the graph declares

    floats = (InputSpec("tokens", (1, 6), "float32"), InputSpec("scale", (1, 4), "float32"))
    code, result = _run(tmp_path, make_job("onnxruntime", str(path), floats, FAST, vcgencmd=None))
    assert code == 2 and result["kind"] == "bad_job"
    assert "'tokens' is int64, the job gives float32" in result["error"]

    renamed = (InputSpec("ids", (1, 6), "int64"), InputSpec("scale", (1, 4), "float32"))
    code, result = _run(tmp_path, make_job("onnxruntime", str(path), renamed, FAST, vcgencmd=None))
    assert code == 2 and "['tokens', 'scale']" in result["error"]

    code, result = _run(
        tmp_path, make_job("onnxruntime", str(path), narrow[:1], FAST, vcgencmd=None)
    )
    assert code == 2 and "takes 2 inputs" in result["error"]

    batch2 = MeasureSettings(**{**FAST.__dict__, "batch": 2})
    code, result = _run(tmp_path, make_job("onnxruntime", str(path), narrow, batch2, vcgencmd=None))
    assert code == 2 and "input 'tokens' has a static batch dimension of 1" in result["error"]


# --- fidelity -----------------------------------------------------------------------------


def test_snr_is_the_power_ratio_in_db_and_capped_when_exact() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10))
    noise = rng.standard_normal((50, 10))
    noise *= np.sqrt((ref**2).sum() / (noise**2).sum()) / 100  # noise power 1e-4 of signal
    assert snr_db(ref + noise, ref) == pytest.approx(40.0, abs=1e-9)
    assert snr_db(ref, ref) == SNR_CAP_DB
    score = score_outputs(ref + noise, ref, None)
    assert score.snr_db == pytest.approx(40.0) and score.cosine > 0.9999


def test_one_class_baseline_is_flagged_and_snr_still_tells_variants_apart() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 8))
    ref[:, 0] += 10  # class 0 wins everywhere
    bad = ref + rng.standard_normal(ref.shape)  # keeps the bias, scrambles the rest
    good = ref + 0.01 * rng.standard_normal(ref.shape)
    [reason] = degenerate_reasons(ref)
    assert reason.startswith("one class: the fp32 model picks class 0 of 8 on all 64")
    good_score, bad_score = score_outputs(good, ref, None), score_outputs(bad, ref, None)
    assert good_score.agreement == bad_score.agreement == 1.0
    assert good_score.snr_db > 40 > 15 > bad_score.snr_db
    assert degenerate_reasons(rng.standard_normal((64, 8))) == []


def test_near_constant_outputs_are_flagged_and_the_varying_snr_sees_through_them() -> None:
    rng = np.random.default_rng(0)
    ref = np.tile(rng.standard_normal(8) * 10, (64, 1)) + 0.05 * rng.standard_normal((64, 8))
    variant = ref + 0.05 * rng.standard_normal(ref.shape)
    assert any(r.startswith("near-constant outputs") for r in degenerate_reasons(ref))
    score = score_outputs(variant, ref, None)
    assert score.snr_db > 40  # inflated by the constant part
    assert score.snr_varying_db < 3  # the input-dependent part is as large as the error


def test_tagger_outputs_are_scored_per_position_along_the_last_axis() -> None:
    ref = np.zeros((2, 3, 4))
    ref[..., 1] = 1.0  # class 1 at every position ...
    ref[0, 0, 3] = 5.0  # ... but class 3 at one
    out = ref.copy()
    out[0, 0, 3] = 0.0  # that one position now says class 1
    score = score_outputs(out, ref, np.array([[3, 1, 1], [1, 1, 1]]))
    assert score.agreement == pytest.approx(5 / 6) and score.accuracy == pytest.approx(5 / 6)


def _cell(variant: str, p50: float, **result: object) -> CellRecord:
    lineage = [] if variant == "fp32" else [{"recipe": variant, "params": {}}]
    return CellRecord(
        model="m",
        variant=variant,
        runtime="onnxruntime",
        device="local",
        config_hash="h",
        status="ok",
        size_bytes=1000,
        result={"lineage": lineage, "latency_ms": {"p50": p50, "p90": p50}, **result},
    )


def test_table_shows_snr_the_degenerate_flag_and_a_named_slowdown() -> None:
    degenerate = ["one class: the fp32 model picks class 0 of 8 on all 64 evaluated positions"]
    hint = "ConvInteger x5: onnxruntime's dynamic int8 convolution has no optimised CPU kernel"
    cells = [
        _cell("fp32", 1.0, snr_db=135.2, agreement=1.0, baseline_degenerate=degenerate),
        _cell(
            "int8-dynamic",
            10.0,
            snr_db=33.1,
            agreement=1.0,
            baseline_degenerate=degenerate,
            export_notes={"speed_hints": [hint]},
        ),
        _cell("low-rank", 2.5, snr_db=6.0, agreement=1.0),
    ]
    rows = {r.value("variant"): r for r in build_rows(cells)}
    assert "SNR dB" in COLUMNS
    assert (
        rows["fp32"].value("SNR dB") == "135.2" and rows["int8-dynamic"].value("SNR dB") == "33.1"
    )
    note = rows["int8-dynamic"].value("note")
    assert "10.0x slower than baseline: ConvInteger x5" in note
    assert "degenerate fp32 (one class)" in note
    assert "2.5x slower than baseline: cause not known to the exporter" in rows["low-rank"].value(
        "note"
    )
    assert "slower" not in rows["fp32"].value("note")
    assert slowdown_note(cells[2], 0.6) == ""  # under 2x: no note


def test_fit_min_snr_db_is_a_floor_on_the_cells_snr() -> None:
    check = BudgetCheck(FIT_METRICS["min_snr_db"], 30.0)
    low, high = _cell("low-rank", 1.0, snr_db=6.0), _cell("int8", 1.0, snr_db=33.1)
    assert check.evaluate(low).status.value == "broken"
    assert "SNR 6 dB < 30 dB minimum" in check.evaluate(low).text
    assert check.evaluate(high).status.value == "met"
    assert check.evaluate(_cell("old", 1.0)).status.value == "unknown"
    # A near-constant fp32 reference: its constant part would pass any variant on the raw
    # SNR, so the budget reads the input-dependent SNR.
    near = ["near-constant outputs: they vary across inputs by 2.1% of their size"]
    biased = _cell("prune", 1.0, snr_db=34.3, snr_varying_db=0.9, baseline_degenerate=near)
    assert check.evaluate(biased).status.value == "broken"
    one_class = ["one class: the fp32 model picks class 0 of 8 on all 64 evaluated positions"]
    kept = _cell("int8", 1.0, snr_db=34.3, snr_varying_db=0.9, baseline_degenerate=one_class)
    assert check.evaluate(kept).status.value == "met"


def test_html_report_lists_a_degenerate_baseline_and_shows_snr(tmp_path: Path) -> None:
    from harness.reports.html import write_html_report
    from harness.results.store import ResultsStore
    from tests.results_builders import new_run

    reason = "one class: the fp32 model picks class 0 of 8 on all 64 evaluated positions"
    with ResultsStore(tmp_path / "harness.db") as store:
        run = new_run(store)
        for cell in (
            _cell("fp32", 1.0, snr_db=135.2, agreement=1.0, baseline_degenerate=[reason]),
            _cell("low-rank", 1.0, snr_db=6.0, agreement=1.0, baseline_degenerate=[reason]),
        ):
            store.record_cell(run, cell, [1.0])
        page = write_html_report(store, run, tmp_path / "run.html", with_history=False)
    text = page.path.read_text()
    assert '<h2 id="degenerate">' in text and 'data-degenerate-model="m"' in text
    assert reason in text and "<th>SNR dB</th>" in text and ">6.0</td>" in text


def test_a_ready_two_input_file_runs_through_the_walk_with_its_inputs(tmp_path: Path) -> None:
    from harness.results.store import ResultsStore
    from harness.suite.config import load_suite
    from harness.suite.walk import SuiteWalker
    from tests.suite_files import FAST_MEASURE, write_suite

    two_input_onnx(tmp_path / "two.onnx")
    suite = write_suite(
        tmp_path,
        """
        name = "file"
        runtimes = ["onnxruntime"]
        devices = ["local"]

        [[models]]
        name = "two"
        file = "two.onnx"

        [variants]
        fp32 = []
        """
        + FAST_MEASURE.replace("[measure]", "[measure]\ntrials = 1"),
    )
    walker = SuiteWalker(load_suite(suite), tmp_path / "results")
    try:
        summary = walker.walk()
    finally:
        walker.close()
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        [cell] = store.cells(summary.run_id)
    assert cell.status == "ok", cell.reason
    # A file keeps no id range: its integer input is fed id 0, and the cell says so.
    assert cell.result["inputs"] == [
        {"name": "tokens", "shape": [1, 6], "dtype": "int64", "range": None},
        {"name": "scale", "shape": [1, 4], "dtype": "float32", "range": None},
    ]


def test_interleave_jobs_take_the_files_inputs_with_the_ranges_the_cell_was_measured_with(
    tmp_path: Path,
) -> None:
    from harness.artifacts import Artifact
    from harness.suite.interleave import _inputs

    artifact = Artifact("k", two_input_onnx(tmp_path / "two.onnx"), {})
    measured = [
        {"name": "tokens", "shape": [1, 6], "dtype": "int64", "range": [0, 10]},
        {"name": "scale", "shape": [1, 4], "dtype": "float32", "range": None},
    ]
    specs = _inputs(artifact, _cell("int8", 1.0, inputs=measured))
    assert [(s.name, s.dtype, s.id_range) for s in specs] == [
        ("tokens", "int64", (0, 10)),
        ("scale", "float32", None),
    ]
    job = make_job("onnxruntime", str(artifact.path), specs, FAST)
    assert job["inputs"][0]["range"] == [0, 10]
    # A cell from before input specs: the file's own specs, ids 0.
    assert _inputs(artifact, _cell("old", 1.0))[0].id_range is None
