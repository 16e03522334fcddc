"""A new store's schema is made in one transaction. Its migrations ran a transaction each, as an
upgrade runs them: 33 commits, an fsync each (synchronous=FULL), for every first open: 0.2-0.6 s
of it on a loaded machine, in the suite's thousands of new stores too."""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from pathlib import Path

from reconciler.store import Store
from reconciler.store.migrations import SCHEMA_VERSION


def wal_commits(wal: Path) -> int:
    """The transactions committed to the write-ahead log since it began (its frames of the
    current salt that end a transaction: those naming the database's size after it)."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    salts, commits, at = data[16:24], 0, 32
    while at + 24 + page_size <= len(data) and data[at + 8 : at + 16] == salts:
        commits += struct.unpack(">I", data[at + 4 : at + 8])[0] != 0
        at += 24 + page_size
    return commits


async def test_a_new_store_is_made_in_one_transaction_and_its_id_in_another(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        commits = wal_commits(tmp_path / "reconciler.db-wal")
    finally:
        await store.close()
    assert commits == 2
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchall() == [(SCHEMA_VERSION,)]
