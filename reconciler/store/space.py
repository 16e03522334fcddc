"""The space pruning frees goes back to the file system (SQLite `auto_vacuum = INCREMENTAL`)."""

from __future__ import annotations

import asyncio
import logging
import time

from ..logs import fields
from .db import Store

log = logging.getLogger("reconciler.retention")

VACUUM_PAGES = 2000  # pages given back per step of the incremental vacuum

_INCREMENTAL = 2  # PRAGMA auto_vacuum value


async def give_back_space(store: Store) -> int:
    """Return free pages to the file system, a step at a time; return the bytes freed."""
    conn = store.conn
    mode = int(next(iter(await conn.execute_fetchall("PRAGMA auto_vacuum")))[0])
    if mode != _INCREMENTAL:
        return 0
    page_size = int(next(iter(await conn.execute_fetchall("PRAGMA page_size")))[0])
    freed = 0
    while True:
        free = int(next(iter(await conn.execute_fetchall("PRAGMA freelist_count")))[0])
        if free == 0:
            return freed * page_size
        async with store.exclusive() as own:
            # executescript steps the pragma to its end; execute() frees one page per call.
            await own.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES:d})")
        freed += min(free, VACUUM_PAGES)
        await asyncio.sleep(0)


async def make_space_returnable(store: Store) -> None:
    """Convert a store made before retention existed, once, so that pruning can give space
    back: auto_vacuum only changes through a VACUUM, which rewrites the file (it holds the
    writer meanwhile: this runs when a writer opens the store, before its work starts)."""
    conn = store.conn
    mode = int(next(iter(await conn.execute_fetchall("PRAGMA auto_vacuum")))[0])
    if mode == _INCREMENTAL:
        return
    started = time.monotonic()
    size = store.path.stat().st_size
    async with store.exclusive() as own:
        await own.execute("PRAGMA auto_vacuum = INCREMENTAL")
        await own.execute("VACUUM")
    log.info(
        "store.vacuumed",
        extra=fields(
            reason="auto_vacuum = INCREMENTAL, once",
            bytes_before=size,
            bytes_after=store.path.stat().st_size,
            seconds=round(time.monotonic() - started, 3),
        ),
    )
