"""An account's rest at its provider's Retry-After is kept in its health record (migration 31):
a store of the schema before it upgrades with no rest, and one recorded survives a reopen."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path

from reconciler.store import Store
from reconciler.store.migrations import MIGRATIONS, SCHEMA_VERSION, statements

BEFORE_REST = 30  # the last schema without `sources.rest_until`


async def test_a_rest_survives_a_reopen_and_an_older_store_upgrades_without_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "reconciler.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for script in MIGRATIONS[:BEFORE_REST]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {BEFORE_REST}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.execute(
            "INSERT INTO sources (source, account, failing, failure_streak, episode, last_error) "
            "VALUES ('ccnow', 'default', 2, 1, 1, 'http 429')"
        )
    store = await Store.open(db)
    try:
        state = await store.sources.state("ccnow", "default")
        assert state.failing and state.rest_until is None
        async with store.transaction():
            await store.sources.save(replace(state, rest_until=1_800_000_300.0))
    finally:
        await store.close()
    store = await Store.open(db)
    try:
        assert (await store.sources.state("ccnow", "default")).rest_until == 1_800_000_300.0
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
