"""The write path on a real SQLite file: batches written exactly, the page of orders a pass keeps
in memory, the outbox delivering what is committed, and what happens when a write fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler import delivery
from reconciler.config import Config, load_config
from reconciler.config import LogSinkConfig as SinkConfig
from reconciler.delivery import Delivery
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sinks.base import Cutoff, Delivered, DeliveryResult, OutboxEvent
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store.migrations import MIGRATIONS, SCHEMA_VERSION
from reconciler.store.sql import ROWS_PER_STATEMENT, chunks
from tests.conftest import poll_until
from tests.fake_providers import CCV_KEY, FakeCCV

REFERENCE = 'Straße ✓ 😀 "q" \\ end'


def config_for(tmp_path: Path, base_url: str = "http://127.0.0.1:9") -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
    )
    return load_config(path)


def ok(order_id: str, status: str, reference: str | None = None) -> Observation:
    return Observation(OrderKey("ccv", "default", order_id), Outcome.OK, status, reference)


class RecordingSink:
    """A sink that keeps the seqs it got."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.got: list[int] = []
        self.arrived = asyncio.Event()

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        self.got.extend(e.seq for e in events)
        self.arrived.set()
        return [Delivered()] * len(events)

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def live_outbox(
    tmp_path: Path, store: Store, *, tick_s: float = delivery.TICK_S
) -> AsyncIterator[tuple[Reconciler, RecordingSink]]:
    """A reconciler whose commits wake a running outbox with one recording sink; the outbox
    reads the store every `tick_s` for other processes' events."""
    sink = RecordingSink()
    # As the daemon does: the store queues each event for the sinks its outbox delivers to.
    writer = await Store.open(store.path, sinks=(sink.name,))
    outbox = Delivery(writer, [(sink, SinkConfig(type="log", name=sink.name))], tick_s=tick_s)
    reconciler = Reconciler(config_for(tmp_path), writer, on_commit=outbox.committed)
    running = asyncio.ensure_future(outbox.run())
    try:
        yield reconciler, sink
    finally:
        outbox.stop()
        await running
        await writer.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_batch_is_stored_exactly(tmp_path: Path, store: Store) -> None:
    config = config_for(tmp_path)
    ids = ["A-1", "A-2", "A-3"]
    await store.orders.track("ccv", "default", [(i, None) for i in ids], 1795632726.2160404)
    reconciler = Reconciler(config, store, clock=lambda: 1795632800.123456789)
    events = await reconciler.apply(
        [ok("A-1", "New", REFERENCE), ok("A-2", "Completed"), ok("A-3", "Teleported")],
        via="poll",
    )
    assert events == 3

    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT order_id, status, external_reference, tracked_at, last_checked, "
                "next_check_at, end_state FROM orders"
            )
        }
        bodies = [bytes(r[0]) for r in conn.execute("SELECT body FROM events ORDER BY seq")]
    # Floats come back to the last bit, "never" is infinity, the reference byte for byte.
    assert rows["A-1"][:4] == ("New", REFERENCE, 1795632726.2160404, 1795632800.123456789)
    assert rows["A-2"][4:] == (math.inf, 1)
    assert rows["A-3"][0] == "Teleported"  # unknown words are kept verbatim
    # Each stored body is the serialized CloudEvent, the bytes every sink receives.
    for body in bodies:
        event = json.loads(body)
        assert body == json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(bodies[0])["data"]["external_reference"] == REFERENCE
    assert json.loads(bodies[2])["data"]["unknown_status"] is True


async def test_the_page_is_dropped_when_another_process_writes(
    tmp_path: Path, store: Store
) -> None:
    config = config_for(tmp_path)
    await store.orders.track("ccv", "default", [("A-1", "old-ref"), ("A-2", None)], 1.0)
    page = await store.orders.page("ccv", "default")
    assert page.ids == ["A-1", "A-2"]

    # `reconciler track` in another process gives A-1 a new reference meanwhile.
    other = await Store.open(tmp_path / "reconciler.db")
    try:
        await other.orders.track("ccv", "default", [("A-1", "new-ref")], 2.0)
    finally:
        await other.close()

    await Reconciler(config, store).apply([ok("A-1", "New")], via="poll", page=page)
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        row = conn.execute("SELECT status, external_reference FROM orders WHERE order_id = 'A-1'")
        assert row.fetchone() == ("New", "new-ref")


async def test_committed_events_reach_a_running_sink_once_in_order(
    tmp_path: Path, store: Store
) -> None:
    ids = [f"A-{n:03d}" for n in range(300)]
    await store.orders.track("ccv", "default", [(i, None) for i in ids], 1.0)
    async with live_outbox(tmp_path, store) as (reconciler, sink):
        for n in range(0, len(ids), 50):
            await reconciler.apply([ok(i, "New") for i in ids[n : n + 50]], via="poll")
        await poll_until(lambda: len(sink.got) >= len(ids), 5, "every event delivered")
    assert sink.got == list(range(1, len(ids) + 1))
    assert await store.outbox.pending_counts() == {}


