"""The CCNow ships and cancels CCNow answered as taken, per order: a read that moves the order
back to pending says the last of them may not have (reconcile.py, `order.action_unconfirmed`)."""

from __future__ import annotations

from collections.abc import Iterable

from ..model import OrderKey, OrderState
from .commands import Command, get
from .db import Store

# What CCNow answers when a ship or cancel took: the queue state it put the order in, or (for
# an order the lifecycle moved on quickly) where that queue leads.
TAKEN = {"ship": ("mark_shipped", "completed"), "cancel": ("mark_canceled", "canceled")}


async def last_taken(store: Store, keys: Iterable[OrderKey]) -> dict[OrderKey, Command]:
    """Return, per CCNow order, its latest ship or cancel closed `succeeded` (none: absent).
    Asked only for orders an answer moved back, seldom: one read each."""
    ids: dict[int, OrderKey] = {}
    for key in keys:
        rows = await store.conn.execute_fetchall(
            "SELECT max(id) FROM commands WHERE account = ? AND order_id = ? "
            "AND state = 'succeeded' AND action IN ('ship', 'cancel')",
            (key.account, key.order_id),
        )
        found = next(iter(rows))[0]
        if found is not None:
            ids[int(found)] = key
    return {ids[c.id]: c for c in await get(store, list(ids))}


def contradicted(taken: Command, before: OrderState) -> bool:
    """Whether a read that moved an order back (`before`: its row before that read) contradicts
    `taken`, its latest ship or cancel answered as taken: unless a read since that answer said
    what the action leads to (it took, and CCNow's backroom moved the order back later).

    The read itself is newer than the answer: one sent before the answer came is skipped as
    older news than the answer the row holds (diff.stale), and one sent after it came, even
    before the command closed, is after CCNow ran the action. Its time is not compared again
    (a wall clock put back after the close would hide a contradiction).

    A read confirmed the action only when it said a status (no "not found" pending since:
    one not confirmed yet dates the row, but keeps the action's status) that the action leads
    to, and was sent after the command closed: a confirming read sent before the close, or
    dated before it by a clock put back, is not seen, and the action is named (a warning too
    many, never a ship that did not take going unseen)."""
    answered, held = taken.closed_at, before.asked_at
    confirmed = (
        answered is not None
        and held is not None
        and held > answered
        and before.missing_since is None
        and before.status in TAKEN.get(taken.action, ())
    )
    return not confirmed
