"""Notes of notifications written together (notified_orders.Notes): one the writer's wait
joined is kept or told failed as it would have been alone, never lost with its batch's leader."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.store import Store, StoreError
from reconciler.store.notified_orders import Notes, pending
from tests.conftest import poll_until


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "r.db")
    await store.orders.track("ccv", "a", [(f"N-{n}", None) for n in range(3)], 1.0)
    try:
        yield store
    finally:
        await store.close()


async def held(store: Store, release: asyncio.Event, began: asyncio.Event) -> None:
    """Someone else holding the writer until `release` (no transaction of its own open: another
    process may take SQLite's lock meanwhile)."""
    async with store.exclusive():
        began.set()
        await release.wait()


async def test_notes_that_wait_together_are_each_kept_once(store: Store) -> None:
    notes = Notes(store, "ccv", "a")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    ids = ["N-0", "N-1", "N-0", "N-9"]  # a repeat, and an order nobody follows
    writes = [asyncio.ensure_future(notes.note(i, 5.0, followed_only=True)) for i in ids]
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the leader waits")
    release.set()
    assert await asyncio.gather(*writes) == [True, True, True, False]
    await holder
    assert await pending(store, "ccv", "a") == ["N-0", "N-1"]


async def test_a_leader_stopped_before_the_writer_was_its_own_leaves_the_others_kept(
    store: Store,
) -> None:
    # The leader's caller is cancelled (a stop) while it waits: those that joined it write
    # their own, none lost with it.
    notes = Notes(store, "ccv", "a")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    leader = asyncio.ensure_future(notes.note("N-0", 5.0))
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the leader waits")
    others = [asyncio.ensure_future(notes.note(i, 5.0)) for i in ("N-1", "N-2")]
    await asyncio.sleep(0)  # they join the leader's batch
    leader.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await asyncio.gather(*others) == [True, True]
    await holder
    assert await pending(store, "ccv", "a") == ["N-1", "N-2"]


async def test_a_batch_the_store_refuses_is_told_to_each_of_its_notes(
    store: Store, tmp_path: Path
) -> None:
    notes = Notes(store, "ccv", "a")
    await store.conn.execute("PRAGMA busy_timeout = 100")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    writes = [asyncio.ensure_future(notes.note(i, 5.0)) for i in ("N-0", "N-1")]
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the leader waits")
    locker = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another process holds the writer
        release.set()
        await holder
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert [type(o) for o in outcomes] == [type(outcomes[0])] * 2
    assert all(isinstance(o, StoreError) for o in outcomes)
    assert await pending(store, "ccv", "a") == []
