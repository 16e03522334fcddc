"""A database put back to an earlier state (README "Upgrading": a restore from a backup, a lost
WAL) with CCNow actions open in it: the process whose history was lost may have sent them
since. A discount is never sent a second time; a ship CCNow then refuses as not pending is
found taken."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest
from aiosqlite import Row

from reconciler.events import Event, action_event
from reconciler.store import Store, history
from reconciler.store import commands as cmds
from reconciler.store.rewound import WHY
from reconciler.writes.interrupted import settle_interrupted
from tests.commands.test_crash import backup_store, restore_store
from tests.conftest import read_events
from tests.fake_providers import FakeCCNow, Reply
from tests.store.test_history import add_events
from tests.writes.test_ccnow_actions import A, ccnow, commands, make_due, tracked

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")


async def test_a_discount_queued_at_the_backup_and_applied_since_is_not_sent_again(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    db, backup = tmp_path / "reconciler.db", tmp_path / "backup.db"
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.always = MAINTENANCE
    assert (await ccnow(cfg, "adjust", A, "--amount", "2.00")).code == 75
    await backup_store(db, backup)
    fake_ccnow.always = None
    await make_due(tmp_path)
    applied = await ccnow(cfg, "adjust", A, "--amount", "2.00")
    assert applied.code == 0, applied.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]
    restore_store(backup, db)

    # The same line again, as the person who restored may well run it: the backup's queued
    # command, which CCNow applied after the backup, must not go out a second time.
    again = await ccnow(cfg, "adjust", A, "--amount", "2.00")
    assert "store.history_rewound" in again.stderr
    assert again.code == 75, again.stderr
    assert "uncertain" in again.stdout
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]
    assert commands(tmp_path) == [(A, "uncertain", WHY)]
    events = read_events(tmp_path)
    uncertain = [e["data"] for e in events if e["type"] == "order.action_uncertain"]
    assert [(u["order_id"], u["action"], u["answer"]) for u in uncertain] == [(A, "adjust", WHY)]
    # Once only: the next writer finds nothing more to settle.
    assert (await ccnow(cfg, "adjust", A, "--amount", "2.00")).code == 75
    assert len(read_events(tmp_path)) == len(events)

    resolved = await ccnow(cfg, "resolve", A, "--sent")
    assert resolved.code == 0, resolved.stderr
    assert commands(tmp_path) == [(A, "sent", "resolved by hand: CCNow has it")]
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]


async def test_a_ship_queued_at_the_backup_and_taken_since_is_found_taken(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    db, backup = tmp_path / "reconciler.db", tmp_path / "backup.db"
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.always = MAINTENANCE
    assert (await ccnow(cfg, "ship", A)).code == 75
    await backup_store(db, backup)
    fake_ccnow.always = None
    await make_due(tmp_path)
    assert (await ccnow(cfg, "ship", A)).code == 0
    restore_store(backup, db)

    # CCNow refuses it now (the order shipped): that is no word that it never took it.
    await make_due(tmp_path)  # the backup's wait for its next attempt over
    again = await ccnow(cfg, "ship", A)
    assert again.code == 0, again.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (taken by an earlier attempt)")]
    assert not [e for e in read_events(tmp_path) if e["type"] == "order.action_refused"]


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "killed-while-out"])
@pytest.mark.parametrize("action", ["adjust", "ship"])
async def test_a_lost_wal_is_a_rewind_too(
    tmp_path: Path, action: cmds.Action, closed: bool
) -> None:
    # The command's record reached the database file; its post (and close, unless the process
    # was killed while the post was out) were in the WAL alone when the WAL was lost. The claim
    # stores no event: it must count in the history mark all the same, or the adjust is
    # `queued` again and sent a second time.
    db = tmp_path / "reconciler.db"
    store = await Store.open(db)
    try:
        new = cmds.NewCommand("default", A, action, "k", amount="2.00")
        [(command, _)] = await cmds.record(store, [new], time.time())
        await store.conn.execute("PRAGMA wal_autocheckpoint = 0")
        async with store.exclusive() as conn:
            await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await cmds.mark_sending(store, [command.id])
        now = time.time()
        done = action_event(
            store.store_id,
            command.id,
            "succeeded",
            account="default",
            order_id=A,
            action=action,
            answer="pending",
            time=now,
            before=None,
            after=None,
        )

        async def events() -> list[Event]:
            return [done]

        if closed:
            await cmds.close(store, [(command.id, "succeeded", "pending")], events, now)
        shutil.copyfile(db, tmp_path / "without-wal.db")
    finally:
        await store.close()
    restore_store(tmp_path / "without-wal.db", db)

    store = await Store.open(db)
    try:
        await settle_interrupted(store)
        [after] = await cmds.get(store, [command.id])
    finally:
        await store.close()
    if action == "adjust":
        assert (after.state, after.answer) == ("uncertain", WHY)
    else:
        assert after.state == "queued" and after.maybe_reached_at is not None
    with sqlite3.connect(db) as plain:
        assert not plain.execute("SELECT 1 FROM meta WHERE key = 'rewound_commands'").fetchall()


class DaemonOpensFirst:
    """A `track`'s connection to the store that lets the daemon open the store and record a
    discount before its first read of the database (after its read of the history mark)."""

    def __init__(self, conn: aiosqlite.Connection, db: Path) -> None:
        self._conn = conn
        self._db = db
        self.daemon: Store | None = None

    async def execute_fetchall(self, sql: str, params: Sequence[object] = ()) -> Iterable[Row]:
        if self.daemon is None:
            self.daemon = await Store.open(self._db)
            await settle_interrupted(self.daemon)
            new = cmds.NewCommand("default", A, "adjust", "after-the-rewind", amount="2.00")
            await cmds.record(self.daemon, [new], time.time())
        return await self._conn.execute_fetchall(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_a_discount_made_after_the_rewind_is_not_taken_for_one_it_left_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A `track` opening the restored store reads the mark, then the daemon opens it first
    # (finds the rewind, starts a new epoch) and records a discount, then the `track` reads the
    # database: the daemon's epoch is no rewind of its own, and the daemon's discount, made
    # after the rewind, must stay queued (made uncertain, it would never be sent).
    caplog.set_level(logging.WARNING, "reconciler.store")
    db, backup = tmp_path / "reconciler.db", tmp_path / "backup.db"
    store = await Store.open(db)
    store_id = store.store_id
    await store.close()
    shutil.copyfile(db, backup)
    await add_events(db, 5)
    restore_store(backup, db)

    conn = DaemonOpensFirst(await aiosqlite.connect(db), db)
    try:
        mark, epoch = await history.open_history(cast(aiosqlite.Connection, conn), db, store_id)
        assert mark is not None
        mark.close()
    finally:
        await conn.close()
        if conn.daemon is not None:
            await conn.daemon.close()

    # The daemon's next start (and every writer's) finds nothing to settle.
    store = await Store.open(db)
    try:
        await settle_interrupted(store)
        assert [(c.state, c.answer) for c in await cmds.in_state(store, "queued")] == [
            ("queued", None)
        ]
        # One epoch, the daemon's, and one rewind: every open after it sees none.
        assert conn.daemon is not None
        assert store.store_id == f"{store_id}/{epoch}" == conn.daemon.store_id
    finally:
        await store.close()
    assert sum(r.getMessage() == "store.history_rewound" for r in caplog.records) == 1
