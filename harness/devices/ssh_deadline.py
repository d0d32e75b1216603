"""Deadlines for remote steps: a board that stops answering fails a cell in bounded time.

paramiko waits without a limit in several places: an exec request waits for the
server's reply, an SFTP write waits once the peer's window is full, a channel open
waits an hour. A board whose sshd is stopped (SIGSTOP, a kernel that stalls, a link
that drops packets without resetting) keeps the TCP connection up, so none of those
waits ends. Rather than thread a timeout through each call, every remote step runs
under a :class:`Deadline`: a timer thread that closes the SSH session under the step
when it passes its deadline or stops making progress. Every call blocked on that
session then fails at once (``EOFError``, a socket error), and leaving the ``with``
block turns that failure into ``device_unavailable: stalled ...``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from harness.errors import RunnerError

Clock = Callable[[], float]


def stalled_error(device: str, what: str, why: str) -> RunnerError:
    return RunnerError(f"stalled: {device}: {what} {why}", kind="device_unavailable")


class Deadline:
    """``with Deadline(...) as step:`` bounds the block to ``seconds`` in all and, with
    ``stall_s``, to ``stall_s`` between two calls of :meth:`touch` (a transfer's
    progress callback). When either passes, ``on_expire`` runs once on the timer thread
    (it should close the session the block is blocked on); the block's exception, if
    any, is then replaced by the stalled error. A block that finished anyway keeps its
    result: the expiry came too late to matter.
    """

    def __init__(
        self,
        device: str,
        what: str,
        seconds: float,
        on_expire: Callable[[], None],
        stall_s: float | None = None,
        clock: Clock = time.monotonic,
    ):
        self.device = device
        self.what = what
        self.seconds = seconds
        self.stall_s = stall_s
        self._on_expire = on_expire
        self._clock = clock
        self._done = threading.Event()
        self._start = 0.0
        self._last_progress = 0.0
        self._thread: threading.Thread | None = None
        self.expired: str | None = None  # why, once expired

    def touch(self) -> None:
        """Progress was made (bytes moved): the stall limit counts from now."""
        self._last_progress = self._clock()

    def _next_check(self, now: float) -> float:
        due = self._start + self.seconds
        if self.stall_s is not None:
            due = min(due, self._last_progress + self.stall_s)
        return max(0.0, due - now)

    def _watch(self) -> None:
        # Sleeps until the earliest moment the step could be late, then looks again: a
        # touch moves the stall limit on without waking this thread.
        while not self._done.wait(self._next_check(self._clock())):
            now = self._clock()
            if now - self._start >= self.seconds:
                self.expired = f"did not finish within {self.seconds:.3g} s"
            elif self.stall_s is not None and now - self._last_progress >= self.stall_s:
                self.expired = f"made no progress for {self.stall_s:.3g} s"
            else:
                continue
            try:
                self._on_expire()
            finally:
                self._done.set()

    def __enter__(self) -> Deadline:
        self._start = self._last_progress = self._clock()
        self._thread = threading.Thread(
            target=self._watch, name=f"deadline {self.device}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.expired is not None and exc is not None and isinstance(exc, Exception):
            raise stalled_error(self.device, self.what, self.expired) from None
