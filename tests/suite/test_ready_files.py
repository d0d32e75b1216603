"""Ready model files (``file = "model.onnx"``) are measured from a copy kept in the
artifact store under their content key: what a run measured stays there to measure
again (``compare --interleave``), ONNX external data included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.artifacts import ArtifactStore, file_sha256
from harness.cli import main
from harness.errors import ModelError
from harness.pipeline import Pipeline
from harness.results.store import ResultsStore
from harness.suite.config import load_suite
from tests.suite_files import FAST_MEASURE, write_suite

SUITE = """
name = "ready"
runtimes = ["onnxruntime"]
devices = ["local"]

[[models]]
name = "ready"
file = "ready.onnx"

[variants]
fp32 = []
"""


def _external_data_model(path: Path, location: str = "ready.onnx.data") -> None:
    """A MatMul whose weight lives in a separate file beside the model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((16, 16), 0.01, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "external",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )


def _pipeline(suite_path: Path, results: Path) -> tuple[Pipeline, object]:
    suite = load_suite(suite_path)
    pipeline = Pipeline(suite, results / "cache", ArtifactStore(results / "artifacts"), log=str)
    return pipeline, suite.models[0]


def test_external_data_is_copied_with_the_model_and_is_part_of_its_key(tmp_path):
    _external_data_model(tmp_path / "ready.onnx")
    suite = write_suite(tmp_path, SUITE + FAST_MEASURE)
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "-q"]) == 0
    with ResultsStore(results / "harness.db") as store:
        [run] = store.runs()
        [cell] = store.cells(run.id)
    assert cell.status == "ok", cell.reason
    copy = ArtifactStore(results / "artifacts").get(cell.artifact_hash)
    assert copy is not None and copy.meta["external_data"] == ["ready.onnx.data"]
    stored_data = copy.path.parent / "ready.onnx.data"
    assert stored_data.read_bytes() == (tmp_path / "ready.onnx.data").read_bytes()

    # New weights in the data file alone (the .onnx untouched) make another artifact.
    pipeline, entry = _pipeline(suite, results)
    assert pipeline.model_key(entry) == cell.artifact_hash
    data_file = tmp_path / "ready.onnx.data"
    data_file.write_bytes(np.full((16, 16), 0.02, dtype=np.float32).tobytes())
    assert _pipeline(suite, results)[0].model_key(entry) != cell.artifact_hash


def test_external_data_outside_the_models_directory_is_refused(tmp_path):
    import onnx

    path = tmp_path / "ready.onnx"
    _external_data_model(path)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../elsewhere.bin"
    onnx.save_model(model, str(path))
    suite = write_suite(tmp_path, SUITE + FAST_MEASURE)
    pipeline, entry = _pipeline(suite, tmp_path / "results")
    with pytest.raises(ModelError, match=r"ready\.onnx: external data '\.\./elsewhere\.bin'"):
        pipeline.model_key(entry)


def test_a_copy_whose_content_is_not_its_key_is_never_committed(tmp_path):
    """store_copy hands the copy's sha256 to the check before committing: a file that
    changed between being hashed and being copied leaves nothing behind."""
    source = tmp_path / "model.onnx"
    source.write_bytes(b"not the bytes the key was made from")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    seen = []

    def check(sha256: str) -> None:
        seen.append(sha256)
        raise ModelError("changed while it was being read")

    with pytest.raises(ModelError, match="changed while"):
        artifacts.store_copy("k" * 64, source, {"model": "m"}, (), check)
    assert seen == [file_sha256(source)]
    assert artifacts.get("k" * 64) is None
    assert not any(p.is_file() for p in (tmp_path / "artifacts").rglob("*"))

    kept = artifacts.store_copy("k" * 64, source, {"model": "m"})
    assert kept.path.read_bytes() == source.read_bytes() and kept.meta["sha256"] == seen[0]
    source.write_bytes(b"edited later")
    assert artifacts.get("k" * 64).path.read_bytes() == b"not the bytes the key was made from"
