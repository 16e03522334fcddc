"""The history as the `events` command reads it: by pages, each one short statement, so that
the first rows print at once and memory holds one page, whatever the length of the history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

import aiosqlite

from .sql import marks

PAGE = 1000  # events per statement


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event row as the `events` command shows it."""

    seq: int
    id: str
    type: str
    time: float
    order_id: str | None
    severity: str
    body: bytes
    undelivered: tuple[str, ...]  # sinks that do not have it (pending or dead)


def page_sql(sinks: int) -> str:
    """The statement of a page of events after a seq, with the sinks (of `sinks` bound after
    the seq) that do not have each. The sinks are named: the outbox's key is (sink,
    event_seq), so each is one search of the key; with the seq alone SQLite read the whole
    outbox for every event (a history of 10,000 events took four minutes)."""
    waiting = (
        "(SELECT group_concat(d.sink) FROM deliveries d WHERE d.sink IN "
        f"({marks(sinks)}) AND d.event_seq = e.seq AND d.state != 'delivered')"
        if sinks
        else "NULL"
    )
    # Along the key from the seq: a page reads its own rows (and those its filters skip),
    # never the history before it.
    return (
        f"SELECT e.seq, e.id, e.type, e.time, e.order_id, e.severity, e.body, {waiting} "
        "FROM events e WHERE e.seq > ? AND e.time >= ? AND (? IS NULL OR e.type = ?) "
        "ORDER BY e.seq LIMIT ?"
    )


async def delivery_sinks(conn: aiosqlite.Connection) -> list[str]:
    """Return the sinks that have delivery rows: one index seek per sink, not a scan."""
    found: list[str] = []
    while True:
        rows = list(
            await conn.execute_fetchall(
                "SELECT sink FROM deliveries WHERE sink > ? ORDER BY sink LIMIT 1",
                (found[-1] if found else "",),
            )
        )
        if not rows:
            return found
        found.append(str(rows[0][0]))


async def history_pages(
    conn: aiosqlite.Connection,
    *,
    since: float | None,
    type: str | None,
    undelivered: bool,
    sinks: Collection[str] | None,
    page: int = PAGE,
) -> AsyncIterator[list[StoredEvent]]:
    """Yield the event history in seq order, a page at a time (no page empty), optionally
    only what some of `sinks` (None: every sink with delivery rows) does not have."""
    named = sorted(sinks) if sinks is not None else await delivery_sinks(conn)
    sql = page_sql(len(named))
    after = 0
    while True:
        # A statement per page, not one cursor for all: no read transaction stays open while
        # the reader of the output (a pager) waits, holding back the daemon's checkpoints.
        rows = list(
            await conn.execute_fetchall(sql, (*named, after, since or 0.0, type, type, page))
        )
        out = [
            StoredEvent(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                bytes(r[6]),
                tuple(sorted(r[7].split(","))) if r[7] else (),
            )
            for r in rows
        ]
        if undelivered:
            out = [e for e in out if e.undelivered]
        if out:
            yield out
        if len(rows) < page:
            return
        after = rows[-1][0]
