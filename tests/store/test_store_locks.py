"""SQLite's own locks on the database file while a process holds stores on it: another process
must always see that the file is in use (else the last to close deletes the write-ahead log
from under the daemon, and what it commits afterwards is lost)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from reconciler.store import Store

# Another process opens the store, reads, and closes: SQLite lets the last connection to close
# checkpoint and delete the write-ahead log, which it may only do when no other holds the file.
_OTHER_PROCESS = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM meta").fetchall()
conn.close()
"""


async def another_process_reads_and_closes(db: Path) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _OTHER_PROCESS, str(db))
    assert await proc.wait() == 0


@pytest.mark.parametrize("second", ["read-only", "writable"])
async def test_a_second_store_in_the_process_keeps_the_first_ones_locks(
    tmp_path: Path, second: str
) -> None:
    # The daemon holds its store and, with [api], a read-only one beside it on the same file.
    db = tmp_path / "reconciler.db"
    store = await Store.open(db)
    try:
        await store.orders.track("ccv", "default", [("O1", None)], now=1.0)
        wal = db.with_name(db.name + "-wal")
        assert wal.exists()
        other = await Store.open(db, readonly=second == "read-only")
        try:
            # `reconciler track` or an operator's sqlite3 beside the daemon.
            await another_process_reads_and_closes(db)
            assert wal.exists(), "the write-ahead log was deleted under an open store"
            # And what the first store commits now is on the file others read.
            await store.orders.track("ccv", "default", [("O2", None)], now=2.0)
            seen = await Store.open(db, readonly=True)
            try:
                assert {s.key.order_id for s in await seen.orders.snapshot()} == {"O1", "O2"}
            finally:
                await seen.close()
        finally:
            await other.close()
    finally:
        await store.close()
