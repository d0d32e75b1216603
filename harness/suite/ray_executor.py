"""A device lab bigger than one host: a board's cells run on the Ray node it hangs off.

Each host with boards joins the cluster offering one ``board:NAME`` resource per board
(``harness lab join``). A board's cell becomes a Ray task asking for that resource, so it
lands on that host, and no two of the board's cells run at once (the resource is 1). The
artifact's files and the eval inputs go through the object store as bytes, put once per
artifact, and are written on the node into a content-addressed cache
(``~/.cache/harness/lab/<key>/``); the task then runs the in-process executor there and
sends back the trials. Building, scoring and the results store stay on the submitting
host; cells on that host's own devices (local, emulated) run in-process as before.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

from harness.devices.config import DeviceProfile
from harness.errors import HarnessError, RunnerError
from harness.suite.on_device import Executed, InProcessExecutor

LAB_INSTALL = "pip install -c constraints.txt -e '.[lab]'"
# Where a node keeps what it was sent; the tests point it into their tmp dir.
LAB_CACHE_ENV = "HARNESS_LAB_CACHE"


def board_resource(name: str) -> str:
    """The Ray resource a node offers for the board profile ``name``."""
    return f"board:{name}"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise HarnessError(
            f"--executor ray needs Ray, which is not installed: {LAB_INSTALL}"
        ) from None
    return ray


def join_command(boards: list[str], address: str) -> str:
    """What ``harness lab join`` runs; the failure for an unoffered board repeats it."""
    resources = ",".join(f'"{board_resource(b)}":1' for b in boards)
    return f"ray start --address={address} --resources='{{{resources}}}'"


def lab_cache() -> Path:
    return Path(os.environ.get(LAB_CACHE_ENV) or Path.home() / ".cache" / "harness" / "lab")


def _files_of(artifact: Path) -> dict[str, bytes]:
    """The artifact's file and its siblings (ONNX external data) by relative name: what
    the artifact store keeps in the artifact's directory. A file outside the store (a
    test's own) travels alone."""
    directory = artifact.parent
    if (directory / "meta.json").is_file():
        # Not the hidden ones: an exporter's partial files (".model.onnx.partial-PID").
        paths = [
            p
            for p in sorted(directory.rglob("*"))
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        ]
    else:
        paths = [artifact]
    return {str(p.relative_to(directory)): p.read_bytes() for p in paths}


def _write_cached(directory: Path, files: dict[str, bytes]) -> None:
    """Each file under ``directory``, unless a whole one is there already (written to a
    temporary name and renamed, so a killed task never leaves a complete-looking file)."""
    for name, data in files.items():
        target = directory / name
        if target.is_file() and target.stat().st_size == len(data):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        partial.write_bytes(data)
        os.replace(partial, target)


def run_on_node(
    profile: DeviceProfile,
    job: dict[str, Any],
    key: str,
    artifact_name: str,
    files: dict[str, bytes],
    inputs: tuple[str, bytes] | None,
    timeout_s: float,
    trials: int,
) -> dict[str, Any]:
    """The body of the Ray task, on the node the board hangs off: the files into the
    node's cache, then the in-process executor. A RunnerError comes back as data, so the
    submitting host raises the same kind (Ray would wrap it in its own class)."""
    import ray

    cache = lab_cache()
    _write_cached(cache / key, files)
    eval_inputs = None
    if inputs is not None:
        name, data = inputs
        _write_cached(cache / "inputs", {name: data})
        eval_inputs = cache / "inputs" / name
    artifact = cache / key / artifact_name
    node = {
        "kind": "ray",
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
    }
    executor = InProcessExecutor()
    try:
        executed = executor.run_trials(
            profile, {**job, "artifact": str(artifact)}, artifact, eval_inputs, timeout_s, trials
        )
    except RunnerError as exc:
        return {
            "error": {
                "message": str(exc),
                "kind": exc.kind,
                "stderr": exc.stderr,
                "deploy": exc.deploy,
            },
            "executor": node,
        }
    finally:
        executor.close()
    return {"run": executed.run, "executor": {**executed.executor, **node}}


