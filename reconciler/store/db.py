"""The SQLite store: snapshot of followed orders, events (the history) and the outbox.

One writer (the daemon or a catch-up, guarded by `WriterLock`); readers may come and go.
Every write that matters happens in one transaction per batch: a transition and its outbox rows
are on disk together (WAL, synchronous=FULL) before any sink sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import inspect
import itertools
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiosqlite

from . import store_counts
from .events import Event
from .model import OrderKey, OrderState, Source, SourceState
from .poller import mask_parts, parts_mask
from .store_health import Episode, StoreHealth, is_unusable


class OutboxEvent(NamedTuple):
    """One stored event as a sink receives it; `body` is the CloudEvent JSON, byte-identical
    on every (re)delivery. A named tuple: one is made per event stored. The store owns it:
    it is what the outbox reads."""

    seq: int
    id: str
    type: str
    order_id: str | None
    body: bytes
    attempts: int = 0  # earlier failed attempts for this sink
    severity: str | None = None  # the stored event's; None: read it from the body


# Forward-only migrations; each runs with its `PRAGMA user_version` bump in one transaction.
# Statements are split on ";", so comments inside them must not contain one.
MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE orders (
        -- a rowid table: its indexes then carry an integer, not the whole text key
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        status TEXT,
        external_reference TEXT,
        first_seen REAL,
        last_changed REAL,
        last_checked REAL,
        end_state INTEGER NOT NULL DEFAULT 0,
        not_found INTEGER NOT NULL DEFAULT 0,
        failure_streak INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 0,
        next_check_at REAL NOT NULL DEFAULT 0,
        interval_s REAL,
        stuck_version INTEGER,
        tracked_at REAL,
        UNIQUE (source, account, order_id)
    );
    CREATE INDEX orders_due ON orders (next_check_at) WHERE end_state = 0;
    CREATE INDEX orders_reference ON orders (external_reference)
        WHERE external_reference IS NOT NULL;
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        previous_status TEXT,
        status TEXT NOT NULL,
        at REAL NOT NULL,
        via TEXT NOT NULL,
        -- events.id is unique already: no second index on random text on the hot path
        event_id TEXT NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        time REAL NOT NULL,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT,
        severity TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX events_time ON events (time);
    CREATE TABLE deliveries (
        sink TEXT NOT NULL,
        event_seq INTEGER NOT NULL REFERENCES events (seq),
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        last_error TEXT,
        delivered_at REAL,
        PRIMARY KEY (sink, event_seq)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_due ON deliveries (sink, next_attempt_at, event_seq)
        WHERE state = 'pending';
    CREATE TABLE sources (
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        failing INTEGER NOT NULL DEFAULT 0,
        failure_streak INTEGER NOT NULL DEFAULT 0,
        episode INTEGER NOT NULL DEFAULT 0,
        last_success REAL,
        last_failure REAL,
        last_error TEXT,
        PRIMARY KEY (source, account)
    ) WITHOUT ROWID;
    CREATE TABLE sinks (
        name TEXT PRIMARY KEY,
        disabled_at REAL,
        reason TEXT
    ) WITHOUT ROWID;
    CREATE TABLE pending_references (
        account TEXT NOT NULL,
        external_reference TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (account, external_reference)
    ) WITHOUT ROWID;
    """,
    # 2: the history is the events table (every transition has its event, in order); the
    # transitions table repeated it row for row
    """
    DROP TABLE transitions
    """,
    # 3: CCV submissions through the integration API, recorded before they are forwarded
    # (reconciler/store_submissions.py owns this table)
    """
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        external_reference TEXT NOT NULL,
        state TEXT NOT NULL,
        order_id TEXT,
        http_status INTEGER,
        reason TEXT,
        created_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE UNIQUE INDEX submissions_live ON submissions (account, external_reference)
        WHERE state != 'failed';
    CREATE INDEX submissions_open ON submissions (state) WHERE state IN ('sending', 'uncertain')
    """,
    # 4: when an order found before first answered "not found"; it is reported only when a
    # later check confirms it. CCV `Failed` is no end state any more (a CCV employee may still
    # complete or cancel the order): such orders are watched like settled ones
    """
    ALTER TABLE orders ADD COLUMN missing_since REAL;
    UPDATE orders SET end_state = 0, next_check_at = 0 WHERE source = 'ccv' AND status = 'Failed'
    """,
    # 5: /metrics counts these on every scrape; partial indexes hold only the few rows counted,
    # so neither count reads the whole table (millions of rows after a year)
    """
    CREATE INDEX deliveries_dead ON deliveries (sink) WHERE state = 'dead';
    CREATE INDEX orders_stuck ON orders (source, account)
        WHERE stuck_version = version AND end_state = 0
    """,
    # 6: CCNow order actions (ship, cancel, track, adjust), recorded before they are sent and
    # closed with CCNow's answer (store_commands.py)
    """
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        action TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        notes TEXT,
        amount TEXT,
        trackname TEXT,
        tracknumber TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        answer TEXT,
        created_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE UNIQUE INDEX commands_key ON commands (account, idempotency_key);
    CREATE INDEX commands_open ON commands (state, next_attempt_at)
        WHERE state IN ('queued', 'sending', 'uncertain')
    """,
    # 7: followed orders counted per status, kept by triggers (reconciler/store_counts.py)
    store_counts.MIGRATION,
    # 8: when an account started failing, for `status`, without reading every event
    """
    CREATE INDEX events_source_failed ON events (source, account, seq)
        WHERE type = 'source.failed'
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_ORDER_COLUMNS = (
    "source, account, order_id, status, external_reference, first_seen, last_changed, "
    "last_checked, end_state, not_found, failure_streak, version, next_check_at, interval_s, "
    "stuck_version, tracked_at, missing_since"
)
_ORDER_UPSERT = (
    f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES ({', '.join('?' * 17)}) "
    "ON CONFLICT (source, account, order_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ORDER_COLUMNS.replace(" ", "").split(",")[3:])
)


# The hot writes take many rows in one statement (a multi-row VALUES list): one call into SQLite,
# and one step with the GIL released, per chunk of rows. An executemany steps once per row, and
# the database thread needs the GIL back after each step; while the event loop is busy with HTTP
# it waits for it every time (a batch of 500 rows took a hundred times longer that way).
# Known orders are written back by rowid. Columns an update never changes (the key, tracked_at)
# are left out, and the external reference, which seldom changes, has a statement of its own
# that skips the rows where it did not: the index on it stays untouched.
_ROWS_PER_STATEMENT = 1000  # under SQLite's default bound of 32766 parameters per statement
_UPDATED_COLUMNS = [
    c
    for c in _ORDER_COLUMNS.replace(" ", "").split(",")[3:]
    if c not in ("external_reference", "tracked_at")
]


@functools.lru_cache(maxsize=32)
def _values(rows: int, columns: int) -> str:
    """Return a VALUES list of `rows` rows of `columns` parameters."""
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def _order_update(rows: int) -> str:
    n = len(_UPDATED_COLUMNS)
    return (
        "UPDATE orders SET "
        + ", ".join(f"{c} = v.column{i}" for i, c in enumerate(_UPDATED_COLUMNS, 1))
        + f" FROM (VALUES {_values(rows, n + 1)}) AS v WHERE orders.id = v.column{n + 1}"
    )


def _reference_update(rows: int) -> str:
    return (
        f"UPDATE orders SET external_reference = v.column2 FROM (VALUES {_values(rows, 2)}) AS v "
        "WHERE orders.id = v.column1 AND orders.external_reference IS NOT v.column2"
    )


def _event_insert(rows: int) -> str:
    return (
        "INSERT INTO events (seq, id, type, time, source, account, order_id, severity, body) "
        f"VALUES {_values(rows, 9)} ON CONFLICT (id) DO NOTHING"
    )


def _chunks(items: Sequence[Sequence[Any]]) -> Iterator[tuple[int, list[Any]]]:
    """Yield (rows, flat parameters) for each chunk of at most _ROWS_PER_STATEMENT rows."""
    for i in range(0, len(items), _ROWS_PER_STATEMENT):
        chunk = items[i : i + _ROWS_PER_STATEMENT]
        yield len(chunk), list(itertools.chain.from_iterable(chunk))


# Counted for /metrics; each matches the WHERE of its partial index (migration 5) word for word,
# which is what lets SQLite use it.
DEAD_LETTERS_SQL = "SELECT sink, count(*) FROM deliveries WHERE state = 'dead' GROUP BY sink"
STUCK_SQL = (
    "SELECT source, account, count(*) FROM orders "
    "WHERE stuck_version = version AND end_state = 0 GROUP BY source, account"
)

_CHUNK = 500  # bound on bound parameters per IN (...) query
_TRACK_CHUNK = 5000  # orders per statement of `track`, so that a long file shows progress

# A sink's pending events, read through the partial index of pending rows in its own order:
# an ORDER BY seq would sort every pending row, and the primary key would walk every delivered
# one. Rows never attempted have next_attempt_at 0, so the index has them in seq order; the
# few that failed before (> 0) are read apart.
_OUTBOX_COLUMNS = (
    "SELECT e.seq, e.id, e.type, e.order_id, e.body, d.attempts, e.severity, d.next_attempt_at, "
    "e.source, e.account FROM deliveries d INDEXED BY deliveries_due "
    "JOIN events e ON e.seq = d.event_seq WHERE d.sink = ? AND d.state = 'pending' "
)
_RETRIED = _OUTBOX_COLUMNS + "AND d.next_attempt_at > 0"
_FRESH = (
    _OUTBOX_COLUMNS + "AND d.next_attempt_at = 0 AND d.event_seq > ? ORDER BY d.event_seq LIMIT ?"
)


class StoreError(Exception):
    """The database cannot be used (unreadable, newer schema, not a reconciler store)."""


class StoreLocked(StoreError):
    """Another process (a running daemon or catch-up) holds the store's writer lock."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _guard(method: _F) -> _F:
    """Turn SQLite's "cannot use the file" errors of a Store method into StoreError."""

    @functools.wraps(method)
    async def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if not is_unusable(exc):
                raise  # a bug in a statement, not a property of the file
            raise self.unusable(exc) from None

    return guarded  # type: ignore[return-value]


