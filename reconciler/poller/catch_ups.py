"""The catch-ups of one account running in this process (the daemon's start-up pass), and the
orders its due ticks leave to them meanwhile.

A catch-up asks every open order of its account once, a page of thousands at a time, and writes
the answers a batch at a time. A due tick beside it read the orders it had not written yet as due
(a tracked order's first check, a restart's overdue ones) and asked them too: 14,588 requests
for 10,000 orders just tracked, and the last tick's tail went on after every order had its
answer (bench/idle.py counted 603 requests in its idle minute). So while a catch-up runs, a due
tick asks only orders it will not: those asked since it began (its answer, due again), those
whose check failed since (their retry: a failed check keeps the last answer's `asked_at`, but its
backoff was planned after the catch-up began) and those tracked since (a submit's, whose first
check goes out within seconds; the catch-up may have read their page before them). Notified
orders go first as always (ccv_notified.py). The others wait for the catch-up, which asks them;
those a tick would ask behind them in its read (the earliest due first, `limit` of them) wait
with them, at most until it ends: more of the catch-up's overdue orders than a tick reads, and a
tick asks none. One still failing from before it whose retry falls due meanwhile may be asked
twice (no failure's time is kept to tell it from one failed since).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..model import OrderState

if TYPE_CHECKING:
    from .ccv import CCVCoordinator

UNREAD_PAGE = 10000  # open order ids counted at a time


@dataclass(frozen=True)
class _Began:
    """When a catch-up began: on the reconciler's clock (`tracked_at`) and on the wall clock,
    which dates a request (`asked_at`: sources/ccv.py `sent_at`)."""

    clock: float
    wall: float


class CatchUps:
    """One account's catch-ups under way in this process."""

    def __init__(self) -> None:
        self._running: list[_Began] = []

    @contextlib.contextmanager
    def running(self, now: float) -> Iterator[None]:
        """Hold a catch-up begun at `now` (the reconciler's clock) while the block runs."""
        began = _Began(now, time.time())
        self._running.append(began)
        try:
            yield
        finally:
            self._running.remove(began)

    def leave_out(self, due: Sequence[OrderState]) -> list[OrderState]:
        """Return the due orders a due tick asks now: while a catch-up runs, not those it asks."""
        if not self._running:
            return list(due)
        clock = min(b.clock for b in self._running)
        wall = min(b.wall for b in self._running)
        return [
            s
            for s in due
            if (s.asked_at is not None and s.asked_at >= wall)
            or (s.failure_streak and s.next_check_at >= clock)
            or (s.tracked_at is not None and s.tracked_at >= clock)
        ]


async def unread(ccv: CCVCoordinator, after: int, asked: Collection[str]) -> int:
    """Count the open orders of a CCV account that its catch-up, stopped by the account's
    failure (a breaker, a 401, a rest), did not come to: those of its pages after `after`, but
    the ones it asked first (`asked`, the notified ones). Each is a failed check of the pass
    (`PassReport.count_unanswered`): a breaker that opened in the notified orders, asked
    first, left thousands unasked, and `catch-up.done` counted 20 checked, 20 failed."""
    first, count, since = set(asked), 0, ccv.settled_since()  # as its pages, watched ones
    while True:
        ids, after = await ccv.store.orders.open_ids(
            "ccv", ccv.account, after=after, limit=UNREAD_PAGE, settled_since=since
        )
        if not ids:
            return count
        count += sum(1 for i in ids if i not in first)
