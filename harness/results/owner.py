"""Which harness process owns a run, and whether it is still alive.

A run records its owner (pid, host, the process's start time) when it is opened or
resumed. Another ``harness run`` of the same suite then refuses at once while that
process is alive, and takes over a run whose process died without saying so (kill -9,
a crash). A pid is only the owner's if the process also started when the owner did, so
a pid the system gave to something else since is not mistaken for it.
"""

from __future__ import annotations

import os
import socket

import psutil

from harness.results.store import RunOwner, RunRecord

# psutil's create_time is rounded to the clock tick; a reused pid starts much later.
_START_TOLERANCE_S = 1.0


def this_process() -> RunOwner:
    return RunOwner(
        pid=os.getpid(),
        host=socket.gethostname(),
        started=psutil.Process().create_time(),
    )


def owner_alive(run: RunRecord) -> bool:
    """Whether the run's owner may still be running it.

    True for an owner on another host (it cannot be checked from here), False for a run
    with no owner recorded (written before owners were) and for this very process.
    """
    if run.owner_pid is None or run.owner_host is None:
        return False
    if run.owner_host != socket.gethostname():
        return True
    if run.owner_pid == os.getpid():
        return False
    try:
        process = psutil.Process(run.owner_pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    if run.owner_started is None:
        return True
    return abs(started - run.owner_started) <= _START_TOLERANCE_S


def describe_owner(run: RunRecord) -> str:
    where = "this host" if run.owner_host == socket.gethostname() else f"host {run.owner_host}"
    return f"harness pid {run.owner_pid} on {where}"
