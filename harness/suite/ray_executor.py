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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.devices.config import DeviceProfile
from harness.errors import HarnessError, RunnerError
from harness.suite.on_device import Executed, InProcessExecutor, utc_now

LAB_INSTALL = "pip install -c constraints.txt -e '.[lab]'"
# Where a node keeps what it was sent; the tests point it into their tmp dir.
LAB_CACHE_ENV = "HARNESS_LAB_CACHE"
# How often a waiting cell looks whether its board is still offered by a live node.
BOARD_RECHECK_S = 2.0
# How long an interrupted task gets to stop its board's runner before its worker is killed.
ABORT_GRACE_S = 10.0


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


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds when nothing listens at HOST:PORT: ``ray.init`` would retry for
    minutes. Other forms (``auto``, ``ray://...``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise HarnessError(
            f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start one with `ray start --head --port=PORT` on the head host"
        ) from None


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


def _interruptible(work: Callable[[], Executed], on_interrupt: Callable[[], None]) -> Executed:
    """``work()`` in a thread while this one waits in short slices: Ray's ``cancel``
    raises KeyboardInterrupt in the task's main thread only between bytecodes, never
    inside the blocking wait on a board's runner. On it the runner is stopped (as Ctrl-C
    stops an in-process run's) and the interrupt goes on up."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised in the task's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="lab-cell", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        on_interrupt()
        thread.join(ABORT_GRACE_S)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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
        executed = _interruptible(
            lambda: executor.run_trials(
                profile,
                {**job, "artifact": str(artifact)},
                artifact,
                eval_inputs,
                timeout_s,
                trials,
            ),
            on_interrupt=executor.abort,
        )
    except RunnerError as exc:
        return {
            "error": {
                "message": str(exc),
                "kind": exc.kind,
                "stderr": exc.stderr,
                "deploy": exc.deploy,
            },
            "executor": {**(exc.executor or {}), **node},
        }
    finally:
        executor.close()
    return {"run": executed.run, "executor": {**executed.executor, **node}}


@dataclass(frozen=True)
class LabBoard:
    """A board as the cluster offers it: who has it, and whether a cell holds it now."""

    name: str
    host: str
    busy: bool


def _cancel(ray: Any, ref: Any, force: bool) -> None:
    try:
        ray.cancel(ref, force=force)
    except Exception:  # finished meanwhile, or its node is gone: nothing left to stop
        pass


class RayExecutor:
    """Board cells as Ray tasks on the node offering the board; the rest in-process."""

    kind = "ray"

    def __init__(self, address: str | None = None) -> None:
        self._ray = import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address is not None:
            check_reachable(address)
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

    def boards(self) -> list[LabBoard]:
        """Each board a live node offers, with that node's host name, by name."""
        available = self._ray.available_resources()
        found = []
        for node in self._ray.nodes():
            if not node.get("Alive"):
                continue
            for resource, amount in node.get("Resources", {}).items():
                if resource.startswith("board:") and amount >= 1:
                    found.append(
                        LabBoard(
                            name=resource.removeprefix("board:"),
                            host=str(
                                node.get("NodeManagerHostname")
                                or node.get("NodeManagerAddress", "?")
                            ),
                            busy=available.get(resource, 0) < 1,
                        )
                    )
        return sorted(found, key=lambda b: (b.name, b.host))

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
        submitted = utc_now()
        try:
            out = self._outcome(ref, profile.name, submitted)
        except KeyboardInterrupt:
            # Ctrl-C in this thread: the task stays outstanding, so the walk's abort()
            # cancels it and the node stops the board's runner.
            raise
        except BaseException:
            self._forget(ref)
            raise
        self._forget(ref)
        if "error" in out:
            err = out["error"]
            raise RunnerError(
                err["message"],
                kind=err["kind"],
                stderr=err["stderr"],
                deploy=err["deploy"],
                executor=out["executor"],
            )
        return Executed(out["run"], out["executor"])

    def _forget(self, ref: Any) -> None:
        with self._lock:
            self._outstanding.discard(ref)

    def _outcome(self, ref: Any, board: str, submitted: str) -> dict[str, Any]:
        """What the task sent back; Ray's own failures as the RunnerError kind they mean."""
        try:
            return self._await(ref, board, submitted)
        except self._ray.exceptions.TaskCancelledError:
            raise RunnerError(
                f"device {board}: the run was interrupted",
                kind="interrupted",
                executor=self._lost(submitted),
            ) from None
        except self._ray.exceptions.RayError as exc:
            # The node (or its worker process) died mid-cell, or left the cluster: the
            # board may be fine, so the next run measures the cell again.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RunnerError(
                f"device {board}: the Ray worker running this cell was lost "
                f"({type(exc).__name__}: {first})",
                kind="worker_lost",
                executor=self._lost(submitted),
            ) from None

    def _await(self, ref: Any, board: str, submitted: str) -> dict[str, Any]:
        """The task's result. A task whose board's node is gone would wait forever for a
        resource no node has (Ray keeps an infeasible task pending), so every few seconds
        of waiting the board is looked for again; a task waiting behind another run's
        task on a board that is still offered just goes on waiting (that is the lease)."""
        while True:
            ready, _ = self._ray.wait([ref], timeout=BOARD_RECHECK_S)
            if ready:
                return self._ray.get(ref)
            if board not in self.offered():
                _cancel(self._ray, ref, force=True)
                raise RunnerError(
                    f"device {board}: the node offering this board left the Ray cluster "
                    f"at {self.address} before the cell ended",
                    kind="worker_lost",
                    executor=self._lost(submitted),
                )

    def _lost(self, submitted: str) -> dict[str, Any]:
        """The executor record of a task that never reported back."""
        return {"kind": self.kind, "address": self.address, "submitted_at": submitted}

    def abort(self) -> None:
        """Stop every task still running, then this host's own runners. A task is first
        interrupted (KeyboardInterrupt in it: it stops the board's runner as an
        in-process run does); one still going after a grace period has its worker
        process killed."""
        with self._lock:
            refs = list(self._outstanding)
        for ref in refs:
            _cancel(self._ray, ref, force=False)
        if refs:
            _, going = self._ray.wait(refs, num_returns=len(refs), timeout=ABORT_GRACE_S)
            for ref in going:
                _cancel(self._ray, ref, force=True)
        self.local.abort()

    def close(self) -> None:
        self.local.close()
        if self._ray.is_initialized():
            self._ray.shutdown()
