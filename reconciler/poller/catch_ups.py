"""The catch-ups of one account running in this process (the daemon's start-up pass), and when
the earliest began: its due ticks meanwhile read only the orders it leaves to them.

A catch-up asks every open order of its account once, a page of thousands at a time, and writes
the answers a batch at a time. A due tick beside it read the orders it had not written yet as due
(a tracked order's first check, a restart's overdue ones) and asked them too: 14,588 requests
for 10,000 orders just tracked, and the last tick's tail went on after every order had its
answer (bench/idle.py counted 603 requests in its idle minute). So while a catch-up runs, a due
tick asks only orders it will not: those asked since it began (its answer, due again), those
whose check failed since (their retry: a failed check keeps the last answer's `asked_at`, but its
backoff was planned after the catch-up began) and those tracked since (a submit's, whose first
check goes out within seconds; the catch-up may have read their page before them, and in the
daemon its pages stop at the last row there was when it began, so that it does not ask them too).
Notified orders go first as always (ccv_notified.py). The others wait for the catch-up, which
asks them. The due read itself leaves them out (`Coordinator._due` passes `since()` to
`Orders.due`, store/order_sql.py `catch_up_due_sql`), so a tick reads up to its `limit` of the
orders it asks, however many of the catch-up's are due: a filter after the read found the catch-up's
overdue orders alone in it (the earliest due first) and asked none, the order tracked since
waiting for the catch-up's end (those still left to it, such as one behind a bound of the
catch-up's orders falling due while it runs: that function's comment). Only CCV's
`full_pass` holds a catch-up here: CCNow's ticks are unchanged. One still failing from before
it whose retry falls due meanwhile may be asked twice (no failure's time is kept to tell it
from one failed since).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING

from ..store.order_sql import CatchUpSince

if TYPE_CHECKING:
    from ..store import Store
    from .ccv import CCVCoordinator

UNREAD_PAGE = 10000  # open order ids counted at a time


class CatchUps:
    """One account's catch-ups under way in this process."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._running: list[CatchUpSince] = []
        # The daemon's (`Coordinators.startup_pass`): due ticks run beside its catch-ups.
        self.beside_ticks = False

    @contextlib.asynccontextmanager
    async def running(self, now: float) -> AsyncIterator[int | None]:
        """Hold a catch-up begun at `now` (the reconciler's clock) while the block runs; give
        the last row its pages read (None: every one they reach)."""
        # The orders after the last row then are tracked since it began: a due tick's to ask
        # (`since`), not its pages' too, which reach them when their page comes after it (each
        # asked twice). Beside no tick (the `catch-up` command) its pages ask every one they
        # reach, as ever.
        began = CatchUpSince(now, time.time(), await self._store.orders.last_id())
        self._running.append(began)
        try:
            yield began.last_id if self.beside_ticks else None
        finally:
            self._running.remove(began)

    def since(self) -> CatchUpSince | None:
        """Return when the earliest catch-up running began (None: none runs), for a due read
        of the orders it leaves to a due tick."""
        if not self._running:
            return None
        running = self._running
        return CatchUpSince(
            min(b.clock for b in running),
            min(b.wall for b in running),
            min(b.last_id for b in running),
        )


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