def _guarded(cls: type[Store]) -> type[Store]:
    """Guard every public coroutine method of the store: a corrupt file, a full disk or an I/O
    error is a StoreError naming the file wherever it is found, never a traceback."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _guard(member))
    return cls


class WriterLock:
    """An exclusive advisory lock beside the database: one writer per store."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreLocked at once; never waits."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise StoreLocked(
                f"store {self.path.with_suffix('')} is in use by another reconciler process"
                + (f" (pid {holder})" if holder else "")
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (also released by the kernel when the process dies)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _row_to_state(row: Sequence[Any]) -> OrderState:
    # Positional, in field order (the columns follow it after the key): this runs for every
    # order a pass checks, and keywords cost twice as much.
    return OrderState(
        OrderKey(row[0], row[1], row[2]),
        row[3],  # status
        row[4],  # external_reference
        row[5],  # first_seen
        row[6],  # last_changed
        row[7],  # last_checked
        bool(row[8]),  # end_state
        bool(row[9]),  # not_found
        row[10],  # failure_streak
        row[11],  # version
        row[12],  # next_check_at
        row[13],  # interval_s
        row[14],  # stuck_version
        row[15],  # tracked_at
        row[16],  # missing_since
    )


def state_row(s: OrderState, plan: tuple[float | None, float] | None = None) -> tuple[Any, ...]:
    """Return the `orders` row of a snapshot state, in column order; `plan` (interval, next
    check time) replaces the state's own schedule."""
    interval_s, next_check_at = plan if plan is not None else (s.interval_s, s.next_check_at)
    return (
        s.key.source,
        s.key.account,
        s.key.order_id,
        s.status,
        s.external_reference,
        s.first_seen,
        s.last_changed,
        s.last_checked,
        int(s.end_state),
        int(s.not_found),
        s.failure_streak,
        s.version,
        next_check_at,
        interval_s,
        s.stuck_version,
        s.tracked_at,
        s.missing_since,
    )


@dataclass(frozen=True, slots=True)
class Due:
    """What a sink may deliver now, and when it will have more."""

    rows: list[OutboxEvent]  # deliverable now, in seq (commit) order
    next_at: float | None  # when the first event waiting for its retry is due (None: none)
    full: bool  # `rows` reached the limit: more may be deliverable at once


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event row as the `events` command shows it."""

    seq: int
    id: str
    type: str
    time: float
    order_id: str | None
    severity: str
    body: bytes
    undelivered: tuple[str, ...]  # sinks that do not have it (pending or dead)


@_guarded
class Store:
    """The database of one reconciler instance."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, store_id: str) -> None:
        self.conn = conn
        self.path = path
        self.store_id = store_id
        self.health = StoreHealth(path)
        self.sink_names: tuple[str, ...] = ("log",)
        self._write_lock = asyncio.Lock()
        # rowids of the orders loaded by the open transaction: (source, account, order_id) -> id
        self._rowids: dict[tuple[str, str, str], int] = {}
        # The page of orders a pass is checking, kept current by our own writes (rowid, row),
        # so that each batch need not read its orders back. Another process that writes the
        # store (`track`, `untrack`) changes PRAGMA data_version, and the page is dropped.
        self._page: dict[tuple[str, str, str], tuple[int, tuple[Any, ...]]] = {}
        self._page_version: int | None = None
        self._staged: dict[tuple[str, str, str], tuple[int, tuple[Any, ...]]] = {}
        # Highest event seq stored; None: ask the database.
        self._last_seq: int | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, *, readonly: bool = False) -> Store:
        """Open (and create or migrate, unless read-only) the store at `path`; a database
        that belongs to another application is refused and left as it is."""
        if readonly:
            if not path.exists():
                raise FileNotFoundError(path)
            conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # Create the file ourselves so it is never world-readable, not even for a moment.
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as exc:
                raise StoreError(f"cannot use database {path}: {exc.strerror}") from None
            conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute("PRAGMA busy_timeout = 5000")
            # Before anything that writes (journal mode, migrations): another application's
            # file must stay exactly as it was.
            await _refuse_foreign(conn)
            if not readonly:
                os.chmod(path, 0o600)
                _check_sqlite()
                # Takes effect only before the first table: a new store then gives the space
                # that pruning frees back to the file system (store_retention.py converts
                # older stores once).
                await conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = FULL")
                await conn.execute("PRAGMA foreign_keys = ON")
                await _migrate(conn)
            store_id = await _store_id(conn, create=not readonly)
        except sqlite3.Error as exc:
            await conn.close()
            raise _unusable(path, exc) from None
        except StoreError as exc:
            await conn.close()
            raise StoreError(f"cannot use database {path}: {exc}") from None
        except OSError as exc:
            await conn.close()
            raise StoreError(f"cannot use database {path}: {exc.strerror}") from None
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, store_id)

    def unusable(self, exc: sqlite3.Error) -> StoreError:
        """Record a failed statement in the store's health; return the error to raise."""
        self.health.failed(exc)
        return _unusable(self.path, exc)

    async def quick_check(self) -> list[str]:
        """Return what SQLite's quick_check finds wrong (nothing: the file is sound). It reads
        every page: keep it for where that is cheap."""
        rows = await self.conn.execute_fetchall("PRAGMA quick_check(5)")
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems

    async def close(self) -> None:
        """Close the connection; an open transaction is rolled back by SQLite."""
        await self.conn.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Store]:
        """Run a block as one write transaction: all of it is committed, or none of it."""
        async with self._write_lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
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
            self._rowids.clear()
            self._staged.clear()
            try:
                yield self
                if self.health.failing:
                    await self._record_recovery()
                # Shielded: a cancelled pass must still leave no half batch behind.
                await asyncio.shield(self.conn.execute("COMMIT"))
            except BaseException as exc:
                self._staged.clear()
                self._last_seq = None
                with contextlib.suppress(sqlite3.Error):  # the first error is the one to tell
                    if self.conn.in_transaction:
                        await asyncio.shield(self.conn.execute("ROLLBACK"))
                if isinstance(exc, sqlite3.Error) and is_unusable(exc):
                    raise self.unusable(exc) from None
                raise
            self.health.committed()
            self._page.update(self._staged)
            self._staged.clear()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the connection for statements that make their own transaction (VACUUM, an
        incremental vacuum): no transaction of this store is open meanwhile."""
        async with self._write_lock:
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

    # --- snapshot ----------------------------------------------------------------------------

    async def load_orders(self, keys: Iterable[OrderKey]) -> dict[OrderKey, OrderState]:
        """Return the snapshot rows of the given orders (missing ones are absent)."""
        if self._page and await self.data_version() != self._page_version:
            self.forget_page()
        page = self._page
        found: dict[OrderKey, OrderState] = {}
        groups: dict[tuple[str, str], list[str]] = {}
        for key in keys:
            hit = page.get(key)  # an OrderKey is the tuple (source, account, order_id)
            if hit is not None:
                found[key] = _row_to_state(hit[1])
                self._rowids[key] = hit[0]
            else:
                groups.setdefault((key.source, key.account), []).append(key.order_id)
        for (source, account), ids in groups.items():
            unique = list(dict.fromkeys(ids))
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                sql = (
                    f"SELECT {_ORDER_COLUMNS}, id FROM orders WHERE source = ? AND account = ? "
                    f"AND order_id IN ({', '.join('?' * len(chunk))})"
                )
                for row in await self.conn.execute_fetchall(sql, (source, account, *chunk)):
                    state = _row_to_state(row)
                    found[state.key] = state
                    self._rowids[(row[0], row[1], row[2])] = row[17]
        return found

    async def save_order_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write snapshot rows given as `state_row` tuples (inside a transaction): rows loaded
        in this transaction by rowid, the others by upsert."""
        known: list[tuple[Any, ...]] = []
        references: list[tuple[int, str]] = []
        new = []
        page, staged = self._page, self._staged
        for row in rows:
            key = (row[0], row[1], row[2])
            rowid = self._rowids.get(key)
            if rowid is None:
                new.append(row)
                continue
            known.append((row[3], *row[5:15], row[16], rowid))
            if row[4] is not None:
                references.append((rowid, row[4]))
            if key in page:
                staged[key] = (rowid, row)
        for n, params in _chunks(known):
            await self.conn.execute(_order_update(n), params)
        for n, params in _chunks(references):
            await self.conn.execute(_reference_update(n), params)
        if new:
            await self.conn.executemany(_ORDER_UPSERT, new)

    async def add_events(self, events: Sequence[Event]) -> int:
        """Store events and queue them for every sink (inside a transaction); return how many
        were new (a transition found again after a crash keeps its id, and is stored once)."""
        if not events:
            return 0
        last = await self._stored_upto()
        rows = [
            (seq, e.id, e.type.value, e.time, e.source, e.account, e.order_id, e.severity, e.body())
            for seq, e in enumerate(events, last + 1)
        ]
        before = self.conn.total_changes
        for n, params in _chunks(rows):
            await self.conn.execute(_event_insert(n), params)
        added = self.conn.total_changes - before
        sinks = self.sink_names
        await self.conn.execute(
            "INSERT INTO deliveries (sink, event_seq) SELECT sinks.column1, events.seq "
            f"FROM (VALUES {_values(len(sinks), 1)}) AS sinks, events WHERE events.seq > ?",
            (*sinks, last),
        )
        # A skipped row leaves a gap in the seqs: ask the database for the highest next time.
        self._last_seq = last + added if added == len(events) else None
        return added

    async def track(
        self,
        source: Source,
        account: str,
        orders: Sequence[tuple[str, str | None]],
        now: float,
        *,
        progress: Callable[[int], None] = lambda n: None,
    ) -> int:
        """Start following orders (id, external reference), all in one transaction; return how
        many were new. `progress` hears of each chunk written."""
        added = 0
        self.forget_page()
        async with self.transaction():
            for i in range(0, len(orders), _TRACK_CHUNK):
                chunk = orders[i : i + _TRACK_CHUNK]
                cur = await self.conn.executemany(
                    "INSERT INTO orders (source, account, order_id, external_reference, "
                    "tracked_at, next_check_at) VALUES (?, ?, ?, ?, ?, 0) "
                    "ON CONFLICT (source, account, order_id) DO UPDATE SET external_reference = "
                    "coalesce(excluded.external_reference, orders.external_reference)",
                    [(source, account, oid, ref, now) for oid, ref in chunk],
                )
                # The statement's own rows: total_changes would count the counts' triggers too.
                added += cur.rowcount
                progress(len(chunk))
        return added

    async def untrack(self, source: Source, account: str | None, order_ids: Sequence[str]) -> int:
        """Stop following orders (their history stays); return how many were followed."""
        self.forget_page()
        async with self.transaction():
            cur = await self.conn.executemany(
                "DELETE FROM orders WHERE source = ? AND order_id = ? "
                "AND (? IS NULL OR account = ?)",
                [(source, oid, account, account) for oid in order_ids],
            )
        return cur.rowcount

    async def open_order_ids(
        self,
        source: Source,
        account: str,
        *,
        after: str = "",
        limit: int = 5000,
        settled_since: float | None = None,
        settled: Sequence[str] = (),
    ) -> list[str]:
        """Return ids of orders not in an end state, in id order after `after` (keyset pages).

        Settled orders (`settled` statuses) are left out once unchanged since `settled_since`.
        """
        marks = ", ".join("?" * len(settled)) or "NULL"
        sql = (
            "SELECT order_id FROM orders WHERE source = ? AND account = ? AND end_state = 0 "
            "AND order_id > ? "
            f"AND NOT (coalesce(status IN ({marks}), 0) AND coalesce(last_changed, 0) < ?) "
            "ORDER BY order_id LIMIT ?"
        )
        params = (source, account, after, *settled, settled_since or 0.0, limit)
        return [row[0] for row in await self.conn.execute_fetchall(sql, params)]

    async def open_orders_page(
        self,
        source: Source,
        account: str,
        *,
        after: int = 0,
        limit: int = 5000,
        settled_since: float | None = None,
        settled: Sequence[str] = (),
    ) -> tuple[list[str], int]:
        """Return the ids of orders not in an end state, in storage order after the position
        `after`, and the position to continue from; keep their rows as the page that the next
        batches read instead of the database. Settled orders (`settled` statuses) are left out
        once unchanged since `settled_since`.

        Storage (rowid) order rather than id order: a batch then rewrites neighbouring rows,
        a few database pages instead of one page per order.
        """
        version = await self.data_version()  # before the rows: a later write drops the page
        # `+source` keeps SQLite off the (source, account, order_id) index: through it, every
        # open order of the account would be read and sorted by id before the LIMIT applies.
        marks = ", ".join("?" * len(settled)) or "NULL"
        sql = (
            f"SELECT {_ORDER_COLUMNS}, id FROM orders WHERE id > ? AND +source = ? "
            "AND account = ? AND end_state = 0 "
            f"AND NOT (coalesce(status IN ({marks}), 0) AND coalesce(last_changed, 0) < ?) "
            "ORDER BY id LIMIT ?"
        )
        params = (after, source, account, *settled, settled_since or 0.0, limit)
        rows = list(await self.conn.execute_fetchall(sql, params))
        self._page = {(r[0], r[1], r[2]): (r[17], tuple(r[:17])) for r in rows}
        self._page_version = version
        return [r[2] for r in rows], (rows[-1][17] if rows else after)

    def forget_page(self) -> None:
        """Drop the page of orders kept by `open_orders_page`."""
        self._page = {}
        self._page_version = None

    async def data_version(self) -> int:
        """Return SQLite's data_version: it changes when another connection commits."""
        rows = await self.conn.execute_fetchall("PRAGMA data_version")
        return int(next(iter(rows))[0])

    async def due_orders(
        self, source: Source, account: str, now: float, limit: int
    ) -> list[OrderState]:
        """Return orders whose next check is due, oldest first (uses the partial index)."""
        # Every tick runs this. Without INDEXED BY, SQLite reads every order of the account
        # through the (source, account, order_id) key and sorts them: a million rows a tick.
        sql = (
            f"SELECT {_ORDER_COLUMNS} FROM orders INDEXED BY orders_due "
            "WHERE end_state = 0 AND next_check_at <= ? "
            "AND source = ? AND account = ? ORDER BY next_check_at LIMIT ?"
        )
        return await self._states(sql, (now, source, account, limit))

    async def orders_with_status(
        self, source: Source, account: str, statuses: Sequence[str]
    ) -> list[OrderState]:
        """Return followed orders not in an end state whose last seen status is one of
        `statuses`."""
        marks = ", ".join("?" * len(statuses))
        # Through the index of open orders: the account's key would read its closed ones too.
        sql = (
            f"SELECT {_ORDER_COLUMNS} FROM orders INDEXED BY orders_due WHERE end_state = 0 "
            f"AND source = ? AND account = ? AND status IN ({marks})"
        )
        return await self._states(sql, (source, account, *statuses))

    async def find_by_reference(self, reference: str) -> list[OrderState]:
        """Return followed CCV orders carrying an external reference."""
        sql = f"SELECT {_ORDER_COLUMNS} FROM orders WHERE external_reference = ?"
        return await self._states(sql, (reference,))

    async def list_orders(
        self, source: str | None = None, status: str | None = None
    ) -> list[OrderState]:
        """Return the snapshot, optionally filtered."""
        sql = (
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE (? IS NULL OR source = ?) "
            "AND (? IS NULL OR status = ?) ORDER BY source, account, order_id"
        )
        return await self._states(sql, (source, source, status, status))

    async def _states(self, sql: str, params: Sequence[Any]) -> list[OrderState]:
        # One call into the database thread (execute, fetch and close would be three).
        return [_row_to_state(r) for r in await self.conn.execute_fetchall(sql, params)]

    async def count_orders(self) -> dict[tuple[str, str, str | None], int]:
        """Return followed orders counted by (source, account, status)."""
        async with self.conn.execute(store_counts.COUNT_SQL) as cur:
            return {(r[0], r[1], r[2]): r[3] for r in await cur.fetchall()}

    async def stuck_count(self) -> dict[tuple[str, str], int]:
        """Return orders reported stuck and unchanged since, per (source, account)."""
        async with self.conn.execute(STUCK_SQL) as cur:
            return {(r[0], r[1]): r[2] for r in await cur.fetchall()}

    # --- sources -----------------------------------------------------------------------------

    async def source_state(self, source: Source, account: str) -> SourceState:
        """Return the health record of a provider account."""
        sql = (
            "SELECT failing, failure_streak, episode, last_success, last_failure, last_error "
            "FROM sources WHERE source = ? AND account = ?"
        )
        async with self.conn.execute(sql, (source, account)) as cur:
            row = await cur.fetchone()
        if row is None:
            return SourceState(source, account)
        return SourceState(source, account, mask_parts(row[0]), *row[1:6])

    async def save_source_state(self, s: SourceState) -> None:
        """Upsert the health record (inside a transaction)."""
        await self.conn.execute(
            "INSERT OR REPLACE INTO sources (source, account, failing, failure_streak, episode, "
            "last_success, last_failure, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.source,
                s.account,
                parts_mask(s.failing_parts),  # 0: answering; else the failing parts, as bits
                s.failure_streak,
                s.episode,
                s.last_success,
                s.last_failure,
                s.last_error,
            ),
        )

    async def source_states(self) -> list[SourceState]:
        """Return every recorded source health."""
        sql = (
            "SELECT source, account, failing, failure_streak, episode, last_success, "
            "last_failure, last_error FROM sources"
        )
        async with self.conn.execute(sql) as cur:
            return [
                SourceState(r[0], r[1], mask_parts(r[2]), *r[3:8]) for r in await cur.fetchall()
            ]

    # --- status ------------------------------------------------------------------------------

    async def count_due(self, now: float) -> dict[tuple[str, str], int]:
        """Return orders whose check is due, by (source, account) (uses the partial index)."""
        sql = (
            "SELECT source, account, count(*) FROM orders INDEXED BY orders_due "
            "WHERE end_state = 0 AND next_check_at <= ? GROUP BY 1, 2"
        )
        return {(r[0], r[1]): r[2] for r in await self.conn.execute_fetchall(sql, (now,))}

    async def delivery_counts(self) -> dict[str, tuple[int, int]]:
        """Return (pending, dead-lettered) deliveries per sink."""
        pending = await self.undelivered_count()
        dead = await self.dead_letter_count()
        return {sink: (pending.get(sink, 0), dead.get(sink, 0)) for sink in {*pending, *dead}}

    async def failing_since(self, source: Source, account: str) -> float | None:
        """Return when the account's latest `source.failed` happened, if one is stored."""
        # The type is written out, not bound: only then can SQLite use the partial index
        # (migration 8), which holds these few events; the events table may hold millions.
        sql = (
            "SELECT time FROM events WHERE type = 'source.failed' AND source = ? AND account = ? "
            "ORDER BY seq DESC LIMIT 1"
        )
        rows = list(await self.conn.execute_fetchall(sql, (source, account)))
        return float(rows[0][0]) if rows else None

    # --- outbox ------------------------------------------------------------------------------

    async def due_deliveries(self, sink: str, now: float, limit: int) -> Due:
        """Return the sink's pending events that may be delivered now, in seq order.

        An event waits while an earlier event of its order waits for its retry, so that a sink
        never gets an order's later event before an earlier one; a dead-lettered event no
        longer holds anything back.
        """
        # Under the write lock: this connection would see the rows of a transaction still
        # open, and a sink must never get an event that may yet be rolled back.
        async with self._write_lock:
            retried = await self.conn.execute_fetchall(_RETRIED, (sink,))
            waiting = [r for r in retried if r[7] > now]
            blocked: dict[tuple[str, str, str], int] = {}
            for r in waiting:
                if r[3] is not None:
                    key = (r[8], r[9], r[3])
                    blocked[key] = min(r[0], blocked.get(key, r[0]))

            def free(r: Any) -> bool:
                first = blocked.get((r[8], r[9], r[3]))
                return first is None or first > r[0]

            rows = [r for r in retried if r[7] <= now and free(r)]
            fresh = 0
            after = 0
            while fresh < limit:
                page = list(await self.conn.execute_fetchall(_FRESH, (sink, after, limit)))
                taken = [r for r in page if free(r)]
                rows += taken
                fresh += len(taken)
                if len(page) < limit:
                    break
                after = page[-1][0]
        rows.sort(key=lambda r: r[0])
        return Due(
            [OutboxEvent(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) for r in rows[:limit]],
            next_at=min((float(r[7]) for r in waiting), default=None),
            full=len(rows) >= limit,
        )

    async def _stored_upto(self) -> int:
        if self._last_seq is None:
            found = await self.conn.execute_fetchall("SELECT ifnull(max(seq), 0) FROM events")
            self._last_seq = int(next(iter(found))[0])
        return self._last_seq

    async def event_times(self, seqs: Sequence[int]) -> dict[int, float]:
        """Return the creation time of events by seq."""
        out: dict[int, float] = {}
        for i in range(0, len(seqs), _CHUNK):
            chunk = seqs[i : i + _CHUNK]
            sql = f"SELECT seq, time FROM events WHERE seq IN ({', '.join('?' * len(chunk))})"
            async with self.conn.execute(sql, chunk) as cur:
                out.update({r[0]: r[1] for r in await cur.fetchall()})
        return out

    async def mark_delivered(self, sink: str, seqs: Sequence[int], now: float) -> None:
        """Record that a sink confirmed events (its own transaction)."""
        async with self.transaction():
            for n, params in _chunks([(seq,) for seq in seqs]):
                await self.conn.execute(
                    "UPDATE deliveries SET state = 'delivered', delivered_at = ?, "
                    f"last_error = NULL WHERE sink = ? AND event_seq IN ({_values(n, 1)})",
                    (now, sink, *params),
                )

    async def mark_failed(
        self, sink: str, failures: Sequence[tuple[int, str, float | None]]
    ) -> None:
        """Record failed attempts: (seq, error, next attempt time or None for dead-letter)."""
        async with self.transaction():
            await self.conn.executemany(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, "
                "state = CASE WHEN ? IS NULL THEN 'dead' ELSE 'pending' END, "
                "next_attempt_at = coalesce(?, next_attempt_at) WHERE sink = ? AND event_seq = ?",
                [(err, at, at, sink, seq) for seq, err, at in failures],
            )

    async def undelivered_count(self, sink: str | None = None) -> dict[str, int]:
        """Return pending (not dead) deliveries per sink."""
        sql = (
            "SELECT sink, count(*) FROM deliveries WHERE state = 'pending' "
            "AND (? IS NULL OR sink = ?) GROUP BY sink"
        )
        async with self.conn.execute(sql, (sink, sink)) as cur:
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def dead_letter_count(self) -> dict[str, int]:
        """Return dead-lettered deliveries per sink."""
        async with self.conn.execute(DEAD_LETTERS_SQL) as cur:
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def disable_sink(self, sink: str, reason: str, now: float) -> None:
        """Remember that a sink's receiver is gone (webhook 410)."""
        async with self.transaction():
            await self.conn.execute(
                "INSERT OR REPLACE INTO sinks (name, disabled_at, reason) VALUES (?, ?, ?)",
                (sink, now, reason),
            )

    async def disabled_sinks(self) -> dict[str, str]:
        """Return disabled sinks and why."""
        async with self.conn.execute(
            "SELECT name, reason FROM sinks WHERE disabled_at IS NOT NULL"
        ) as cur:
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def requeue(self, sink: str, since: float | None) -> int:
        """Queue stored events for a sink again (same ids); return how many."""
        before = self.conn.total_changes
        async with self.transaction():
            await self.conn.execute(
                "INSERT INTO deliveries (sink, event_seq) SELECT ?, seq FROM events "
                "WHERE time >= ? ON CONFLICT (sink, event_seq) DO UPDATE SET state = 'pending', "
                "next_attempt_at = 0, attempts = 0",
                (sink, since or 0.0),
            )
            await self.conn.execute("DELETE FROM sinks WHERE name = ?", (sink,))
        return self.conn.total_changes - before

    async def list_events(
        self,
        *,
        since: float | None = None,
        type: str | None = None,
        undelivered: bool = False,
    ) -> list[StoredEvent]:
        """Return the event history in order, optionally only what some sink does not have."""
        sql = (
            "SELECT e.seq, e.id, e.type, e.time, e.order_id, e.severity, e.body, "
            "(SELECT group_concat(d.sink) FROM deliveries d WHERE d.event_seq = e.seq "
            " AND d.state != 'delivered') FROM events e "
            "WHERE e.time >= ? AND (? IS NULL OR e.type = ?) ORDER BY e.seq"
        )
        async with self.conn.execute(sql, (since or 0.0, type, type)) as cur:
            rows = await cur.fetchall()
        out = [
            StoredEvent(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                bytes(r[6]),
                tuple(sorted(r[7].split(","))) if r[7] else (),
            )
            for r in rows
        ]
        return [e for e in out if e.undelivered] if undelivered else out

    # --- notifications -------------------------------------------------------------------------

    async def remember_reference(self, account: str, reference: str, now: float) -> None:
        """Keep an external reference that a notification named before it was tracked."""
        async with self.transaction():
            await self.conn.execute(
                "INSERT OR REPLACE INTO pending_references (account, external_reference, "
                "received_at) VALUES (?, ?, ?)",
                (account, reference, now),
            )

    async def take_references(
        self, account: str, references: Sequence[str], not_before: float
    ) -> set[str]:
        """Return and forget remembered references (not older than `not_before`)."""
        if not references:
            return set()
        found: set[str] = set()
        async with self.transaction():
            await self.conn.execute(
                "DELETE FROM pending_references WHERE received_at < ?", (not_before,)
            )
            for i in range(0, len(references), _CHUNK):
                chunk = list(references[i : i + _CHUNK])
                marks = ", ".join("?" * len(chunk))
                async with self.conn.execute(
                    "SELECT external_reference FROM pending_references WHERE account = ? "
                    f"AND received_at >= ? AND external_reference IN ({marks})",
                    (account, not_before, *chunk),
                ) as cur:
                    found.update(r[0] for r in await cur.fetchall())
                await self.conn.execute(
                    "DELETE FROM pending_references WHERE account = ? "
                    f"AND external_reference IN ({marks})",
                    (account, *chunk),
                )
        return found


