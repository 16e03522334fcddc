"""A write transaction cancelled while its BEGIN is on the way (a pass cancelled at shutdown)
leaves the connection clean: the next transaction starts, and the process can close it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import Store


async def test_a_transaction_cancelled_during_begin_leaves_none_open(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "r.db")
    try:
        entered = asyncio.Event()

        async def write() -> None:
            async with store.transaction():
                entered.set()

        task = asyncio.ensure_future(write())
        await asyncio.sleep(0)  # the task has sent BEGIN and waits for it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not entered.is_set()
        # the BEGIN ran on the connection's thread all the same; it must have been undone
        async with store.transaction():
            await store.conn.execute("SELECT 1")
        assert not store.conn.in_transaction
    finally:
        await store.close()


async def test_a_close_cancelled_on_its_way_has_ended_when_the_cancellation_comes_out(
    tmp_path: Path,
) -> None:
    # Ctrl-C during a command's last step: what runs after the store's close (the writer lock's
    # release, the close of its descriptor of the database, which drops this process's SQLite
    # locks) must find SQLite done, its write-ahead log checkpointed and removed.
    db = tmp_path / "r.db"
    store = await Store.open(db)
    await store.conn.execute("PRAGMA wal_autocheckpoint = 0")  # a log for the close to write back
    async with store.transaction():
        await store.conn.execute("CREATE TABLE filler (x BLOB)")
        await store.conn.executemany("INSERT INTO filler VALUES (randomblob(4096))", [()] * 4000)
    assert db.with_name("r.db-wal").stat().st_size > 10_000_000
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # the close is on its way to the connection's thread
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert not db.with_name("r.db-wal").exists()


async def test_a_transaction_cancelled_during_its_commit_is_what_the_commit_made_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow fsync: the COMMIT is on the connection's thread when the task is cancelled. It
    # commits all the same; the transaction must count as committed (its events told, nothing
    # undone), not as rolled back, and the cancellation still comes out.
    db = tmp_path / "r.db"
    store = await Store.open(db)
    try:
        told: list[Sequence[object]] = []
        store.events_committed = told.append
        committing, release = asyncio.Event(), asyncio.Event()
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
        undone: list[str] = []

        async def write() -> None:
            async with store.transaction():
                await store.conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
                store.on_rollback(lambda: undone.append("undone"))
                store.stored(["event"])  # type: ignore[list-item]

        task = asyncio.ensure_future(write())
        await committing.wait()
        task.cancel()
        await asyncio.sleep(0)  # the cancellation reaches the task, its COMMIT still running
        assert not task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        monkeypatch.setattr(store.conn, "execute", real)
        assert (undone, told) == ([], [["event"]])
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as other:
            assert other.execute("SELECT value FROM meta WHERE key = 'k'").fetchall() == [("v",)]
        async with store.transaction():  # the connection is clean
            await store.conn.execute("DELETE FROM meta WHERE key = 'k'")
        assert not store.conn.in_transaction
    finally:
        await store.close()
