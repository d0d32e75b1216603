"""A runtime is an exporter module plus a session class in the runner: a toy runtime
registered from one module (tests/toy_runtime.py) is accepted by suite validation,
ready-file reading, artifact keys, `devices check` and the report, and the runner and the
registry agree on the built-in runtimes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness.devices.check import judge_probe
from harness.devices.config import HardwareFacts, LocalProfile
from harness.errors import ConfigError, UnsupportedError
from harness.export import get_exporter
from harness.export.registry import (
    RUNTIMES,
    register_runtime,
    runtime_spec,
    runtimes_for_file,
    suffix_list,
    unregister_runtime,
)
from harness.models.loaders import load_file_model
from harness.reports.table import build_rows, render_markdown
from harness.results.store import CellRecord
from harness.runner import bench_runner
from harness.suite.config import load_suite
from harness.suite.walk import expand
from tests import toy_runtime
from tests.suite_files import FAST_MEASURE, write_suite


@pytest.fixture
def toy() -> Iterator[None]:
    register_runtime(toy_runtime.SPEC)
    try:
        yield
    finally:
        unregister_runtime("toyrt")


def test_the_runner_has_a_session_for_every_built_in_runtime() -> None:
    assert set(bench_runner.SESSIONS) == set(RUNTIMES)
    for name, session in bench_runner.SESSIONS.items():
        assert session.name == name
        assert session.package == runtime_spec(name).packages[0]
        assert runtime_spec(name).import_name.split(".")[0] == session.module
        for method in ("import_runtime", "profile", "bind", "infer", "check_batch"):
            assert callable(getattr(session, method)), (name, method)
    assert bench_runner.PROBED_IMPORTS == (*RUNTIMES, "numpy")


def _toy_suite(tmp_path, runtimes: str, extra: str = "") -> object:
    return write_suite(
        tmp_path,
        f"""
        name = "toy"
        runtimes = {runtimes}
        devices = ["local"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"
        {extra}

        [variants]
        fp32 = []
        dyn = ["int8-dynamic"]
        half = ["fp16"]
        """
        + FAST_MEASURE,
    )


def test_a_suite_names_the_toy_runtime_once_it_is_registered(toy, tmp_path) -> None:
    suite = load_suite(_toy_suite(tmp_path, '["onnxruntime", "toyrt"]'))
    assert suite.runtimes == ["onnxruntime", "toyrt"]
    cells = {(c.variant.name, c.runtime) for c in expand(suite)}
    assert ("fp32", "toyrt") in cells and ("dyn", "toyrt") in cells
    unregister_runtime("toyrt")
    with pytest.raises(ConfigError) as err:
        load_suite(_toy_suite(tmp_path, '["toyrt"]'))
    assert err.value.key == "runtimes[0]" and "onnxruntime" in str(err.value)


def test_its_ready_files_are_read_by_its_own_reader(toy, tmp_path) -> None:
    model = tmp_path / "net.toy"
    model.write_text(
        json.dumps({"weights": {}, "inputs": [{"name": "x", "shape": [1, 7], "dtype": "int64"}]})
    )
    assert runtimes_for_file(model) == ["toyrt"] and ".toy" in suffix_list()
    loaded = load_file_model(model)
    assert loaded.runtime == "toyrt"
    assert [(s.name, s.shape, s.dtype) for s in loaded.inputs] == [("x", (1, 7), "int64")]
    suite = load_suite(
        write_suite(
            tmp_path,
            """
            name = "ready"
            runtimes = ["onnxruntime", "toyrt"]
            devices = ["local"]

            [[models]]
            name = "net"
            file = "net.toy"

            [variants]
            fp32 = []
            """,
        )
    )
    assert [(c.entry.name, c.runtime) for c in expand(suite)] == [("net", "toyrt")]


def test_its_exporter_and_quantize_modes_come_from_the_registry(toy) -> None:
    assert type(get_exporter("toyrt")) is toy_runtime.ToyExporter
    runtime_spec("toyrt").check_quant_mode("dynamic")
    with pytest.raises(UnsupportedError, match=r"toyrt does not run fp16 variants \(runtimes"):
        runtime_spec("toyrt").check_quant_mode("fp16")
    # Its own package is not in the shared version table, so its artifacts' keys hold it.
    assert runtime_spec("toyrt").own_versions() == {"toyrt-engine": "absent"}


def test_devices_check_reports_it_as_a_runtime_of_the_device(toy) -> None:
    here = LocalProfile(name="here", hardware=HardwareFacts())
    probe = {
        "python": "3.11.2",
        "cpu_count": 2,
        "packages": {"onnxruntime": "1.31.1", "numpy": "2.4.6", "toyrt-engine": None},
        "workdir": "/tmp",
        "has_timeout": True,
    }
    optional = {f.topic: f for f in judge_probe(here, probe, None)}["toyrt"]
    assert optional.level == "ok" and optional.advice == "pip install toyrt-engine"
    needed = {f.topic: f for f in judge_probe(here, probe, ["toyrt"])}["toyrt"]
    assert needed.level == "fail" and "the suite uses it" in needed.detail


def _measured(runtime: str, p50: float) -> CellRecord:
    result = {"lineage": [], "latency_ms": {"p50": p50, "p90": p50}, "agreement": 1.0}
    return CellRecord("tiny", "fp32", runtime, "local", "h", "ok", size_bytes=10, result=result)


def test_the_report_shows_its_cells_beside_the_others(toy) -> None:
    text = render_markdown(build_rows([_measured("onnxruntime", 2.0), _measured("toyrt", 1.0)]))
    rows = [line for line in text.splitlines() if "| fp32 |" in line]
    assert [r.split("|")[1].strip() for r in rows] == ["onnxruntime", "toyrt"]


@pytest.mark.slow
def test_a_walk_builds_its_artifacts_and_records_what_the_runner_refuses(toy, tmp_path) -> None:
    from harness.results.store import ResultsStore
    from harness.suite.walk import SuiteWalker

    walker = SuiteWalker(load_suite(_toy_suite(tmp_path, '["toyrt"]')), tmp_path / "results")
    try:
        summary = walker.walk()
    finally:
        walker.close()
    with ResultsStore(tmp_path / "results" / "harness.db") as store:
        cells = {c.variant: c for c in store.cells(summary.run_id)}
    # fp16 is not one of its modes: refused before anything is built.
    assert cells["half"].result.failure_kind == "unsupported"
    # The artifact was exported by its module; this runner has no session for it, and
    # says so, and the matrix went on.
    for name in ("fp32", "dyn"):
        assert cells[name].status == "failed"
        assert cells[name].result.failure_kind == "bad_job", cells[name].reason
        assert "key 'runtime'" in (cells[name].reason or "")
        assert cells[name].size_bytes is None or cells[name].size_bytes > 0
