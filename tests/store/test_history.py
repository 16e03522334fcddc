"""The history mark beside a real SQLite file: a database put back to an earlier state makes its
ids in a new epoch (history.py); a database that did not go back keeps its ids."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from reconciler.events import Event
from reconciler.model import EventType
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store import submissions as subs
from reconciler.store.sql import on_thread

REWOUND = "store.history_rewound"


async def add_to(store: Store, n: int) -> None:
    """Commit `n` events to `store`."""
    async with store.transaction():
        await store.events.add(
            [
                Event(
                    str(uuid.uuid4()),
                    EventType.STATUS_CHANGED,
                    time.time(),
                    "ccv",
                    "",
                    "o",
                    "info",
                    {},
                )
                for _ in range(n)
            ]
        )


async def add_events(db: Path, n: int) -> str:
    """Open the store, commit `n` events, close it; return the seed its ids were made from."""
    store = await Store.open(db)
    try:
        await add_to(store, n)
        return store.store_id
    finally:
        await store.close()


def restore(backup: Path, db: Path) -> None:
    """The README's restore: the database file alone, its WAL and shm removed."""
    shutil.copyfile(backup, db)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


async def rewound_once(db: Path) -> str:
    """Back the store up, commit 5 events, restore the backup, commit 5 events; return the seed
    of the ids made after the restore (a new epoch's)."""
    backup = db.with_name("before-rewind.db")
    shutil.copyfile(db, backup)
    await add_events(db, 5)
    restore(backup, db)
    return await add_events(db, 5)


def rewinds(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage() == REWOUND for r in caplog.records)


async def test_restoring_a_newer_backup_after_an_older_one_is_a_rewind_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Backups at 500 and 900 events, run to 1000; restore 500 and run to 800; restore 900.
    # 900 is more than the 800 the mark was lowered to, yet the database went back: without
    # a new epoch its events 901.. would get the ids the first timeline's 901.. had.
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    first = await add_events(db, 500)
    shutil.copyfile(db, tmp_path / "b500.db")
    await add_events(db, 400)
    shutil.copyfile(db, tmp_path / "b900.db")
    assert await add_events(db, 100) == first
    assert rewinds(caplog) == 0

    restore(tmp_path / "b500.db", db)
    second = await add_events(db, 300)
    assert rewinds(caplog) == 1 and second != first

    restore(tmp_path / "b900.db", db)
    third = await add_events(db, 1)
    assert rewinds(caplog) == 2
    assert third not in {first, second}
    # The new epoch holds: the next open is no rewind and makes the same ids.
    assert await add_events(db, 1) == third
    assert rewinds(caplog) == 1 + 1


async def test_a_store_that_did_not_go_back_keeps_its_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    mark = db.with_name(db.name + "-history")
    # An empty events table, opened again.
    seed = await add_events(db, 0)
    assert await add_events(db, 0) == seed
    # A rewound store (an epoch) restarted, then after a crash that lost the mark's last write
    # (the mark behind the database).
    rewound = await rewound_once(db)
    assert rewinds(caplog) == 1 and rewound != seed
    assert await add_events(db, 5) == rewound
    store_id, epoch, _ = mark.read_text().split()
    mark.write_text(f"{store_id} {epoch} {3:020d}\n")
    assert await add_events(db, 1) == rewound
    # A writer opened by hand beside the daemon, which goes on committing, then a restart.
    daemon = await Store.open(db)
    try:
        await add_to(daemon, 2)
        by_hand = await Store.open(db)
        assert by_hand.store_id == rewound
        await by_hand.close()
        await add_to(daemon, 2)
    finally:
        await daemon.close()
    assert await add_events(db, 1) == rewound
    assert rewinds(caplog) == 1


async def test_a_mark_of_the_release_before_epochs_were_marked_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Written as `<store id> <seq>`: its epoch is not known, so only the count is compared,
    # and a store rewound before the upgrade keeps its epoch.
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    mark = db.with_name(db.name + "-history")
    seed = await add_events(db, 0)
    rewound = await rewound_once(db)
    assert rewinds(caplog) == 1
    mark.write_text(f"{seed} {5:020d}\n")
    assert await add_events(db, 1) == rewound
    assert rewinds(caplog) == 1
    # A lower count than such a mark is a rewind as before.
    shutil.copyfile(db, tmp_path / "six.db")
    await add_events(db, 1)
    restore(tmp_path / "six.db", db)
    mark.write_text(f"{seed} {(await feed_after(db, 0))[1] + 1:020d}\n")
    assert await add_events(db, 1) not in {seed, rewound}
    assert rewinds(caplog) == 2


