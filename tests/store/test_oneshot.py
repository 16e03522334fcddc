"""A short write transaction in one hand-off, on a real SQLite file: all of it or none of it,
durable before it returns, and the store usable after an error, a cancel or a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.events import submit_uncertain_event
from reconciler.store import Store, StoreError
from reconciler.store.oneshot import commit_at_once
from reconciler.store.sql import Statement
from tests.conftest import count_handoffs

INSERT = (
    "INSERT INTO submissions (account, external_reference, state, created_at) VALUES (?, ?, ?, ?)"
)


def insert(reference: str) -> Statement:
    return (INSERT, ("default", reference, "sending", 1.0))


def references(db: Path) -> list[str]:
    """The submissions' references, read by a connection of its own (committed rows only)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT external_reference FROM submissions ORDER BY id").fetchall()
    return [r[0] for r in rows]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "r.db")
    try:
        yield store
    finally:
        await store.close()


async def test_every_statement_is_committed_together(store: Store) -> None:
    written = await commit_at_once(store, [insert("a"), insert("b")])

    assert references(store.path) == ["a", "b"]
    assert written.changes == 2
    rows = await store.conn.execute_fetchall(
        "SELECT id FROM submissions WHERE external_reference = 'a'"
    )
    assert written.first_rowid == next(iter(rows))[0]
    assert not store.conn.in_transaction


async def test_a_failing_statement_rolls_back_the_others(store: Store) -> None:
    await commit_at_once(store, [insert("a")])

    # The second live submission of a reference breaks the unique index.
    with pytest.raises(sqlite3.IntegrityError):
        await commit_at_once(store, [insert("b"), insert("a")])

    assert references(store.path) == ["a"]
    assert not store.conn.in_transaction
    async with store.transaction():  # the next transaction starts as usual
        await store.conn.execute(*insert("c"))
    assert references(store.path) == ["a", "c"]


async def test_a_cancelled_caller_leaves_the_write_whole_and_the_store_usable(
    store: Store,
) -> None:
    task = asyncio.ensure_future(commit_at_once(store, [insert("a"), insert("b")]))
    await asyncio.sleep(0)  # the task has taken the write lock and handed its write over
    assert store._write_lock.locked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with store.transaction():
        await store.conn.execute(*insert("c"))
    assert references(store.path) == ["a", "b", "c"]


async def test_a_full_disk_is_a_store_error_and_the_next_write_ends_the_episode(
    store: Store,
) -> None:
    # SQLITE_FULL without filling a disk: the database may not grow by a page.
    pages = next(iter(await store.conn.execute_fetchall("PRAGMA page_count")))[0]
    await store.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [insert(f"{n:0100d}") for n in range(100)]

    with pytest.raises(StoreError, match=str(store.path)):
        await commit_at_once(store, big)

    assert store.health.failing
    assert references(store.path) == []
    await store.conn.execute("PRAGMA max_page_count = 1000000")
    await commit_at_once(store, big)
    assert not store.health.failing
    assert len(references(store.path)) == 100
    recorded = await store.recorded_failure()
    assert recorded is not None and "full" in recorded.error


async def test_it_goes_before_the_batches_waiting_for_the_writer(store: Store) -> None:
    # A submit's caller waits for its answer; a pass's batch can wait one transaction longer.
    holding, release = asyncio.Event(), asyncio.Event()

    async def long_batch() -> None:
        async with store.transaction():
            await store.conn.execute(*insert("held"))
            holding.set()
            await release.wait()

    async def batch() -> None:
        async with store.transaction():
            await store.conn.execute(*insert("batch"))

    first = asyncio.ensure_future(long_batch())
    await holding.wait()
    queued = asyncio.ensure_future(batch())
    await asyncio.sleep(0)  # the batch waits for the writer
    submit = asyncio.ensure_future(commit_at_once(store, [insert("submit")]))
    await asyncio.sleep(0)  # and the submit's write after it
    assert store._write_lock.waiting == 2
    release.set()
    await asyncio.gather(first, queued, submit)

    assert references(store.path) == ["held", "submit", "batch"]


