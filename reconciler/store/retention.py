"""Retention: delivered history older than `[store] keep_events` is deleted, with the orders that
reached an end state before that window (or settled and are no longer watched: past their
account's `watch_settled`, or of an account the config no longer names), the CCV submissions
and CCNow commands closed before it, and the counts of statuses no order is in any more; the
space goes back to the file system.

Every step is a small transaction (CHUNK rows) and yields between them, so a pass or a
notification that needs the writer waits for one chunk at most. An event that some sink has not
confirmed (pending or dead-lettered) is never deleted, whatever its age, nor the `source.failed`
that began a configured account's failure still going on. A sink no longer configured holds
nothing back: its undelivered rows are deleted first once the name has been unconfigured for
RELEASE_GRACE_S (store/gone_sinks.py), those of events older than the window at once; until
then they stay, so that a sink renamed by mistake and named back delivers its backlog, while a
sink removed stops failing catch-ups within a week.

A pruned order that is found again starts a new history: its row is new, with a new
`tracked_at`, and event ids include it (events.transition_id), so no id comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from ..json_text import iso_time
from ..logs import fields
from ..model import unwatched, watch_from
from . import gone_sinks
from .db import Store
from .event_pages import delivery_sinks
from .order_sql import unwatched_any
from .retention_writes import prune_closed_writes, prune_references
from .space import give_back_space
from .sql import marks

log = logging.getLogger("reconciler.retention")

# The WHERE of the index of settled orders (migration 18) word for word, which is what lets
# SQLite use it (INDEXED BY fails with "no query solution" otherwise). Its words are model.py's
# settled ones (a test holds them equal): a new settled word needs a new migration, and this.
SETTLED_ORDERS = (
    "end_state = 0 AND (status = 'Failed' OR status = 'completed' OR status = 'refunded')"
)

CHUNK = 1000  # rows per transaction
_SKIPPED_HINT = (
    "the clock is past the newest event by more than keep_events: check the clock "
    "(a store left unused that long is pruned once a later prune or start finds newer events)"
)


async def newest_event_at(store: Store) -> float | None:
    """Return the time of the newest event stored (by time, through its index), or None."""
    [(newest,)] = await store.conn.execute_fetchall("SELECT max(time) FROM events")
    return None if newest is None else float(newest)


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one prune run deleted."""

    events: int
    orders: int
    released: int  # undelivered rows of sinks gone, a week gone or of events past the window
    kept: int  # events older than the window kept because a sink has not confirmed them
    freed_bytes: int
    writes: int = 0  # CCV submissions and CCNow commands closed before the window
    references: int = 0  # CCV notifications' references remembered past `remember_ref`


async def prune(
    store: Store,
    *,
    sinks: Sequence[str],
    keep_s: float,
    now: float,
    watched: Mapping[tuple[str, str], float],
    remember_ref_s: float | None = None,
    chunk: int = CHUNK,
    newest_s: float | None = None,
) -> PruneReport:
    """Delete what the retention window lets go, in small transactions; log one line.
    `watched`: each configured account's `watch_settled` by (source, account); a settled order
    of another account is watched by nobody. References a CCV notification named go after
    `remember_ref_s` (all: no receiver). `newest_s`: the newest time the history vouches for
    (prune_clock.History; None: no bound); a window that ends after it deletes nothing
    (`store.prune_skipped`)."""
    if not sinks:
        raise ValueError("prune needs the configured sinks")  # else every sink would be "gone"
    started = time.monotonic()
    cutoff = now - keep_s
    if newest_s is not None and cutoff > newest_s:
        # A clock far ahead: taken at its word, it would delete the whole history and every
        # settled order (then no longer watched); one so long stopped waits for its next start.
        until, days = iso_time(newest_s), round(keep_s / 86400, 3)
        said = fields(now=iso_time(now), history_until=until, keep_days=days, hint=_SKIPPED_HINT)
        log.warning("store.prune_skipped", extra=said)
        return PruneReport(0, 0, 0, 0, 0)
    removed, released = await gone_sinks.release(store, set(sinks), now, keep_s, chunk)
    events, kept = await _prune_events(store, cutoff, chunk, configured=watched.keys())
    await gone_sinks.forget(store, removed)
    orders = await _prune_orders(store, cutoff, chunk)
    orders += await _prune_settled_orders(store, cutoff, now, watched, chunk)
    unplanned = await _unplan_unwatched(store, now, watched, chunk)
    await _prune_counts(store)
    writes = await prune_closed_writes(store, cutoff, chunk)
    references = await prune_references(
        store, now - remember_ref_s if remember_ref_s is not None else now
    )
    freed = await give_back_space(store)
    report = PruneReport(events, orders, released, kept, freed, writes, references)
    log.info(
        "store.pruned",
        extra=fields(
            events=events,
            orders=orders,
            unplanned=unplanned,
            released_deliveries=released,
            kept_undelivered=kept,
            writes=writes,
            references=references,
            freed_bytes=freed,
            keep_days=round(keep_s / 86400, 3),
            seconds=round(time.monotonic() - started, 3),
        ),
    )
    return report


