"""A CCV submit CCV answered with a 2xx naming its order: the submission closed as `succeeded`
and the order tracked with the reference, in one transaction (store/submissions.py's table).

A reference is meant to name one followed order, but other followed orders may carry it as
this one is tracked: a `track --ref` committed while the submit was on its way (the submit's
claim found none), or orders CCV ended as `Canceled`, which do not refuse a submit
(`submissions.ENDED_UNPAID`), among them the order of an earlier submit of it. They are read
in the same transaction, for the caller to say as a track says a second carrier
(`order.reference_carried`, `also_carried_by`).
"""

from __future__ import annotations

import sqlite3

from .db import Store
from .oneshot import run_at_once
from .references import followed_elsewhere
from .sql import Statement
from .submissions import close_statement

# (the reference the order is followed under when it is another, else None; the other
# followed orders of the account that carry the reference once it is tracked, by id)
Succeeded = tuple[str | None, list[str]]


async def succeed(
    store: Store,
    sub_id: int,
    *,
    account: str,
    reference: str,
    order_id: str,
    http_status: int,
    now: float,
    location: str | None = None,
) -> Succeeded:
    """Close a submission as succeeded and track its order in the same transaction; return
    (None, the other orders carrying its reference), or, writing nothing, (the reference its
    order is followed under when that is another, []): taken for this submit, the other's
    notifications and events would become this one's."""
    # Durable (synchronous=FULL) before the caller's answer, though that costs an fsync on the
    # submit's path: lost to a power cut, the submission would come back `sending`, hence
    # `uncertain`, and nothing could track the order by itself (CCV's notifications carry no
    # order id), while the caller holds a 201 that says it is followed.
    close = close_statement(sub_id, "succeeded", http_status, None, now, order_id, location)
    with store.orders.tracking_submitted("ccv", account, order_id, reference, now) as track:
        return await run_at_once(store, _succeed, account, order_id, reference, track, close)


def _succeed(
    conn: sqlite3.Connection,
    account: str,
    order_id: str,
    reference: str,
    track: Statement,
    close: Statement,
) -> Succeeded:
    # One hand-off: the reference is read in the transaction that tracks the order.
    moved = followed_elsewhere(conn, account, [(order_id, reference)])
    if moved:
        return moved[0][1], []
    conn.execute(*track)
    conn.execute(*close)
    # Read after the track: a `track --ref` of another order that came while the submit was
    # sent committed before this (the writer's transactions are one at a time), or after it,
    # and then says this order itself (`keep_within`).
    others = conn.execute(
        "SELECT order_id FROM orders WHERE external_reference = ? AND source = 'ccv' "
        "AND account = ? AND order_id != ? ORDER BY order_id",
        (reference, account, order_id),
    )
    return None, [str(oid) for (oid,) in others]
