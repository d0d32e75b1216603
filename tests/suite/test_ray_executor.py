"""``harness run --executor ray``: a board's cells on the Ray node offering the board.

A real local cluster (a head, and a worker node offering ``board:board``), and the board
is the test sshd on 127.0.0.1 (tests/sshd.py), so the worker node reaches it by SSH as a
lab host reaches the boards wired to it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from harness.results.store import ResultsStore
from tests.cli_runner import cli
from tests.ray_cluster import RayCluster, ray_missing
from tests.ssh_boards import board, board_suite
from tests.sshd import TestSshd, sshd_missing
from tests.suite_files import FAST_MEASURE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(ray_missing() is not None, reason=str(ray_missing())),
    pytest.mark.skipif(sshd_missing() is not None, reason=str(sshd_missing())),
]

SUITE = """
name = "lab"
runtimes = ["onnxruntime"]
devices = ["local", "board"]

[[models]]
name = "tiny"
factory = "tinymodel:make"

[variants]
fp32 = []
int8 = ["int8-static"]
"""
LOCAL_ONLY = SUITE.replace('devices = ["local", "board"]', 'devices = ["local"]')


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[TestSshd]:
    with TestSshd(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RayCluster]:
    lab = RayCluster(tmp_path / "lab-cache")
    try:
        lab.start_head()
        yield lab
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        lab.stop()


def cells_of(results: Path) -> dict[tuple[str, str], object]:
    store = ResultsStore(results / "harness.db")
    try:
        run = store.latest_run("lab")
        assert run is not None
        return {(c.variant, c.device): c for c in store.cells(run.id)}
    finally:
        store.close()


def test_board_cells_run_on_the_worker_node_one_at_a_time(
    tmp_path: Path, sshd: TestSshd, cluster: RayCluster
) -> None:
    board(tmp_path, sshd)
    suite = board_suite(tmp_path, SUITE + FAST_MEASURE + "trials = 1\n")
    # No node offers the board yet: its cells fail at once, saying how to offer it.
    code, out = cli(
        "run", str(suite), "--results", str(tmp_path / "none"), "--executor", "ray",
        "--address", cluster.address,
    )  # fmt: skip
    missing = cells_of(tmp_path / "none")
    assert code != 0
    assert missing[("fp32", "board")].result.failure_kind == "device_unavailable"
    assert "harness lab join --board board --address" in missing[("fp32", "board")].reason
    assert missing[("fp32", "local")].status == "ok"

    cluster.add_worker(["board"])
    results = tmp_path / "ray"
    code, out = cli(
        "run", str(suite), "--results", str(results), "--executor", "ray",
        "--address", cluster.address,
    )  # fmt: skip
    assert code == 0, out
    on_ray = cells_of(results)

    import ray

    ray.init(address=cluster.address, log_to_driver=False)
    worker_nodes = {
        n["NodeID"] for n in ray.nodes() if n["Alive"] and "board:board" in n["Resources"]
    }
    ray.shutdown()
    assert len(worker_nodes) == 1
    intervals = []
    for variant in ("fp32", "int8"):
        cell = on_ray[(variant, "board")]
        assert cell.status == "ok", cell.reason
        executor = cell.result.executor
        assert executor["kind"] == "ray" and executor["node"] in worker_nodes
        intervals.append(
            (
                datetime.fromisoformat(executor["started_at"]),
                datetime.fromisoformat(executor["ended_at"]),
            )
        )
        assert on_ray[(variant, "local")].result.executor["kind"] == "inprocess"
    (a_start, a_end), (b_start, b_end) = sorted(intervals)
    assert a_start < a_end <= b_start < b_end
    # What the worker node was sent, by content, in its own cache.
    assert list((tmp_path / "lab-cache").iterdir())

    # The same suite in-process: the same cells, statuses and result fields.
    code, out = cli("run", str(suite), "--results", str(tmp_path / "inproc"))
    assert code == 0, out
    in_process = cells_of(tmp_path / "inproc")
    assert set(in_process) == set(on_ray)
    for key, cell in in_process.items():
        assert cell.status == on_ray[key].status
        assert set(cell.result) == set(on_ray[key].result), key
        assert cell.result.executor["kind"] == "inprocess"


def test_address_without_the_ray_executor_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board_suite(tmp_path, LOCAL_ONLY + FAST_MEASURE)
    code, _ = cli(
        "run", str(tmp_path / "suite.toml"), "--results", str(tmp_path / "r"),
        "--address", "127.0.0.1:1",
    )  # fmt: skip
    assert code != 0 and "goes with --executor ray" in capsys.readouterr().err


def test_without_ray_the_executor_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.errors import HarnessError
    from harness.suite.ray_executor import import_ray

    # None in sys.modules is how Python itself marks a module as not importable.
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(HarnessError, match=r"pip install -c constraints.txt -e '\.\[lab\]'"):
        import_ray()


LONG_MEASURE = FAST_MEASURE.replace("min_seconds = 0.02", "min_seconds = 8").replace(
    "max_seconds = 5", "max_seconds = 30"
)


def test_a_worker_node_lost_mid_cell_is_worker_lost_and_a_resumed_run_measures_it(
    tmp_path: Path, sshd: TestSshd, cluster: RayCluster
) -> None:
    import threading

    from harness.suite.config import load_suite
    from harness.suite.ray_executor import RayExecutor
    from harness.suite.walk import SuiteWalker
    from tests.ssh_boards import runner_group

    board(tmp_path, sshd)
    body = SUITE.replace('devices = ["local", "board"]', 'devices = ["board"]')
    suite = board_suite(tmp_path, body + LONG_MEASURE + "trials = 1\n")
    node = cluster.add_worker(["board"])
    results = tmp_path / "results"
    outcome: dict[str, object] = {}

    def walk() -> None:
        # The walker in its own thread (the store is the thread's): this one kills the node.
        walker = SuiteWalker(load_suite(suite), results, executor=RayExecutor(cluster.address))
        try:
            summary = walker.walk()
            outcome["cells"] = {c.variant: c for c in walker.store.cells(summary.run_id)}
        finally:
            walker.close()

    thread = threading.Thread(target=walk)
    thread.start()
    runner_group(tmp_path / "work", timeout_s=120)  # the board's runner is timing
    cluster.kill_group(node)  # the lab host dies mid-cell
    thread.join(timeout=120)
    assert not thread.is_alive()
    cells = outcome["cells"]
    assert cells["fp32"].result.failure_kind == "worker_lost", cells["fp32"].reason
    assert "Ray worker running this cell was lost" in cells["fp32"].reason
    # Queued behind it when the node died, the next cell's board is gone too: it fails
    # rather than waiting for a resource no node has.
    assert cells["int8"].result.failure_kind == "worker_lost", cells["int8"].reason
    assert cells["fp32"].result.executor["kind"] == "ray"

    cluster.add_worker(["board"])
    code, out = cli(
        "run", str(suite), "--results", str(results), "--executor", "ray",
        "--address", cluster.address,
    )  # fmt: skip
    assert code == 0, out
    assert "worker_lost" in out  # "measuring again what had failed: ... worker_lost 1"
    resumed = cells_of(results)
    assert resumed[("fp32", "board")].status == "ok"


def test_an_unreachable_address_fails_in_seconds_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import socket
    import time

    board_suite(tmp_path, LOCAL_ONLY + FAST_MEASURE)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    code, _ = cli(
        "run", str(tmp_path / "suite.toml"), "--results", str(tmp_path / "r"),
        "--executor", "ray", "--address", address,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0
    assert f"--address {address}: no Ray cluster answers there" in err
    assert time.monotonic() - started < 15


def test_ctrl_c_while_a_lab_board_measures_stops_its_runner_and_marks_the_run(
    tmp_path: Path, sshd: TestSshd, cluster: RayCluster
) -> None:
    import signal
    import time

    from tests.cli_runner import wait_until
    from tests.devices.test_ssh_faults import harness_process
    from tests.ssh_boards import group_members, runner_group

    board(tmp_path, sshd)
    body = SUITE.replace('devices = ["local", "board"]', 'devices = ["board"]')
    measure = LONG_MEASURE.replace("min_seconds = 8", "min_seconds = 120")
    suite = board_suite(tmp_path, body + measure + "trials = 1\n")
    cluster.add_worker(["board"])
    results = tmp_path / "results"
    proc = harness_process(
        "run", str(suite), "--results", str(results), "--executor", "ray",
        "--address", cluster.address,
    )  # fmt: skip
    try:
        pgid = runner_group(tmp_path / "work", 180)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert took < 30, took
    # The worker node stopped the board's runner: nothing goes on measuring.
    assert wait_until(lambda: not group_members(pgid), 10), group_members(pgid)
    with ResultsStore(results / "harness.db") as store:
        [run] = store.runs()
        assert run.status == "interrupted"
    assert "Traceback" not in out + err


def test_lab_join_offers_the_board_and_status_shows_it_free(
    tmp_path: Path, sshd: TestSshd, cluster: RayCluster
) -> None:
    import socket
    import subprocess

    from tests.cli_runner import wait_until

    board(tmp_path, sshd)
    # As a lab host's user runs it: its own process, its own session (the node's daemons
    # outlive the command, and the teardown stops them by that group).
    argv = [
        sys.executable, "-m", "harness.cli", "lab", "join", "--board", "board",
        "--address", cluster.address, "--dir", str(tmp_path / "devices"),
        "--", *cluster.NODE_OPTIONS,
    ]  # fmt: skip
    join = subprocess.Popen(
        argv,
        env=cluster.node_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    cluster.track(join.pid)
    out, _ = join.communicate(timeout=120)
    assert join.returncode == 0, out

    def status() -> str | None:
        code, text = cli("lab", "status", "--address", cluster.address)
        return text if code == 0 and "board" in text.splitlines()[-1] else None

    text = wait_until(status, 30)
    assert text, "the joined board never showed in lab status"
    header, row = text.strip().splitlines()
    assert header.split() == ["board", "state", "host"]
    assert row.split() == ["board", "free", socket.gethostname()]


def test_two_suites_sent_to_one_lab_take_turns_on_its_board(
    tmp_path: Path, sshd: TestSshd, cluster: RayCluster
) -> None:
    import itertools
    import subprocess

    from tests.devices.test_ssh_faults import harness_process

    board(tmp_path, sshd)
    body = SUITE.replace('devices = ["local", "board"]', 'devices = ["board"]')
    measure = LONG_MEASURE.replace("min_seconds = 8", "min_seconds = 1")
    suite = board_suite(tmp_path, body + measure + "trials = 1\n")
    cluster.add_worker(["board"])

    def submit(results: Path) -> subprocess.Popen[str]:
        return harness_process(
            "run", str(suite), "--results", str(results), "--executor", "ray",
            "--address", cluster.address,
        )  # fmt: skip

    procs = [submit(tmp_path / f"r{i}") for i in (1, 2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
    intervals = []
    for i in (1, 2):
        for cell in cells_of(tmp_path / f"r{i}").values():
            assert cell.status == "ok", cell.reason
            executor = cell.result.executor
            intervals.append((executor["started_at"], executor["ended_at"], i))
    assert len(intervals) == 4
    ordered = sorted(intervals)
    for (_, end, _), (start, _, _) in itertools.pairwise(ordered):
        assert end <= start, ordered  # never two cells on the board at once
    assert {i for *_, i in ordered} == {1, 2}
