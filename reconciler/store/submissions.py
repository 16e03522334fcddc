"""The `submissions` table: CCV submits, recorded before they are sent and closed after.

A submission is `sending` from its record until CCV's answer is known; then `succeeded` (the
order is tracked in the same transaction), `failed` (a definite refusal or nothing sent) or
`uncertain` (the answer was lost: never re-sent). An uncertain one becomes `resolved`, with its
`order.submit_resolved` in the same transaction, when a notification for its reference arrives
(not for one CCV answered with a 2xx: `answered`) or someone tracks its order with the
reference, or a person says CCV made it (`made`); `failed` (`not_sent`) when a person says CCV
never got it (`not_sent`). A failed one (refused, not sent, a person's word) becomes `resolved`
when a notification says CCV has an order of its reference after all; a refusal is not `failed`
where a notification named the reference while it waited.
One live submission per (account, reference): a second submit of the same reference is refused
unless the earlier one definitely failed, or succeeded (or was resolved) with an order CCV has
since ended as `Canceled`, and so is one of a reference a followed order carries, but one CCV
ended as `Canceled` (NOTES.md: nothing was paid, and a submit again under the same reference is
the integrator's way); its answer names them (store/submitted.py). Not `Failed`: a CCV employee
may still complete such an order (model.py). CCV's word is compared without its case.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..events import Event, submit_resolved_event
from ..model import OrderState
from . import order_rows
from .claims import ClaimRefused, claim
from .db import Store
from .oneshot import commit_at_once
from .order_sql import due_sql
from .sql import CHUNK, Statement, marks

State = Literal["sending", "succeeded", "failed", "uncertain", "resolved"]
# What settled an uncertain submission: CCV's notification for its reference, a person tracking
# its order with the reference, or a person's word that CCV never got it, or made it.
How = Literal["notification", "track", "not_sent", "made"]
# The `reason` of a submit CCV answered with a 2xx naming an order followed under another
# reference (writes/submit_outcome.py).
FOLLOWED_ELSEWHERE = "order_followed_elsewhere"
# A 2xx naming its order under an id reconciler cannot use: made (`no_order_id` proves nothing).
UNUSABLE_ORDER_ID = "unusable_order_id"

_COLUMNS = (
    "id, account, external_reference, state, order_id, http_status, reason, created_at, "
    "closed_at, location, notified_at"
)
# SQLite reads a partial index only for a query whose WHERE repeats the index's own term: told
# `state = 'uncertain'` alone, it reads every row of the table (every submit of the retention
# window). `OPEN` names the submissions_open index's rows (those of a state), `_LIVE` the
# submissions_live index's (those of an account's references: not one a later submit took the
# reference from, migration 27), `_FAILED` the submissions_failed index's.
OPEN = "state IN ('sending', 'uncertain')"  # store/unsettled.py's too
_LIVE = "state != 'failed' AND superseded_at IS NULL"
_FAILED = "state = 'failed'"


@dataclass(frozen=True, slots=True)
class Submission:
    """One row of `submissions`; times are epoch seconds."""

    id: int
    account: str
    external_reference: str
    state: State
    order_id: str | None
    http_status: int | None
    reason: str | None
    created_at: float
    closed_at: float | None
    # CCV's `Location` (a 3xx's, a `201 Created`'s), absolute and masked: where a person may
    # find the order, kept beyond the one answer that carried it (migration 24).
    location: str | None = None
    # When a CCV notification for the reference came while it was open and did not settle it
    # (CCV answered it with a 2xx): CCV has an order of it (migration 25).
    notified_at: float | None = None


class SubmissionExists(Exception):
    """The reference has a live submission already (sending, succeeded, uncertain, resolved)."""

    def __init__(self, existing: Submission) -> None:
        super().__init__(f"external reference {existing.external_reference!r} was submitted")
        self.existing = existing


def _row(r: Sequence[object]) -> Submission:
    return Submission(*r)  # type: ignore[arg-type]


async def find(store: Store, account: str, reference: str) -> Submission | None:
    """Return the live submission of a reference, else the latest failed one, else None."""
    live = await _one(store, account, reference, _LIVE)
    return live or await _one(store, account, reference, f"{_FAILED} ORDER BY id DESC")


async def _one(store: Store, account: str, reference: str, state: str) -> Submission | None:
    # Each through its index: the live one's (unique), the failed ones' (migration 23).
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM submissions WHERE account = ? AND external_reference = ? "
        f"AND {state} LIMIT 1",
        (account, reference),
    )
    return next(map(_row, rows), None)


# The CCV end state, lower case, an order carrying a reference may be in and not refuse a submit
# of it: nothing was paid. Not `Failed`: "action is required by a CCV employee" (model.py).
ENDED_UNPAID = "canceled"


class ReferenceFollowed(Exception):
    """The reference is carried by orders of the account that reconciler follows (tracked with
    it, no submit of this store's), not all ended unpaid (ENDED_UNPAID): a submit of it would
    make a second order. `carried_by`: those orders, each with its status (None: unchecked)."""

    def __init__(self, reference: str, carried_by: list[tuple[str, str | None]]) -> None:
        super().__init__(f"external reference {reference!r} is carried by a followed order")
        self.carried_by = carried_by


async def record(store: Store, account: str, reference: str, now: float) -> int:
    """Commit a new `sending` submission (the submit's claim: a database that lost it has gone
    back, claims.claim) and return its id; raise SubmissionExists, else ReferenceFollowed
    (read in the claim's transaction: a `track --ref` beside it comes before or after).
    A succeeded or resolved submission whose order CCV ended `Canceled` gives the reference up
    in that transaction: of two submits of it at once, one claims it."""
    carriers = (
        "SELECT order_id, status FROM orders WHERE external_reference = ? AND source = 'ccv' "
        "AND account = ? AND (status IS NULL OR lower(status) != ?) ORDER BY order_id",
        (reference, account, ENDED_UNPAID),
    )
    # Its order through the orders' key; no other row of the reference may be live.
    supersede = (
        f"UPDATE submissions SET superseded_at = ? WHERE account = ? AND external_reference = ? "
        f"AND {_LIVE} AND state IN ('succeeded', 'resolved') AND EXISTS (SELECT 1 FROM orders o "
        "WHERE o.source = 'ccv' AND o.account = submissions.account "
        "AND o.order_id = submissions.order_id AND lower(o.status) = ?)",
        (now, account, reference, ENDED_UNPAID),
    )
    try:
        sub_id = await claim(
            store,
            (
                "INSERT INTO submissions (account, external_reference, state, created_at) "
                "VALUES (?, ?, 'sending', ?)",
                (account, reference, now),
            ),
            unless=carriers,
            before=supersede,
        )
    except ClaimRefused as exc:
        carried_by = [(str(oid), None if st is None else str(st)) for oid, st in exc.rows]
        raise ReferenceFollowed(reference, carried_by) from None
    except sqlite3.IntegrityError:
        existing = await find(store, account, reference)
        if existing is None:  # pragma: no cover - the index says it exists
            raise
        raise SubmissionExists(existing) from None
    assert sub_id is not None
    return sub_id


async def unchecked(
    store: Store, account: str, limit: int, settled_since: float
) -> list[OrderState]:
    """Return up to `limit` of the account's orders that a submit tracked and no check has asked
    yet (`order_sql.SUBMITTED_UNCHECKED_SQL`), but those no longer watched, as `Orders.due`."""
    sql, params = due_sql("ccv", settled_since, submitted=True)
    # Planned apart from the orders tracked and never checked (`order_rows.FIRST_CHECK_AT`):
    # the due index's range holds the submitted ones only.
    due = (order_rows.FIRST_CHECK_AT, "ccv", account)
    rows = await store.conn.execute_fetchall(sql, (*due, *params, limit))
    return [order_rows.state(r) for r in rows]


async def fail(
    store: Store,
    sub_id: int,
    *,
    http_status: int | None,
    reason: str,
    now: float,
    location: str | None = None,
    unless_notified: bool = False,
) -> Literal["failed", "notified", "closed"]:
    """Close a submission as definitely not made (a refusal, or nothing reached CCV); return
    `failed`, else why not: `notified` (with `unless_notified`) where a notification for its
    reference named it while it waited (CCV has an order of it, which a refusal contradicts),
    `closed` where it is no longer `sending` (closed elsewhere)."""
    sql, params = close_statement(sub_id, "failed", http_status, reason, now, None, location)
    sql += " AND notified_at IS NULL" if unless_notified else ""
    if (await commit_at_once(store, [(sql, params)])).changes:
        return "failed"
    # Nothing changed: still `sending` only where a notification came (`notified_at` set).
    rows = await store.conn.execute_fetchall(
        "SELECT 1 FROM submissions WHERE id = ? AND state = 'sending' AND notified_at IS NOT NULL",
        (sub_id,),
    )
    return "notified" if rows else "closed"


async def withdraw(store: Store, sub_id: int) -> bool:
    """Delete a submission still `sending` that was never sent (the stop began while it waited
    for its turn): the reference is free again, as if it had never been submitted. Not one a
    notification for its reference named meanwhile (`notified_at`): CCV has an order of it,
    and freed, the reference would be sent again (the caller settles it); return whether it
    was deleted."""
    sql = "DELETE FROM submissions WHERE id = ? AND state = 'sending' AND notified_at IS NULL"
    return bool((await commit_at_once(store, [(sql, (sub_id,))])).changes)


async def make_uncertain(
    store: Store,
    account: str,
    sub_ids: Sequence[int],
    events: Sequence[Event],
    *,
    reason: str,
    now: float,
    http_status: int | None = None,
    location: str | None = None,
    order_id: str | None = None,
) -> list[Event]:
    """Mark submissions uncertain (`order_id`: the order an answer named) and store their
    events in one transaction; those whose reference a notification named since they were
    recorded are settled in it too (CCV has the order, and calls once), but those CCV answered
    (`answered`): return the `order.submit_resolved` events."""
    args = (http_status, reason, now, order_id, location)
    async with store.transaction():
        for sub_id in sub_ids:
            await store.conn.execute(*close_statement(sub_id, "uncertain", *args))
        await store.events.add(events)
        # The notification came while the submit waited for CCV's answer: it found nothing
        # uncertain to settle, and remembered the reference (`notified`) and marked the row
        # (`notified_at`, which outlasts the remembered reference: `remember_ref` may end, or
        # an order's first check take it, before a stopped writer's successor settles it).
        rows = await store.conn.execute_fetchall(
            "SELECT s.external_reference FROM submissions s LEFT JOIN pending_references p "
            "ON p.account = s.account AND p.external_reference = s.external_reference "
            f"WHERE s.id IN ({marks(len(sub_ids))}) AND s.state = 'uncertain' "
            "AND (s.notified_at IS NOT NULL OR p.received_at >= s.created_at)",
            tuple(sub_ids),
        )
        notified = [(None, str(r[0])) for r in rows]
        return await _settle(store, account, notified, "notification", now) if notified else []


async def interrupted(store: Store) -> list[Submission]:
    """Return the submissions left `sending`: a writer at its start finds those a stopped
    process left (no other process sends them); files.writer_running says whose they are."""
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM submissions WHERE {OPEN} AND state = 'sending' ORDER BY id"
    )
    return [_row(r) for r in rows]


async def open_of(store: Store, account: str, references: Sequence[str]) -> dict[str, State]:
    """The states of the `sending` or `uncertain` submissions of an account's `references`, by
    reference: only those rows are read (each `POST /orders` with one), through the live
    submissions' index; a long list (`track --from-file`) reads the account's few open ones."""
    unique = list(dict.fromkeys(references))
    if len(unique) > CHUNK:
        sql = f"SELECT external_reference, state FROM submissions WHERE {OPEN} AND account = ?"
        wanted = set(unique)
        rows = await store.conn.execute_fetchall(sql, (account,))
        return {str(ref): state for ref, state in rows if ref in wanted}
    rows = await store.conn.execute_fetchall(
        "SELECT external_reference, state FROM submissions WHERE account = ? "
        f"AND external_reference IN ({marks(len(unique))}) AND {_LIVE} AND {OPEN}",
        (account, *unique),
    )
    return {str(ref): state for ref, state in rows}


async def uncertain(store: Store, account: str, references: Sequence[str]) -> dict[str, Submission]:
    """Return the uncertain submissions of an account's `references`, by reference: only
    those rows are read, however many of the account's submits are uncertain."""
    unique = list(dict.fromkeys(references))
    if len(unique) > CHUNK:
        # A long list (`track --from-file`): the account's uncertain submits are few, so they
        # are read once, through the index of open submissions, and matched here.
        sql = f"SELECT {_COLUMNS} FROM submissions WHERE {OPEN} AND state = 'uncertain' "
        rows = await store.conn.execute_fetchall(sql + "AND account = ?", (account,))
        wanted = set(unique)
        return {s.external_reference: s for s in map(_row, rows) if s.external_reference in wanted}
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM submissions WHERE account = ? "
        f"AND external_reference IN ({marks(len(unique))}) AND {_LIVE} AND state = 'uncertain'",
        (account, *unique),
    )
    return {sub.external_reference: sub for sub in map(_row, rows)}


async def resolve(
    store: Store, account: str, reference: str, order_id: str | None, how: How, now: float
) -> list[Event]:
    """Settle the uncertain submission of a reference (CCV has the order); return its event."""
    return await resolve_many(store, account, [(order_id, reference)], how, now)


async def resolve_many(
    store: Store,
    account: str,
    orders: Sequence[tuple[str | None, str]],
    how: How,
    now: float,
) -> list[Event]:
    """Settle the uncertain submissions of (order id or None, reference) pairs in one
    transaction, each with its `order.submit_resolved`; return those events."""
    rows = await store.conn.execute_fetchall(
        f"SELECT count(*) FROM submissions WHERE {OPEN} AND state = 'uncertain'"
    )
    if not orders or not next(iter(rows))[0]:
        return []  # the common case, a `track --from-file` of many orders, costs one read
    async with store.transaction():
        return await _settle(store, account, orders, how, now)


async def _settle(
    store: Store,
    account: str,
    orders: Sequence[tuple[str | None, str]],
    how: How,
    now: float,
) -> list[Event]:
    """`resolve_many` inside the caller's transaction."""
    events: list[Event] = []
    # Read in the transaction that settles them: a second settlement finds none.
    found = await uncertain(store, account, [ref for _, ref in orders])
    for order_id, ref in orders:
        sub = found.pop(ref, None)
        if sub is None or (how == "notification" and answered(sub)):
            continue
        events.append(await resolve_row(store, sub, order_id, how, now))
    await store.events.add(events)
    return events


async def resolve_row(
    store: Store, sub: Submission, order_id: str | None, how: How, now: float
) -> Event:
    """Mark an uncertain submission, or a failed one (a notification's: store/notified.py),
    `resolved`, in the caller's transaction; return its event."""
    known = order_id if order_id is not None else sub.order_id
    await store.conn.execute(
        "UPDATE submissions SET state = 'resolved', order_id = ?, closed_at = ? "
        "WHERE id = ? AND state = ?",
        (known, now, sub.id, sub.state),
    )
    return submit_resolved_event(
        store.store_id,
        sub.id,
        account=sub.account,
        reference=sub.external_reference,
        uncertain_at=sub.closed_at,
        reason=sub.reason,
        order_id=known,
        how=how,
        time=now,
        location=sub.location,
        # No `order.submit_uncertain` came before a failed one's: CCV holds an order nothing
        # was told of.
        contradicted=sub.state == "failed",
    )


def answered(sub: Submission) -> bool:
    """Whether CCV answered the uncertain submission with a 2xx (no usable order id, or an
    order followed under another reference): which order it made is not known. A notification
    names no order, so only the order tracked with the reference settles it; settled by CCV's
    first notification (sent at once), nothing would follow the order."""
    return sub.http_status is not None and 200 <= sub.http_status < 300


def untrackable(sub: Submission | None) -> bool:
    """Whether only a person's word that CCV made it (`ccv resolve --made`) settles the
    submission: uncertain, CCV's 2xx named its order under an id `track` cannot take."""
    return sub is not None and (sub.state, sub.reason) == ("uncertain", UNUSABLE_ORDER_ID)


def close_statement(
    sub_id: int,
    state: State,
    http_status: int | None,
    reason: str | None,
    now: float,
    order_id: str | None,
    location: str | None = None,
) -> Statement:
    # Only a `sending` row closes: a crash recovery and a late answer cannot both close it.
    return (
        "UPDATE submissions SET state = ?, http_status = ?, reason = ?, closed_at = ?, "
        "order_id = ?, location = ? WHERE id = ? AND state = 'sending'",
        # An empty `Location` is none: kept as "", it would read as pointing at the order.
        (state, http_status, reason, now, order_id, location or None, sub_id),
    )
