"""The SSH device against a real OpenSSH sshd on 127.0.0.1 (see tests/sshd.py).

The "board" is this machine reached through sshd, so the tests can look at its files
directly: what landed in the cache, whether a partial upload kept a complete-looking
name, whether an injected command ran.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import harness.devices.ssh as ssh_module
import harness.suite.on_device as on_device_module
from harness.devices.config import load_profile
from harness.devices.ssh import SshDevice
from harness.errors import RunnerError
from harness.runner.job import MeasureSettings, make_job
from harness.suite.config import load_suite
from harness.suite.walk import SuiteWalker
from tests.cli_runner import cli, wait_until
from tests.onnx_models import big_model, matmul_model
from tests.site_dirs import MISSING_LIBRARY, broken_site
from tests.ssh_boards import (
    BROKEN_FACTORY,
    QUICK,
    board,
    board_suite,
    group_members,
    runner_group,
    walk_suite,
)
from tests.sshd import TestSshd, keygen, sshd_missing
from tests.suite_files import FAST_MEASURE, REPO, write_suite

pytestmark = pytest.mark.skipif(sshd_missing() is not None, reason=str(sshd_missing()))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ONE_TRIAL = FAST_MEASURE + "trials = 1\n"


def leftovers(work: Path) -> list[list[str]]:
    """Live processes whose command line or working directory is under ``work``."""
    out = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        where = [*(proc.info["cmdline"] or []), proc.info["cwd"] or ""]
        if any(str(work) in part for part in where):
            out.append(proc.info["cmdline"] or [])
    return out


# --- end to end through the walker ---------------------------------------------------


@pytest.mark.slow
def test_suite_runs_on_the_board_and_a_second_deploy_sends_nothing(
    tmp_path: Path, sshd: TestSshd
) -> None:
    board(tmp_path, sshd)
    suite_path = write_suite(
        tmp_path,
        """
        name = "ssh-e2e"
        runtimes = ["onnxruntime"]
        devices = ["local", "board"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        """
        + FAST_MEASURE,
    )
    repo_devices = f'device_dirs = ["{REPO / "devices"}"]'
    text = suite_path.read_text()
    assert repo_devices in text
    suite_path.write_text(
        text.replace(
            repo_devices, f'device_dirs = ["{tmp_path / "devices"}", "{REPO / "devices"}"]'
        )
    )
    results = tmp_path / "results"

    def walk(new_run: bool) -> dict:
        walker = SuiteWalker(load_suite(suite_path), results, new_run=new_run)
        try:
            summary = walker.walk()
            cells = {c.device: c for c in walker.store.cells(summary.run_id)}
        finally:
            walker.close()
        assert summary.failed == 0, [c.reason for c in summary.failures]
        return cells

    first = walk(new_run=False)
    assert set(first) == {"local", "board"}
    deploy = first["board"].result["deploy"]
    assert first["board"].status == "ok"
    assert first["board"].result["latency_ms"]["p50"] > 0
    assert deploy["host"].endswith(f"@127.0.0.1:{sshd.port}")
    assert {"bench_runner.py"} <= set(deploy["sent"])
    assert deploy["files_sent"] >= 2 and deploy["bytes_sent"] > 0
    assert first["local"].result.get("deploy") is None
    cache = tmp_path / "work" / "cache"
    cached = {p.name for p in cache.iterdir()}
    assert not any(".part-" in name for name in cached)
    # Content addressed: the runner is there under its own sha256.
    from harness.runner import RUNNER_PATH

    assert sha256(RUNNER_PATH) + ".py" in cached
    assert list((tmp_path / "work" / "runs").iterdir()) == []

    second = walk(new_run=True)
    again = second["board"].result["deploy"]
    assert again["files_sent"] == 0 and again["bytes_sent"] == 0
    assert again["files_cached"] == deploy["files_sent"] + deploy["files_cached"]
    assert {p.name for p in cache.iterdir()} == cached

    # The reports carry each run's deploy record as the store has it.
    code, out = cli("report", "--results", str(results), "--format", "json")
    reported = {c["device"]: c["deploy"] for c in json.loads(out)}
    assert code == 0 and reported == {"local": None, "board": again}
    html_page = tmp_path / "run-1.html"
    code, out = cli(
        "report", "1", "--results", str(results), "--format", "html", "-o", str(html_page)
    )
    page = html_page.read_text()
    assert code == 0 and 'data-deploy-cell="tiny/fp32/onnxruntime/board"' in page
    assert f"{deploy['bytes_sent']:,}" in page
    assert 'data-deploy-cell="tiny/fp32/onnxruntime/local' not in page


# --- host keys ----------------------------------------------------------------------


def test_unknown_host_key_is_refused_and_trust_records_it(tmp_path: Path, sshd: TestSshd) -> None:
    profile = board(tmp_path, sshd, trusted=False)
    with pytest.raises(RunnerError) as info:
        SshDevice(profile).session()
    assert info.value.kind == "host_key_unknown"
    message = str(info.value)
    assert sshd.fingerprint() in message
    assert "harness devices trust board" in message
    assert not (tmp_path / "known_hosts").exists()  # nothing was accepted on the way

    devices = str(tmp_path / "devices")
    code, _ = cli("devices", "trust", "board", "--dir", devices, "--fingerprint", "SHA256:nope")
    assert code == 1 and not (tmp_path / "known_hosts").exists()
    # Not a terminal and no confirmation: refused with how to confirm.
    assert cli("devices", "trust", "board", "--dir", devices)[0] == 2
    code, out = cli(
        "devices", "trust", "board", "--dir", devices, "--fingerprint", sshd.fingerprint()
    )
    assert code == 0, out
    assert sshd.fingerprint() in out
    assert (tmp_path / "known_hosts").read_text().strip() == sshd.known_hosts_line().strip()
    device = SshDevice(load_profile(tmp_path / "devices" / "board.toml"))
    assert device.execute("echo hello").stdout.strip() == "hello"
    device.close()
    code, out = cli("devices", "trust", "board", "--dir", devices, "--yes")
    assert code == 0 and "already trusted" in out


def test_changed_host_key_is_refused_loudly(tmp_path: Path, sshd: TestSshd) -> None:
    profile = board(tmp_path, sshd)
    other = Path(str(keygen(tmp_path / "other_host")) + ".pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(
        f"# my hosts\nother.example {' '.join(other)}\n" + sshd.known_hosts_line()
    )
    old_line = sshd.known_hosts_line()
    sshd.kill()
    sshd.new_host_key()
    sshd.start()
    with pytest.raises(RunnerError) as info:
        SshDevice(profile).session()
    assert info.value.kind == "host_key_changed"
    assert "HAS CHANGED" in str(info.value)
    assert sshd.fingerprint() in str(info.value)

    devices = str(tmp_path / "devices")
    before = (tmp_path / "known_hosts").read_text()
    code, out = cli("devices", "trust", "board", "--dir", devices, "--yes")
    assert code == 1 and "HAS CHANGED" in out
    assert (tmp_path / "known_hosts").read_text() == before
    code, out = cli("devices", "trust", "board", "--dir", devices, "--yes", "--replace")
    assert code == 0, out
    text = (tmp_path / "known_hosts").read_text()
    assert old_line not in text and sshd.known_hosts_line() in text
    assert text.startswith("# my hosts\nother.example")  # other lines are kept
    SshDevice(profile).session()


def test_wrong_user_key_fails_with_a_clear_message(tmp_path: Path, sshd: TestSshd) -> None:
    stranger = keygen(tmp_path / "stranger_ed25519")
    profile = board(tmp_path, sshd, key_file=stranger)
    with pytest.raises(RunnerError) as info:
        SshDevice(profile).session()
    assert info.value.kind == "auth_failed"
    assert "refused our key" in str(info.value) and str(stranger) in str(info.value)
    code, out = cli("devices", "check", "board", "--dir", str(tmp_path / "devices"))
    assert code == 1 and "login" in out and "refused our key" in out


# --- faults -------------------------------------------------------------------------


def _kill_during_upload(sshd: TestSshd, restart_after_s: float | None):
    """An ``on_transfer`` hook that kills sshd once a quarter of a big file is out."""
    fired = threading.Event()

    def hook(name: str, sent: int, total: int) -> None:
        if fired.is_set() or total < 2**20 or sent < total // 4:
            return
        fired.set()
        sshd.kill()
        if restart_after_s is not None:
            threading.Timer(restart_after_s, sshd.start).start()

    return hook, fired


@pytest.mark.slow
def test_sshd_killed_during_a_transfer_is_retried(tmp_path: Path, sshd: TestSshd) -> None:
    artifact = tmp_path / "big.onnx"
    shape = big_model(artifact, megabytes=24)
    device = SshDevice(board(tmp_path, sshd))
    hook, fired = _kill_during_upload(sshd, restart_after_s=0.3)
    device.on_transfer = hook
    try:
        run = device.run(make_job("onnxruntime", str(artifact), shape, QUICK), artifact, None, 60)
    finally:
        device.close()
    assert fired.is_set()
    assert run.result["status"] == "ok"
    assert "big.onnx" in run.result["deploy"]["sent"]
    cache = tmp_path / "work" / "cache"
    final = cache / (sha256(artifact) + ".onnx")
    assert sha256(final) == sha256(artifact)
    assert not [p for p in cache.iterdir() if ".part-" in p.name]  # the cut upload's part


def test_sshd_gone_for_good_is_a_clean_failure_with_no_complete_looking_file(
    tmp_path: Path, sshd: TestSshd
) -> None:
    artifact = tmp_path / "big.onnx"
    shape = big_model(artifact, megabytes=24)
    device = SshDevice(board(tmp_path, sshd, extra="retries = 1\n"))
    hook, fired = _kill_during_upload(sshd, restart_after_s=None)
    device.on_transfer = hook
    started = time.monotonic()
    with pytest.raises(RunnerError) as info:
        device.run(make_job("onnxruntime", str(artifact), shape, QUICK), artifact, None, 60)
    assert fired.is_set()
    assert info.value.kind == "device_unavailable"
    assert "(device board, " in str(info.value) and ": 2 attempts in " in str(info.value)
    assert time.monotonic() - started < 30
    final = tmp_path / "work" / "cache" / (sha256(artifact) + ".onnx")
    assert not final.exists()


def endless_run(tmp_path: Path, sshd: TestSshd) -> tuple[SshDevice, dict[str, Any], Path, Path]:
    """A board device, a job that would sample for 10 minutes, its artifact and the
    board's work directory: a time-out (the board's or the host's) has to end it."""
    artifact = tmp_path / "m.onnx"
    shape = matmul_model(artifact, size=64, layers=2)
    device = SshDevice(board(tmp_path, sshd))
    endless = MeasureSettings(min_count=10**9, min_seconds=600.0, max_seconds=900.0)
    job = make_job("onnxruntime", str(artifact), shape, endless)
    return device, job, artifact, tmp_path / "work"


@pytest.mark.slow
def test_a_run_past_its_time_out_is_killed_and_recorded_as_timeout(
    tmp_path: Path, sshd: TestSshd
) -> None:
    device, job, artifact, work = endless_run(tmp_path, sshd)
    started = time.monotonic()
    with pytest.raises(RunnerError) as info:
        device.run(job, artifact, None, 3.0)
    elapsed = time.monotonic() - started
    device.close()
    assert info.value.kind == "timeout"
    assert elapsed < 30
    assert leftovers(work) == []  # by command line and, stricter than before, by cwd
    assert list((work / "runs").iterdir()) == []


def test_a_workdir_with_spaces_and_shell_metacharacters_runs_nothing_else(
    tmp_path: Path, sshd: TestSshd
) -> None:
    marker = tmp_path / "PWNED"
    workdir = (
        tmp_path
        / f'work dir; touch {marker}1 && echo $(touch {marker}2) `touch {marker}3` it\'s "x"'
    )
    artifact = tmp_path / "a model; rm -rf ~.onnx"
    shape = matmul_model(artifact, size=32, layers=1)
    device = SshDevice(board(tmp_path, sshd, workdir=workdir))
    try:
        run = device.run(make_job("onnxruntime", str(artifact), shape, QUICK), artifact, None, 60)
    finally:
        device.close()
    assert run.result["status"] == "ok"
    assert (workdir / "cache").is_dir()
    assert not list(tmp_path.glob("PWNED*"))
    assert not list(Path.home().glob("PWNED*"))


# --- devices check, ssh_config ----------------------------------------------------


@pytest.mark.slow  # over 3 s end to end: kept out of tox -e fast
def test_devices_check_probes_the_board(tmp_path: Path, sshd: TestSshd) -> None:
    board(tmp_path, sshd)
    devices = str(tmp_path / "devices")
    code, out = cli("devices", "check", "board", "--dir", devices, "--format", "json")
    import json

    report = json.loads(out)
    assert code == 0 and report["can_run"], out
    topics = {f["topic"]: f for f in report["findings"]}
    assert topics["onnxruntime"]["level"] == "ok"
    assert report["probe"]["packages"]["onnxruntime"]
    assert report["probe"]["disk_free_mb"] > 0

    profile_file = tmp_path / "devices" / "board.toml"
    profile_file.write_text(profile_file.read_text().replace('arch = "', 'arch = "riscv-', 1))
    code, out = cli("devices", "check", "board", "--dir", devices)
    assert code == 1
    assert "hardware.arch" in out and "cannot run" in out


@pytest.mark.slow
def test_devices_check_imports_each_runtime_on_the_board(tmp_path: Path, sshd: TestSshd) -> None:
    """The board's Python finds an onnxruntime whose metadata says installed and whose
    import fails: the probe, pushed and run over SSH, imports it and says so."""
    site = broken_site(tmp_path / "site", "onnxruntime", MISSING_LIBRARY)
    python = tmp_path / "board-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    board(tmp_path, sshd)
    path = tmp_path / "devices" / "board.toml"
    path.write_text(
        path.read_text().replace(f'python = "{sys.executable}"', f'python = "{python}"')
    )
    suite = board_suite(
        tmp_path,
        """
        name = "board-ort"
        runtimes = ["onnxruntime"]
        devices = ["board"]
        [[models]]
        name = "tiny"
        factory = "tinymodel:make"
        [variants]
        fp32 = []
        """
        + ONE_TRIAL,
    )
    devices = str(tmp_path / "devices")
    code, out = cli(
        "devices", "check", "board", "--dir", devices, "--suite", str(suite), "--format", "json"
    )
    report = json.loads(out)
    assert code == 1 and not report["can_run"], report["findings"]
    topics = {f["topic"]: f for f in report["findings"]}
    assert topics["onnxruntime"]["level"] == "fail"
    assert topics["onnxruntime"]["detail"] == (
        "onnxruntime 9.9.9 is installed but does not import: ImportError: "
        "libonnxruntime.so.1.17.1: cannot open shared object file: No such file or directory; "
        "the suite uses it"
    )
    assert (
        f"{sys.executable} -m pip install --force-reinstall onnxruntime"
        in topics["onnxruntime"]["advice"]
    )
    assert report["probe"]["imports"]["numpy"]["ok"] is True

    # The same board with its own Python: every runtime imports, timed.
    board(tmp_path, sshd)
    code, out = cli(
        "devices", "check", "board", "--dir", devices, "--suite", str(suite), "--format", "json"
    )
    report = json.loads(out)
    assert code == 0, report["findings"]
    assert report["probe"]["imports"]["onnxruntime"]["ok"] is True
    assert report["probe"]["imports"]["onnxruntime"]["seconds"] > 0


def test_an_ssh_config_alias_supplies_host_port_and_user(tmp_path: Path, sshd: TestSshd) -> None:
    board(tmp_path, sshd)  # for known_hosts
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host myboard\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.user_key}\n"
    )
    profile_file = tmp_path / "devices" / "aliased.toml"
    profile_file.write_text(
        'kind = "ssh"\n[hardware]\narch = "x86_64"\n[connection]\nhost = "myboard"\n'
        f'agent = false\nkey_file = "{sshd.user_key}"\n'
        f'known_hosts = "{tmp_path / "known_hosts"}"\nssh_config = "{config}"\n'
    )
    device = SshDevice(load_profile(profile_file))
    assert (device.target.host, device.target.port) == ("127.0.0.1", sshd.port)
    assert device.target.user == sshd.user
    assert device.execute("echo $((6*7))").stdout.strip() == "42"
    device.close()


