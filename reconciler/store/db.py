"""The SQLite store: open, migrate, the writer lock, transactions; the tables' repositories.

One writer (the daemon or a catch-up, guarded by `WriterLock`); readers may come and go.
Every write that matters happens in one transaction per batch: a transition and its outbox rows
are on disk together (WAL, synchronous=FULL) before any sink sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiosqlite

from ..events import Event
from .build import check_sqlite
from .commit import commit
from .errors import StoreError, StoreLocked, file_error, guarded, unusable_error
from .events import Events, OutboxRows
from .files import WriterLock, check_file, create_private, one_name, store_exists, warn_readable
from .health import Episode, StoreHealth, is_unusable
from .history import HistoryMark, begin, follow, open_history
from .migrations import migrate, outdated
from .orders import Orders
from .priority import Urgent, WriteLock
from .rowid import give_orders_a_rowid
from .sources import Sources
from .upgrade_held import not_upgraded, upgrade_held


@guarded
class Store:
    """The database of one reconciler instance: the connection and its transactions, and one
    repository per group of tables (`orders`, `events`, `outbox`, `sources`)."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        store_id: str,
        sinks: Sequence[str],
        history: HistoryMark | None = None,
    ) -> None:
        self.conn = conn
        self.path = path
        # What event ids are derived from: the store's id, and its epoch once its history
        # went back (history.py).
        self.store_id = store_id
        self.history = history
        self.health = StoreHealth(path)
        self._write_lock = WriteLock()
        # Events of notifications, delivered before the backlog (priority.py).
        self.priority = Urgent()
        # What the open transaction's writes changed besides the database (see on_rollback).
        self._undo: list[Callable[[], None]] = []
        # The events the open transaction stored, and who hears of them once it commits (the
        # daemon's metrics count every event stored, whatever wrote it).
        self._added: list[Event] = []
        self.events_committed: Callable[[Sequence[Event]], None] = lambda events: None
        self.followed_version: int | None = None  # data_version `follow` last took up
        self.orders = Orders(self)
        self.events = Events(self, sinks)
        self.outbox = OutboxRows(self)
        self.sources = Sources(self)

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        readonly: bool = False,
        sinks: Sequence[str] = ("log",),
        locked: bool = False,
    ) -> Store:
        """Open (and create or migrate, unless read-only) the store at `path`; a database
        that belongs to another application is refused and left as it is. Each event stored
        is queued for every one of `sinks`. `locked`: the caller holds the `WriterLock`;
        otherwise it is taken for a migration, which another process holding it refuses."""
        if readonly:
            if not store_exists(path):
                raise FileNotFoundError(path)
            # Checked here first: when aiosqlite's own open fails, its thread outlives the
            # call and may report to an event loop that has closed (a traceback on stderr).
            try:
                check_file(path, os.R_OK)
            except OSError as exc:
                raise file_error(f"cannot use database {path}", path, exc) from None
            conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            try:
                create_private(path)
                check_file(path, os.R_OK | os.W_OK)
                one_name(path, locked=locked)
            except OSError as exc:
                raise file_error(f"cannot use database {path}", path, exc) from None
            conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute("PRAGMA busy_timeout = 5000")
            # Before anything that writes (file mode, journal mode, migrations): another
            # application's file must stay exactly as it was.
            version = await _refuse_foreign(conn)
            why_upgrade = await outdated(conn, version)
            if readonly and why_upgrade:
                raise not_upgraded(path, why_upgrade)
            if not readonly:
                check_sqlite()
                # Takes effect only before the first table: a new store then gives the space
                # that pruning frees back to the file system (space.py converts older
                # stores once).
                await conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = FULL")
                await conn.execute("PRAGMA foreign_keys = ON")
                if why_upgrade:
                    await _upgrade(conn, path, version, why_upgrade, locked=locked)
                warn_readable(path)  # the file's mode is the operator's (create_private)
            store_id = await _store_id(conn, create=not readonly)
            history, epoch = (None, None) if readonly else await open_history(conn, path, store_id)
        except sqlite3.Error as exc:
            await conn.close()
            raise unusable_error(path, exc) from None
        except StoreLocked:
            await conn.close()
            raise
        except StoreError as exc:
            await conn.close()
            # Of its own kind still: a full disk met by the upgrade's lock stays one.
            raise type(exc)(f"cannot use database {path}: {exc}") from None
        except OSError as exc:
            await conn.close()
            raise file_error(f"cannot use database {path}", path, exc) from None
        except BaseException:
            await conn.close()
            raise
        seed = store_id if epoch is None else f"{store_id}/{epoch}"
        return cls(conn, path, seed, sinks, history)

    def unusable(self, exc: sqlite3.Error) -> StoreError:
        """Record a failed statement in the store's health; return the error to raise."""
        self.health.failed(exc)
        return unusable_error(self.path, exc)

    async def quick_check(self) -> list[str]:
        """Return what SQLite's quick_check finds wrong (nothing: the file is sound). It reads
        every page: keep it for where that is cheap."""
        rows = await self.conn.execute_fetchall("PRAGMA quick_check(5)")
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems

    async def close(self) -> None:
        """Close the connection; an open transaction is rolled back by SQLite."""
        await self.conn.close()
        if self.history is not None:
            self.history.close()

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, urgent: bool = False, foreign_keys: bool = True
    ) -> AsyncIterator[Store]:
        """Run a block as one write transaction: all of it is committed, or none of it. An
        `urgent` one (a notification's, a sink's record) goes before the others waiting for
        the writer (priority.py). Without `foreign_keys`, SQLite does not look for the
        `deliveries` rows of a deleted event (a scan of them all, each: no index leads with
        `event_seq`): for retention's, which deletes them itself by their key."""
        async with self._write_lock.hold(urgent=urgent), self._foreign_keys(on=foreign_keys):
            try:
                version = await begin(self.conn)
            except sqlite3.Error as exc:
                if not is_unusable(exc):
                    raise
                raise self.unusable(exc) from None
            except asyncio.CancelledError:
                # The BEGIN was queued to the connection's thread and runs all the same; a
                # ROLLBACK queued after it undoes it, or every later BEGIN would fail.
                with contextlib.suppress(sqlite3.Error):
                    await asyncio.shield(self.conn.execute("ROLLBACK"))
                raise
            self._undo = []
            self._added = []
            self.priority.rolled_back()
            try:
                if version != self.followed_version:  # another process committed meanwhile
                    await follow(self, version)
                yield self
                if self.health.failing:
                    await self._record_recovery()
                # Shielded: a cancelled pass leaves no half batch behind, and once sent the
                # COMMIT decides (commit.py): cancelled meanwhile, a committed one is one.
                cancelled = await commit(self.conn)
            except BaseException as exc:
                for undo in self._undo:
                    undo()
                self._undo = []
                self._added = []
                self.priority.rolled_back()
                with contextlib.suppress(sqlite3.Error):  # the first error is the one to tell
                    if self.conn.in_transaction:
                        await asyncio.shield(self.conn.execute("ROLLBACK"))
                if isinstance(exc, sqlite3.Error) and is_unusable(exc):
                    raise self.unusable(exc) from None
                raise
            self._undo = []
            if self.history is not None and (seq := self.events.known_last_seq) is not None:
                self.history.note(seq)
            self.health.committed()
            self.priority.committed(self.events.sinks)
            if self._added:
                added, self._added = self._added, []
                self.events_committed(added)
            if cancelled is not None:
                raise cancelled

    @contextlib.asynccontextmanager
    async def _foreign_keys(self, *, on: bool) -> AsyncIterator[None]:
        """Turn SQLite's foreign key checks off for a block unless `on`, holding the writer: the
        pragma does nothing inside a transaction, and no other write of this store may run
        unchecked. Back on after it, whatever happens: shielded, queued before the next
        holder's statements on the connection's thread even if this task is cancelled."""
        if on:
            yield
            return
        try:
            await self.conn.execute("PRAGMA foreign_keys = OFF")
            yield
        finally:
            await asyncio.shield(self.conn.execute("PRAGMA foreign_keys = ON"))

    def stored(self, events: Sequence[Event]) -> None:
        """Note events the open transaction stored: `events_committed` hears of them after its
        commit, never of a rolled back one."""
        self._added += events

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Have `undo` called if the open transaction rolls back: for what its writes changed
        outside the database (a page of orders, the highest event seq)."""
        self._undo.append(undo)

    @contextlib.asynccontextmanager
    async def read_transaction(self) -> AsyncIterator[Store]:
        """Run a block of reads as one read transaction: each statement sees the database as
        the block's first read found it, whatever another process commits meanwhile (WAL keeps
        that version for it). For a connection no transaction of this store shares (a
        read-only store's)."""
        await self.conn.execute("BEGIN")
        try:
            yield self
        finally:
            # Only reads: nothing to keep. Shielded: a cancelled reader must not leave the
            # version held, which would keep the next checkpoint from finishing.
            with contextlib.suppress(sqlite3.Error):
                await asyncio.shield(self.conn.execute("ROLLBACK"))

    @contextlib.asynccontextmanager
    async def exclusive(self, *, urgent: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the connection for statements that make their own transaction (VACUUM, an
        incremental vacuum): no transaction of this store is open meanwhile. `urgent`: before
        the transactions waiting for the writer (a sink's short read)."""
        async with self._write_lock.hold(urgent=urgent):
            yield self.conn

    async def _record_recovery(self) -> None:
        # In the write that ends the episode: while it lasted, nothing could be written.
        episode = self.health.current
        if episode is not None:
            value = {
                "since": episode.since,
                "until": time.time(),
                "error": episode.error,
                "kind": episode.kind,
            }
            await self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_store_failure', ?)",
                (json.dumps(value),),
            )

    async def mark_demo(self) -> None:
        """Mark this store as made by `reconciler demo`: the next demo may start it afresh."""
        async with self.transaction():
            await self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('demo', '1')")
        # Into the main file at once: the next demo reads the mark there, as an immutable file
        # (files.made_by_a_demo), which ignores the WAL; a demo killed before any checkpoint
        # left the mark in the WAL alone, and its store was refused as no demo's.
        async with self.exclusive():
            await self.conn.execute_fetchall("PRAGMA wal_checkpoint(FULL)")

    async def recorded_failure(self) -> Episode | None:
        """Return the last store failure a writer recorded when it ended, if any."""
        rows = list(
            await self.conn.execute_fetchall(
                "SELECT value FROM meta WHERE key = 'last_store_failure'"
            )
        )
        if not rows:
            return None
        value = json.loads(rows[0][0])
        return Episode(value["since"], value["error"], value["kind"], value["until"])

    async def data_version(self) -> int:
        """Return SQLite's data_version: it changes when another connection commits."""
        rows = await self.conn.execute_fetchall("PRAGMA data_version")
        return int(next(iter(rows))[0])


async def _refuse_foreign(conn: aiosqlite.Connection) -> int:
    """Raise StoreError when the database has tables but is not a reconciler store; return its
    schema version. Ours has `meta` and `orders`, made by migration 1 in the transaction that
    set user_version (to 1, or to the last when the store was made whole at once), and the
    store id in `meta`, written by its first open."""
    rows = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {str(r[0]) for r in rows}
    version = await _user_version(conn)
    ours = version >= 1 and {"meta", "orders"} <= tables and await _has_store_id(conn)
    if tables and not ours:
        names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"it belongs to another application (tables: {names}) and is left as it is; "
            "give reconciler a file of its own in [store] path"
        )
    return version


# Migration 1's `meta`, as sqlite_master keeps it: the same in every release.
_META_SQL = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"


async def _has_store_id(conn: aiosqlite.Connection) -> bool:
    """Whether `meta` holds the store id, or is migration 1's and a first open stopped before
    writing the id (after the migrations' commits): then nothing was stored yet."""
    columns = await conn.execute_fetchall("SELECT name FROM pragma_table_info('meta')")
    if not {"key", "value"} <= {str(c[0]) for c in columns}:
        return False
    if await conn.execute_fetchall("SELECT 1 FROM meta WHERE key = 'store_id'"):
        return True
    meta = await conn.execute_fetchall("SELECT sql FROM sqlite_master WHERE name = 'meta'")
    stored = "SELECT 1 FROM meta UNION ALL SELECT 1 FROM orders LIMIT 1"
    return [tuple(r) for r in meta] == [(_META_SQL,)] and not await conn.execute_fetchall(stored)


async def _upgrade(
    conn: aiosqlite.Connection, path: Path, version: int, why: str, *, locked: bool
) -> None:
    """Migrate under the writer lock: a process of an older release holding it would run
    statements the new schema breaks. One of this release holding it has upgraded the store
    (maybe since `version` was read: then there is nothing left to do), or is upgrading or
    creating it."""
    lock = None if locked else WriterLock(path)
    # A new store another process is creating is ready in moments: wait for it, not fail.
    deadline = time.monotonic() + (CREATING_WAIT_S if version == 0 else 0.0)
    while lock is not None:
        try:
            # Its lock file's alone, which is what an earlier release takes: this process has
            # the database open, and the lock's own descriptor of it, closed with the lock,
            # would drop SQLite's locks (files.check_file).
            lock.acquire(lock_file_only=True)
            break
        except StoreLocked as exc:
            if await outdated(conn, await _user_version(conn)) is None:
                return  # the holder upgraded (or created) the store meanwhile
            if time.monotonic() >= deadline:
                raise upgrade_held(exc, why) from None
            await asyncio.sleep(0.05)
    try:
        # Each migration reads the version again in its own transaction (a new store's run
        # together in one): another writer may have run some since `version` was read.
        await migrate(conn)
        await give_orders_a_rowid(conn)
    finally:
        if lock is not None:
            lock.release()


# How long a first open waits for another process creating the same new store.
CREATING_WAIT_S = 5.0


async def _user_version(conn: aiosqlite.Connection) -> int:
    return int(next(iter(await conn.execute_fetchall("PRAGMA user_version")))[0])


async def _store_id(conn: aiosqlite.Connection, *, create: bool) -> str:
    async with conn.execute("SELECT value FROM meta WHERE key = 'store_id'") as cur:
        row = await cur.fetchone()
    if row is not None:
        return str(row[0])
    if not create:
        raise StoreError("not a reconciler store (no store id)")
    # Two processes creating the store at once both get here (the lock is released before):
    # the first id written is the store's.
    await conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (str(uuid.uuid4()),)
    )
    return await _store_id(conn, create=False)
