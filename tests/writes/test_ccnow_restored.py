"""A database put back to an earlier state (README "Upgrading": a restore from a backup, a lost
WAL) with CCNow actions open in it: the process whose history was lost may have sent them
since. A discount is never sent a second time; a ship CCNow then refuses as not pending is
found taken."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from reconciler.events import action_event
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.rewound import WHY
from reconciler.writes.interrupted import settle_interrupted
from tests.conftest import read_events
from tests.fake_providers import FakeCCNow, Reply
from tests.test_crash import backup_store, restore_store
from tests.writes.test_ccnow_actions import A, ccnow, commands, tracked

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
    assert (await ccnow(cfg, "ship", A)).code == 0
    restore_store(backup, db)

    # CCNow refuses it now (the order shipped): that is no word that it never took it.
    again = await ccnow(cfg, "ship", A)
    assert again.code == 0, again.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (taken by an earlier attempt)")]
    assert not [e for e in read_events(tmp_path) if e["type"] == "order.action_refused"]


@pytest.mark.parametrize("action", ["adjust", "ship"])
async def test_a_lost_wal_is_a_rewind_too(tmp_path: Path, action: cmds.Action) -> None:
    # The command's record reached the database file; its post and close were in the WAL
    # alone when the WAL was lost.
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
        )
        await cmds.close(store, [(command.id, "succeeded", "pending")], [done], now)
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
    with sqlite3.connect(db) as conn:
        assert not conn.execute("SELECT 1 FROM meta WHERE key = 'rewound_commands'").fetchall()
