"""The writer lock follows the database file itself, not the path of its lock file: a lock file
deleted under a running daemon (taken for a stale one) or a hard link to the database under
another name lets no second writer in (two writers each with a write-ahead log of its own on one
database can corrupt it)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from reconciler.store import Store, StoreLocked, WriterLock
from tests.conftest import call_cli, cli_env, daemon, free_port, write_config
from tests.fake_providers import FakeCCV
from tests.server.test_api import api_toml
from tests.store.test_store_locks import another_process_reads_and_closes, holder
from tests.writes.test_submit_crash import listening

IN_USE = "is in use by another reconciler process"


def test_a_deleted_lock_file_keeps_a_second_writer_out(tmp_path: Path) -> None:
    db = tmp_path / "reconciler.db"
    held = WriterLock(db)
    held.acquire()
    try:
        (tmp_path / "reconciler.db.lock").unlink()  # an operator's "stale lock"
        with pytest.raises(StoreLocked, match=IN_USE):
            WriterLock(db).acquire()
    finally:
        held.release()
    again = WriterLock(db)
    again.acquire()  # the lock file made anew, the database free
    again.release()


def test_a_hard_link_to_the_database_is_the_same_store(tmp_path: Path) -> None:
    db = tmp_path / "state" / "reconciler.db"
    held = WriterLock(db)
    held.acquire()  # makes the database, under its lock file
    try:
        os.link(db, tmp_path / "hard.db")
        with pytest.raises(StoreLocked, match=f"store {tmp_path / 'hard.db'} {IN_USE}"):
            WriterLock(tmp_path / "hard.db").acquire()
    finally:
        held.release()
    again = WriterLock(tmp_path / "hard.db")
    again.acquire()
    again.release()


async def test_a_lock_taken_beside_an_open_store_leaves_sqlites_locks_alone(
    tmp_path: Path,
) -> None:
    # `track` with a reference asks for the writer lock with its store open: the descriptor of
    # the database the lock opens is closed only after the store's connection (closing any
    # descriptor of a file drops the process's POSIX locks on it, SQLite's among them, and the
    # last other process to close the database then deletes the write-ahead log under it).
    db = tmp_path / "reconciler.db"
    wal = tmp_path / "reconciler.db-wal"
    store = await Store.open(db)
    lock = WriterLock(db, connected=True)
    try:
        await store.orders.track("ccv", "default", [("O1", None)], now=1.0)
        lock.acquire()
        lock.release()
        # Refused: another process holds it.
        holding = await holder(db)
        assert holding.stdin is not None
        try:
            with pytest.raises(StoreLocked, match=IN_USE):
                lock.acquire()
        finally:
            holding.stdin.close()
            assert await holding.wait() == 0
        await another_process_reads_and_closes(db)
        assert wal.exists(), "the write-ahead log was deleted under an open store"
    finally:
        await store.close()
        lock.close()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0


@pytest.mark.parametrize("second", ["lock file deleted", "hard link"])
async def test_a_second_writer_beside_a_running_daemon_is_refused(
    tmp_path: Path, fake_ccv: FakeCCV, second: str
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=api_toml(port))
    assert (await call_cli("--config", cfg, "track", "ccv", "O-1")).code == 0
    other_cfg = cfg
    if second == "hard link":
        os.link(tmp_path / "reconciler.db", tmp_path / "hard.db")
        other_cfg = tmp_path / "hard.toml"
        other_cfg.write_text(cfg.read_text().replace("reconciler.db", "hard.db"))
    async with daemon(cfg, cli_env()) as proc:
        await listening(port)
        if second == "lock file deleted":
            (tmp_path / "reconciler.db.lock").unlink()
        caught_up = await call_cli("--config", other_cfg, "catch-up")
        assert caught_up.code == 75, caught_up.stderr
        assert IN_USE in caught_up.stderr
        # A track takes no writer lock: by the daemon's own name it writes beside it; through
        # the hard link it would write a log of its own, which the daemon does not see.
        tracked = await call_cli("--config", other_cfg, "track", "ccv", "O-2")
        assert tracked.code == (75 if second == "hard link" else 0), tracked.stderr
        assert not (tmp_path / "hard.db-wal").exists(), "a second WAL on the database"
        # The read-only commands take no lock: they still work beside the daemon.
        for command in ("status", "orders", "events"):
            result = await call_cli("--config", other_cfg, command)
            assert result.code == 0, (command, result.stderr)
        listed = (await call_cli("--config", other_cfg, "orders")).stdout
        assert "O-1" in listed and ("O-2" in listed) is (second != "hard link")
        await _stop(proc)
    # The daemon stopped cleanly, and a writer holding the lock may start again, by either name.
    for config in {cfg, other_cfg}:
        caught_up = await call_cli("--config", config, "catch-up")
        assert caught_up.code == 0, caught_up.stderr
