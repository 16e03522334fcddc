"""Stores of older releases on real SQLite files: upgraded by the first writer and working
after it, refused in one line where they cannot be read yet or another process would break;
another application's file that looks like ours is left exactly as it was."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest

from reconciler.model import known_statuses, status_info
from reconciler.schedule import resting
from reconciler.store import Store, WriterLock
from reconciler.store import submissions as subs
from reconciler.store.counts import COUNT_SQL, FULL_COUNT_SQL
from reconciler.store.db import _refuse_foreign, _store_id, _upgrade
from reconciler.store.migrations import MIGRATIONS, SCHEMA_VERSION, outdated, statements
from reconciler.store.not_sent import not_sent
from reconciler.store.notified import notified
from tests.conftest import (
    assert_one_line,
    awaiting,
    call_cli,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import FakeCCNow, FakeCCV
from tests.store.test_store_locks import holder

# Migration 1 as releases before commit a8f2eda shipped it (`git show
# 6801e09:reconciler/store.py`): orders WITHOUT ROWID, keyed by (source, account, order_id).
# a8f2eda rewrote it in place, so stores made before reached every later version with this
# table. The historical schema, copied here: it must never change with the code.
OLD_MIGRATION_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE orders (
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
    PRIMARY KEY (source, account, order_id)
) WITHOUT ROWID;
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
    event_id TEXT NOT NULL UNIQUE
);
CREATE INDEX transitions_order ON transitions (source, account, order_id);
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
"""

