"""The CCNow ships and cancels CCNow answered as taken, per order: a read that moves the order
back to pending says the last of them may not have (reconcile.py, `order.action_unconfirmed`)."""

from __future__ import annotations

from collections.abc import Iterable

from ..model import OrderKey, OrderState
from .commands import Command, get
from .db import Store


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


def contradicted(taken: Command, before: OrderState, after: OrderState) -> bool:
    """Whether a read that moved an order back (`before` -> `after`, its row before and after
    it) contradicts `taken`, its latest ship or cancel answered as taken: nothing read since
    that answer confirmed it (else it took, and CCNow's backroom moved the order back later),
    and the read was sent after the answer (one sent earlier may be from before CCNow ran it).
    The answer's time is its close's (`closed_at`), when it was recorded: no later than that."""
    answered, held, read = taken.closed_at, before.asked_at, after.asked_at
    if answered is None or read is None or read <= answered:
        return False
    return held is None or held <= answered
