"""Deadline: a remote step that passes its time or stops moving is ended and named."""

from __future__ import annotations

import threading
import time

import pytest

from harness.devices.ssh_deadline import Deadline
from harness.errors import RunnerError


def test_a_step_past_its_deadline_is_ended_and_called_stalled() -> None:
    blocked = threading.Event()  # what a paramiko call waits on; on_expire "closes" it
    started = time.monotonic()
    with pytest.raises(RunnerError) as info:
        with Deadline("pi", "sending m.onnx", 0.3, on_expire=blocked.set):
            blocked.wait(30)
            raise EOFError("the session was closed under the step")
    assert time.monotonic() - started < 10
    assert info.value.kind == "device_unavailable"
    assert str(info.value) == "stalled: pi: sending m.onnx did not finish within 0.3 s"


def test_a_transfer_that_stops_moving_is_stalled_before_its_deadline() -> None:
    closed = threading.Event()
    with pytest.raises(RunnerError) as info:
        with Deadline("pi", "sending m.onnx", 60, on_expire=closed.set, stall_s=0.3) as step:
            for _ in range(5):  # moving: each touch puts the stall limit off
                time.sleep(0.1)
                step.touch()
            assert not closed.is_set()
            closed.wait(30)  # then nothing moves
            raise OSError("socket closed")
    assert "made no progress for 0.3 s" in str(info.value)


def test_a_step_that_finishes_in_time_keeps_its_outcome() -> None:
    expired: list[bool] = []
    with Deadline("pi", "a command", 5, on_expire=lambda: expired.append(True)):
        value = 42
    assert value == 42 and expired == []
    # An error of the step's own (not caused by the deadline) passes through unchanged.
    with pytest.raises(ValueError, match="its own"):
        with Deadline("pi", "a command", 5, on_expire=lambda: expired.append(True)):
            raise ValueError("its own")
    assert expired == []


def test_an_interrupt_inside_a_late_step_is_not_replaced() -> None:
    closed = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        with Deadline("pi", "the runner", 0.2, on_expire=closed.set):
            closed.wait(30)
            raise KeyboardInterrupt
