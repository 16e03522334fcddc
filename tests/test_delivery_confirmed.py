"""What a sink confirmed stays delivered, whatever happens after: the sink raising once its batch
is over, the confirmations' own write failing. The real store and dispatcher, and a sink that
confirms every event as it goes (as the webhook and command sinks do)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from reconciler.config.schema import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.sinks.base import (
    RECORD_EVERY,
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    deliver_in_order,
)
from reconciler.store import Store
from tests.test_delivery_refused import order_event

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
