"""What a sink confirmed stays delivered, whatever happens after: the sink raising once its batch
is over, the confirmations' own write failing. The real store and dispatcher, and a sink that
confirms every event as it goes (as the webhook and command sinks do)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.config.schema import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.sinks.base import (
    RECORD_AFTER_S,
    RECORD_EVERY,
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    deliver_in_order,
)
from reconciler.store import Store, StoreError
from tests.sinks.test_delivery_refused import order_event

DAY_S = 86400.0


class RaisesAfterItsBatch:
    """Confirms each event, one at a time, then raises: a bug after the batch."""

    name = "hooks"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        async def one(event: OutboxEvent) -> DeliveryResult:
            self.sent.append(event.id)
            return Delivered()

        await deliver_in_order(events, one, cutoff)
        raise RuntimeError("bug after the batch")

    async def close(self) -> None:
        pass


async def test_a_sink_that_raises_after_confirming_keeps_what_was_recorded(
    tmp_path: Path,
) -> None:
    # The cutoff recorded the first RECORD_EVERY confirmations while the batch went on; the
    # sink's crash then made every row of the batch a failure, and those delivered rows went
    # back to pending, or (past `max_age`) were dead-lettered: 60 dead, 50 of them confirmed.
    store = await Store.open(tmp_path / "r.db", sinks=("hooks",))
    clock = [1_000_000.0]
    sink = RaisesAfterItsBatch()
    delivery = Delivery(store, [(sink, LogSinkConfig(name="hooks"))], clock=lambda: clock[0])
    total = RECORD_EVERY + 10
    try:
        async with store.transaction():
            await store.events.add([order_event(n, f"o-{n}", clock[0]) for n in range(total)])
        clock[0] += 10 * DAY_S  # past max_age: a failed attempt dead-letters its event
        await delivery.drain(5.0, retries=False)
    finally:
        await store.close()

    assert sink.sent == [f"e-{n}" for n in range(total)]  # each sent once
    with sqlite3.connect(tmp_path / "r.db") as db:
        states = db.execute(
            "SELECT state, count(*), max(attempts) FROM deliveries GROUP BY state ORDER BY state"
        ).fetchall()
    # The confirmations not yet recorded when it raised are failures (at least once).
    assert states == [("dead", 10, 1), ("delivered", RECORD_EVERY, 0)]
    assert delivery.dead_letters == {"hooks": 10}


def event(n: int) -> OutboxEvent:
    return OutboxEvent(seq=n, id=f"e-{n}", type="t", order_id=f"o-{n}", body=b"{}")


@pytest.mark.parametrize(
    ("error", "warned"),
    [(RuntimeError("bug in the progress"), True), (StoreError("disk I/O error"), False)],
    ids=["a bug", "a store error"],
)
async def test_a_failed_write_of_confirmations_is_said_once_unless_the_store_said_it(
    caplog: pytest.LogCaptureFixture, error: Exception, warned: bool
) -> None:
    # Every failure of the write was swallowed without a word: a bug in it hid for good. A
    # store error is the store's to say (once, by its health), not once per write.
    async def record(seqs: list[int]) -> None:
        raise error

    cutoff = Cutoff(record, sink="hooks")
    with caplog.at_level(logging.WARNING, logger="reconciler.outbox"):
        for n in range(RECORD_EVERY):
            cutoff.confirmed(event(n))
        assert await cutoff.recorded() == []  # the batch's end records them
    said = [(r.message, r.__dict__["fields"]) for r in caplog.records]
    # Named: with several sinks, the line did not say whose confirmations failed.
    fields = {"sink": "hooks", "error": repr(error), "events": RECORD_EVERY}
    expected = [("sink.record_failed", fields)]
    assert said == (expected if warned else [])
    assert all(r.exc_info is None for r in caplog.records)  # one line, no traceback


def test_a_cutoff_is_made_only_for_a_named_sink() -> None:
    # Its `sink` defaulted to "": a cutoff made without one said `sink.record_failed` with
    # `sink=""`, whose confirmations it was not saying. Every cutoff now names its sink.
    async def record(seqs: list[int]) -> None:
        pass

    with pytest.raises(TypeError, match="sink"):
        Cutoff(record)  # type: ignore[call-arg]
    assert Cutoff(record, sink="hooks").sink == "hooks"


class ConfirmsOneByOne:
    """Confirms each event, one at a time, as a webhook or a command sink does."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        async def one(event: OutboxEvent) -> DeliveryResult:
            return Delivered()

        return await deliver_in_order(events, one, cutoff)

    async def close(self) -> None:
        pass


async def test_the_dispatchers_failed_write_of_confirmations_names_its_sink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Of two sinks, the one whose confirmations were not written in mid-batch (a bug in what
    # hears of them, once) is named; the batch's end records them all the same.
    store = await Store.open(tmp_path / "r.db", sinks=("hooks", "audit"))
    sinks = [(ConfirmsOneByOne(n), LogSinkConfig(name=n)) for n in ("hooks", "audit")]
    delivery = Delivery(store, sinks, clock=lambda: 1_000_000.0)
    bugs = [RuntimeError("bug in the metrics")]

    def on_delivered(sink: str, n: int) -> None:
        if sink == "audit" and bugs:
            raise bugs.pop()

    delivery.on_delivered = on_delivered
    try:
        async with store.transaction():
            await store.events.add(
                [order_event(n, f"o-{n}", 1_000_000.0) for n in range(RECORD_EVERY)]
            )
        with caplog.at_level(logging.WARNING, logger="reconciler.outbox"):
            await delivery.drain(5.0, retries=False)
    finally:
        await store.close()
    said = [(r.message, r.__dict__["fields"]) for r in caplog.records]
    fields = {"sink": "audit", "error": "RuntimeError('bug in the metrics')"}
    assert said == [("sink.record_failed", fields | {"events": RECORD_EVERY})]
    with sqlite3.connect(tmp_path / "r.db") as db:
        states = db.execute("SELECT sink, state, count(*) FROM deliveries GROUP BY 1, 2")
        assert sorted(states) == [
            ("audit", "delivered", RECORD_EVERY),
            ("hooks", "delivered", RECORD_EVERY),
        ]


async def test_a_cutoff_released_then_used_again_still_records_within_a_second() -> None:
    # `release` cancelled the timer of the confirmations in hand but kept it as if running:
    # a later confirmation started none, and waited for 49 more to be recorded.
    written: list[list[int]] = []
    wrote = asyncio.Event()

    async def record(seqs: list[int]) -> None:
        written.append(seqs)
        wrote.set()

    cutoff = Cutoff(record, sink="hooks")
    cutoff.confirmed(event(1))
    cutoff.release()
    cutoff.confirmed(event(2))
    await asyncio.wait_for(wrote.wait(), 5 * RECORD_AFTER_S)
    assert 2 in written[0]
    assert await cutoff.recorded() == written[0]
