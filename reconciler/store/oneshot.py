"""A short write transaction in one hand-off to the database thread.

`Store.transaction()` sends BEGIN, the statements (a pass's write: its rows in one hand-off,
its events in another, `sql.run_statements`) and COMMIT to aiosqlite's thread one at a time,
and each hand-off wakes that thread and then the event loop again. For the few statements
of an API write (a CCV submit is recorded in one transaction and closed in another) those
wake-ups, not SQLite, are most of the time on a busy machine. Here the whole transaction runs as
one function on the thread: the same BEGIN IMMEDIATE ... COMMIT with the same durability
(synchronous=FULL), all of it committed or none of it. Someone waits for each such write (the
caller of a submit, for its answer), so it takes the writer before the batches of a pass that
wait for it (priority.py), behind at most the one transaction in progress. A sink's record of
its deliveries commits here too: a submit that arrives while one is in progress waits for one
hand-off instead of three.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .health import is_unusable
from .sql import Statement, on_thread

if TYPE_CHECKING:  # db.py imports the repositories, which commit through here
    from .db import Store


T = TypeVar("T")

# How much longer than usual (`wal_autocheckpoint`) these writes let the WAL grow before they
# checkpoint it themselves.
DEFER_CHECKPOINT = 4


class Written(NamedTuple):
    """What a committed transaction did."""

    first_rowid: int | None  # the rowid the first statement inserted, if it inserted one
    changes: int  # rows inserted, updated or deleted by every statement (triggers included)


def _run(conn: sqlite3.Connection, work: Callable[..., T], args: tuple[Any, ...]) -> T:
    # SQLite checkpoints the WAL inside the commit that takes it past `wal_autocheckpoint` pages:
    # for a submit (about 11 pages) every 90th or so, 1-5 ms more on a disk while its caller
    # waits (in a sink's record, while a submit arriving meanwhile waits). That is left to the
    # other writers (the checks' transactions: every submitted order is checked within seconds,
    # and the events a sink records come from them); only a WAL DEFER_CHECKPOINT times as long,
    # when nothing else committed meanwhile, is checkpointed here. The setting is the
    # connection's: the next transaction has the usual one again.
    limit = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    conn.execute(f"PRAGMA wal_autocheckpoint = {limit * DEFER_CHECKPOINT:d}")
    try:
        return _transaction(conn, work, args)
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {limit:d}")


def _transaction(conn: sqlite3.Connection, work: Callable[..., T], args: tuple[Any, ...]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _statements(conn: sqlite3.Connection, statements: Sequence[Statement]) -> Written:
    before = conn.total_changes
    first_rowid = None
    for i, (sql, parameters) in enumerate(statements):
        cursor = conn.execute(sql, parameters)
        if i == 0:
            first_rowid = cursor.lastrowid
    return Written(first_rowid, conn.total_changes - before)


async def commit_at_once(store: Store, statements: Sequence[Statement]) -> Written:
    """Run `statements` as one write transaction of `store`, in one hand-off; an SQLite error
    rolls all of them back and is raised (StoreError when the database is unusable)."""
    return await run_at_once(store, _statements, statements)


async def run_at_once(store: Store, work: Callable[..., T], *args: Any) -> T:
    """Run `work(sqlite3_connection, *args)` as one write transaction of `store`, in one
    hand-off, and return what it returns: for a write whose statements depend on what it reads
    first, in the same transaction. An exception rolls all of it back and is raised (an SQLite
    error that makes the database unusable as StoreError). It skips what `transaction()` does
    when another process wrote meanwhile (`history.follow`): a `work` that hands out a seq must
    take that up itself, as a CCV submit's claim does (`history.took_up`)."""
    if store.health.failing:
        # The write that ends a failure episode also records it: the ordinary path does that.
        async with store.transaction(urgent=True):
            return await on_thread(store.conn, work, *args)
    async with store.exclusive(urgent=True) as conn:
        # Awaited in the caller's task (sql.on_thread queues it on aiosqlite's thread, in
        # order): the transaction is queued on the thread at once, and its result wakes the
        # caller two turns of the event loop later (a shield, a task of its own, took five: on a
        # busy daemon each waits behind everything else that is ready). A cancelled caller
        # leaves the lock at once; its queued transaction is finished by the thread, whole,
        # before any later one starts.
        try:
            result: T = await on_thread(conn, _run, work, args)
        except sqlite3.Error as exc:
            if is_unusable(exc):
                raise store.unusable(exc) from None
            raise
    store.health.committed()
    return result
