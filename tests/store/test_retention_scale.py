"""Retention at scale: pruning a year of history costs each chunk milliseconds, however many
delivery rows the store holds. SQLite's foreign key check of a deleted event scanned them all
(no index leads with `deliveries.event_seq`): hours for a year-old store, holding the writer up
to 100 s a chunk. Counted in SQLite VM steps (a progress handler), not in seconds: the count
does not depend on the machine's load."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from reconciler.events import Event
from reconciler.model import EventType
from reconciler.store import Store, StoreError
from reconciler.store.retention import prune

DAY = 86400.0
NOW = 1_800_000_000.0
KEEP_S = 400 * DAY
EVENTS = 20_000
SINKS = ("log", "jsonl")
# VM steps between calls of the progress handler.
STEP = 1000
# Steps the whole prune may take per event it deletes. With the fix about 110 (the deletes by
# key, the reads of each chunk); before it, each event's check scanned all 40,000 delivery rows
# (about 100,000 steps each), and the first chunk exceeded the budget of the whole prune.
STEPS_PER_EVENT = 300


def _event(n: int, at: float) -> Event:
    data = {"source": "ccnow", "account": "default", "order_id": f"o{n}", "status": "canceled"}
    order = f"o{n}"
    return Event(f"e-{n}", EventType.STATUS_CHANGED, at, "ccnow", "default", order, "info", data)


async def _history(store: Store, events: int = EVENTS) -> None:
    """A year-old history: `events` events older than the window, delivered to both sinks but
    every 500th, still pending for `jsonl`; and one event within it."""
    old = [_event(n, NOW - KEEP_S - DAY + n) for n in range(events)]
    async with store.transaction():
        await store.events.add([*old, _event(events, NOW - DAY)])
        await store.conn.execute("UPDATE deliveries SET state = 'delivered'")
        await store.conn.execute(
            "UPDATE deliveries SET state = 'pending' WHERE sink = 'jsonl' AND event_seq % 500 = 0"
        )


async def test_a_prune_chunk_does_not_scan_the_delivery_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = await Store.open(path, sinks=SINKS)
    try:
        await _history(store)
        pending = EVENTS // 500
        budget = STEPS_PER_EVENT * (EVENTS - pending) // STEP
        calls = 0

        def counted() -> int:
            nonlocal calls
            calls += 1
            return 1 if calls > budget else 0  # non-zero interrupts the statement

        await store.conn.set_progress_handler(counted, STEP)
        try:
            report = await prune(store, sinks=SINKS, keep_s=KEEP_S, now=NOW, watched={})
        except (sqlite3.OperationalError, StoreError) as exc:  # the store says "interrupted"
            pytest.fail(f"prune took over {budget * STEP} VM steps ({exc})")
        budget = 1 << 62  # the test's own reads that follow are not limited
        assert (report.events, report.kept) == (EVENTS - pending, pending)
        # The checks are on again for the writes that follow.
        assert list(await store.conn.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        # No delivery row outlived its event; the pending ones kept theirs, both sinks'.
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (2 * (pending + 1),)
    conn.close()


async def test_foreign_keys_are_on_again_after_a_failed_unchecked_transaction(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "r.db", sinks=SINKS)
    try:
        with pytest.raises(RuntimeError):
            async with store.transaction(foreign_keys=False):
                checks = list(await store.conn.execute_fetchall("PRAGMA foreign_keys"))
                assert checks == [(0,)]
                raise RuntimeError("a chunk failed")
        assert list(await store.conn.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
        # And they hold: a delivery row of no event is refused.
        with pytest.raises(sqlite3.IntegrityError):
            async with store.transaction():
                await store.conn.execute(
                    "INSERT INTO deliveries (sink, event_seq) VALUES ('log', 12345)"
                )
    finally:
        await store.close()


@pytest.mark.parametrize("at", [1, 4, 30, 300, 1000])
async def test_a_prune_cancelled_anywhere_leaves_the_checks_on_and_no_orphan(
    tmp_path: Path, at: int
) -> None:
    # A stop (SIGTERM) cancels a prune wherever it is: taking the writer, turning the checks
    # off, inside a chunk's statements, at its COMMIT, turning them on again. The cancel is
    # asked from SQLite's progress handler, at the `at`-th call (every 100 VM steps), so it
    # lands while the prune awaits one of its statements; 2,000 events take about 2,200 calls.
    events = 2000
    store = await Store.open(tmp_path / "r.db", sinks=SINKS)
    try:
        await _history(store, events)
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(
            prune(store, sinks=SINKS, keep_s=KEEP_S, now=NOW, watched={}, chunk=100)
        )
        calls = 0

        def cancel_at() -> int:
            nonlocal calls
            calls += 1
            if calls == at:
                loop.call_soon_threadsafe(task.cancel)
            return 0

        await store.conn.set_progress_handler(cancel_at, 100)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not store.conn.in_transaction
        assert list(await store.conn.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
        assert list(await store.conn.execute_fetchall("PRAGMA foreign_key_check")) == []
        with pytest.raises(sqlite3.IntegrityError):  # and the checks hold
            async with store.transaction():
                await store.conn.execute(
                    "INSERT INTO deliveries (sink, event_seq) VALUES ('log', 123456)"
                )
        # The next run ends the work: nothing a sink has not confirmed was lost meanwhile.
        await prune(store, sinks=SINKS, keep_s=KEEP_S, now=NOW, watched={})
        left = await store.conn.execute_fetchall(
            "SELECT count(*), count(DISTINCT d.event_seq) FROM events AS e "
            "JOIN deliveries AS d ON d.event_seq = e.seq"
        )
        assert list(left) == [(2 * (events // 500 + 1), events // 500 + 1)]
    finally:
        await store.close()
