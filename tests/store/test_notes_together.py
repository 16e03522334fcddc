"""Notes of notifications written together (notified_orders.Notes): one the writer's wait
joined is kept or told failed as it would have been alone, never lost with its batch's leader."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import Store, StoreError, after_commit
from reconciler.store.notified_orders import Notes, pending
from reconciler.store.sql import on_thread
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
    writes = [asyncio.ensure_future(notes.note(i, 5.0)) for i in ("N-0", "N-1", "N-2")]
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the leader waits")
    begins = await traced_begins(store)
    locker = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another process holds the writer
        release.set()
        await holder
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert [type(o) for o in outcomes] == [type(outcomes[0])] * 3
    assert all(isinstance(o, StoreError) for o in outcomes)
    # The batch's one attempt: not one busy wait each, one after the other.
    assert [s for s in begins if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    assert await pending(store, "ccv", "a") == []


def on_disk(db: Path) -> list[str]:
    """The notes another connection reads in the file: those committed."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT order_id FROM notified_orders ORDER BY order_id")
        return [str(r[0]) for r in rows]
    finally:
        conn.close()


def held_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch, committing: asyncio.Event, release: asyncio.Event
) -> None:
    """The store's COMMITs wait for `release` once sent (a slow fsync), `committing` set then."""
    real = store.conn.execute

    def execute(sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql != "COMMIT":
            return real(sql, *args, **kwargs)

        async def slow() -> Any:
            committing.set()
            await release.wait()
            return await real(sql, *args, **kwargs)

        return slow()

    monkeypatch.setattr(store.conn, "execute", execute)


async def traced_begins(store: Store) -> list[str]:
    """The write transactions the store's connection begins from now on, as SQLite runs them."""
    statements: list[str] = []
    await on_thread(store.conn, lambda conn: conn.set_trace_callback(statements.append))
    return statements


async def batch_of_three(
    store: Store, notes: Notes
) -> list[asyncio.Future[tuple[object, list[str]]]]:
    """A leader waiting for the writer and two notes in its batch, each with what the file
    holds at the moment it is told its outcome."""
    db = Path(store.path)

    async def told(order_id: str) -> tuple[object, list[str]]:
        try:
            kept: object = await notes.note(order_id, 5.0)
        except asyncio.CancelledError as exc:  # a stop: whether it committed is the outcome
            kept = "cancelled after commit" if after_commit(exc) else "cancelled"
        return kept, on_disk(db)

    leader = asyncio.ensure_future(told("N-0"))
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the leader waits")
    others = [asyncio.ensure_future(told(i)) for i in ("N-1", "N-2")]
    await poll_until(lambda: notes._open is not None and len(notes._open.notes) == 3, 5, "joined")
    return [leader, *others]


async def test_each_note_of_a_batch_is_told_kept_only_once_its_commit_is_on_disk(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = Notes(store, "ccv", "a")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    writes = await batch_of_three(store, notes)
    committing, landed = asyncio.Event(), asyncio.Event()
    held_commit(store, monkeypatch, committing, landed)
    release.set()
    await committing.wait()  # a note told kept before its COMMIT has run by now
    landed.set()
    everything = ["N-0", "N-1", "N-2"]
    assert await asyncio.gather(*writes) == [(True, everything)] * 3
    await holder


async def test_a_batch_whose_commit_fails_tells_each_note_and_keeps_none(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its statements ran; the COMMIT fails (a disk error): none is kept, each is told so.
    notes = Notes(store, "ccv", "a")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    writes = await batch_of_three(store, notes)
    real = store.conn.execute

    def execute(sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql != "COMMIT":
            return real(sql, *args, **kwargs)

        async def failing() -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        return failing()

    monkeypatch.setattr(store.conn, "execute", execute)
    release.set()
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    monkeypatch.setattr(store.conn, "execute", real)
    assert all(isinstance(o, StoreError) for o in outcomes), outcomes
    assert len({str(o) for o in outcomes}) == 1
    assert on_disk(Path(store.path)) == []
    await holder


async def test_a_note_stopped_while_its_batch_waits_leaves_it(store: Store) -> None:
    # Stopped (end_writes) before its batch holds the writer: it is not written, as its
    # caller is told, though its leader's note is.
    notes = Notes(store, "ccv", "a")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    leader = asyncio.ensure_future(notes.note("N-0", 5.0))
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the leader waits")
    member = asyncio.ensure_future(notes.note("N-1", 5.0))
    await poll_until(lambda: notes._open is not None and len(notes._open.notes) == 2, 5, "joined")
    member.cancel()
    (stopped,) = await asyncio.gather(member, return_exceptions=True)
    assert type(stopped) is asyncio.CancelledError
    release.set()
    assert await leader is True
    await holder
    assert on_disk(Path(store.path)) == ["N-0"]


async def test_a_note_stopped_while_its_batch_commits_is_told_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopped once its batch holds the writer: its batch decides, and its caller is told so
    # (marked `after_commit`: "recorded" at the stop, not "stopped before it was written").
    notes = Notes(store, "ccv", "a")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    leader, member, other = await batch_of_three(store, notes)
    committing, landed = asyncio.Event(), asyncio.Event()
    held_commit(store, monkeypatch, committing, landed)
    release.set()
    await committing.wait()
    member.cancel()
    landed.set()
    everything = ["N-0", "N-1", "N-2"]
    assert await member == ("cancelled after commit", everything)
    assert [await leader, await other] == [(True, everything)] * 2
    await holder


async def test_a_leader_cancelled_as_its_commit_lands_tells_the_others_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The leader's caller stops as the batch's COMMIT lands (marked `after_commit`): the others
    # are kept by it, not written again.
    notes = Notes(store, "ccv", "a")
    release, began = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(held(store, release, began))
    await began.wait()
    leader, *others = await batch_of_three(store, notes)
    committing, landed = asyncio.Event(), asyncio.Event()
    held_commit(store, monkeypatch, committing, landed)
    begins = await traced_begins(store)
    release.set()
    await committing.wait()
    leader.cancel()
    landed.set()
    everything = ["N-0", "N-1", "N-2"]
    assert await leader == ("cancelled after commit", everything)
    assert await asyncio.gather(*others) == [(True, everything)] * 2
    assert [s for s in begins if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    await holder
