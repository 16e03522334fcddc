"""Orders a CCNow query's posts did not reach (a batch asked level by level past its posts,
`by_levels` in ccnow_batches.py): carried to the next poll, at most CARRY_POLLS polls in a row
(sources/ccnow_query.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from reconciler.sources.ccnow_answer import LOGGED_IDS

log = logging.getLogger("reconciler.sources.ccnow")

# Polls in a row whose posts may leave an order unasked: at the last, it fails its check
# (`protocol`, as an answer of its that cannot be read) rather than be carried again. Batches
# are made alike poll after poll, so the parts past a batch's posts can be the same orders at
# every poll: carried so, they were never checked, and no check failed (an operator saw
# nothing but the split warning). Three: a carry that shrinks its batch (the orders read wait
# for their next check) decides a batch of 25 with a line in every answer of several orders
# within three polls (7, 14, then the last 4 read).
CARRY_POLLS = 3


class Carries:
    """An account's orders carried, each with the polls that asked it and carried it, in a
    row (a poll of other orders between counts nothing of it; one that asked it and did not
    carry it ends the row). This process's only, not the store's: a new one starts with a
    catch-up, which decides every order it asks (`Carried.take`), so no order is carried past
    a restart either; a count kept across one would end rows that the catch-up ended already.
    An order no longer followed (untracked, ended, settled and no longer watched) is never
    asked again: the coordinator has it forgotten (`forget`), else it stayed for the
    process's life."""

    def __init__(self, polls: int = CARRY_POLLS) -> None:
        self.polls = polls
        self.counts: dict[str, int] = {}

    def forget(self, order_ids: Iterable[str]) -> None:
        """Forget orders no longer followed."""
        for order_id in order_ids:
            self.counts.pop(order_id, None)


class Carried:
    """The orders one query carried (`BatchQuery`), counted in its account's `Carries`; its
    one `ccnow.carried_failed` warning names those failed at the bound."""

    def __init__(self, carries: Carries, account: str) -> None:
        self._carries = carries
        self._account = account
        self._now: list[str] = []  # carried by this round of the query
        self._failed: list[str] = []

    def carry(self, part: Iterable[str]) -> list[str]:
        """Carry orders the posts did not reach; return those at the bound, to fail now."""
        counts, failing = self._carries.counts, []
        for order_id in part:
            carried = counts.get(order_id, 0) + 1
            if carried >= self._carries.polls:
                counts.pop(order_id, None)  # failed: a check of it, it starts over
                failing.append(order_id)
            else:
                counts[order_id] = carried
                self._now.append(order_id)
        self._failed += failing
        return failing

    def take(self) -> list[str]:
        """Return the orders carried so far, to be asked again within the query (a catch-up:
        each round counts as a poll, so the bound ends it)."""
        taken, self._now = self._now, []
        return taken

    def end(self, asked: Iterable[str]) -> None:
        """The query's end: the orders it asked and did not carry start over (decided, or
        unasked for the account's failure: a poll that did not carry them); log the failed."""
        carried = set(self._now)
        for order_id in asked:
            if order_id not in carried:
                self._carries.counts.pop(order_id, None)
        if self._failed:
            log.warning(
                "ccnow.carried_failed",
                extra={
                    "fields": {
                        "account": self._account,
                        "count": len(self._failed),
                        "polls": self._carries.polls,
                        "order_ids": self._failed[:LOGGED_IDS],
                    }
                },
            )
