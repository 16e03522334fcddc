"""A pass gives way to notification checks: while one runs, and until its event is in every
sink (delivery.py holds the gate for that), the pass's workers send no new request and its writer
starts no new transaction, so the event loop is free for the hint's few round trips (its answer,
its transaction, its delivery) instead of queueing each of them behind a catch-up's answers and
batches.

Bounded both ways: a worker waits at most `max_wait_s` (MAX_WAIT_S), and after waiting, the
pass runs for as long as it waited before it gives way again, so a stream of hints takes at
most about half of a pass's time and can never stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

# A worker waits for the hints in flight at most this long at a time. Under a steady stream of
# hints the gate is always held, and the pass alternates waiting and running in steps of this
# length: a hint arriving while it runs waits about that long for a free event loop.
MAX_WAIT_S = 0.1
# Notifications arrive in streams: for this long after one began, passes expect the next and
# keep each of their transactions short (batcher.py).
RECENT_S = 5.0
# For this long after a CCV submit began, a pass's transaction holds the writer about
# WRITE_PART_S at most (instead of batcher.PART_S): the next submit's caller would wait for the
# rest of one in progress, twice (its record and its close), and a submit is to add under 5 ms
# at p99 (issue 13). Short, since such transactions cost a pass its pace: only a stream of
# submits keeps passes to them.
WRITE_RECENT_S = 1.0
WRITE_PART_S = 0.002


class HintGate:
    """Counts notification checks in flight; passes give way to them."""

    def __init__(
        self, *, max_wait_s: float = MAX_WAIT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._run_until = 0.0  # after giving way, the pass runs at least until then
        self._last_entered: float | None = None  # when the latest hint's work began
        self._last_write: float | None = None  # when the latest API write (a submit) began
        self._writing = 0  # API writes in flight

    @property
    def in_flight(self) -> int:
        """Return how many notification checks are running."""
        return self._in_flight

    def recent(self, within_s: float = RECENT_S) -> bool:
        """Return whether a notification's check is running or began within `within_s`."""
        return self._in_flight > 0 or (
            self._last_entered is not None and self.clock() - self._last_entered < within_s
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Mark a notification check as running for the block."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Mark an API write (a CCV submit) as running: passes give way to it as to a
        notification check, and keep their transactions to WRITE_PART_S while it runs and
        for WRITE_RECENT_S after it began (a slow answer must not leave its close behind a long
        transaction)."""
        self._last_write = self.clock()
        self._writing += 1
        try:
            with self.running():
                yield
        finally:
            self._writing -= 1

    def part_s(self, usual: float) -> float:
        """Return how long a pass's transaction may hold the writer while hints are recent:
        `usual`, or less while an API write runs or is recent."""
        if self._writing or (
            self._last_write is not None and self.clock() - self._last_write < WRITE_RECENT_S
        ):
            return min(usual, WRITE_PART_S)
        return usual

    def enter(self) -> None:
        """Begin a hint's work that passes give way to (pair with `leave`)."""
        self._in_flight += 1
        self._idle.clear()
        self._last_entered = self.clock()

    def leave(self) -> None:
        """End what `enter` began."""
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    async def give_way(self) -> None:
        """Wait while notification checks run (a pass's worker, before its next request)."""
        if self._idle.is_set():
            return
        start = self.clock()
        if start < self._run_until:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.max_wait_s)
        now = self.clock()
        self._run_until = max(self._run_until, now + (now - start))
