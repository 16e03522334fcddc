"""The reads of CCNow ships and cancels CCNow answered as taken, per order: the last of them
(a read that moves the order back to pending says it may not have: reconcile.py), those being
sent, and the `order.action_unconfirmed` stored of them. What counts as contradicted, and the
event's id, are rules (taken.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..model import OrderKey
from .commands import Command, get
from .db import Store
from .sql import marks


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


async def acting(store: Store, keys: Sequence[OrderKey]) -> set[OrderKey]:
    """Return those of CCNow orders (`keys`, a pending list's) a ship or cancel of is being
    sent (`sending`): its answer may have come, its close not committed yet. Their list lines
    are no news (diff.lags): the list lags for hours behind an action, and a line saying
    `pending` committed before the close would make the answer's line older news, and the
    close warn the action did not take. One read per list, of the few posts out."""
    if not keys:
        return set()
    rows = await store.conn.execute_fetchall(
        "SELECT account, order_id FROM commands WHERE state = 'sending' "
        "AND action IN ('ship', 'cancel')"
    )
    out = {OrderKey("ccnow", account, order_id) for account, order_id in rows}
    return out.intersection(keys)


async def named(store: Store, ids: Mapping[str, int]) -> set[int]:
    """Return the command ids (`ids`' values) of those of `ids`, the ids of the
    `order.action_unconfirmed` each command would have (taken.unconfirmed_ids), an event stored
    holds, by the close or a read since: the events' unique index answers. One retention let go
    of (`keep_events`) is not found."""
    if not ids:
        return set()
    rows = await store.conn.execute_fetchall(
        f"SELECT id FROM events WHERE id IN ({marks(len(ids))})", tuple(ids)
    )
    return {ids[str(r[0])] for r in rows}
