"""The orders that say whether an account answers when a partial pass's own orders cannot: open
orders whose last check answered a status, asked one at a time (CCV's `_witness`, CCNow's
`_answers`), one rule for both providers.

Orders that fail on their own (a 500 each, for ever) come due together at their failures'
backoff, and a pass of them alone looks like an outage; another order answering now says it is
not. One whose last check answered may itself have broken since (its check not due yet): a
second is asked when the first fails. The witnesses take turns, up to ROTATION of the account's
orders that answered, so that no order is asked on every such pass (the first two in storage
order were, 137 times in 5 minutes).

Extra load, bounded: one request (two when the first witness fails: a real outage, or a witness
that broke) per pass whose every check failed, spread over up to ROTATION orders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from ..model import OrderState

WITNESSES = 2  # asked in turn until one answers
ROTATION = 20  # different orders asked as witnesses before they start over


class Witnesses:
    """An account's witnesses: which to ask next, in turn."""

    def __init__(self, answered: Callable[[int], Awaitable[list[OrderState]]]) -> None:
        # Up to `limit` open orders whose last check answered, in storage order
        # (`Coordinator._answered`).
        self._answered = answered
        self._asked: set[str] = set()  # asked since the rotation last started over

    async def choose(self, passed: Collection[str]) -> list[str]:
        """Return up to WITNESSES orders not in `passed` (the pass's own) whose last check
        answered, those not asked as witnesses lately first, in storage order."""
        if len(self._asked) >= ROTATION:
            self._asked.clear()
        # Of this many, WITNESSES at least are neither the pass's nor asked, if so many exist.
        states = await self._answered(len(passed) + len(self._asked) + WITNESSES)
        ids = [s.key.order_id for s in states if s.key.order_id not in passed]
        fresh = [i for i in ids if i not in self._asked]
        if len(fresh) < WITNESSES:  # each was asked: the turn starts over
            self._asked.clear()
            fresh += [i for i in ids if i not in fresh]
        return fresh[:WITNESSES]

    def asked(self, order_id: str) -> None:
        """Note a witness asked: the others go first next time."""
        self._asked.add(order_id)