OPEN_CHANGES, OPEN_STAYS, ENDED = (f"0b7c1f3e-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
OLD_EVENTS = ["old-1", "old-2", "old-3"]


@contextlib.contextmanager
def connected(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


def make_old_store(path: Path, *, version: int = 1) -> None:
    """A store an old release made and used: three CCV orders (two open, one ended), their
    discovery events, the last not yet delivered to the jsonl sink; then brought to `version`
    by the migrations as main ran them before it knew to rebuild `orders`."""
    now = time.time() - 60  # within the retention window
    with connected(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")  # as every release sets it
        conn.executescript(OLD_MIGRATION_1)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        for n, (order_id, status, ended) in enumerate(
            [(OPEN_CHANGES, "New", 0), (OPEN_STAYS, "New", 0), (ENDED, "Completed", 1)]
        ):
            conn.execute(
                "INSERT INTO orders (source, account, order_id, status, first_seen, last_changed,"
                " last_checked, end_state, version, tracked_at) "
                "VALUES ('ccv', 'default', ?, ?, ?, ?, ?, ?, 1, ?)",
                (order_id, status, now, now, now, ended, now),
            )
            body = {
                "specversion": "1.0",
                "id": OLD_EVENTS[n],
                "type": "order.discovered",
                "data": {"source": "ccv", "order_id": order_id, "status": status},
            }
            conn.execute(
                "INSERT INTO events (id, type, time, source, account, order_id, severity, body) "
                "VALUES (?, 'order.discovered', ?, 'ccv', 'default', ?, 'info', ?)",
                (OLD_EVENTS[n], now, order_id, json.dumps(body).encode()),
            )
            state = "pending" if n == 2 else "delivered"
            conn.execute(
                "INSERT INTO deliveries (sink, event_seq, state) VALUES ('jsonl', ?, ?)",
                (n + 1, state),
            )
        for number in range(2, version + 1):
            conn.executescript(f"BEGIN; {MIGRATIONS[number - 1]}; COMMIT")
            conn.execute(f"PRAGMA user_version = {number}")


@pytest.mark.parametrize("version", [1, SCHEMA_VERSION], ids=["version-1", "migrated-no-rowid"])
async def test_a_store_from_before_the_rowid_orders_table_keeps_working(
    tmp_path: Path, fake_ccv: FakeCCV, version: int
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    make_old_store(db, version=version)
    fake_ccv.orders.update({OPEN_CHANGES: "Completed", OPEN_STAYS: "New"})

    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert (
        await call_cli("--config", cfg, "track", "ccv", "0b7c1f3e-0000-4000-8000-000000000004")
    ).code == 0

    store = await Store.open(db, readonly=True)
    try:
        assert store.store_id == "old-store"
        statuses = {s.key.order_id: s.status for s in await store.orders.snapshot(None, None)}
        history = [(e.id, e.type, e.order_id) for e in await store.events.history()]
    finally:
        await store.close()
    assert statuses == {
        OPEN_CHANGES: "Completed",
        OPEN_STAYS: "New",
        ENDED: "Completed",
        "0b7c1f3e-0000-4000-8000-000000000004": None,
    }
    # The old events keep their ids; the one change found is the one new event.
    assert [h[0] for h in history[:3]] == OLD_EVENTS
    assert [(h[1], h[2]) for h in history[3:]] == [("order.status_changed", OPEN_CHANGES)]
    # The old release's undelivered event is delivered with its id.
    assert "old-3" in [e["id"] for e in read_events(tmp_path)]
    with connected(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert set(conn.execute(COUNT_SQL)) == set(conn.execute(FULL_COUNT_SQL))
        indexes = {r[0] for r in conn.execute("SELECT name FROM pragma_index_list('orders')")}
    assert {"orders_due", "orders_reference", "orders_stuck", "orders_open"} <= indexes


@pytest.mark.parametrize(
    ("version", "words"),
    [
        (3, ("schema version 3 is older than this program's", "catch-up")),
        (
            SCHEMA_VERSION,
            (f"version {SCHEMA_VERSION} has the orders table of an older", "catch-up"),
        ),
        (SCHEMA_VERSION + 1, (f"schema version {SCHEMA_VERSION + 1} is newer", "upgrade")),
    ],
    ids=["older", "migrated-no-rowid", "newer"],
)
async def test_readers_of_a_store_this_release_cannot_read_yet_say_so_in_one_line(
    tmp_path: Path, fake_ccv: FakeCCV, version: int, words: tuple[str, ...]
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    make_old_store(db, version=min(version, SCHEMA_VERSION))
    if version > SCHEMA_VERSION:
        with connected(db) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
    before = db.read_bytes()
    for command in (["status"], ["orders"], ["events"], ["events", "--undelivered"]):
        result = await call_cli("--config", cfg, *command)
        assert_one_line(result, 74, str(db), *words)
    assert db.read_bytes() == before


async def test_readers_of_a_store_an_older_reconciler_holds_say_to_restart_it(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # "catch-up upgrades it" would be wrong here: catch-up cannot take the store from the
    # older daemon (75). The readers say what a writer says, naming the holder.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    make_old_store(db, version=3)
    before = db.read_bytes()
    proc = await holder(db)
    try:
        for command in (["status"], ["orders"], ["events"]):
            result = await call_cli("--config", cfg, *command)
            assert_one_line(
                result,
                75,
                str(db),
                f"in use by another reconciler process (pid {proc.pid})",
                "schema version 3 is older than this program's",
                "if that process runs an older release, restart it",
            )
            assert "catch-up" not in result.stderr
        assert db.read_bytes() == before
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert await proc.wait() == 0
    result = await call_cli("--config", cfg, "status")
    assert_one_line(result, 74, str(db), "catch-up` upgrades it")


async def test_a_writer_does_not_upgrade_a_store_an_older_reconciler_holds(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    make_old_store(db, version=3)
    before = db.read_bytes()
    older_daemon = WriterLock(db)  # another open file: the lock conflicts as across processes
    older_daemon.acquire()
    try:
        for command in (["track", "ccv", OPEN_STAYS], ["untrack", "ccv", ENDED]):
            result = await call_cli("--config", cfg, *command)
            # The holder may be of this release, upgrading the store: the words fit both.
            assert_one_line(result, 75, str(db), "older release", "restart", "try again")
        assert db.read_bytes() == before
    finally:
        older_daemon.release()
    assert (await call_cli("--config", cfg, "untrack", "ccv", ENDED)).code == 0
    with connected(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    # Upgraded, the store takes a writer beside a running daemon as before.
    daemon = WriterLock(db)
    daemon.acquire()
    try:
        assert (await call_cli("--config", cfg, "untrack", "ccv", OPEN_STAYS)).code == 0
    finally:
        daemon.release()


async def test_another_applications_meta_and_orders_at_version_2_are_left_as_they_were(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    with connected(db) as conn:
        conn.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL);"
            "INSERT INTO orders (customer, total) VALUES ('ACME', 12.5);"
            "PRAGMA user_version = 2"
        )
    db.chmod(0o640)
    before = db.read_bytes()
    for command in (["track", "ccv", OPEN_STAYS], ["catch-up"], ["status"]):
        result = await call_cli("--config", cfg, *command)
        assert_one_line(result, 74, str(db), "another application", "meta, orders")
    assert db.read_bytes() == before
    assert db.stat().st_mode & 0o777 == 0o640
    assert not db.with_name(db.name + "-wal").exists()


async def test_a_store_whose_first_open_stopped_before_its_id_opens(tmp_path: Path) -> None:
    db = tmp_path / "reconciler.db"
    await (await Store.open(db)).close()
    with connected(db) as conn:
        conn.execute("DELETE FROM meta")  # as if the first open stopped after the migrations
    store = await Store.open(db)
    try:
        assert store.store_id
        await store.orders.track("ccv", "default", [(OPEN_STAYS, None)], 1.0)
    finally:
        await store.close()


@pytest.mark.parametrize("holder", [None, "a daemon of this release"])
async def test_a_writer_whose_store_another_upgraded_meanwhile_opens_it(
    tmp_path: Path, holder: str | None
) -> None:
    # Two writers started by hand at upgrade time: the second reads the old schema version,
    # then the first upgrades the store and exits (or a daemon of this release starts and
    # keeps the lock), then the second takes the lock. It must not run the migrations again
    # (before: "index ... already exists"), nor refuse a store that needs nothing more.
    db = tmp_path / "reconciler.db"
    make_old_store(db, version=3)
    conn = await aiosqlite.connect(db, isolation_level=None)
    daemon = WriterLock(db)
    try:
        version = await _refuse_foreign(conn)
        why = await outdated(conn, version)
        assert why is not None
        await (await Store.open(db)).close()  # the other writer
        if holder is not None:
            daemon.acquire()
        await _upgrade(conn, db, version, why, locked=False)
    finally:
        daemon.release()
        await conn.close()
    store = await Store.open(db)
    try:
        assert store.store_id == "old-store"
    finally:
        await store.close()
    with connected(db) as check:
        assert check.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert check.execute("SELECT count(*) FROM orders").fetchone() == (3,)


class _OtherCreatesTheStoreFirst:
    """A connection on which another process opens (and so creates) the store just before
    this one writes its store id: the interleaving of two first opens at once."""

    def __init__(self, conn: aiosqlite.Connection, db: Path) -> None:
        self._conn, self._db = conn, db
        self.other: Store | None = None

    def execute(self, sql: str, *args: Any) -> Any:
        if not sql.startswith("INSERT") or self.other is not None:
            return self._conn.execute(sql, *args)
        return self._after_other(sql, *args)

    async def _after_other(self, sql: str, *args: Any) -> Any:
        self.other = await Store.open(self._db)
        return await self._conn.execute(sql, *args)


async def test_two_processes_creating_a_store_at_once_agree_on_its_id(tmp_path: Path) -> None:
    db = tmp_path / "reconciler.db"
    conn = await aiosqlite.connect(db, isolation_level=None)
    interleaved = _OtherCreatesTheStoreFirst(conn, db)
    try:
        version = await _refuse_foreign(conn)
        why = await outdated(conn, version)
        assert why is not None
        await _upgrade(conn, db, version, why, locked=False)
        store_id = await _store_id(cast(aiosqlite.Connection, interleaved), create=True)
    finally:
        await conn.close()
        if interleaved.other is not None:
            await interleaved.other.close()
    assert interleaved.other is not None and store_id == interleaved.other.store_id
    store = await Store.open(db)
    try:
        assert store.store_id == store_id
    finally:
        await store.close()


async def test_a_first_open_waits_for_another_process_creating_the_store(tmp_path: Path) -> None:
    # Two processes starting on a new store at once (a daemon and a hand-run track): the one
    # that finds the writer lock taken waits the moment the creation takes, not exit 75.
    db = tmp_path / "reconciler.db"
    creator = WriterLock(db)
    creator.acquire()  # flock: held against any other open file, also in this process
    opening = asyncio.ensure_future(Store.open(db))
    # Found the lock taken, it waits between tries: not exit 75.
    waits = [_upgrade.__code__, asyncio.sleep.__code__]
    await poll_until(lambda: opening.done() or awaiting(opening)[-2:] == waits, 10, "it waits")
    assert not opening.done()
    other = await Store.open(db, locked=True)  # the creator makes the store meanwhile
    creator.release()
    store = await asyncio.wait_for(opening, 10)
    try:
        assert store.store_id == other.store_id
    finally:
        await store.close()
        await other.close()


async def test_an_upgrade_is_one_line_in_the_log_and_a_new_store_none(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # An operator following "Upgrading" can tell from the journal that, and when, it happened.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    make_old_store(tmp_path / "reconciler.db", version=SCHEMA_VERSION - 1)
    upgraded = await call_cli("--config", cfg, "track", "ccv", "O-1")
    assert upgraded.code == 0, upgraded.stderr
    (line,) = [x for x in upgraded.log_lines() if x["message"] == "store.upgraded"]
    assert (line["schema_from"], line["schema_to"]) == (SCHEMA_VERSION - 1, SCHEMA_VERSION)

    (tmp_path / "new").mkdir()
    fresh = write_config(tmp_path / "new", ccv=fake_ccv)
    created = await call_cli("--config", fresh, "track", "ccv", "O-1")
    assert created.code == 0, created.stderr
    assert "store.upgraded" not in created.stderr


ALIASES = 14  # the migration that keeps the references CCV renamed (order_aliases)


@pytest.mark.parametrize("rowid", [True, False], ids=["rowid", "no-rowid"])
async def test_a_store_from_before_the_aliases_keeps_a_renamed_reference_finding_its_order(
    tmp_path: Path, fake_ccv: FakeCCV, rowid: bool
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    if rowid:  # as the releases since the rowid made it
        with connected(db) as conn:
            for script in MIGRATIONS[: ALIASES - 1]:
                for sql in statements(script):
                    conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {ALIASES - 1}")
            conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
            conn.execute(
                "INSERT INTO orders (source, account, order_id, tracked_at) "
                "VALUES ('ccv', 'default', ?, ?)",
                (OPEN_STAYS, time.time()),
            )
    else:  # the upgrade also rebuilds `orders`, which must keep the aliases' trigger
        make_old_store(db, version=ALIASES - 1)
    with connected(db) as conn:
        conn.execute(
            "UPDATE orders SET external_reference = 'abc' WHERE order_id = ?", (OPEN_STAYS,)
        )
    fake_ccv.orders = {OPEN_CHANGES: "New", OPEN_STAYS: "New"}
    fake_ccv.refs = {OPEN_STAYS: "ABC"}

    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    store = await Store.open(db, readonly=True)
    try:
        [renamed] = await store.orders.by_reference("abc")
        assert (renamed.key.order_id, renamed.external_reference) == (OPEN_STAYS, "ABC")
    finally:
        await store.close()

    assert (await call_cli("--config", cfg, "untrack", "ccv", OPEN_STAYS)).code == 0
    with connected(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT count(*) FROM order_aliases").fetchone() == (0,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


OWN_WORD = 17  # the migration that keeps whether an account failed on the provider's own word


async def test_an_account_failing_on_its_providers_own_word_at_the_upgrade_keeps_that_fact(
    tmp_path: Path,
) -> None:
    # Else its next probe answering an error line of its own, or a "not found", recovers it
    # and the next catch-up fails it again.
    db = tmp_path / "reconciler.db"
    with connected(db) as conn:
        for script in MIGRATIONS[: OWN_WORD - 1]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {OWN_WORD - 1}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.executemany(
            "INSERT INTO sources (source, account, failing, episode, last_error) "
            "VALUES (?, ?, ?, 1, ?)",
            [
                ("ccnow", "lines", 1, "every check failed (order_error)"),
                ("ccv", "wave", 1, "4 orders not found at once"),
                ("ccv", "timeouts", 1, "every check failed (timeout)"),
                ("ccv", "answering", 0, None),
            ],
        )
    store = await Store.open(db)
    try:
        kept = {s.account: s.failed_on_own_word for s in await store.sources.states()}
        assert kept == {"lines": True, "wave": True, "timeouts": False, "answering": False}
        timeouts = await store.sources.state("ccv", "timeouts")
        async with store.transaction():
            await store.sources.save(dataclasses.replace(timeouts, failed_on_own_word=True))
        assert (await store.sources.state("ccv", "timeouts")).failed_on_own_word
    finally:
        await store.close()


ASKED_AT = 19  # the migration that keeps when the request an order's answer came from was sent


async def test_a_store_from_before_the_asked_times_takes_each_orders_next_answer(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Its rows hold no such time: the first answer after the upgrade is no older news, and is
    # applied; from then on the row keeps when it was asked (an answer asked before changes
    # nothing, diff.stale).
    order = "600-00-0001"
    db = tmp_path / "reconciler.db"
    made = time.time() - 60
    with connected(db) as conn:
        for script in MIGRATIONS[: ASKED_AT - 1]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {ASKED_AT - 1}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.execute(
            "INSERT INTO orders (source, account, order_id, status, first_seen, last_changed, "
            "last_checked, version, tracked_at) VALUES ('ccnow', 'default', ?, 'pending', ?, ?, "
            "?, 1, ?)",
            (order, made, made, made, made),
        )
    fake_ccnow.orders = {order: "mark_shipped"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    before = time.time()
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert [(e["data"]["previous_status"], e["data"]["status"]) for e in read_events(tmp_path)] == [
        ("pending", "mark_shipped")
    ]
    with connected(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        [(status, asked_at)] = conn.execute("SELECT status, asked_at FROM orders").fetchall()
    assert status == "mark_shipped"
    assert before <= asked_at <= time.time()


CCNOW_CASE = 21  # the migration that writes CCNow's documented words as the document does


def store_at_20(db: Path, rows: list[tuple[str, str, str]], made: float) -> None:
    """A store at schema 20 with orders (source, id, status) an older release stored."""
    with connected(db) as conn:
        for script in MIGRATIONS[: CCNOW_CASE - 1]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {CCNOW_CASE - 1}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.executemany(
            "INSERT INTO orders (source, account, order_id, status, first_seen, last_changed, "
            "last_checked, version, tracked_at) VALUES (?, 'default', ?, ?, ?, ?, ?, 1, ?)",
            [(source, order, status, made, made, made, made) for source, order, status in rows],
        )


async def test_ccnow_words_an_older_release_stored_in_capitals_change_nothing_at_the_next_poll(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # `COMPLETED` stored, `completed` answered: one false `COMPLETED -> completed` change each.
    orders = {"600-00-0001": "COMPLETED", "600-00-0002": "MARK_SHIPPED", "600-00-0003": "Pending"}
    db = tmp_path / "reconciler.db"
    store_at_20(db, [("ccnow", o, s) for o, s in orders.items()], time.time() - 60)
    fake_ccnow.orders = {o: s.lower() for o, s in orders.items()}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert read_events(tmp_path) == []
    with connected(db) as conn:
        statuses = dict(conn.execute("SELECT order_id, status FROM orders"))
        checked = conn.execute("SELECT count(*) FROM orders WHERE asked_at IS NOT NULL")
        assert checked.fetchone() == (3,)  # each was polled
    assert statuses == fake_ccnow.orders


async def test_an_end_state_word_an_older_release_stored_in_capitals_still_tells_it_ended(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Lowercased by the upgrade, `CANCELED` (an unknown word then, the order still open) became
    # `canceled` silently: no event ever said the order ended.
    db = tmp_path / "reconciler.db"
    store_at_20(db, [("ccnow", "600-00-0001", "CANCELED")], time.time() - 60)
    fake_ccnow.orders = {"600-00-0001": "canceled"}
    result = await call_cli("--config", write_config(tmp_path, ccnow=fake_ccnow), "catch-up")
    assert result.code == 0, result.stderr
    events = read_events(tmp_path)
    assert [(e["data"]["previous_status"], e["data"]["status"]) for e in events] == [
        ("CANCELED", "canceled")
    ]
    assert events[0]["data"]["end_state"] is True


async def test_the_upgrade_writes_only_ccnows_documented_words_as_the_document_does(
    tmp_path: Path,
) -> None:
    documented = sorted(known_statuses("ccnow"))
    rows = [("ccnow", f"600-00-{n:04d}", word.upper()) for n, word in enumerate(documented)]
    kept = [
        ("ccnow", "601-00-0001", "ON HOLD"),  # not a documented word: verbatim
        ("ccnow", "601-00-0002", "Awaiting_Stock"),
        ("ccv", "0b7c1f3e-0000-4000-8000-000000000009", "Completed"),  # CCV's own case
    ]
    db = tmp_path / "reconciler.db"
    store_at_20(db, rows + kept, time.time() - 60)
    store = await Store.open(db)  # the upgrade
    await store.close()
    with connected(db) as conn:
        statuses = dict(conn.execute("SELECT order_id, status FROM orders"))
        assert set(conn.execute(COUNT_SQL)) == set(conn.execute(FULL_COUNT_SQL))
    ended = {o for _, o, s in rows if status_info("ccnow", s.lower()).end_state}
    assert len(ended) == 5  # canceled, declined, rejected, test, chargeback
    assert statuses == {o: s if o in ended else s.lower() for _, o, s in rows} | {
        o: s for _, o, s in kept
    }


BACKOFF_FROM = 22  # the migration that keeps when a failing account's backoff period began


async def test_an_account_failing_at_the_upgrade_keeps_its_backoff(tmp_path: Path) -> None:
    # Its period counts from its last failure, as it did: not probed at once, then as before.
    db = tmp_path / "reconciler.db"
    failed_at = 1_800_000_000.0
    with connected(db) as conn:
        for script in MIGRATIONS[: BACKOFF_FROM - 1]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {BACKOFF_FROM - 1}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.execute(
            "INSERT INTO sources (source, account, failing, failure_streak, episode, "
            "last_failure, last_error) VALUES ('ccnow', 'default', 2, 2, 1, ?, 'maintenance')",
            (failed_at,),
        )
    store = await Store.open(db)
    try:
        state = await store.sources.state("ccnow", "default")
        assert state.failing_parts == {"pending_list"}
        # Two failed probes, polled every minute: left alone for two minutes after the last.
        assert resting(state, "pending_list", interval_s=60, now=failed_at + 119) is None
        assert resting(state, "pending_list", interval_s=60, now=failed_at + 120) is True
    finally:
        await store.close()


FAILED_SUBMITS = 23  # the migration that indexes the failed submissions by reference


async def test_a_submit_closed_as_not_sent_before_the_upgrade_is_settled_by_ccvs_notification(
    tmp_path: Path,
) -> None:
    # `ccv resolve --not-sent` under the older release; CCV then tells of the reference: the
    # submission is found through the new index, settled, and the reference is not taken again.
    db = tmp_path / "reconciler.db"
    with connected(db) as conn:
        for script in MIGRATIONS[: FAILED_SUBMITS - 1]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {FAILED_SUBMITS - 1}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.execute(
            "INSERT INTO submissions (account, external_reference, state, reason, created_at, "
            "closed_at) VALUES ('default', 'INV-1', 'failed', 'not_sent', 1.0, 2.0)"
        )
    store = await Store.open(db)
    try:
        done = await notified(store, "default", "INV-1", None, time.time(), remember=True)
        assert done.reason is not None and [e.data["how"] for e in done.events] == ["notification"]
        with pytest.raises(subs.SubmissionExists):
            await subs.record(store, "default", "INV-1", time.time())
    finally:
        await store.close()
    with connected(db) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM submissions WHERE account = 'default' "
            "AND external_reference = 'INV-1' AND state = 'failed' ORDER BY id DESC LIMIT 1"
        ).fetchall()
    assert "USING INDEX submissions_failed" in plan[0][-1], plan


NOTIFIED_AT = 25  # the migration that keeps a notification since an open submit on its row


async def test_a_notification_remembered_before_the_upgrade_refuses_not_sent_after_it(
    tmp_path: Path,
) -> None:
    # CCV told of R-1 after its submit (a 2xx naming no order, left uncertain), under the older
    # release, which only remembered the reference: after the upgrade the submit keeps it, and
    # a person's word that CCV never got it is refused. R-2's notification came before its submit.
    db = tmp_path / "reconciler.db"
    with connected(db) as conn:
        for script in MIGRATIONS[: NOTIFIED_AT - 1]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {NOTIFIED_AT - 1}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.executemany(
            "INSERT INTO submissions (account, external_reference, state, http_status, reason, "
            "created_at, closed_at) VALUES ('default', ?, 'uncertain', 200, 'no_order_id', 10, 11)",
            [("R-1",), ("R-2",)],
        )
        conn.executemany(
            "INSERT INTO pending_references VALUES ('default', ?, ?)", [("R-1", 12), ("R-2", 9)]
        )
    store = await Store.open(db)
    try:
        sub, events = await not_sent(store, "default", "R-1", time.time())
        assert (
            events == [] and sub is not None and (sub.state, sub.notified_at) == ("uncertain", 12)
        )
        sub, events = await not_sent(store, "default", "R-2", time.time())
        assert len(events) == 1 and sub is not None and sub.state == "failed"
    finally:
        await store.close()