async def feed_after(db: Path, after: int) -> tuple[list[bytes], int]:
    """Read the events feed from `after`, as the API does (a read-only store)."""
    store = await Store.open(db, readonly=True)
    try:
        return await store.events.feed(after, None, 1000)
    finally:
        await store.close()


async def test_a_feed_cursor_from_before_a_restore_misses_no_event_stored_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A reader at seq 43 when the database is put back to its backup of 21 events: the events
    # stored after the restore must come after its cursor, not take seqs 22.. it already passed.
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    await add_events(db, 21)
    backup = tmp_path / "backup.db"
    shutil.copyfile(db, backup)
    await add_events(db, 22)
    _, cursor = await feed_after(db, 0)
    assert cursor == 43
    restore(backup, db)
    await add_events(db, 8)
    assert rewinds(caplog) == 1
    bodies, after = await feed_after(db, cursor)
    assert len(bodies) == 8 and after == 51
    # Opened again before or after more events: not another rewind, and the seqs go on.
    await add_events(db, 0)
    await add_events(db, 2)
    assert rewinds(caplog) == 1
    assert (await feed_after(db, after))[1] == 53


async def test_a_database_put_in_the_place_of_another_numbers_its_events_after_the_old_ones(
    tmp_path: Path,
) -> None:
    # A new, empty database where the old one was (its mark beside it is the old store's): a
    # reader's cursor from the old one must not skip the new database's first events.
    db = tmp_path / "reconciler.db"
    await add_events(db, 30)
    _, cursor = await feed_after(db, 0)
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    await add_events(db, 4)
    bodies, after = await feed_after(db, cursor)
    assert (len(bodies), after) == (4, 34)


@pytest.mark.parametrize("seq", ["9" * 29, "1" + "0" * 19])
async def test_a_damaged_mark_with_a_number_too_large_is_no_mark(tmp_path: Path, seq: str) -> None:
    # Every writer opening the store raised OverflowError (a traceback, exit 70, restarted by
    # systemd forever); the mark is then unreadable, as one of garbage is.
    db = tmp_path / "reconciler.db"
    seed = await add_events(db, 3)
    db.with_name(db.name + "-history").write_text(f"{seed} - {seq}\n")
    assert await add_events(db, 1) == seed
    assert (await feed_after(db, 0))[1] == 4


