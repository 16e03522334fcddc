"""The first check of an order a CCV submit just tracked, while its account rests after failing.

DESIGN ("CCV submit") promises that first check within seconds. A failing account's due checks
rest for its backoff (up to an hour; `Coordinator.tick_due`), which would hold it as long: the
endpoint may be back meanwhile, and the order's caller waits for its first status. So a resting
account's due tick asks such an order all the same, as its probe (its answer may recover the
account): one a tick, each once, so that submits during an outage do not hammer the account.
"""

from __future__ import annotations

from ..model import OrderState, Source
from ..store import Store
from ..store import submissions as subs


class FirstChecks:
    """One account's just-submitted orders whose first check went out while it rested."""

    def __init__(self, store: Store, source: Source, account: str) -> None:
        self.store = store
        self.submits = source == "ccv"  # only a CCV submit tracks an order
        self.account = account
        self._asked: set[str] = set()  # asked once already: not again while the account rests

    async def due(self, settled_since: float) -> list[OrderState]:
        """Return the order (one at most) whose first check goes out now: one a submit tracked
        that no check has asked yet, nor this one (`subs.unchecked`; `settled_since` as there)."""
        if not self.submits:
            return []
        limit = len(self._asked) + 1  # one at least that was not asked, when there is one
        unchecked = await subs.unchecked(self.store, self.account, limit, settled_since)
        ids = {s.key.order_id for s in unchecked}
        if len(unchecked) < limit:
            # Every order still unchecked was read: the others were checked (or untracked) since.
            self._asked &= ids
        fresh = [s for s in unchecked if s.key.order_id not in self._asked][:1]
        self._asked.update(s.key.order_id for s in fresh)
        return fresh