# --- the walk with a board: failed builds, one cell at a time per device ------------


@pytest.mark.slow
def test_a_failed_build_is_a_failed_cell_and_the_walk_with_a_board_goes_on(
    tmp_path: Path, sshd: TestSshd
) -> None:
    # With a board in the suite, every artifact is built before the lanes start; a
    # model whose factory raises must fail its own cells there, not stop the walk.
    board(tmp_path, sshd)
    (tmp_path / "brokenmodel.py").write_text(BROKEN_FACTORY)
    suite_path = board_suite(
        tmp_path,
        """
        name = "ssh-broken-build"
        runtimes = ["onnxruntime"]
        devices = ["local", "board"]

        [[models]]
        name = "broken"
        factory = "brokenmodel:make"

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        """
        + ONE_TRIAL,
    )
    summary, cells, status = walk_suite(suite_path, tmp_path / "results")
    assert status == "complete"
    assert (summary.total, summary.ran, summary.failed) == (4, 4, 2)
    for device in ("local", "board"):
        bad = cells[("broken", device)]
        assert bad.status == "failed"
        assert bad.result["failure_kind"] == "model_error"
        assert bad.reason.startswith(f"model_error: {suite_path}: key 'models[0].factory': ")
        assert "model factory brokenmodel:make raised" in bad.reason
        assert "factory boom" in bad.reason
        assert "factory boom" in bad.result["traceback"]  # the user's own frame, to debug
        good = cells[("tiny", device)]
        assert good.status == "ok", good.reason
    assert cells[("tiny", "board")].result["deploy"]["host"].endswith(f":{sshd.port}")


