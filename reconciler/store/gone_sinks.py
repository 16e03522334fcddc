"""Sink names the config no longer names that the store holds delivery rows under: when each was
first found unconfigured (table `gone_sinks`), and retention's letting go of their rows.

A week counts from that moment, not from each event's time: a sink renamed by mistake after a
receiver's 10-day outage holds a backlog older than a week at the rename, and counted from its
events it was let go of at the first prune after it, seconds after `run` started, with no time
to see the warning and name the sink back. After the week the name is taken for removed on
purpose and its undelivered rows go, so it stops keeping every `catch-up` at 75; a row of an
event older than `keep_events` goes at once, as any event of that age would.

The time is recorded by the first start (`run`, `catch-up`) or prune that finds the name, and
dropped once the name is configured again or holds no row any more. A time in the future (a
clock put ahead when it was recorded, set right since) is taken back to now: no first finding
is later than a finding now. A clock behind (a box without a hardware clock, started before it
is set) records or lowers no time below the newest the store holds (its newest event, an
account's last poll): no finding is earlier than that. Retention's clock rules hold
(prune_clock.History): while the clock is seen put ahead, a prune's `now` is the time the
history vouches for, so such a step does not pass the week at once; a start under a clock
stepped while no process ran takes it at its word, as it does for the history itself."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Sequence

import aiosqlite

from .db import Store
from .event_pages import delivery_sinks
from .sql import marks

# Long enough to see the warning (`sinks.sink_not_configured`) and name a renamed sink back,
# short enough that a sink removed on purpose stops keeping every catch-up at 75.
RELEASE_GRACE_S = 7 * 86400.0


async def note(store: Store, gone: Collection[str], now: float) -> dict[str, float]:
    """Record `now` for each of `gone` (the unconfigured names holding rows) not recorded yet,
    or recorded later than `now`; forget every other name; return each one's time. A `now`
    before the newest time the store holds (an event's, an account's last poll) is taken for
    that time."""
    async with store.transaction():
        conn = store.conn
        # A clock behind (a box without a hardware clock, started before it is set) would
        # record or lower the time by as much, and the next prune under a right clock would
        # find the week long past and let go of every row at once. No finding is earlier than
        # the newest time this store's clock wrote: its newest event (the time index answers)
        # or an account's last poll, which a quiet store still writes (a few rows).
        [(newest,)] = await conn.execute_fetchall(
            "SELECT max(coalesce((SELECT max(time) FROM events), 0), "
            "coalesce((SELECT max(max(coalesce(last_success, 0), coalesce(last_failure, 0))) "
            "FROM sources), 0))"
        )
        now = max(now, float(newest))
        names = sorted(gone)
        await conn.execute(
            f"DELETE FROM gone_sinks WHERE name NOT IN ({marks(len(names))})", tuple(names)
        )
        await conn.executemany(
            "INSERT INTO gone_sinks (name, since) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET since = min(since, excluded.since)",
            [(name, now) for name in names],
        )
        return await read(conn)


async def read(conn: aiosqlite.Connection) -> dict[str, float]:
    """Return when each name was first found unconfigured (a few rows)."""
    rows = await conn.execute_fetchall("SELECT name, since FROM gone_sinks")
    return {str(r[0]): float(r[1]) for r in rows}


def let_go_at(since: float | None, oldest: float, keep_s: float, now: float) -> float:
    """When retention lets go of the oldest undelivered event of a name first found
    unconfigured at `since` (None: not yet, the next start or prune finds it at `now`). A
    `since` in the future (recorded under a clock since set back) is taken for `now`, as the
    next start or prune records it."""
    found = now if since is None else min(since, now)
    return min(found + RELEASE_GRACE_S, oldest + keep_s)


async def release(
    store: Store, sinks: Collection[str], now: float, keep_s: float, chunk: int
) -> tuple[list[str], int]:
    """Delete the undelivered rows (pending, dead) that the sink names no longer configured
    hold back no longer: all of a name first found unconfigured more than RELEASE_GRACE_S ago,
    else those of events older than `keep_s`; return the names and how many rows. Read along
    the key (sink, event_seq) from where the last chunk ended, so the rows that stay are read
    once a run."""
    removed = [s for s in await delivery_sinks(store.conn) if s not in sinks]
    since = await note(store, removed, now)
    total = 0
    for sink in removed:
        cutoff = math.inf if now - since[sink] > RELEASE_GRACE_S else now - keep_s
        after = 0
        while True:
            async with store.transaction():
                rows = await store.conn.execute_fetchall(
                    "SELECT d.event_seq FROM deliveries AS d JOIN events AS e "
                    "ON e.seq = d.event_seq WHERE d.sink = ? AND d.event_seq > ? "
                    "AND d.state != 'delivered' AND e.time < ? ORDER BY d.event_seq LIMIT ?",
                    (sink, after, cutoff, chunk),
                )
                old = [int(r[0]) for r in rows]
                if old:
                    in_old = marks(len(old))
                    await store.conn.execute(
                        f"DELETE FROM deliveries WHERE sink = ? AND event_seq IN ({in_old})",
                        (sink, *old),
                    )
            total += len(old)
            await asyncio.sleep(0)
            if len(old) < chunk:
                break
            after = old[-1]
    return removed, total


async def forget(store: Store, removed: Sequence[str]) -> None:
    """Delete what is remembered of a sink no longer configured (a 410's disabling, when it
    was first found so) once it has no delivery row left: until then, named again, it goes on
    as it was."""
    async with store.transaction():
        for sink in removed:
            left = await store.conn.execute_fetchall(
                "SELECT 1 FROM deliveries WHERE sink = ? LIMIT 1", (sink,)
            )
            if not left:
                await store.conn.execute("DELETE FROM sinks WHERE name = ?", (sink,))
                await store.conn.execute("DELETE FROM gone_sinks WHERE name = ?", (sink,))
