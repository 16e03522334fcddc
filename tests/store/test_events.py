"""Events and the outbox (store/events.py) on a real SQLite file: the store queues each event for
the sinks it was opened with, and the outbox refuses a store opened for other sinks."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.events import Event
from reconciler.logs import log_handler
from reconciler.model import EventType
from reconciler.sinks.log import LogSink
from reconciler.store import Store
from reconciler.store.events import CursorAhead


def event(n: int) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": f"o{n}", "status": "New"}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, 1.0, "ccv", "default", f"o{n}", "info", data)


async def test_each_event_is_queued_for_the_sinks_the_store_was_opened_with(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "reconciler.db", sinks=("log", "hooks"))
    try:
        async with store.transaction():
            assert await store.events.add([event(1), event(2)]) == 2
        assert await store.outbox.pending_counts() == {"log": 2, "hooks": 2}
        [first, _] = await store.events.history()
        assert first.undelivered == ("hooks", "log")
    finally:
        await store.close()


async def test_an_outbox_for_other_sinks_than_the_stores_is_refused(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db", sinks=("log", "hooks"))
    try:
        with pytest.raises(ValueError, match="sinks"):
            Delivery(store, [(LogSink(handler=log_handler()), LogSinkConfig(name="log"))])
    finally:
        await store.close()


async def test_the_feed_pages_in_commit_order_with_a_cursor(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with store.transaction():
            await store.events.add([event(n) for n in range(5)])
        bodies, cursor = await store.events.feed(0, None, 3)
        assert [b'"id":"e-%d"' % n in body for n, body in enumerate(bodies)] == [True] * 3
        assert cursor == 3
        bodies, cursor = await store.events.feed(cursor, None, 3)
        assert len(bodies) == 2 and cursor == 5
        assert await store.events.feed(5, "order.stuck", 3) == ([], 5)
        # A cursor this database never gave (a restored backup): an error, not the cursor back.
        with pytest.raises(CursorAhead) as ahead:
            await store.events.feed(6, None, 3)
        assert ahead.value.newest == 5
    finally:
        await store.close()


@settings(max_examples=25, deadline=None)
@given(confirmed=st.sets(st.integers(min_value=1, max_value=12)))
def test_a_sink_s_confirmed_events_are_marked_delivered_and_no_other(confirmed: set[int]) -> None:
    # Marked by runs of consecutive seqs: a gap between two runs stays pending.
    async def check(path: Path) -> None:
        store = await Store.open(path / "reconciler.db", sinks=("log", "hooks"))
        try:
            async with store.transaction():
                await store.events.add([event(n) for n in range(1, 13)])
            await store.outbox.delivered("log", sorted(confirmed, reverse=True), 2.0)
            due = await store.outbox.due("log", 3.0, 100)
            assert [r.seq for r in due.rows] == [n for n in range(1, 13) if n not in confirmed]
            assert await store.outbox.pending_counts("hooks") == {"hooks": 12}  # not its sink
            undelivered = {e.seq: e.undelivered for e in await store.events.history()}
            assert {seq for seq, sinks in undelivered.items() if "log" in sinks} == (
                set(range(1, 13)) - confirmed
            )
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(check(Path(tmp)))


async def test_with_nothing_urgent_a_sink_gets_retried_and_fresh_events_in_commit_order(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with store.transaction():
            await store.events.add([event(n) for n in range(1, 6)])
        await store.outbox.failed("log", [(2, "http 503", 5.0), (4, "http 503", 50.0)])
        due = await store.outbox.due("log", 10.0, 100)
        # 2 is due again, 4 waits for its retry; every other order's events go, in seq order.
        assert [r.seq for r in due.rows] == [1, 2, 3, 5]
        assert due.next_at == 50.0
    finally:
        await store.close()


async def test_the_events_committed_are_told_once_each_and_never_when_rolled_back(
    tmp_path: Path,
) -> None:
    # What the daemon's metrics count (reconciler_events_total): the events a commit stored; a
    # transition found again (the same id) is stored once and counted once.
    store = await Store.open(tmp_path / "r.db")
    told: list[str] = []
    store.events_committed = lambda events: told.extend(e.id for e in events)
    try:
        async with store.transaction():
            await store.events.add([event(1), event(2)])
        async with store.transaction():
            await store.events.add([event(2), event(3)])  # event 2 found again
        async with store.transaction():
            await store.events.add([event(5), event(5)])  # one id twice in a batch
        with pytest.raises(RuntimeError):
            async with store.transaction():
                await store.events.add([event(4)])
                raise RuntimeError("the batch fails")
        assert told == ["e-1", "e-2", "e-3", "e-5"]
    finally:
        await store.close()
