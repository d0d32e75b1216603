"""The matrix walk: failures are recorded and never stop the rest; runs resume."""

from __future__ import annotations

import pytest

from harness.results.store import ResultsStore
from harness.suite.config import load_suite
from harness.suite.walk import SuiteWalker, WalkEvent
from tests.suite_files import FAST_MEASURE, write_suite

pytestmark = pytest.mark.slow


@pytest.fixture
def suite_with_failing_cell(tmp_path):
    # fp16 has no kernels on this CPU: the exporter says so and the cell fails.
    return write_suite(
        tmp_path,
        """
        name = "failing"
        runtimes = ["onnxruntime"]
        devices = ["local"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        half = ["fp16"]
        dyn = ["int8-dynamic"]
        """
        + FAST_MEASURE,
    )


def _walk(suite_path, results, **kwargs):
    walker = SuiteWalker(load_suite(suite_path), results, **kwargs)
    try:
        return walker.walk(), walker
    finally:
        walker.close()


def test_failing_cell_is_recorded_and_the_rest_goes_on(suite_with_failing_cell, tmp_path):
    results = tmp_path / "results"
    summary, _ = _walk(suite_with_failing_cell, results)
    assert (summary.total, summary.ran, summary.failed) == (3, 3, 1)
    with ResultsStore(results / "harness.db") as store:
        cells = {c.variant: c for c in store.cells(summary.run_id)}
        assert cells["half"].status == "failed"
        assert cells["half"].reason.startswith("unsupported:")
        for name in ("fp32", "dyn"):
            cell = cells[name]
            assert cell.status == "ok", cell.reason
            assert len(store.samples(cell.id)) == cell.result["samples"] >= 5
            assert cell.result["agreement"] is not None
        assert store.get_run(summary.run_id).status == "complete"


