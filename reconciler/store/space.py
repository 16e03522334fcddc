"""The space pruning frees goes back to the file system (SQLite `auto_vacuum = INCREMENTAL`)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..logs import fields
from .db import Store
from .health import file_size

log = logging.getLogger("reconciler.retention")

VACUUM_PAGES = 2000  # pages given back per step of the incremental vacuum

_INCREMENTAL = 2  # PRAGMA auto_vacuum value

# Room the conversion's VACUUM needs beside the database past two copies of it (with its -wal):
# SQLite copies the database into a temporary file (SQLITE_TMPDIR, TMPDIR, /var/tmp or /tmp,
# as a rule the same file system), then writes it back through the -wal. A tenth of it, at
# least this.
VACUUM_MARGIN_BYTES = 16 << 20


def free_space(directory: Path) -> int:
    """Return the bytes this user may still write in the file system holding `directory`."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


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


async def make_space_returnable(
    store: Store, *, free_bytes: Callable[[Path], int] = free_space
) -> None:
    """Convert a store made before retention existed, once, so that pruning can give space
    back: auto_vacuum only changes through a VACUUM, which rewrites the file (it holds the
    writer meanwhile: this runs when a writer opens the store, before its work starts). Not
    with less free space beside the database (`free_bytes` of its directory) than two copies of
    it need (the temporary copy, the rewrite through the -wal): it would fill the disk. One
    warning then; the next writer's start tries again, and the store works without it (pruning
    frees pages for reuse, not the disk)."""
    conn = store.conn
    mode = int(next(iter(await conn.execute_fetchall("PRAGMA auto_vacuum")))[0])
    if mode == _INCREMENTAL:
        return
    real = Path(os.path.realpath(store.path))  # SQLite keeps its -wal beside a link's target
    size = file_size(real)
    needed = 2 * size + max(size // 10, VACUUM_MARGIN_BYTES)
    directory = real.parent
    try:
        free = free_bytes(directory)
    except OSError:
        free = None  # not known: SQLite's own error tells if the rewrite finds no room
    if free is not None and free < needed:
        log.warning(
            "store.vacuum_skipped",
            extra=fields(
                path=str(store.path),
                reason="auto_vacuum = INCREMENTAL, once",
                needed_bytes=needed,
                free_bytes=free,
                hint=f"free {needed - free} bytes in {directory}; the next start tries again",
            ),
        )
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