async def test_it_leaves_the_wal_checkpoint_to_the_other_writers(store: Store) -> None:
    # A WAL past the auto-checkpoint size (20 pages here), not yet copied into the database.
    await store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await store.conn.execute("PRAGMA wal_autocheckpoint = 0")
    async with store.transaction():
        for n in range(12):  # about two pages each, the row and its index entry
            await store.conn.execute(*insert(f"{n:03000d}"))
    await store.conn.execute("PRAGMA wal_autocheckpoint = 20")
    copied = store.path.read_bytes()

    await commit_at_once(store, [insert("submit")])
    assert store.path.read_bytes() == copied  # the submit's caller did not wait for a checkpoint
    async with store.transaction():  # the next ordinary write checkpoints, as before
        await store.conn.execute(*insert("batch"))
    assert store.path.read_bytes() != copied
    assert references(store.path)[-2:] == ["submit", "batch"]


async def test_it_checkpoints_a_wal_that_nothing_else_checkpointed(store: Store) -> None:
    await store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await store.conn.execute("PRAGMA wal_autocheckpoint = 5")  # deferred up to 20 pages
    copied = store.path.read_bytes()
    for n in range(30):
        await commit_at_once(store, [insert(f"{n:03000d}")])
    assert store.path.read_bytes() != copied
    rows = await store.conn.execute_fetchall("PRAGMA wal_autocheckpoint")
    assert next(iter(rows))[0] == 5  # the connection's own setting is back


async def test_a_sink_s_record_of_its_deliveries_is_one_hand_off(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CCV submit that arrives while a sink records a batch waits for the whole record: one
    # hand-off to the database thread, not BEGIN, each UPDATE and COMMIT (three or more).
    events = [
        submit_uncertain_event(
            store.store_id, n, account="default", reference=f"r{n}", time=1.0, reason="b"
        )
        for n in range(6)
    ]
    async with store.transaction():
        await store.events.add(events)
    handed = count_handoffs(monkeypatch, store)
    seqs = [e.seq for e in (await store.outbox.due("log", 2.0, 10)).rows]
    handed.clear()
    await store.outbox.delivered("log", [seqs[0], seqs[1], seqs[4]], 2.0)  # two runs of seqs

    assert len(handed) == 1
    assert [e.seq for e in (await store.outbox.due("log", 3.0, 10)).rows] == [
        seqs[2],
        seqs[3],
        seqs[5],
    ]


async def test_its_result_wakes_the_caller_within_two_turns_of_the_event_loop(
    store: Store,
) -> None:
    # On a busy daemon every turn of the event loop waits behind everything else that is ready
    # (a pass's answers, a sink's batch): a submit's two commits should take as few as possible
    # between the thread's COMMIT and the caller going on (a shielded task took five).
    release, finished = threading.Event(), threading.Event()
    blocker = asyncio.ensure_future(store.conn._execute(release.wait))  # type: ignore[no-untyped-call]
    await asyncio.sleep(0)  # the database thread is held
    task = asyncio.ensure_future(commit_at_once(store, [insert("a")]))
    for _ in range(3):
        await asyncio.sleep(0)  # the transaction is queued behind the blocker
    marker = asyncio.ensure_future(store.conn._execute(finished.set))  # type: ignore[no-untyped-call]
    await asyncio.sleep(0)  # queued behind the transaction
    release.set()
    # Blocking the loop: when the marker has run, the transaction is committed and its result
    # posted to the event loop.
    assert finished.wait(10)
    turns = 0
    while not task.done():
        await asyncio.sleep(0)  # the turns it takes are what is counted
        turns += 1
    assert turns <= 2, turns
    await asyncio.gather(blocker, marker, task)
    assert references(store.path) == ["a"]