@pytest.mark.slow
def test_each_device_runs_one_cell_at_a_time_and_boards_run_beside_each_other(
    tmp_path: Path, sshd: TestSshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two boards (two sshds, so two lanes) and this machine. Every run on a device is
    # recorded with its start and end, from a wrapper that then calls the real run.
    with TestSshd(tmp_path / "sshd2") as sshd2:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(sshd.known_hosts_line() + sshd2.known_hosts_line())
        devices = tmp_path / "devices"
        devices.mkdir()
        for name, server in (("board", sshd), ("board2", sshd2)):
            (devices / f"{name}.toml").write_text(
                server.profile_toml(known_hosts, tmp_path / f"work-{name}")
            )
        suite_path = board_suite(
            tmp_path,
            """
            name = "ssh-lanes"
            runtimes = ["onnxruntime"]
            devices = ["local", "board", "board2"]

            [[models]]
            name = "tiny"
            factory = "tinymodel:make"

            [variants]
            fp32 = []
            dyn = ["int8-dynamic"]
            """
            + ONE_TRIAL,
        )
        runs: list[tuple[str, float, float]] = []
        cells: list[tuple[str, float, float]] = []
        lock = threading.Lock()
        # The first run on each board waits (at most 30 s) until the other board's first
        # run has begun too: it has, at once, if boards run side by side; if they ran
        # one after the other, the wait would time out and `met` would say so.
        started = {"board": threading.Event(), "board2": threading.Event()}
        met: dict[str, bool] = {}

        def recording(device: Any) -> Any:
            real = device.run

            def run(*args: Any, **kwargs: Any) -> Any:
                name = device.name
                if name in started and name not in met:
                    started[name].set()
                    other = "board2" if name == "board" else "board"
                    met[name] = started[other].wait(30)
                begun = time.perf_counter()
                try:
                    return real(*args, **kwargs)
                finally:
                    with lock:
                        runs.append((name, begun, time.perf_counter()))

            monkeypatch.setattr(device, "run", run)
            return device

        # The walker opens devices through the cache it shares with the interleave.
        real_open = on_device_module.open_device
        monkeypatch.setattr(on_device_module, "open_device", lambda p: recording(real_open(p)))

        def record_cells(walker: SuiteWalker) -> None:
            real_run_cell = walker.run_cell

            def run_cell(cell: Any, config_hash: str) -> Any:
                begun = time.perf_counter()
                try:
                    return real_run_cell(cell, config_hash)
                finally:
                    with lock:
                        cells.append((cell.device.name, begun, time.perf_counter()))

            monkeypatch.setattr(walker, "run_cell", run_cell)

        summary, _, status = walk_suite(suite_path, tmp_path / "results", record_cells)

    assert status == "complete" and summary.failed == 0, [c.reason for c in summary.failures]
    assert (summary.total, summary.ran) == (6, 6)
    assert sorted(name for name, _, _ in cells) == sorted(["local", "board", "board2"] * 2)
    assert {name for name, _, _ in runs} == {"local", "board", "board2"}
    for spans in (cells, runs):
        for device in ("local", "board", "board2"):
            mine = sorted((b, e) for name, b, e in spans if name == device)
            for (_, end), (begin, _) in itertools.pairwise(mine):
                assert end <= begin, f"two runs overlapped on {device}: {mine}"
    assert met == {"board": True, "board2": True}, "the boards did not run side by side"


# --- a runner that outlives its connection or its deadline --------------------------


@pytest.mark.slow
def test_a_runner_past_the_host_deadline_is_stopped_with_its_process_group(
    tmp_path: Path, sshd: TestSshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    device, job, artifact, work = endless_run(tmp_path, sshd)
    # The board's `timeout` would end this run after 60 s; the host's deadline (60 s
    # plus a grace made -57 s here) ends it after 3 s, through the stop of the orphan.
    monkeypatch.setattr(ssh_module, "_DEADLINE_GRACE_S", -57.0)
    groups: list[int] = []
    watcher = threading.Thread(target=lambda: groups.append(runner_group(work)), daemon=True)
    watcher.start()
    started = time.monotonic()
    with pytest.raises(RunnerError) as info:
        device.run(job, artifact, None, 60)
    elapsed = time.monotonic() - started
    watcher.join(5)
    device.close()
    assert info.value.kind == "timeout"
    assert "by the host" in str(info.value)
    assert elapsed < 20
    assert groups, "the runner was never seen running"
    assert wait_until(lambda: not group_members(groups[0]), 5), group_members(groups[0])
    assert wait_until(lambda: not leftovers(work), 5), leftovers(work)
    assert list((work / "runs").iterdir()) == []


@pytest.mark.slow
def test_sshd_killed_during_a_run_stops_the_orphan_before_the_retry_runs(
    tmp_path: Path, sshd: TestSshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    device, job, artifact, work = endless_run(tmp_path, sshd)
    # Each attempt's runner would run for 30 s on the board; the host gives each 5 s.
    monkeypatch.setattr(ssh_module, "_DEADLINE_GRACE_S", -25.0)
    first: list[int] = []

    def cut_the_first_run() -> None:
        first.append(runner_group(work))
        sshd.kill()  # sshd and its sessions; the runner lives on, as on a real board
        time.sleep(0.3)
        sshd.start()

    watcher = threading.Thread(target=cut_the_first_run, daemon=True)
    watcher.start()
    # When the retry reaches its own runner, the first one must already be gone.
    alive_at_retry: list[list[list[str]]] = []
    real_execute_runner = device._execute_runner

    def execute_runner(*args: Any, **kwargs: Any) -> Any:
        if first:  # a retry: give a killed runner a moment to be gone, then look
            wait_until(lambda: not group_members(first[0]), 3)
            alive_at_retry.append(group_members(first[0]))
        return real_execute_runner(*args, **kwargs)

    monkeypatch.setattr(device, "_execute_runner", execute_runner)
    with pytest.raises(RunnerError) as info:
        device.run(job, artifact, None, 30)
    watcher.join(5)
    device.close()
    assert first, "sshd was never killed during the run"
    assert info.value.kind == "timeout"  # the retry ran, to the host's deadline
    assert alive_at_retry and alive_at_retry[0] == [], alive_at_retry
    assert wait_until(lambda: not leftovers(work), 5), leftovers(work)
    assert list((work / "runs").iterdir()) == []


# --- no way to log in, something that is not sshd -------------------------------------


def agent_only(tmp_path: Path, sshd: TestSshd) -> Path:
    """A board profile as the shipped ones are: ``agent = true`` and no key file, with
    a back-off long enough that a retry would show in the time taken."""
    board(tmp_path, sshd)
    path = tmp_path / "devices" / "board.toml"
    text = re.sub(r"^key_file = .*$", "agent = true", path.read_text(), flags=re.M)
    text = text.replace("retry_backoff_s = 0.2", "retry_backoff_s = 2")
    path.write_text(text)
    profile = load_profile(path)
    assert profile.connection is not None and profile.connection.key_file is None
    return path


def test_no_agent_and_no_key_file_is_auth_failed_with_advice_and_not_retried(
    tmp_path: Path, sshd: TestSshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    agent_only(tmp_path, sshd)
    devices = str(tmp_path / "devices")

    code, out = cli("devices", "check", "board", "--dir", devices, "--format", "json")
    assert code == 1
    report = json.loads(out)
    login = [f for f in report["findings"] if f["topic"] == "login"]
    assert login and login[0]["level"] == "fail", report["findings"]
    assert "SSH_AUTH_SOCK is not set" in login[0]["detail"]
    assert "connection.key_file" in login[0]["detail"] and "ssh-add" in login[0]["detail"]

    connects: list[float] = []
    real_connect = ssh_module.connect

    def counting_connect(target: Any) -> Any:
        connects.append(time.monotonic())
        return real_connect(target)

    monkeypatch.setattr(ssh_module, "connect", counting_connect)
    suite_path = board_suite(
        tmp_path,
        """
        name = "ssh-no-agent"
        runtimes = ["onnxruntime"]
        devices = ["board"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        """
        + ONE_TRIAL,
    )
    summary, cells, status = walk_suite(suite_path, tmp_path / "results")
    assert status == "complete" and summary.failed == 1
    cell = cells[("tiny", "board")]
    assert cell.result["failure_kind"] == "auth_failed", cell.reason
    assert "ssh-add" in cell.reason or "ssh-add" in cell.result["error"]
    # Three retries with a 2 s back-off would take 14 s and connect four times.
    assert len(connects) == 1, connects
    assert cell.result["wall_seconds"] < 30


def test_trust_against_a_port_that_is_not_sshd_is_a_clear_error(
    tmp_path: Path, sshd: TestSshd, capsys: pytest.CaptureFixture[str]
) -> None:
    board(tmp_path, sshd)
    # Something that answers, but not with SSH (a web server on the board's port).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        for _ in range(2):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    path = tmp_path / "devices" / "board.toml"
    port = server.getsockname()[1]
    path.write_text(path.read_text().replace(f"port = {sshd.port}", f"port = {port}"))
    known = (tmp_path / "known_hosts").read_text()
    try:
        code, out = cli("devices", "trust", "board", "--dir", str(tmp_path / "devices"), "--yes")
        err = capsys.readouterr().err
        assert code == 2, out
        assert "did not complete an SSH key exchange" in err and "connection.port" in err
        assert "Traceback" not in err + out
        assert (tmp_path / "known_hosts").read_text() == known

        code, out = cli("devices", "check", "board", "--dir", str(tmp_path / "devices"))
        assert code == 1 and "reachable" in out and "cannot reach" in out
    finally:
        server.close()