async def _prune_events(
    store: Store, cutoff: float, chunk: int, *, configured: Collection[tuple[str, str]]
) -> tuple[int, int]:
    """Delete events older than `cutoff` that every sink has confirmed; return (deleted, kept).
    `configured`: the accounts whose current failure's `source.failed` stays.

    Read in (time, seq) order through the time index, from where the last chunk ended.
    """
    deleted = kept = 0
    after: tuple[float, int] = (-1.0, 0)
    # An account that fails again after a recovery raises a newer source.failed, never pruned
    # here (it is after the cutoff), so the set read once holds for the whole run.
    current = await _current_failures(store, configured)
    while True:
        # Without the foreign key check: it scans every delivery row for each event deleted
        # (no index leads with event_seq, and one would cost every event's insert), a chunk
        # took a minute at 800,000 rows. The chunk deletes its events' rows itself, by key.
        async with store.transaction(foreign_keys=False):
            conn = store.conn
            rows = list(
                await conn.execute_fetchall(
                    "SELECT time, seq FROM events WHERE time < ? AND (time, seq) > (?, ?) "
                    "ORDER BY time, seq LIMIT ?",
                    (cutoff, *after, chunk),
                )
            )
            if not rows:
                break
            # The newest event stays: the next seq is counted from it (`Events.last_seq`).
            newest = next(iter(await conn.execute_fetchall("SELECT max(seq) FROM events")))[0]
            old = [int(r[1]) for r in rows]
            seqs = [seq for seq in old if seq != newest and seq not in current]
            # Asked of every old event, the newest and a current failure's too: they stay in
            # any case, but are undelivered all the same (`kept_undelivered` left them out).
            held: set[int] = set()
            sinks = await delivery_sinks(store.conn)
            in_old = marks(len(old))
            for sink in sinks:
                found = await conn.execute_fetchall(
                    "SELECT event_seq FROM deliveries WHERE sink = ? AND state != 'delivered' "
                    f"AND event_seq IN ({in_old})",
                    (sink, *old),
                )
                held.update(int(r[0]) for r in found)
            gone = [seq for seq in seqs if seq not in held]
            if gone:
                in_gone = marks(len(gone))
                # Every sink with a row is in `sinks`, read in this transaction, which no other
                # writer shares: no delivery row is left to an event deleted unchecked.
                for sink in sinks:
                    await conn.execute(
                        f"DELETE FROM deliveries WHERE sink = ? AND event_seq IN ({in_gone})",
                        (sink, *gone),
                    )
                await conn.execute(f"DELETE FROM events WHERE seq IN ({in_gone})", gone)
        deleted += len(gone)
        kept += len(held)
        after = (float(rows[-1][0]), int(rows[-1][1]))
        await asyncio.sleep(0)
    return deleted, kept


async def _current_failures(store: Store, configured: Collection[tuple[str, str]]) -> set[int]:
    """The newest `source.failed` of each configured account failing now: it says since when
    the account fails (`status`), which its `sources` row does not keep (its last failure moves
    with every attempt). Through the partial index of these few events (migration 8)."""
    rows = await store.conn.execute_fetchall(
        "SELECT max(e.seq), e.source, e.account FROM events AS e JOIN sources AS s "
        "ON s.source = e.source AND s.account = e.account "
        "WHERE e.type = 'source.failed' AND s.failing != 0 GROUP BY e.source, e.account"
    )
    # An account the config no longer names is asked by nothing: `status` shows it
    # not_configured, with no failing_since, and its failure is history like any other event.
    return {int(r[0]) for r in rows if (r[1], r[2]) in configured}