@pytest.mark.usefixtures("shared_builds")
def test_interrupted_run_resumes_without_redoing_cells(tiny_suite, tmp_path):
    results = tmp_path / "results"
    done: list[str] = []

    def interrupt_after_first(event: WalkEvent) -> None:
        if event.kind == "cell_done":
            done.append(event.cell.label)
            raise KeyboardInterrupt

    walker = SuiteWalker(load_suite(tiny_suite), results, on_event=interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        walker.walk()
    walker.close()
    with ResultsStore(results / "harness.db") as store:
        run = store.latest_run("tiny")
        assert run.status == "interrupted"
        assert len(store.cells(run.id)) == 1

    summary, _ = _walk(tiny_suite, results)
    assert summary.run_id == run.id
    assert (summary.skipped, summary.ran, summary.failed) == (1, 3, 0)
    with ResultsStore(results / "harness.db") as store:
        assert store.get_run(run.id).status == "complete"
        assert len(store.cells(run.id)) == 4


def test_second_run_skips_done_cells_and_reuses_artifacts(tiny_suite, tmp_path):
    results = tmp_path / "results"
    first, _ = _walk(tiny_suite, results)
    built = sorted(p.stat().st_mtime_ns for p in (results / "artifacts").rglob("model.*"))
    assert len(built) == 4

    again, _ = _walk(tiny_suite, results)
    assert (again.run_id, again.skipped, again.ran) == (first.run_id, 4, 0)

    # A new run re-measures every cell but builds nothing.
    logs: list[str] = []
    walker = SuiteWalker(
        load_suite(tiny_suite),
        results,
        new_run=True,
        on_event=lambda e: logs.append(e.message) if e.kind == "log" else None,
    )
    new = walker.walk()
    walker.close()
    assert new.run_id != first.run_id and new.ran == 4
    assert not [m for m in logs if "exported" in m]
    assert sorted(p.stat().st_mtime_ns for p in (results / "artifacts").rglob("model.*")) == built

    # --fresh rebuilds.
    fresh, _ = _walk(tiny_suite, results, fresh=True)
    assert fresh.ran == 4
    rebuilt = sorted(p.stat().st_mtime_ns for p in (results / "artifacts").rglob("model.*"))
    assert rebuilt != built


@pytest.mark.usefixtures("shared_builds")
def test_changed_cell_config_is_remeasured(tiny_suite, tmp_path):
    results = tmp_path / "results"
    first, _ = _walk(tiny_suite, results)
    text = tiny_suite.read_text().replace(
        'int8 = ["int8-static"]', 'int8 = [{ recipe = "int8-static", calibration_samples = 16 }]'
    )
    tiny_suite.write_text(text)
    again, _ = _walk(tiny_suite, results)
    assert again.run_id == first.run_id
    assert (again.skipped, again.ran) == (2, 2)


def test_ready_onnx_file_is_benchmarked_on_its_runtime_only(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU()).eval()
    torch.onnx.export(
        model,
        (torch.randn(1, 16),),
        str(tmp_path / "ready.onnx"),
        input_names=["input"],
        dynamo=False,
    )
    suite = write_suite(
        tmp_path,
        """
        name = "file"
        runtimes = ["onnxruntime", "executorch"]
        devices = ["local"]

        [[models]]
        name = "ready"
        file = "ready.onnx"

        [variants]
        fp32 = []
        int8 = ["int8-static"]
        """
        + FAST_MEASURE,
    )
    summary, _ = _walk(suite, tmp_path / "results")
    # Neither executorch nor a recipe applies to a ready .onnx file.
    assert (summary.total, summary.ran, summary.failed) == (1, 1, 0)
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        [cell] = store.cells(summary.run_id)
        assert cell.key == ("ready", "fp32", "onnxruntime", "local")
        assert cell.size_bytes == (tmp_path / "ready.onnx").stat().st_size


def test_runner_past_its_timeout_is_a_failed_cell(tmp_path):
    suite = write_suite(
        tmp_path,
        """
        name = "slow"
        runtimes = ["onnxruntime"]
        devices = ["local"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []

        [measure]
        min_count = 1000000
        min_seconds = 60
        max_seconds = 120
        timeout_seconds = 3
        """,
    )
    summary, _ = _walk(suite, tmp_path / "results")
    assert summary.failed == 1
    [cell] = summary.failures
    assert cell.reason.startswith("timeout:") and "3 s" in cell.reason


UNEXPORTABLE = """
import torch


class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: no exporter can capture it
            return self.fc(x)
        return -self.fc(x)


def make():
    return Branchy().eval(), torch.randn(1, 16)
"""


def test_export_failure_is_a_failed_cell_with_the_exporters_message(tmp_path):
    suite = write_suite(
        tmp_path,
        """
        name = "unexportable"
        runtimes = ["onnxruntime", "executorch"]
        devices = ["local"]

        [[models]]
        name = "branchy"
        factory = "branchy:make"

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        """
        + FAST_MEASURE,
    )
    (tmp_path / "branchy.py").write_text(UNEXPORTABLE)
    summary, _ = _walk(suite, tmp_path / "results")
    assert (summary.total, summary.failed) == (4, 2)
    for cell in summary.failures:
        assert cell.model == "branchy"
        assert cell.reason.startswith("export_error:")
        assert "data-dependent" in cell.result["error"].lower()
    assert not list((tmp_path / "results" / "artifacts").rglob("*.partial*"))


def test_chain_lineage_is_stored_with_each_steps_notes(tmp_path):
    suite = write_suite(
        tmp_path,
        """
        name = "chain"
        runtimes = ["onnxruntime"]
        devices = ["local"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        slim-int8 = [{ recipe = "prune-channels", ratio = 0.5, finetune_epochs = 1 }, "int8-static"]
        """
        + FAST_MEASURE,
    )
    summary, _ = _walk(suite, tmp_path / "results")
    assert summary.failed == 0
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        cell = {c.variant: c for c in store.cells(summary.run_id)}["slim-int8"]
    lineage = cell.result["lineage"]
    assert [s["recipe"] for s in lineage] == ["prune-channels", "int8-static"]
    assert lineage[0]["params"]["ratio"] == 0.5 and lineage[0]["source"].endswith("suite.toml")
    assert lineage[1]["source"].endswith("int8-static.toml")
    [prune_notes] = cell.result["transform_notes"]
    assert prune_notes["recipe"] == "prune-channels"
    assert cell.result["export_notes"]["quant_format"].startswith("QDQ")


def test_results_directories_share_builds_through_harness_build_dir(
    tiny_suite, tmp_path, monkeypatch
):
    builds = tmp_path / "builds"
    monkeypatch.setenv("HARNESS_BUILD_DIR", str(builds))
    logs: list[str] = []

    def walk(results):
        walker = SuiteWalker(
            load_suite(tiny_suite),
            results,
            on_event=lambda e: logs.append(e.message) if e.kind == "log" else None,
        )
        try:
            return walker.walk()
        finally:
            walker.close()

    first = walk(tmp_path / "one")
    exported = [m for m in logs if "exported" in m]
    assert len(exported) == 4 and not (tmp_path / "one" / "artifacts").exists()
    assert len(list((builds / "artifacts").rglob("model.*"))) == 4
    logs.clear()
    second = walk(tmp_path / "two")
    assert (first.ran, second.ran) == (4, 4)
    assert not [m for m in logs if "exported" in m]  # the second directory built nothing