class RayExecutor:
    """Board cells as Ray tasks on the node offering the board; the rest in-process."""

    kind = "ray"

    def __init__(self, address: str | None = None) -> None:
        self._ray = import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            self._ray.init(address=address or "auto", log_to_driver=False, logging_level="warning")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise HarnessError(
                f"--executor ray: no Ray cluster at {address or 'auto'} ({exc}); start one "
                "with `ray start --head` and give its address with --address"
            ) from None
        self.address = address or "auto"
        self._task = self._ray.remote(run_on_node)
        self.local = InProcessExecutor()
        self._lock = threading.Lock()
        self._files: dict[str, Any] = {}  # artifact key -> object ref of its files
        self._inputs: dict[Path, tuple[str, Any]] = {}
        self._outstanding: set[Any] = set()

    def _artifact_ref(self, key: str, artifact: Path) -> Any:
        with self._lock:
            if key not in self._files:
                self._files[key] = self._ray.put(_files_of(artifact))
            return self._files[key]

    def _inputs_ref(self, eval_inputs: Path | None) -> Any:
        if eval_inputs is None:
            return None
        with self._lock:
            if eval_inputs not in self._inputs:
                data = eval_inputs.read_bytes()
                name = hashlib.sha256(data).hexdigest() + eval_inputs.suffix
                self._inputs[eval_inputs] = (name, self._ray.put((name, data)))
            return self._inputs[eval_inputs][1]

    def offered(self) -> set[str]:
        """The boards some node of the cluster offers now."""
        return {
            name.removeprefix("board:")
            for name, amount in self._ray.cluster_resources().items()
            if name.startswith("board:") and amount >= 1
        }

    def run_trials(
        self,
        profile: DeviceProfile,
        job: dict[str, Any],
        artifact: Path,
        eval_inputs: Path | None,
        timeout_s: float,
        trials: int,
    ) -> Executed:
        if not profile.is_remote_board:
            return self.local.run_trials(profile, job, artifact, eval_inputs, timeout_s, trials)
        if profile.name not in self.offered():
            raise RunnerError(
                f"device {profile.name}: no node of the Ray cluster at {self.address} offers "
                f"this board; on the host it hangs off run "
                f"`harness lab join --board {profile.name} --address ADDR`",
                kind="device_unavailable",
            )
        # The artifact store's directory name is the artifact's key.
        key = artifact.parent.name
        ref = self._task.options(
            resources={board_resource(profile.name): 1}, num_cpus=0, max_retries=0
        ).remote(
            profile,
            job,
            key,
            artifact.name,
            self._artifact_ref(key, artifact),
            self._inputs_ref(eval_inputs),
            timeout_s,
            trials,
        )
        with self._lock:
            self._outstanding.add(ref)
        try:
            out = self._ray.get(ref)
        except self._ray.exceptions.TaskCancelledError:
            raise RunnerError(
                f"device {profile.name}: the run was interrupted", kind="interrupted"
            ) from None
        except self._ray.exceptions.RayError as exc:
            # The node (or its worker process) died mid-cell, or left the cluster: the
            # board may be fine, so the next run measures the cell again.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RunnerError(
                f"device {profile.name}: the Ray worker running this cell was lost "
                f"({type(exc).__name__}: {first})",
                kind="worker_lost",
            ) from None
        finally:
            with self._lock:
                self._outstanding.discard(ref)
        if "error" in out:
            err = out["error"]
            raise RunnerError(
                err["message"], kind=err["kind"], stderr=err["stderr"], deploy=err["deploy"]
            )
        return Executed(out["run"], out["executor"])

    def abort(self) -> None:
        """Cancel every task still running (force: the worker process is killed, and with
        it the board's SSH session), then stop this host's own runners."""
        with self._lock:
            refs = list(self._outstanding)
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # an interrupt is the outcome; a finished task is fine
                pass
        self.local.abort()

    def close(self) -> None:
        self.local.close()
        if self._ray.is_initialized():
            self._ray.shutdown()
