"""A sink's deliverable outbox rows, read in one hand-off and, for its backlog, one SQLite step.

sqlite3 releases the GIL at every row step and must take it back from the event loop: while a
catch-up's requests keep the loop busy, that waits about one switch interval (5 ms) per row,
so a 500-row read took 0.4-2.5 s, under the store's write lock, against 4 ms alone. Here the
backlog's page is one row that SQLite builds (the columns as one JSON array, the bodies joined),
decoded on the database thread, and the whole read runs there as one function.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from .ordering import Key, row_key

# A row: (seq, id, type, order_id, body, attempts, severity, next_attempt_at, source, account).
Row = tuple[Any, ...]

# A sink's pending events, read through the partial index of pending rows in its own order:
# an ORDER BY seq would sort every pending row, and the primary key would walk every delivered
# one. Rows never attempted have next_attempt_at 0, so the index has them in seq order; the
# few that failed before (> 0) are read apart.
OUTBOX_COLUMNS = (
    "SELECT e.seq, e.id, e.type, e.order_id, e.body, d.attempts, e.severity, d.next_attempt_at, "
    "e.source, e.account FROM deliveries d INDEXED BY deliveries_due "
    "JOIN events e ON e.seq = d.event_seq WHERE d.sink = ? AND d.state = 'pending' "
)
_RETRIED = OUTBOX_COLUMNS + "AND d.next_attempt_at > 0"
FRESH = (
    OUTBOX_COLUMNS + "AND d.next_attempt_at = 0 AND d.event_seq > ? ORDER BY d.event_seq LIMIT ?"
)
# The same page as one row. Both aggregates take the page's rows in one pass, in its order, so
# the n-th body is the n-th row's. No JSON text holds a raw newline (JSON escapes it). Bodies
# stay the stored bytes: joined as a BLOB, never decoded.
_FRESH_AS_ONE = (
    "SELECT count(*), json_group_array(json_array(seq, id, type, order_id, attempts, severity, "
    "source, account)), CAST(group_concat(body, char(10)) AS BLOB) FROM (" + FRESH + ")"
)


def fresh_page(conn: sqlite3.Connection, sink: str, after: int, limit: int) -> list[Row]:
    """Return up to `limit` of the sink's never-attempted pending rows after seq `after`, in seq
    order: the rows of `FRESH`, read in one step."""
    try:
        count, columns, bodies = conn.execute(_FRESH_AS_ONE, (sink, after, limit)).fetchone()
    except sqlite3.OperationalError:
        # An SQLite built without its JSON functions (before 3.38 they were optional).
        return conn.execute(FRESH, (sink, after, limit)).fetchall()
    if not count:
        return []
    split = bytes(bodies).split(b"\n")
    if len(split) != count:  # a body holding a newline (written by hand): row by row
        return conn.execute(FRESH, (sink, after, limit)).fetchall()
    rows = [
        (c[0], c[1], c[2], c[3], body, c[4], c[5], 0.0, c[6], c[7])
        for c, body in zip(json.loads(columns), split, strict=True)
    ]
    # Both aggregates see the rows in one pass, so the n-th body is the n-th row's; SQLite
    # documents that pass's order as arbitrary, so the page is put in seq order here.
    rows.sort(key=itemgetter(0))
    return rows


@dataclass
class Pending:
    """What a sink may have now, apart from the urgent events it may be handed first."""

    rows: list[Row] = field(default_factory=list)  # deliverable now, retried ones first
    next_at: float | None = None  # when the first event waiting for its retry is due
    oldest: int | None = None  # the sink's oldest pending seq (None: nothing pending)
    # Per ordering key (an order, an account's health, a submission's reference: ordering.py)
    # with an event waiting for its retry, that event's seq: later ones wait too.
    blocked: dict[Key, int] = field(default_factory=dict)

    def free(self, row: Row) -> bool:
        """Return whether no earlier event of the row's ordering key waits for its retry."""
        first = self.blocked.get(row_key(row))
        return first is None or first > row[0]


def read_pending(
    conn: sqlite3.Connection, sink: str, now: float, limit: int, bound_s: float = math.inf
) -> Pending:
    """Return the sink's deliverable rows (at most `limit` never attempted ones): run on the
    database thread, out of any transaction. A retry time more than `bound_s` (the sink's
    longest wait, `retry_max`) ahead of `now` is read as due now: it was set before the wall
    clock was put back, and waiting for it would add the size of that step to the retry."""
    out = Pending()
    retried = [
        r if r[7] <= now + bound_s else (*r[:7], now, *r[8:])
        for r in conn.execute(_RETRIED, (sink,)).fetchall()
    ]
    for r in retried:
        if r[7] > now:
            at = float(r[7])
            out.next_at = at if out.next_at is None else min(out.next_at, at)
            # Every event holds its key, also one naming no order (a `source.failed`).
            key = row_key(r)
            out.blocked[key] = min(r[0], out.blocked.get(key, r[0]))
    out.rows = [r for r in retried if r[7] <= now and out.free(r)]
    out.oldest = min((r[0] for r in retried), default=None)
    taken = 0
    after = 0
    while taken < limit:
        page = fresh_page(conn, sink, after, limit)
        if page and after == 0:
            out.oldest = page[0][0] if out.oldest is None else min(out.oldest, page[0][0])
        free = [r for r in page if out.free(r)] if out.blocked else page
        out.rows += free
        taken += len(free)
        if len(page) < limit:
            break
        after = page[-1][0]
    return out
