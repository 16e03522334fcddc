"""`replay`'s part of the outbox: queue stored events for a sink again, and the moment each
delivery's `max_age` counts from.

A replayed delivery starts afresh: no attempts, due at once, and `max_age` counted from the
replay (`requeued_at`), so that an event older than `max_age` is retried like a new one instead
of being dead-lettered on its first failure.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from .sql import CHUNK, marks

_AFRESH = "state = 'pending', next_attempt_at = 0, attempts = 0, requeued_at = ?"

# Every stored event since a time, queued again whatever the sink has.
_EVERY = (
    "INSERT INTO deliveries (sink, event_seq, requeued_at) SELECT ?, seq, ? FROM events "
    "WHERE time >= ? ON CONFLICT (sink, event_seq) DO UPDATE SET state = 'pending', "
    "next_attempt_at = 0, attempts = 0, requeued_at = excluded.requeued_at"
)
# What the sink does not have: its pending and its dead-lettered rows, each found through its
# partial index (the state is written out, not bound, so that SQLite may use it), never the
# delivered rows of a year. Named: left to choose, SQLite took the outbox's key (sink,
# event_seq) and read every row the sink ever had. The event's time is read by its key, for
# those rows only.
_PARTIAL_INDEXES = (("pending", "deliveries_due"), ("dead", "deliveries_dead"))
_NOT_DELIVERED = (
    f"UPDATE deliveries INDEXED BY {{index}} SET {_AFRESH} WHERE sink = ? "
    "AND state = '{state}' AND (SELECT time FROM events WHERE seq = deliveries.event_seq) >= ?"
)


async def requeue(
    conn: aiosqlite.Connection, sink: str, since: float | None, now: float, *, undelivered: bool
) -> int:
    """Queue stored events since `since` for a sink again (same ids), or with `undelivered`
    only those it does not have; enable the sink again; return how many. Run inside a
    transaction."""
    before = conn.total_changes
    if undelivered:
        # Pending first: the dead rows it then makes pending are not counted twice.
        for state, index in _PARTIAL_INDEXES:
            sql = _NOT_DELIVERED.format(index=index, state=state)
            await conn.execute(sql, (now, sink, since or 0.0))
    else:
        await conn.execute(_EVERY, (sink, now, since or 0.0))
    queued = conn.total_changes - before
    await conn.execute("DELETE FROM sinks WHERE name = ?", (sink,))
    return queued


async def max_age_from(
    conn: aiosqlite.Connection, sink: str, seqs: Sequence[int]
) -> dict[int, float]:
    """Return, by seq, when each delivery's `max_age` began: the event's creation, or its
    replay if later."""
    out: dict[int, float] = {}
    for i in range(0, len(seqs), CHUNK):
        chunk = seqs[i : i + CHUNK]
        sql = (
            "SELECT d.event_seq, max(e.time, coalesce(d.requeued_at, 0)) FROM deliveries d "
            "JOIN events e ON e.seq = d.event_seq "
            f"WHERE d.sink = ? AND d.event_seq IN ({marks(len(chunk))})"
        )
        async with conn.execute(sql, (sink, *chunk)) as cur:
            out.update({r[0]: r[1] for r in await cur.fetchall()})
    return out
