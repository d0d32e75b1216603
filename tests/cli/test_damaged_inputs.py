"""Damaged local inputs are the user's errors, named, through the real CLI: a results
store that is not one (random bytes, someone else's SQLite, a copy cut short), a model
file cut short, a factory module that does not import."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from harness.cli import main
from harness.results.store import SCHEMA_VERSION, ResultsStore
from tests.results_builders import add_cell, new_run
from tests.suite_files import FAST_MEASURE, write_suite

ONE_TRIAL = FAST_MEASURE + "trials = 1\n"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``harness ARGV``: its exit code, stdout and stderr."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue(), capsys.readouterr().err


def tiny_suite(directory: Path) -> Path:
    return write_suite(
        directory,
        """
        name = "tiny"
        runtimes = ["onnxruntime"]
        devices = ["local"]
        [[models]]
        name = "tiny"
        factory = "tinymodel:make"
        [variants]
        fp32 = []
        """
        + ONE_TRIAL,
    )


# --- the results store ------------------------------------------------------------


def store_commands(results: Path, suite: Path) -> list[list[str]]:
    """Every command that opens the store."""
    r = str(results)
    return [
        ["run", str(suite), "--results", r, "-q"],
        ["report", "--results", r],
        ["fit", "--results", r, "--budget", "p90_ms=5"],
        ["compare", "--results", r],
        ["history", "net", "--results", r],
    ]


def damaged_stores(directory: Path) -> dict[str, Path]:
    """harness.db files that are not results stores, each in its own results dir."""
    stores = {}
    rand = directory / "random" / "harness.db"
    rand.parent.mkdir()
    rand.write_bytes(os.urandom(64 * 1024))
    stores["SQLite cannot read it: file is not a database"] = rand

    other = directory / "other" / "harness.db"
    other.parent.mkdir()
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    con.commit()
    con.close()
    stores["a SQLite database with other tables: photos"] = other

    # A store of ours at the current version, minus a table (someone else's user_version).
    stranger = directory / "stranger" / "harness.db"
    stranger.parent.mkdir()
    con = sqlite3.connect(stranger)
    con.execute("CREATE TABLE runs (id INTEGER)")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    con.commit()
    con.close()
    stores[f"a SQLite database at schema version {SCHEMA_VERSION} without the table(s)"] = stranger

    # A real store, copied and cut short: SQLite would open it and fail mid-report.
    cut = directory / "cut" / "harness.db"
    cut.parent.mkdir()
    with ResultsStore(cut) as store:
        run = new_run(store)
        for i in range(40):
            add_cell(store, run, (f"net{i}", "fp32", "onnxruntime", "local"))
    con = sqlite3.connect(cut)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = cut.stat().st_size
    with open(cut, "r+b") as f:
        f.truncate(size // 2)
    stores[f"truncated: its header says {size} bytes, the file has {size // 2}"] = cut
    return stores


def test_a_harness_db_that_is_not_a_results_store_is_exit_2_from_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tiny_suite(tmp_path)
    for why, db in damaged_stores(tmp_path).items():
        before = db.read_bytes()
        for argv in store_commands(db.parent, suite):
            code, out, err = cli(capsys, *argv)
            assert code == 2, (argv, out, err)
            assert f"harness: error: {db}: not a harness results store ({why}" in err, (argv, err)
            assert "Traceback" not in err + out
        assert db.read_bytes() == before  # nothing written into someone else's file


def test_a_damaged_store_says_so_from_a_subprocess_too(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "harness.db").write_bytes(os.urandom(8192))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "not a harness results store" in proc.stderr and "Traceback" not in proc.stderr


MIGRATE_ONCE = """
import sys
from harness.results.store import ResultsStore
print("ready", flush=True)
with ResultsStore(sys.argv[1]) as store:
    print("version", store.schema_version, flush=True)
