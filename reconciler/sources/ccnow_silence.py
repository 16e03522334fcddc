"""The run of a query's batches whose posts read no line of any of their orders (`missing`,
each): the account's failure only while no batch of the query read, and the probe finds no
other order answered (sources/ccnow_query.py; the breaker's other run: ccnow_batches.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from reconciler.sources.ccnow_batches import Probe, Said
from reconciler.sources.ccnow_match import MISSING
from reconciler.sources.errors import SourceUnavailable

log = logging.getLogger("reconciler.sources.ccnow")


class Silence:
    """Batches in a row whose posts (the batch, its others, its halves) read none of their
    orders: answers, so not in the breaker's run of failures, but CCNow saying nothing of any
    order asked. Each costs two posts or more, and an account answering so for every order
    (30,000 open: some 2,400 posts a catch-up) is failing: a run as long as the breaker's
    opens it, the pass's later batches waiting for the next pass or probe. Not once a batch
    of the query read, nor when the probe finds another order answered, as `finish` asks
    (DESIGN invariant 7: orders missing together, due together at their failures' backoff,
    failed the account, and the next check of another recovered it, tick after tick)."""

    def __init__(self, account: str, limit: int, probe: Probe | None) -> None:
        self._account = account
        self._limit = limit
        self._probe = probe
        self._in_a_row = 0
        self._run: list[str] = []  # the run's orders, not the probe's to ask
        self._heard = False  # a batch of the query read, or the probe found the account answer
        self._lock = asyncio.Lock()  # one probe, whichever batches reach the run's end
        self._opened: SourceUnavailable | None = None

    async def count(self, batch: Sequence[str], none: bool) -> None:
        """Count a post that read `none` of its orders (a batch's own), or note that it read
        (any post); raise when the run opens the breaker."""
        if not none:
            self._heard, self._in_a_row, self._run = True, 0, []
            return
        if self._heard:
            return  # the account answers: these orders' own `missing`
        self._in_a_row += 1
        self._run += batch
        log.debug(
            "ccnow.batch_failed",
            extra={"fields": {"account": self._account, "orders": len(batch), "reason": MISSING}},
        )
        if self._in_a_row < self._limit:
            return
        async with self._lock:
            if self._opened is not None:
                raise self._opened
            if self._heard:
                return  # the probe, asked for a batch of the run beside this one, answered
            # Not the pending list: it may answer while every query says nothing of its orders.
            asked = tuple(self._run)
            if self._probe is not None and await self._probe(asked, lists=False) is Said.ANSWERS:
                self._heard, self._in_a_row, self._run = True, 0, []
                return
            self._opened = self._open()
            raise self._opened

    def _open(self) -> SourceUnavailable:
        log.warning(
            "ccnow.circuit_open",
            extra={
                "fields": {
                    "account": self._account,
                    "consecutive_failures": self._in_a_row,
                    "reason": MISSING,
                }
            },
        )
        return SourceUnavailable(
            f"{self._in_a_row} batches failed in a row, last: no line of any order asked"
            f" ({MISSING})"
        )
