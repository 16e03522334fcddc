"""Whether the database's history went back: a restore from a backup, a lost WAL file.

An order event's id is derived from the order's place in its history (`events.transition_id`).
A database put back to an earlier state counts those places again, and a transition that
differs from the one first seen at a place (an order that went A -> B -> A -> B meanwhile) would
get the id a sink already has: a consumer that deduplicates on the id (`webhook-id`) would drop
a real change. So beside the database a small file, `<database>-history`, keeps the highest
event seq this store committed. A database that holds less than that has gone back, and from
then on its ids are made in a new epoch (a random word kept in `meta`): no id comes again. A
transition seen again after the rewind then gets a new id too; a consumer applying a status
twice is harmless, one dropping a change is not.

The mark is written after each commit that stored events, without fsync: after a power loss it
may be behind the database (a rewind then goes unseen for the events after it), never ahead.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import aiosqlite

from ..logs import fields

log = logging.getLogger("reconciler.store")

SUFFIX = "-history"
_MAX_MARK = 200


class HistoryMark:
    """The mark beside one store: its id and the highest event seq it committed."""

    def __init__(self, fd: int, store_id: str, seq: int) -> None:
        self._fd: int | None = fd
        self._store_id = store_id
        self.seq = seq

    def note(self, seq: int) -> None:
        """Keep `seq` if it is higher than the mark (after a commit that stored events)."""
        if seq > self.seq:
            self._write(seq)

    def _write(self, seq: int) -> None:
        if self._fd is None:
            return
        self.seq = seq
        # Fixed width: one write replaces the whole mark, no truncation between.
        line = f"{self._store_id} {seq:020d}\n".encode()
        try:
            os.pwrite(self._fd, line, 0)
        except OSError as exc:
            log.warning("store.history_mark_failed", extra=fields(error=exc.strerror))
            self.close()

    def close(self) -> None:
        """Close the mark's file; later notes are dropped."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _marked_seq(raw: bytes, store_id: str) -> int | None:
    """Return the seq a mark holds for `store_id`, or None (another store's, or unreadable)."""
    parts = raw.decode("ascii", "replace").split()
    if len(parts) != 2 or parts[0] != store_id or not parts[1].isdigit():
        return None
    return int(parts[1])


async def open_history(
    conn: aiosqlite.Connection, path: Path, store_id: str
) -> tuple[HistoryMark | None, str | None]:
    """Open the mark beside the database at `path` and return it with the id epoch in force:
    a new one when the database holds fewer events than the mark says it committed."""
    mark: HistoryMark | None = None
    try:
        fd = os.open(path.with_name(path.name + SUFFIX), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        # Ids are then as they were before marks: a rewind goes unseen, nothing else changes.
        log.warning("store.history_mark_failed", extra=fields(error=exc.strerror))
    else:
        # The mark first, the database after: a mark is written after its commit, so another
        # process committing meanwhile can never make the mark look ahead of the database.
        marked = _marked_seq(os.pread(fd, _MAX_MARK, 0), store_id)
        last = await _last_seq(conn)
        mark = HistoryMark(fd, store_id, last if marked is None else min(marked, last))
        if marked is not None and marked > last:
            await _new_epoch(conn)
            log.warning(
                "store.history_rewound",
                extra=fields(
                    path=str(path),
                    events=last,
                    committed_before=marked,
                    hint="restored from a backup? new events get new ids",
                ),
            )
        if marked is None or marked > last:
            # The database's own count from now on (a rewound one's too, in its new epoch).
            mark._write(last)
    rows = await conn.execute_fetchall("SELECT value FROM meta WHERE key = 'id_epoch'")
    epoch = next((str(r[0]) for r in rows), None)
    return mark, epoch


async def _last_seq(conn: aiosqlite.Connection) -> int:
    rows = await conn.execute_fetchall("SELECT ifnull(max(seq), 0) FROM events")
    return int(next(iter(rows))[0])


async def _new_epoch(conn: aiosqlite.Connection) -> None:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('id_epoch', ?)",
            (secrets.token_hex(8),),
        )
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