async def test_replay_beside_a_running_outbox_is_delivered(tmp_path: Path, store: Store) -> None:
    await store.orders.track("ccv", "default", [("A-1", None), ("A-2", None)], 1.0)
    async with live_outbox(tmp_path, store, tick_s=0.05) as (reconciler, sink):
        await reconciler.apply([ok("A-1", "New"), ok("A-2", "New")], via="poll")
        await poll_until(lambda: len(sink.got) == 2, 5, "the first delivery")

        # `reconciler replay --sink recorder` while this process runs: only the store knows.
        other = await Store.open(tmp_path / "reconciler.db")
        try:
            assert await other.outbox.requeue(sink.name, None) == 2
        finally:
            await other.close()
        await poll_until(lambda: len(sink.got) == 4, 5, "the replayed events")
    assert sink.got == [1, 2, 1, 2]


async def test_a_failed_write_ends_the_pass_with_its_error(
    tmp_path: Path, fake_ccv: FakeCCV, store: Store
) -> None:
    ids = [f"0b7c1f3e-0000-4000-8000-{n:012d}" for n in range(40)]
    fake_ccv.orders = dict.fromkeys(ids, "New")
    config = config_for(tmp_path, fake_ccv.base_url)
    await store.orders.track("ccv", "default", [(i, None) for i in ids], 1.0)

    class FailingSecondWrite(Reconciler):
        calls = 0

        async def apply(self, *args: Any, **kw: Any) -> int:
            self.calls += 1
            if self.calls == 2:
                raise sqlite3.OperationalError("disk I/O error")
            return await super().apply(*args, **kw)

    async with aiohttp.ClientSession() as session:
        # Small batches and queue, so that workers wait on the writer when its write fails.
        reconciler = FailingSecondWrite(config, store, batch_rows=2, pending_batches=1)
        coordinator = Coordinators.build(config, reconciler, session, Gates()).ccv["default"]
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            await asyncio.wait_for(coordinator.full_pass(via="poll"), 10)
    # What was written before the failure stays written; nothing after it.
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2,)


async def test_a_version_1_store_is_migrated_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.db"
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.execute(
            "INSERT INTO events (id, type, time, source, account, order_id, severity, body) "
            "VALUES ('e1', 'order.discovered', 1.0, 'ccv', 'default', 'A-1', 'info', x'7b7d')"
        )
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert conn.execute("SELECT id FROM events").fetchall() == [("e1",)]
    assert "transitions" not in tables


async def test_an_event_waits_for_an_earlier_event_of_its_order_until_that_one_is_settled(
    tmp_path: Path, store: Store
) -> None:
    await store.orders.track("ccv", "default", [("A-1", None), ("A-2", None)], 1.0)
    reconciler = Reconciler(config_for(tmp_path), store)
    await reconciler.apply([ok("A-1", "New"), ok("A-2", "New")], via="poll")  # seq 1, 2
    await reconciler.apply([ok("A-1", "Closed"), ok("A-2", "Closed")], via="poll")  # 3, 4

    async def due(now: float = 1000.0) -> tuple[list[int], float | None]:
        found = await store.outbox.due("log", now, 10)
        return [row.seq for row in found.rows], found.next_at

    assert await due() == ([1, 2, 3, 4], None)
    await store.outbox.failed("log", [(1, "http 500", 2000.0), (2, "http 500", 500.0)])
    # A-1's first event waits for its retry, and A-1's next one with it; A-2's retry is due.
    assert await due() == ([2, 4], 2000.0)
    assert await due(now=2000.0) == ([1, 2, 3, 4], None)
    await store.outbox.failed("log", [(1, "http 500", None)])  # dead-lettered: holds nothing
    assert await due() == ([2, 3, 4], None)


def test_a_batch_of_any_size_is_written_by_statements_of_a_few_sizes() -> None:
    # SQLite parses each statement text once per connection, and a text depends on its number
    # of rows: batches of varying sizes must not each bring texts of their own.
    sizes: set[int] = set()
    for n in [*range(1, 1030), 1999, 2000, 2001, 2497]:
        rows = [(i, i) for i in range(n)]
        written = list(chunks(rows))
        assert [p for _, ps in written for p in ps] == [p for r in rows for p in r]
        assert len(written) <= n // ROWS_PER_STATEMENT + 10
        sizes.update(size for size, _ in written)
    assert sizes == {ROWS_PER_STATEMENT, *(2**k for k in range(10))}


async def test_forgetting_an_accounts_failures_makes_the_pages_held_stale(store: Store) -> None:
    # The start-up catch-up holds a page while a notification's check finds the account
    # answering again: its next batch must not write the outage's streaks back.
    await store.orders.track("ccv", "default", [("A1", None), ("A2", None)], 1.0)
    async with store.transaction():
        await store.conn.execute("UPDATE orders SET failure_streak = 3")
    page = await store.orders.page("ccv", "default")
    async with store.transaction():
        await store.orders.forget_failures("ccv", "default")
    keys = [OrderKey("ccv", "default", i) for i in page.ids]
    loaded = await store.orders.load(keys, page)
    assert {k.order_id: s.failure_streak for k, s in loaded.items()} == {"A1": 0, "A2": 0}