async def test_a_claimed_command_leaves_a_gap_the_feed_reads_past(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A claim hands out a seq no event takes (so the mark counts it): a feed reader's cursor
    # moves past it, misses no event after it, and a store reopened sees no rewind.
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    await add_events(db, 3)
    store = await Store.open(db)
    try:
        new = cmds.NewCommand("default", "524-01-8511", "ship", "k")
        [(command, _)] = await cmds.record(store, [new], time.time())
        assert await cmds.mark_sending(store, [command.id]) == [command.id]
    finally:
        await store.close()
    bodies, cursor = await feed_after(db, 0)
    assert (len(bodies), cursor) == (3, 4)
    await add_events(db, 2)
    bodies, after = await feed_after(db, cursor)
    assert (len(bodies), after) == (2, 6)
    assert rewinds(caplog) == 0


async def test_a_rewind_an_open_beside_the_daemon_finds_moves_the_daemons_seqs_and_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `track` and `untrack` open the store to write without the writer lock, beside a running
    # daemon; an open that finds the database went back (the mark counts 9 events, the
    # database holds 5: a lost WAL) raises the seq floor and starts an epoch. The daemon, which
    # had numbered its events from the 5 it stored, must number its next ones after the floor
    # (a feed reader's cursor of 9 skipped them), in the new epoch, and not put its old epoch
    # back in the mark (its restart took that for a second rewind).
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    mark = db.with_name(db.name + "-history")
    await add_events(db, 3)
    daemon = await Store.open(db)
    try:
        await add_to(daemon, 2)
        store_id, epoch, _ = mark.read_text().split()
        mark.write_text(f"{store_id} {epoch} {9:020d}\n")
        by_hand = await Store.open(db)
        await by_hand.close()
        assert rewinds(caplog) == 1
        await add_to(daemon, 2)
    finally:
        await daemon.close()
    bodies, after = await feed_after(db, 9)
    assert (len(bodies), after) == (2, 11)
    assert daemon.store_id == by_hand.store_id != store_id
    assert await add_events(db, 1) == by_hand.store_id
    assert rewinds(caplog) == 1


async def test_a_ccv_submits_claim_after_a_rewind_found_beside_the_daemon_keeps_its_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As above, but the daemon's first write after the rewind is a CCV submit's claim, which
    # commits in a hand-off of its own, not through a transaction: it must take up the epoch
    # too, or its mark holds the old one and the next open finds a second rewind (review 28a).
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    mark = db.with_name(db.name + "-history")
    await add_events(db, 3)
    daemon = await Store.open(db)
    try:
        await add_to(daemon, 2)
        store_id, epoch, _ = mark.read_text().split()
        mark.write_text(f"{store_id} {epoch} {9:020d}\n")
        by_hand = await Store.open(db)
        await by_hand.close()
        assert rewinds(caplog) == 1
        await subs.record(daemon, "default", "REF-1", time.time())
    finally:
        await daemon.close()
    assert mark.read_text().split()[1:] == [by_hand.store_id.partition("/")[2], f"{10:020d}"]
    assert await add_events(db, 1) == by_hand.store_id
    assert rewinds(caplog) == 1
    bodies, after = await feed_after(db, 9)
    assert (len(bodies), after) == (1, 11)  # the claim's seq, 10, is no event's


async def test_a_follow_cut_short_is_done_again_by_the_daemons_next_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The daemon's write that would take up the rewind is cancelled (a pass at a stop) while
    # its follow reads the floor: the next write must follow again, or the daemon numbers its
    # events below the floor, which a feed cursor of 9 skips (review 28a).
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    mark = db.with_name(db.name + "-history")
    await add_events(db, 3)
    daemon = await Store.open(db)
    try:
        await add_to(daemon, 2)
        store_id, epoch, _ = mark.read_text().split()
        mark.write_text(f"{store_id} {epoch} {9:020d}\n")
        by_hand = await Store.open(db)
        await by_hand.close()
        loop, armed = asyncio.get_running_loop(), [True]

        def cancel_at_follow(action: int, table: str | None, *_: object) -> int:
            # SQLite asks as it prepares a statement, on the database thread; the cancel is
            # queued to the loop before the statement's result, so the write is cancelled in
            # follow's wait for its read of `meta`.
            if armed and action == sqlite3.SQLITE_READ and table == "meta":
                armed.clear()
                loop.call_soon_threadsafe(cut.cancel)
            return sqlite3.SQLITE_OK

        await on_thread(daemon.conn, lambda conn: conn.set_authorizer(cancel_at_follow))
        cut = asyncio.create_task(add_to(daemon, 1))
        with pytest.raises(asyncio.CancelledError):
            await cut
        assert not armed
        # One that allows everything: Python 3.10's set_authorizer(None) does not clear it
        # (it denies every statement after), 3.11's does.
        await on_thread(daemon.conn, lambda conn: conn.set_authorizer(lambda *_: sqlite3.SQLITE_OK))
        await add_to(daemon, 2)
    finally:
        await daemon.close()
    bodies, after = await feed_after(db, 9)
    assert (len(bodies), after) == (2, 11)
    assert daemon.store_id == by_hand.store_id
    assert rewinds(caplog) == 1


async def test_a_lost_wal_holding_only_a_ccv_submits_claim_is_a_rewind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A submit recorded `sending` (its claim) reached the WAL alone, and the WAL was lost (its
    # process killed while CCV answered): the database does not know the submit (its reference
    # is free again), which must be told as a rewind, as a lost CCNow claim is.
    caplog.set_level(logging.WARNING, "reconciler.store")
    db = tmp_path / "reconciler.db"
    seed = await add_events(db, 3)
    store = await Store.open(db)
    try:
        await store.conn.execute("PRAGMA wal_autocheckpoint = 0")
        async with store.exclusive() as conn:
            await conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        await subs.record(store, "default", "REF-1", time.time())
        shutil.copyfile(db, tmp_path / "without-wal.db")
        # The claim's seq is no event's: a cursor read past it misses no event after it, the
        # same process's included (the seq it numbers from follows the claim).
        bodies, cursor = await feed_after(db, 0)
        assert (len(bodies), cursor) == (3, 4)
        await add_to(store, 1)
    finally:
        await store.close()
    assert (await feed_after(db, cursor))[1] == 5
    restore(tmp_path / "without-wal.db", db)
    assert rewinds(caplog) == 0
    assert await add_events(db, 1) != seed
    assert rewinds(caplog) == 1