async def _prune_orders(store: Store, cutoff: float, chunk: int) -> int:
    """Delete orders in an end state whose last change is older than `cutoff`."""
    deleted = 0
    # Through the index of ended orders by last change (migration 9): each transaction finds
    # its chunk at the start of the index, never the rows that stay.
    while True:
        async with store.transaction():
            count = await store.orders.delete_ended(cutoff, chunk)
        deleted += count
        await asyncio.sleep(0)
        if count < chunk:
            return deleted


async def _prune_settled_orders(
    store: Store,
    cutoff: float,
    now: float,
    watched: Mapping[tuple[str, str], float],
    chunk: int,
) -> int:
    """Delete settled orders that nothing watches any more (model.unwatched: past their
    account's `watch_settled`, or of an account the config does not name) and whose last change
    is older than `cutoff`, as ended ones: such an order is never checked again, so it would
    stay for ever. Read in (last change, id) order through the index of settled orders, from
    where the last chunk ended: an order still watched (a `watch_settled` longer than the
    window) stays."""
    deleted = 0
    after: tuple[float, int] = (-1.0, 0)
    at = "coalesce(last_changed, tracked_at, 0)"
    # `{at} >= ?` bounds the index range from below: the row value alone does not, and every
    # chunk read again the still-watched rows before it (300,000 of them: 20 ms a chunk).
    sql = (
        f"SELECT id, source, account, status, {at} FROM orders INDEXED BY orders_settled "
        f"WHERE {SETTLED_ORDERS} AND {at} < ? AND {at} >= ? AND ({at}, id) > (?, ?) "
        f"ORDER BY {at}, id LIMIT ?"
    )
    while True:
        async with store.transaction():
            rows = list(await store.conn.execute_fetchall(sql, (cutoff, after[0], *after, chunk)))
            if not rows:
                break
            gone = [
                int(r[0])
                for r in rows
                if unwatched(r[1], r[3], r[4], settled_since=watch_from(watched, r[1], r[2], now))
            ]
            await store.orders.delete_rows(gone)
        deleted += len(gone)
        after = (float(rows[-1][4]), int(rows[-1][0]))
        await asyncio.sleep(0)
        if len(rows) < chunk:
            break
    return deleted


async def _unplan_unwatched(
    store: Store, now: float, watched: Mapping[tuple[str, str], float], chunk: int
) -> int:
    """Set to never the next check of the due orders no longer watched (model.unwatched): one
    planned before its watch ended (an upgrade, a shorter `watch_settled`) kept its time, and
    every due read (which still leaves it out, as a guard) scanned it until retention deleted
    it. Read in (next check, id) order through the due index, from where the last chunk ended."""
    unplanned, after = 0, (-1.0, 0)
    unwatched_sql, params = unwatched_any(now, watched)
    sql = (
        f"SELECT id, next_check_at, {unwatched_sql} FROM orders INDEXED BY orders_due "
        "WHERE end_state = 0 AND next_check_at <= ? AND next_check_at >= ? "
        "AND (next_check_at, id) > (?, ?) ORDER BY next_check_at, id LIMIT ?"
    )
    while True:
        async with store.transaction():
            found = await store.conn.execute_fetchall(sql, (*params, now, after[0], *after, chunk))
            rows = list(found)
            if not rows:
                break
            ended = [int(r[0]) for r in rows if r[2]]
            await store.orders.unplan(ended)
        unplanned += len(ended)
        after = (float(rows[-1][1]), int(rows[-1][0]))
        await asyncio.sleep(0)
        if len(rows) < chunk:
            break
    return unplanned


async def _prune_counts(store: Store) -> None:
    """Delete the counts of statuses no order is in any more: a provider that puts a number in
    its status word (`Processing step 7`) would grow the table without end. A few rows."""
    async with store.transaction():
        await store.conn.execute("DELETE FROM order_counts WHERE n = 0")