def _check_sqlite() -> None:
    # Batches are written with UPDATE ... FROM, new in SQLite 3.33.
    if sqlite3.sqlite_version_info < (3, 33, 0):
        raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: 3.33 or newer is needed")


def _unusable(path: Path, exc: sqlite3.Error) -> StoreError:
    """Return the one-line error for an SQLite failure on the database at `path`."""
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return StoreLocked(f"database {path} is busy: another process is writing it")
    return StoreError(f"cannot use database {path}: {exc}")


async def _refuse_foreign(conn: aiosqlite.Connection) -> None:
    """Raise StoreError when the database has tables but is not a reconciler store: ours has
    `meta` and `orders`, made by migration 1 in the transaction that set user_version to 1."""
    rows = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {str(r[0]) for r in rows}
    version = next(iter(await conn.execute_fetchall("PRAGMA user_version")))[0]
    if tables and (version < 1 or not {"meta", "orders"} <= tables):
        names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"it belongs to another application (tables: {names}) and is left as it is; "
            "give reconciler a file of its own in [store] path"
        )


async def _migrate(conn: aiosqlite.Connection) -> None:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this program's {SCHEMA_VERSION}; "
            "upgrade reconciler"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[number - 1]
        # executescript would COMMIT first; run statements one by one inside our transaction.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number:d}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    """Split a migration on ";", keeping a trigger body's statements inside its CREATE TRIGGER."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip("; \n"):
                yield pending
            pending = ""
    if pending.strip("; \n"):
        yield pending  # not a complete statement: SQLite says what is wrong with it


async def _store_id(conn: aiosqlite.Connection, *, create: bool) -> str:
    async with conn.execute("SELECT value FROM meta WHERE key = 'store_id'") as cur:
        row = await cur.fetchone()
    if row is not None:
        return str(row[0])
    if not create:
        raise StoreError("not a reconciler store (no store id)")
    store_id = str(uuid.uuid4())
    await conn.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
    return store_id
