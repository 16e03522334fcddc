"""The `events` table (the history) and the outbox (`deliveries`: one row per event and sink).

An event and its delivery rows are written in the transaction of the transition that made it;
a sink reads its pending rows in commit order, and a row is marked delivered only after the
sink confirmed it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..events import Event
from ..model import Source
from . import event_rows, replays
from . import targets as sink_targets
from .due import OUTBOX_COLUMNS, read_pending
from .errors import StoreError, guarded
from .event_pages import StoredEvent, history_pages
from .health import is_unusable
from .history import LAST_SEQ, RAISE_FLOOR, highest_seq
from .oneshot import commit_at_once
from .ordering import stored_keys
from .priority import urgent_first
from .sql import CHUNK, Statement, chunks, marks, on_thread, run_statements, runs, values

if TYPE_CHECKING:
    from .db import Store


class OutboxEvent(NamedTuple):
    """One stored event as a sink receives it; `body` is the CloudEvent JSON, byte-identical
    on every (re)delivery. A named tuple: one is made per event stored."""

    seq: int
    id: str
    type: str
    order_id: str | None
    body: bytes
    attempts: int = 0  # earlier failed attempts for this sink
    severity: str | None = None  # the stored event's; None: read it from the body


@dataclass(frozen=True, slots=True)
class Due:
    """What a sink may deliver now, and when it will have more."""

    rows: list[OutboxEvent]  # deliverable now, in seq (commit) order
    next_at: float | None  # when the first event waiting for its retry is due (None: none)
    full: bool  # `rows` reached the limit: more may be deliverable at once


# Counted for /metrics; matches the WHERE of its partial index (migration 5) word for word,
# which is what lets SQLite use it.
DEAD_LETTERS_SQL = "SELECT sink, count(*) FROM deliveries WHERE state = 'dead' GROUP BY sink"

# The urgent events of a sink, and every earlier pending one of their orders (a few rows).
_URGENT = OUTBOX_COLUMNS + "AND d.next_attempt_at = 0 "


@guarded
class Events:
    """The history: store events (queued for every sink), read them back."""

    def __init__(self, store: Store, sinks: Sequence[str]) -> None:
        self._store = store
        self._conn = store.conn
        self.sinks = tuple(sinks)  # every event is queued for each of these
        self._last_seq: int | None = None  # highest seq stored; None: ask the database

    def unusable(self, exc: sqlite3.Error) -> StoreError:
        """Record a failed statement in the store's health; return the error to raise."""
        return self._store.unusable(exc)

    async def add(self, events: Sequence[Event], *, urgent: bool = False) -> int:
        """Store events and queue them for every sink (inside a transaction); return how many
        were new (a transition found again after a crash keeps its id, and is stored once).
        `urgent` events (a notification's) go to each sink before its backlog of other orders'."""
        if not events:
            return 0
        last = await self.last_seq()
        rows = event_rows.rows(events, last + 1)
        self._store.on_rollback(self._forget_last_seq)
        sinks = self.sinks
        statements: list[Statement] = [(event_rows.statement(n), p) for n, p in chunks(rows)]
        statements.append(
            (
                "INSERT INTO deliveries (sink, event_seq) SELECT sinks.column1, events.seq "
                f"FROM (VALUES {values(len(sinks), 1)}) AS sinks, events WHERE events.seq > ?",
                (*sinks, last),
            )
        )
        # The events and their deliveries in one hand-off (sql.run_statements).
        added = sum((await on_thread(self._conn, run_statements, statements))[:-1])
        # A skipped row leaves a gap in the seqs: ask the database for the highest next time.
        self._last_seq = last + added if added == len(events) else None
        if added == len(events):
            self._store.stored(events)
        elif added:  # a transition found again is stored once: only the new ones count
            new = await self._conn.execute_fetchall("SELECT id FROM events WHERE seq > ?", (last,))
            ids = {r[0] for r in new}
            # Each once, as stored (a batch may name one id twice).
            self._store.stored(list({e.id: e for e in events if e.id in ids}.values()))
        priority = self._store.priority
        if added == len(events):
            priority.stage(stored_keys(rows), urgent=urgent)
        else:  # a seq may not be its event's
            priority.forget_window()
        return added

    @property
    def known_last_seq(self) -> int | None:
        """The highest seq stored, when known without asking the database."""
        return self._last_seq

    async def skip_seq(self) -> None:
        """Hand out a seq no event takes (inside a transaction): the history mark then counts
        a commit that stored no event, which a database that lost it lacks (history.py)."""
        last = await highest_seq(self._conn)  # the database's own: a floor never goes down
        await self._conn.execute(RAISE_FLOOR, (last + 1,))
        self._store.on_rollback(self._forget_last_seq)
        self._last_seq = last + 1

    def seq_moved(self, last: int | None) -> None:
        """Take `last` for the highest seq (None: ask the database): read from it, or handed
        out by a commit not made through `add` (a CCV submit's claim, claims.claim)."""
        self._last_seq = last

    def _forget_last_seq(self) -> None:
        self._last_seq = None

    async def last_seq(self) -> int:
        """Return the highest seq stored, or handed out before the database went back (0:
        none): the next event's seq follows it."""
        if self._last_seq is None:
            self._last_seq = await highest_seq(self._conn)
        return self._last_seq

    async def seq_of(self, event_id: str) -> int | None:
        """Return the seq of the event with this id (None: not stored, or pruned)."""
        found = await self._conn.execute_fetchall(
            "SELECT seq FROM events WHERE id = ?", (event_id,)
        )
        return next((int(r[0]) for r in found), None)

    async def latest_failed(self, source: Source, account: str) -> tuple[float, str | None] | None:
        """Return when the account's latest `source.failed` happened and the reason it gave, if
        one is stored (kept while the account fails: retention spares it)."""
        # The type is written out, not bound: only then can SQLite use the partial index
        # (migration 8), which holds these few events; the events table may hold millions.
        sql = (
            "SELECT time, body FROM events WHERE type = 'source.failed' AND source = ? "
            "AND account = ? ORDER BY seq DESC LIMIT 1"
        )
        rows = list(await self._conn.execute_fetchall(sql, (source, account)))
        if not rows:
            return None
        reason = json.loads(rows[0][1])["data"].get("reason")
        return float(rows[0][0]), reason if isinstance(reason, str) else None

    async def history(
        self,
        *,
        since: float | None = None,
        type: str | None = None,
        undelivered: bool = False,
        sinks: Collection[str] | None = None,
    ) -> list[StoredEvent]:
        """Return the event history in order (see `pages`), all of it at once."""
        pages = self.pages(since=since, type=type, undelivered=undelivered, sinks=sinks)
        return [e async for page in pages for e in page]

    async def pages(
        self,
        *,
        since: float | None = None,
        type: str | None = None,
        undelivered: bool = False,
        sinks: Collection[str] | None = None,
    ) -> AsyncIterator[list[StoredEvent]]:
        """Yield the event history in order by pages, optionally only what some sink does not
        have. With `sinks` (the configured ones), a sink removed from the config is waiting
        for nothing, as `status` counts it."""
        # Guarded here: `guarded` wraps coroutines, and this is a generator.
        try:
            async for page in history_pages(
                self._conn, since=since, type=type, undelivered=undelivered, sinks=sinks
            ):
                yield page
        except sqlite3.Error as exc:
            if not is_unusable(exc):
                raise
            raise self.unusable(exc) from None

    async def feed(self, after: int, type: str | None, limit: int) -> tuple[list[bytes], int]:
        """Return the bodies of up to `limit` events after seq `after` (of one type, or all),
        in commit order, and the cursor to continue from."""
        # One statement, one snapshot: the page and the highest seq agree, so the cursor may
        # skip events of other types but never one of this type committed meanwhile.
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT seq, body FROM (SELECT seq, body FROM events WHERE seq > ? "
                "AND (? IS NULL OR type = ?) ORDER BY seq LIMIT ?) "
                f"UNION ALL SELECT ({LAST_SEQ}), NULL",
                (after, type, type, limit),
            )
        )
        top = int(rows.pop()[0])
        if after > top:
            # Retention keeps the newest event, so no cursor of this feed is beyond it: the
            # database was restored from a backup or replaced. Handing the cursor back would
            # skip every event until the seqs caught up with it.
            raise CursorAhead(top)
        last = int(rows[-1][0]) if len(rows) == limit else top
        return [bytes(r[1]) for r in rows], last


