"""What goes first for a notification: its transaction, and its event in every sink.

A notification's event must not wait behind the thousands of events a catch-up queues: the
guarantee is per ordering key ("Per order, in order"; an order's, or for events naming no order
their account's or reference's: ordering.py), so it may pass other keys' events, never an
earlier pending one of its own key. Which those are, the store cannot ask SQLite cheaply (no
index on an event's order; a scan of the backlog per hint costs more than the hint). So it keeps
in memory, for the last WINDOW events this process committed, each one's predecessor of its
key: an urgent event goes first together with its earlier events of the window still pending,
and only while every pending event is in the window (else, after a restart or behind a backlog
larger than the window, events go in commit order, as before: later, never out of order).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from operator import itemgetter
from typing import Any

from .ordering import Key, row_key

# Bound per sink: a stalled sink must not make this grow; what falls off is delivered in
# commit order, as if it had never been urgent.
MAX_URGENT = 1000
# Events whose predecessor of their order is remembered (about 100 bytes each).
WINDOW = 50_000
# Urgent holders of the write lock in a row, at most, while a batch waits for it.
URGENT_IN_A_ROW = 8


class Urgent:
    """Seqs of committed urgent events not yet handed to each sink, and the window of recent
    events that tells which earlier events of their order must go with them."""

    def __init__(self, *, max_urgent: int = MAX_URGENT, window: int = WINDOW) -> None:
        self.max_urgent = max_urgent  # urgent events remembered per sink
        self.window = window  # events whose predecessor of their order is remembered
        self._sinks: dict[str, dict[int, Key]] = {}
        self._staged: list[tuple[int, Key, bool]] = []
        # seq -> the seq of the previous event of its order (None: none in the window). Ordered:
        # the oldest goes first in O(1); a dict's first key, after deletions at its front, is
        # found by skipping every deleted slot (30 us an event once the window was full).
        self._previous: OrderedDict[int, int | None] = OrderedDict()
        self._last: OrderedDict[Key, int] = OrderedDict()
        # Events up to this seq are outside the window (None: nothing committed yet).
        self.horizon: int | None = None
        self.urgent_commits = 0  # transactions that committed urgent events

    def stage(self, events: Iterable[tuple[int, Key]], *, urgent: bool) -> None:
        """Remember events written by the open transaction (kept only if it commits)."""
        self._staged.extend((seq, order, urgent) for seq, order in events)

    def forget_window(self) -> None:
        """The seqs of the open transaction's events are unsure: start the window after them."""
        self._staged.clear()
        self.horizon = None
        self._previous.clear()
        self._last.clear()

    def rolled_back(self) -> None:
        """Forget what the transaction staged: its seqs will be given to other events."""
        self._staged.clear()

    def committed(self, sinks: Sequence[str]) -> None:
        """Add the staged events to the window; make the urgent ones urgent for every sink."""
        if not self._staged:
            return
        if self.horizon is None:
            self.horizon = self._staged[0][0] - 1
        urgent: dict[int, Key] = {}
        for seq, order, is_urgent in self._staged:
            self._previous[seq] = self._last.get(order)
            self._last[order] = seq
            self._last.move_to_end(order)
            if is_urgent:
                urgent[seq] = order
        self._staged.clear()
        if urgent:
            self.urgent_commits += 1
        while len(self._previous) > self.window:
            self.horizon, _ = self._previous.popitem(last=False)
        while self._last and next(iter(self._last.values())) <= self.horizon:
            self._last.popitem(last=False)
        for sink in sinks:
            queue = self._sinks.setdefault(sink, {})
            queue.update(urgent)
            while len(queue) > self.max_urgent:
                del queue[next(iter(queue))]

    def pending(self, sink: str) -> dict[int, Key]:
        """Return the sink's urgent seqs and their orders."""
        return dict(self._sinks.get(sink, {}))

    def waiting(self, sink: str) -> bool:
        """Return whether the sink has urgent events not yet handed to it."""
        return bool(self._sinks.get(sink))

    def earlier(self, seq: int) -> list[int]:
        """Return the seqs of the earlier events of `seq`'s order in the window, newest first."""
        out: list[int] = []
        previous = self._previous.get(seq)
        while previous is not None and previous in self._previous:
            out.append(previous)
            previous = self._previous[previous]
        return out

    def served(self, sink: str, seqs: Iterable[int]) -> None:
        """Forget seqs the sink was handed (or no longer has pending)."""
        queue = self._sinks.get(sink)
        if queue:
            for seq in seqs:
                queue.pop(seq, None)


def urgent_first(head: Sequence[Sequence[Any]], rows: Sequence[Sequence[Any]]) -> list[Any]:
    """Return `head` and `rows` (deduplicated by seq) with every event of an ordering key in
    `head` before the others, each group in seq order: a key's events stay in order."""
    if not head:  # nothing urgent (a catch-up's every batch): commit order, no per-row work
        return sorted(rows, key=itemgetter(0))
    first = {row_key(r) for r in head}
    merged = {r[0]: r for r in (*head, *rows)}
    return sorted(merged.values(), key=lambda r: (row_key(r) not in first, r[0]))


class WriteLock:
    """The store's one writer's lock, FIFO, except that urgent holders go before every waiter
    that is not. Urgent are the short writes someone waits for: a notification's transaction,
    a sink's read and record of its deliveries. So neither a hint nor the delivery of its event
    queues behind a catch-up's batches, only behind the one that holds the lock."""

    def __init__(self, *, urgent_in_a_row: int = URGENT_IN_A_ROW) -> None:
        self.urgent_in_a_row = urgent_in_a_row  # at most, while a batch waits
        self._held = False
        self._waiters: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._urgent_in_a_row = 0

    def locked(self) -> bool:
        """Return whether someone holds the lock (as asyncio.Lock.locked)."""
        return self._held

    @property
    def waiting(self) -> int:
        """Return how many wait for the lock."""
        return sum(1 for q in self._waiters.values() for w in q if not w.done())

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """Hold the lock for a block."""
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def __aenter__(self) -> None:
        await self._acquire(False)

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._held and not any(self._waiters.values()):
            self._held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[urgent].append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed the lock as the cancellation came: pass it on
            elif waiter in self._waiters[urgent]:
                # Else a release already took it off the queue (and passed it over).
                self._waiters[urgent].remove(waiter)
            raise

    def _release(self) -> None:
        # The lock passes straight to the next waiter: nobody can slip in between. A steady
        # stream of hints must not stop a pass: after `urgent_in_a_row` of them, a batch goes.
        order = (True, False) if self._urgent_in_a_row < self.urgent_in_a_row else (False, True)
        for urgent in order:
            queue = self._waiters[urgent]
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    self._urgent_in_a_row = self._urgent_in_a_row + 1 if urgent else 0
                    waiter.set_result(None)
                    return
        self._held = False
        self._urgent_in_a_row = 0
