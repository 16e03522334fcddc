"""Another process holding the database's write lock (a `BEGIN IMMEDIATE` held for longer than
SQLite's busy timeout) while a sink's outcome is recorded: the record waits for it, and the
delivery is not made again because the record had to wait. The outcome's log line comes once,
after its record committed. The real store and dispatcher, a sink that counts its attempts."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.config.schema import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.events import Event
from reconciler.model import EventType
from reconciler.sinks.base import Cutoff, Delivered, DeliveryResult, OutboxEvent, RetryLater
from reconciler.store import Store
from tests.conftest import poll_until


class CountingSink:
    """Takes (`takes`) or refuses every event, counting the attempts."""

    name = "hooks"

    def __init__(self, takes: bool) -> None:
        self.takes = takes
        self.attempts = 0

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        self.attempts += len(events)
        return [Delivered() if self.takes else RetryLater("exit status 3")] * len(events)

    async def close(self) -> None:
        pass


class StateAtLogLine(logging.Handler):
    """Notes each outbox line with the delivery's state in the database as it is written."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.lines: list[tuple[str, dict[str, object], str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with sqlite3.connect(self.path) as conn:
            (state,) = conn.execute("SELECT state FROM deliveries").fetchone()
        self.lines.append((record.getMessage(), getattr(record, "fields", {}), state))


@pytest.mark.parametrize("takes", [False, True], ids=["dead_letter", "delivered"])
async def test_a_record_waiting_for_the_lock_is_no_retry(tmp_path: Path, takes: bool) -> None:
    path = tmp_path / "reconciler.db"
    store = await Store.open(path, sinks=("hooks",))
    await store.conn.execute("PRAGMA busy_timeout = 100")  # SQLite gives up waiting soon
    created = time.time() - 60  # past max_age: its first failure dead-letters it
    data = {"source": "ccv", "account": "default", "order_id": "O1", "status": "Failed"}
    async with store.transaction():
        await store.events.add(
            [Event("e-1", EventType.STATUS_CHANGED, created, "ccv", "default", "O1", "error", data)]
        )
    sink = CountingSink(takes)
    config = LogSinkConfig(name="hooks", retry_min_s=0.05, max_age_s=1.0)
    delivery = Delivery(store, [(sink, config)], tick_s=0.05)
    lines = StateAtLogLine(path)
    outbox = logging.getLogger("reconciler.outbox")
    outbox.addHandler(lines)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    task = asyncio.create_task(delivery.run())
    try:
        await poll_until(lambda: sink.attempts >= 1, 30, "the first attempt")
        # Many of SQLite's busy timeouts, and of the lane's ticks, pass with the lock held.
        # Before, each failed record was followed by the same delivery again.
        waited_until = time.monotonic() + 1.0
        await poll_until(lambda: time.monotonic() >= waited_until, 30, "the lock held a while")
        assert sink.attempts == 1
        assert not lines.lines  # nothing said of an outcome not yet recorded
        holder.execute("ROLLBACK")
        want = "delivered" if takes else "dead"
        await poll_until(
            lambda: holder.execute("SELECT state FROM deliveries").fetchone()[0] == want,
            30,
            "the record committed once the lock is free",
        )
    finally:
        delivery.stop()
        await task
        outbox.removeHandler(lines)
        holder.close()
        await store.close()
    assert sink.attempts == 1
    if not takes:
        [(message, fields, state)] = lines.lines
        assert (message, fields["attempts"], state) == ("sink.dead_letter", 1, "dead")
