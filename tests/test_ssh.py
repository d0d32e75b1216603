"""The SSH device against a real OpenSSH sshd on 127.0.0.1 (see tests/sshd.py).

The "board" is this machine reached through sshd, so the tests can look at its files
directly: what landed in the cache, whether a partial upload kept a complete-looking
name, whether an injected command ran.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import psutil
import pytest

from harness.cli import main
from harness.devices.config import DeviceProfile, load_profile
from harness.devices.ssh import SshDevice
from harness.errors import RunnerError
from harness.runner.job import MeasureSettings, make_job
from harness.suite.config import load_suite
from harness.suite.walk import SuiteWalker
from tests.onnx_models import big_model, matmul_model
from tests.sshd import TestSshd, keygen, sshd_missing
from tests.suite_files import FAST_MEASURE, REPO, write_suite

pytestmark = pytest.mark.skipif(sshd_missing() is not None, reason=str(sshd_missing()))

QUICK = MeasureSettings(warmup_count=2, warmup_seconds=0.0, min_count=10, min_seconds=0.02)


@pytest.fixture
def sshd(tmp_path: Path):
    with TestSshd(tmp_path / "sshd") as server:
        yield server


def board(
    tmp_path: Path,
    sshd: TestSshd,
    *,
    trusted: bool = True,
    workdir: Path | None = None,
    key_file: Path | None = None,
    extra: str = "",
) -> DeviceProfile:
    """Write ``devices/board.toml`` for the test sshd and load it."""
    known_hosts = tmp_path / "known_hosts"
    if trusted:
        known_hosts.write_text(sshd.known_hosts_line())
    devices = tmp_path / "devices"
    devices.mkdir(exist_ok=True)
    (devices / "board.toml").write_text(
        sshd.profile_toml(known_hosts, workdir or tmp_path / "work", key_file, extra)
    )
    return load_profile(devices / "board.toml")


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- end to end through the walker ---------------------------------------------------


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
    assert "after 2 attempts" in str(info.value)
    assert time.monotonic() - started < 30
    final = tmp_path / "work" / "cache" / (sha256(artifact) + ".onnx")
    assert not final.exists()


def test_a_run_past_its_time_out_is_killed_and_recorded_as_timeout(
    tmp_path: Path, sshd: TestSshd
) -> None:
    artifact = tmp_path / "m.onnx"
    shape = matmul_model(artifact, size=64, layers=2)
    device = SshDevice(board(tmp_path, sshd))
    endless = MeasureSettings(min_count=10**9, min_seconds=600.0, max_seconds=900.0)
    started = time.monotonic()
    with pytest.raises(RunnerError) as info:
        device.run(make_job("onnxruntime", str(artifact), shape, endless), artifact, None, 3.0)
    elapsed = time.monotonic() - started
    device.close()
    assert info.value.kind == "timeout"
    assert elapsed < 30
    work = str(tmp_path / "work")
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if any(work in part for part in p.info["cmdline"] or [])
    ]
    assert leftovers == []
    assert list((tmp_path / "work" / "runs").iterdir()) == []


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
