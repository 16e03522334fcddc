"""A store is named by one path. SQLite names the write-ahead log after the path it was given:
through a hard link a process keeps a log of its own, which a process using the other name does
not see. The writers holding the lock are kept apart by the lock on the database file itself
(test_store_identity_lock.py); the writes made without it (`track`, `untrack`, `replay`'s
hand-over to a running writer) refuse a database file that has another name. And the lock on
the database file itself tells who holds the store when its lock file cannot: `status` sees a
writer whose lock file was deleted, and a refusal names its process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.store import StoreLocked, WriterLock
from reconciler.store.files import DatabaseFile
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCV
from tests.store.test_store_locks import holder

SECOND_NAME = "has another name (a hard link)"


def hard_linked(tmp_path: Path, cfg: Path) -> Path:
    """Give the store's database a second name, hard.db, and return a config naming it so."""
    os.link(tmp_path / "reconciler.db", tmp_path / "hard.db")
    other = tmp_path / "hard.toml"
    other.write_text(cfg.read_text().replace("reconciler.db", "hard.db"))
    return other


async def tracked_ids(cfg: Path) -> set[str]:
    found = await call_cli("--config", cfg, "orders", "--json")
    assert found.code == 0, found.stderr
    return {o["order_id"] for o in json.loads(found.stdout)}


@contextlib.asynccontextmanager
async def held(db: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process holding the writer lock of `db` for the block."""
    proc = await holder(db)
    assert proc.stdin is not None
    try:
        yield proc
    finally:
        proc.stdin.close()
        assert await proc.wait() == 0


async def test_track_and_untrack_refuse_a_database_with_another_name(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", "O-1")).code == 0
    other = hard_linked(tmp_path, cfg)
    # By either name: which one a daemon, or a `track` killed half way, uses is not known.
    for config, db in ((other, tmp_path / "hard.db"), (cfg, tmp_path / "reconciler.db")):
        for command in (("track", "ccv", "O-2"), ("untrack", "ccv", "O-1")):
            result = await call_cli("--config", config, *command)
            assert result.code == 75, (command, result.stdout, result.stderr)
            assert f"database {db} {SECOND_NAME}" in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "hard.db-wal").exists(), "a write-ahead log of the second name"
    # Nothing was written; the read-only commands still read it by either name.
    assert await tracked_ids(cfg) == await tracked_ids(other) == {"O-1"}
    (tmp_path / "hard.db").unlink()
    assert (await call_cli("--config", cfg, "track", "ccv", "O-2")).code == 0
    assert await tracked_ids(cfg) == {"O-1", "O-2"}


async def test_replay_hands_nothing_over_through_another_name(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", "O-1")).code == 0
    other = hard_linked(tmp_path, cfg)
    async with held(tmp_path / "reconciler.db"):
        # The writer holds the store: replay would queue the events for it, through its own log.
        result = await call_cli("--config", other, "replay", "--sink", "jsonl")
        assert result.code == 75, (result.stdout, result.stderr)
        assert SECOND_NAME in result.stderr
    assert not (tmp_path / "hard.db-wal").exists(), "a write-ahead log of the second name"


async def test_status_sees_a_writer_whose_lock_file_was_deleted(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    db = tmp_path / "reconciler.db"
    async with held(db):
        # The holder's own submit, being sent (a `ccv submit` waiting for CCV's answer).
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute(
                "INSERT INTO submissions (account, external_reference, state, created_at) "
                "VALUES ('default', 'S-1', 'sending', 1.0)"
            )
        (tmp_path / "reconciler.db.lock").unlink()  # taken for a stale lock
        found = await call_cli("--config", cfg, "status", "--json")
        assert found.code == 0, found.stderr
        (entry,) = [a for a in json.loads(found.stdout)["accounts"] if a["source"] == "ccv"]
        assert (entry["sending_of"], entry["uncertain_of"]) == (["S-1"], [])
    # With nobody holding it, the same submit was cut off.
    found = await call_cli("--config", cfg, "status", "--json")
    (entry,) = [a for a in json.loads(found.stdout)["accounts"] if a["source"] == "ccv"]
    assert (entry["sending_of"], entry["uncertain_of"]) == ([], ["S-1"])


@pytest.mark.parametrize("second", ["lock file deleted", "hard link"])
async def test_a_refusal_names_the_holder_its_lock_file_does_not(
    tmp_path: Path, second: str
) -> None:
    db = tmp_path / "reconciler.db"
    async with held(db) as proc:
        if second == "lock file deleted":
            (tmp_path / "reconciler.db.lock").unlink()
            name = db
        else:
            name = tmp_path / "hard.db"
            os.link(db, name)
        with pytest.raises(StoreLocked, match=rf"^store {name} is in use .* \(pid {proc.pid}\)$"):
            WriterLock(name).acquire()


def test_a_lock_let_go_with_its_descriptor_kept_is_not_seen_held(tmp_path: Path) -> None:
    # `track` settling a submit lets the lock go with its store still open: the database
    # file's byte goes with the lock, not with the descriptor, closed later.
    db = tmp_path / "reconciler.db"
    lock = WriterLock(db, connected=True)
    lock.acquire()
    (tmp_path / "reconciler.db.lock").unlink()  # the database file's byte alone says it
    database = DatabaseFile(db)
    try:
        assert WriterLock(db).held(database.fd)
        lock.release()
        assert not WriterLock(db).held(database.fd)
    finally:
        lock.close()
        database.close()


async def test_track_names_no_account_of_a_writer_whose_lock_file_was_deleted(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # `track --account eu --ref S-1` may name an account the config no longer names only to
    # settle a submit a stopped process left `sending`: a running writer's (its `ccv submit`
    # waiting for CCV) would be settled by nothing, and the order followed under a name nothing
    # checks. Whether the writer runs is asked of the database file's byte too, as `status` asks.
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra='name = "eu"')
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(cfg.read_text().replace('name = "eu"', 'name = "asia"'))
    db = tmp_path / "reconciler.db"
    async with held(db):
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute(
                "INSERT INTO submissions (account, external_reference, state, created_at) "
                "VALUES ('eu', 'S-1', 'sending', 1.0)"
            )
        (tmp_path / "reconciler.db.lock").unlink()  # taken for a stale lock
        track = ("track", "ccv", "O-1", "--ref", "S-1", "--account", "eu")
        tracked = await call_cli("--config", renamed, *track)
        assert tracked.code == 2, tracked.stderr
        assert "no ccv account named 'eu'" in tracked.stderr
        assert await tracked_ids(renamed) == set()