class CursorAhead(Exception):
    """A feed cursor beyond the newest event: it was not given by this database."""

    def __init__(self, newest: int) -> None:
        super().__init__(f"the cursor is beyond the newest event ({newest})")
        self.newest = newest


@guarded
class OutboxRows:
    """The delivery rows: what each sink has yet to get, and what it confirmed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store.conn

    def unusable(self, exc: sqlite3.Error) -> StoreError:
        """Record a failed statement in the store's health; return the error to raise."""
        return self._store.unusable(exc)

    async def due(self, sink: str, now: float, limit: int, bound_s: float = math.inf) -> Due:
        """Return the sink's pending events that may be delivered now, in seq order.

        An event waits while an earlier event of its ordering key (its order, or for an event
        naming none its account or reference: store/ordering.py) waits for its retry, so that a
        sink never gets a key's later event before an earlier one; a dead-lettered event no
        longer holds anything back. A retry more than `bound_s` ahead is due (`read_pending`).
        """
        # Out of any transaction: this connection would see the rows of one still open, and a
        # sink must never get an event that may yet be rolled back. Before the batches waiting
        # for the writer: a sink's read is short, and a pass's backlog waits for it.
        async with self._store.exclusive(urgent=True) as conn:
            pending = await on_thread(conn, read_pending, sink, now, limit, bound_s)
            chains = await self._urgent_chains(sink, pending.oldest)
        head = [r for r in chains if pending.free(r)]
        rows = urgent_first(head, pending.rows)[:limit]
        self._store.priority.served(sink, (r[0] for r in rows))
        return Due(
            [OutboxEvent(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) for r in rows],
            next_at=pending.next_at,
            full=len(rows) >= limit,
        )

    async def _urgent_chains(self, sink: str, oldest: int | None) -> list[Any]:
        """Return the sink's pending urgent events with every earlier pending event of their
        orders (under the write lock): together they may pass the rest of the backlog. Only
        while the sink's oldest pending event (`oldest`) is in the window of recent events."""
        priority = self._store.priority
        urgent = priority.pending(sink)
        horizon = priority.horizon
        if not urgent or horizon is None or (oldest is not None and oldest <= horizon):
            return []
        seqs = set(urgent)
        for seq in urgent:
            seqs.update(priority.earlier(seq))
        found: list[Any] = []
        wanted = sorted(seqs)
        for i in range(0, len(wanted), CHUNK):
            chunk = wanted[i : i + CHUNK]
            sql = _URGENT + f"AND d.event_seq IN ({marks(len(chunk))})"
            found += await self._conn.execute_fetchall(sql, (sink, *chunk))
        pending = {r[0] for r in found}
        # Delivered, dead-lettered or waiting for a retry (read with the retried): not urgent.
        priority.served(sink, set(urgent) - pending)
        return found

    async def delivered(self, sink: str, seqs: Sequence[int], now: float) -> None:
        """Record that a sink confirmed events (its own transaction, a short one: before the
        batches waiting for the writer)."""
        # By runs of consecutive seqs (a batch of a catch-up is one run): one statement and
        # two bounds each, instead of a parameter and a row of an IN list per event. In one
        # hand-off to the database thread: a CCV submit arriving meanwhile waits for all of it.
        await commit_at_once(
            self._store,
            [
                (
                    "UPDATE deliveries SET state = 'delivered', delivered_at = ?, "
                    "last_error = NULL WHERE sink = ? AND event_seq BETWEEN ? AND ?",
                    (now, sink, first, last),
                )
                for first, last in runs(seqs)
            ],
        )

    async def failed(self, sink: str, failures: Sequence[tuple[int, str, float | None]]) -> None:
        """Record failed attempts: (seq, error, next attempt time or None for dead-letter)."""
        async with self._store.transaction(urgent=True):
            await self._conn.executemany(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, "
                "state = CASE WHEN ? IS NULL THEN 'dead' ELSE 'pending' END, "
                "next_attempt_at = coalesce(?, next_attempt_at) WHERE sink = ? AND event_seq = ?",
                [(err, at, at, sink, seq) for seq, err, at in failures],
            )

    async def last_replay(self, sink: str) -> float | None:
        """When `replay` last queued events for the sink again (None: never), through the
        index of replayed rows."""
        sql = "SELECT max(requeued_at) FROM deliveries WHERE sink = ? AND requeued_at IS NOT NULL"
        rows = list(await self._conn.execute_fetchall(sql, (sink,)))
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def pending_counts(self, sink: str | None = None) -> dict[str, int]:
        """Return pending (not dead) deliveries per sink."""
        sql = (
            "SELECT sink, count(*) FROM deliveries WHERE state = 'pending' "
            "AND (? IS NULL OR sink = ?) GROUP BY sink"
        )
        async with self._conn.execute(sql, (sink, sink)) as cur:
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def undelivered_since(self, sinks: Collection[str]) -> dict[str, tuple[int, float]]:
        """Return undelivered (pending, dead) deliveries of the given sinks: how many, and the
        oldest event's time; theirs alone, by each state's partial index (no delivered row)."""
        if not sinks:
            return {}
        one = (
            "SELECT d.sink, e.time FROM deliveries d INDEXED BY {} JOIN events e "
            f"ON e.seq = d.event_seq WHERE d.state = '{{}}' AND d.sink IN ({marks(len(sinks))})"
        )
        due, dead = one.format("deliveries_due", "pending"), one.format("deliveries_dead", "dead")
        sql = f"SELECT sink, count(*), min(time) FROM ({due} UNION ALL {dead}) GROUP BY sink"
        rows = await self._conn.execute_fetchall(sql, (*sinks, *sinks))
        return {r[0]: (r[1], r[2]) for r in rows}

    async def swap_targets(self, targets: Callable[[bytes], Mapping[str, str]]) -> dict[str, str]:
        """Record where each sink name sends now, `targets(salt)` (sinks.sink_target); return
        the targets recorded before (none for a store that recorded none)."""
        async with self._store.transaction():
            return await sink_targets.swap_targets(self._conn, targets)

    async def dead_counts(self) -> dict[str, int]:
        """Return dead-lettered deliveries per sink."""
        async with self._conn.execute(DEAD_LETTERS_SQL) as cur:
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def counts(self) -> dict[str, tuple[int, int]]:
        """Return (pending, dead-lettered) deliveries per sink."""
        pending = await self.pending_counts()
        dead = await self.dead_counts()
        return {sink: (pending.get(sink, 0), dead.get(sink, 0)) for sink in {*pending, *dead}}

    async def disable_sink(self, sink: str, reason: str, now: float) -> None:
        """Remember that a sink's receiver is gone (webhook 410)."""
        async with self._store.transaction():
            await self._conn.execute(
                "INSERT OR REPLACE INTO sinks (name, disabled_at, reason) VALUES (?, ?, ?)",
                (sink, now, reason),
            )

    async def disabled_sinks(self) -> dict[str, str]:
        """Return disabled sinks and why."""
        return {name: reason for name, (reason, _) in (await self.disabled_since()).items()}

    async def disabled_since(self) -> dict[str, tuple[str, float]]:
        """Return disabled sinks, why, and since when (epoch seconds)."""
        async with self._conn.execute(
            "SELECT name, reason, disabled_at FROM sinks WHERE disabled_at IS NOT NULL"
        ) as cur:
            return {r[0]: (r[1], r[2]) for r in await cur.fetchall()}

    async def requeue(
        self,
        sink: str,
        since: float | None,
        *,
        undelivered: bool = False,
        now: float | None = None,
    ) -> int:
        """Queue stored events for a sink again (same ids), each with a fresh `max_age` from
        `now`; with `undelivered` only what the sink does not have; return how many."""
        at = time.time() if now is None else now
        async with self._store.transaction():
            return await replays.requeue(self._conn, sink, since, at, undelivered=undelivered)

    async def max_age_from(self, sink: str, seqs: Sequence[int]) -> dict[int, float]:
        """Return, by seq, when each of the sink's deliveries began to count towards `max_age`
        (the event's creation, or its replay)."""
        return await replays.max_age_from(self._conn, sink, seqs)