"""


def test_two_processes_opening_a_fresh_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    """The test holds the store's write lock while four processes open it, so all of
    them read version 0 before any can migrate; then it lets go. One migrates, the
    others see it done (without the lock they would each create the tables)."""
    db = tmp_path / "harness.db"
    holder = sqlite3.connect(db, isolation_level=None)
    assert holder.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    holder.execute("BEGIN IMMEDIATE")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_ONCE, str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        # Each is now reading the version (0) and then waiting for the write lock.
        time.sleep(1.0)
        assert all(proc.poll() is None for proc in procs)
        holder.execute("COMMIT")
        outcomes = [proc.communicate(timeout=60) for proc in procs]
    finally:
        holder.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == f"version {SCHEMA_VERSION}"
    with ResultsStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.runs() == []


# --- model files ------------------------------------------------------------------


def file_suite(directory: Path, file: str, runtime: str, extra: str = "") -> Path:
    return write_suite(
        directory,
        f"""
        name = "ready-file"
        runtimes = ["{runtime}"]
        devices = ["local"]
        [[models]]
        name = "ready"
        file = "{file}"
        {extra}
        [variants]
        fp32 = []
        """
        + ONE_TRIAL,
    )


def run_cells(capsys: pytest.CaptureFixture[str], suite: Path, results: Path) -> list:
    code, out, err = cli(capsys, "run", str(suite), "--results", str(results), "-q")
    assert code == 1, (out, err)  # the cell failed, the run finished
    with ResultsStore(results / "harness.db") as store:
        run = store.latest_run()
        assert run is not None and run.status == "complete"
        return store.cells(run.id)


def onnx_prefix_without_opsets(model_path: Path) -> bytes:
    """The file cut at the field boundary after its graph: it still parses."""
    import onnx

    data = model_path.read_bytes()
    model = onnx.load_from_string(data)
    del model.opset_import[:]
    prefix = model.SerializeToString()
    assert data.startswith(prefix) and len(prefix) < len(data)  # a real cut of the file
    return prefix


@pytest.mark.parametrize("cut", ["mid-field", "at-a-field-boundary"])
def test_a_truncated_onnx_file_fails_validate_and_the_cell_is_a_model_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: str
) -> None:
    from tests.onnx_models import matmul_model

    model = tmp_path / "model.onnx"
    matmul_model(model, size=32, layers=2)
    data = model.read_bytes()
    if cut == "mid-field":
        model.write_bytes(data[: len(data) * 2 // 3])
        why = "(DecodeError: Error parsing message"
    else:
        model.write_bytes(onnx_prefix_without_opsets(model))
        why = "(it names no opset: cut short, or not an ONNX model)"
    suite = file_suite(tmp_path, "model.onnx", "onnxruntime")

    code, out, err = cli(capsys, "validate", str(suite))
    assert code == 2, out
    assert (
        f"harness: error: {suite}: key 'models[0].file': {model}: not a valid ONNX file {why}"
        in err
    )

    [cell] = run_cells(capsys, suite, tmp_path / "results")
    assert cell.status == "failed" and cell.result["failure_kind"] == "model_error"
    assert cell.reason.startswith(f"model_error: {model}: not a valid ONNX file {why}")

    # Giving the input shape skips reading it for the shape, not for its validity.
    suite = file_suite(tmp_path, "model.onnx", "onnxruntime", "input_shape = [1, 32, 32]")
    code, _, err = cli(capsys, "validate", str(suite))
    assert code == 2 and "not a valid ONNX file" in err


def test_random_bytes_named_onnx_are_not_a_valid_onnx_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    suite = file_suite(tmp_path, "model.onnx", "onnxruntime")
    code, _, err = cli(capsys, "validate", str(suite))
    assert code == 2 and "not a valid ONNX file (it holds no graph" in err


@pytest.fixture(scope="module")
def pte_program(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import torch
    from executorch.exir import to_edge

    net = torch.nn.Sequential(torch.nn.Linear(64, 32)).eval()
    program = to_edge(torch.export.export(net, (torch.randn(1, 64),))).to_executorch()
    return bytes(program.buffer)


@pytest.mark.slow
def test_a_truncated_pte_fails_validate_and_the_cell_is_a_model_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pte_program: bytes
) -> None:
    model = tmp_path / "model.pte"
    model.write_bytes(pte_program)
    suite = file_suite(tmp_path, "model.pte", "executorch")
    code, out, err = cli(capsys, "validate", str(suite))
    assert code == 0, err  # the whole program is valid

    cut = len(pte_program) - 100
    model.write_bytes(pte_program[:cut])
    why = f"(cut short: its header says {len(pte_program)} bytes, the file has {cut})"
    code, out, err = cli(capsys, "validate", str(suite))
    assert code == 2, out
    assert (
        f"harness: error: {suite}: key 'models[0].file': {model}: not a valid ExecuTorch "
        f"program {why}"
    ) in err
    [cell] = run_cells(capsys, suite, tmp_path / "results")
    assert cell.result["failure_kind"] == "model_error"
    assert cell.reason == f"model_error: {model}: not a valid ExecuTorch program {why}"

    # Not a program at all: no file identifier (the input shape does not excuse it).
    model.write_bytes(b"PK\x03\x04 a zip file, say" * 8)
    suite = file_suite(tmp_path, "model.pte", "executorch", "input_shape = [1, 64]")
    code, _, err = cli(capsys, "validate", str(suite))
    assert code == 2 and "no ExecuTorch file identifier at byte 4, found b' a z'" in err


# --- factories --------------------------------------------------------------------

BROKEN_MODULES = {
    "syntax": ("def make(:\n    pass\n", "SyntaxError: "),
    "name": (
        "import torch\nnet = torchh.nn.Linear(4, 2)\n",
        "NameError: name 'torchh' is not defined",
    ),
    "dependency": (
        "import timm_not_installed\n",
        "ModuleNotFoundError: No module named 'timm_not_installed'",
    ),
    "any": ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
}


def factory_suite(directory: Path, factory: str) -> Path:
    return write_suite(
        directory,
        f"""
        name = "user-factory"
        runtimes = ["onnxruntime"]
        devices = ["local"]
        [[models]]
        name = "tiny"
        factory = "tinymodel:make"
        [[models]]
        name = "mine"
        factory = "{factory}"
        [variants]
        fp32 = []
        """
        + ONE_TRIAL,
    )


@pytest.mark.parametrize("kind", sorted(BROKEN_MODULES))
def test_a_factory_module_that_fails_to_import_is_a_model_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    source, error = BROKEN_MODULES[kind]
    module = tmp_path / f"broken_{kind}.py"
    module.write_text(source)
    suite = factory_suite(tmp_path, f"broken_{kind}:make")
    named = (
        f"{suite}: key 'models[1].factory': factory module 'broken_{kind}' ({module}) "
        f"failed to import: {error}"
    )

    code, out, err = cli(capsys, "validate", str(suite))
    assert code == 2, out
    assert f"harness: error: {named}" in err and "Traceback" not in err

    cells = {c.model: c for c in run_cells(capsys, suite, tmp_path / "results")}
    assert cells["tiny"].status == "ok"  # the matrix went on
    mine = cells["mine"]
    assert mine.result["failure_kind"] == "model_error"
    assert mine.reason.startswith(f"model_error: {named}")
    if kind == "syntax":
        assert f'File "{module}", line 1' in mine.result["traceback"]


def test_a_package_whose_init_fails_is_a_model_error_not_a_crash_of_the_walk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .missing_helper import thing\n")
    (package / "models.py").write_text("def make():\n    pass\n")
    suite = factory_suite(tmp_path, "mypkg.models:make")
    code, _, err = cli(capsys, "validate", str(suite))
    assert code == 2
    assert "key 'models[1].factory': factory module 'mypkg.models' failed to import: " in err
    assert "ModuleNotFoundError: No module named 'mypkg.missing_helper'" in err
    cells = {c.model: c for c in run_cells(capsys, suite, tmp_path / "results")}
    assert cells["mine"].result["failure_kind"] == "model_error", cells["mine"].reason
    assert str(suite) in cells["mine"].reason and "models[1].factory" in cells["mine"].reason


def test_validate_calls_the_factory_and_checks_what_it_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "userfactories.py").write_text(
        textwrap.dedent(
            """
            import torch

            def only_module():
                return torch.nn.Linear(4, 2)

            def raises():
                raise RuntimeError("weights not downloaded")

            not_callable = 3
            """
        )
    )
    cases = {
        "userfactories:only_module": "returned Linear",
        "userfactories:raises": "raised RuntimeError: weights not downloaded",
        "userfactories:not_callable": "expected a callable 'not_callable' in userfactories",
    }
    for spec, said in cases.items():
        suite = factory_suite(tmp_path, spec)
        code, out, err = cli(capsys, "validate", str(suite))
        assert code == 2, (spec, out)
        assert f"harness: error: {suite}: key 'models[1].factory': " in err, (spec, err)
        assert said in err, (spec, err)

    code, out, err = cli(capsys, "validate", str(factory_suite(tmp_path, "tinymodel:make")))
    assert code == 0, err
    assert "valid, 2 cells" in out
