"""Fake provider clients for coordinator tests: they answer from dicts, in-process, so that the
pass rules are tested without HTTP (the real clients have their real-HTTP tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.poller.coordinator import Emit
from reconciler.sources.ccnow_batches import Probe
from reconciler.sources.errors import SourceError


class FakeCCVClient:
    """CCV's status endpoint: a status per known order, CCV's own 404 for the others."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}
        self.forbidden: set[str] = set()  # a 403 for that order alone
        self.refusal: SourceError | None = None  # the account refuses (401, breaker, page)
        self.probe_error: SourceError | None = None
        self.hold: asyncio.Event | None = None  # when given, checks wait for it
        self.waiting = asyncio.Event()  # a check is waiting for `hold`
        self.asked: list[str] = []
        self.probes = 0

    async def check_orders(
        self, order_ids: Iterable[str], emit: Emit, *, key_taken: bool = False
    ) -> None:
        for order_id in order_ids:
            if self.hold is not None:
                self.waiting.set()
                await self.hold.wait()
            if self.refusal is not None:
                raise self.refusal
            self.asked.append(order_id)
            key = OrderKey("ccv", "default", order_id)
            if order_id in self.forbidden:
                await emit(Observation(key, Outcome.FAILED, reason="http_403"))
            elif order_id in self.statuses:
                await emit(Observation(key, Outcome.OK, self.statuses[order_id]))
            else:
                await emit(Observation(key, Outcome.NOT_FOUND))

    async def probe(self) -> None:
        self.probes += 1
        if self.probe_error is not None:
            raise self.probe_error


class FakeCCNowClient:
    """CCNow's order receiver: a pending list, and an answer line per queried order."""

    def __init__(self) -> None:
        self.pending: set[str] = set()  # the pending list
        self.statuses: dict[str, str] = {}  # what a query answers
        self.errors: set[str] = set()  # an error line for that order alone
        self.silent: set[str] = set()  # no line for that order in an answer that came
        self.list_error: SourceError | None = None
        self.query_error: SourceError | None = None  # every query fails for the account
        self.queried: list[str] = []
        self.hold: asyncio.Event | None = None  # when given, the next query waits for it
        self.waiting = asyncio.Event()  # a query is waiting for `hold`
        self.asked_at: float | None = None  # the `asked` its answers carry (None: not known)

    async def pending_list(self) -> list[Observation]:
        if self.list_error is not None:
            raise self.list_error
        return [
            Observation(OrderKey("ccnow", "default", i), Outcome.OK, "pending")
            for i in sorted(self.pending)
        ]

    async def query(
        self,
        order_ids: Sequence[str],
        emit: Emit,
        *,
        probe: Probe | None = None,
        catch_up: bool = False,
    ) -> None:
        hold, self.hold = self.hold, None  # that query's alone: others meanwhile go on
        if hold is not None:
            self.waiting.set()
            await hold.wait()
        asked = self.asked_at
        for order_id in order_ids:
            self.queried.append(order_id)
            if self.query_error is not None:
                raise self.query_error
            key = OrderKey("ccnow", "default", order_id)
            if order_id in self.silent:
                await emit(Observation(key, Outcome.FAILED, reason="missing", asked=asked))
            elif order_id in self.errors or order_id not in self.statuses:
                await emit(Observation(key, Outcome.FAILED, reason="order_error", asked=asked))
            else:
                await emit(Observation(key, Outcome.OK, self.statuses[order_id], asked=asked))

    def carried(self) -> frozenset[str]:
        return frozenset()  # its queries reach every order

    def forget_carried(self, order_ids: Iterable[str]) -> None:
        pass
