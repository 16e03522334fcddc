"""Orders a notification named whose check has not answered yet: CCV calls a notification URL
once and never again, so an acknowledged notification stands here until a check of its order
answers (a status, CCV's own "not found"), whatever failed meanwhile (a 5xx after retries, a
timeout, the account's outage, a stop). Such orders are asked again at `next_at`, the next
start's catch-up asks them all, end states too, and the account's recovery makes them due. One
goes with its order (untracked, pruned: a trigger, migration 28): tracked again, the order has
no old call standing to be asked as a new one."""

from __future__ import annotations

from collections.abc import Collection

from ..model import Source
from .db import Store

# A repeat is a new call: its time is what a check must answer after.
_UPSERT = (
    "INSERT INTO notified_orders (source, account, order_id, notified_at, next_at) "
    "SELECT ?, ?, ?, ?, ? WHERE {followed} ON CONFLICT (source, account, order_id) "
    "DO UPDATE SET notified_at = excluded.notified_at, next_at = excluded.next_at"
)
_FOLLOWED = "EXISTS (SELECT 1 FROM orders WHERE source = ? AND account = ? AND order_id = ?)"


async def note(
    store: Store,
    source: Source,
    account: str,
    order_id: str,
    now: float,
    *,
    followed_only: bool = False,
) -> bool:
    """Remember a notification of an order, due at once (a repeat: from its own time); with
    `followed_only`, only of an order followed (read in the same transaction, so an untrack
    cannot come between). Return whether it was remembered."""
    async with store.transaction(urgent=True):
        return await upsert(store, source, account, [order_id], now, followed_only=followed_only)


async def upsert(
    store: Store,
    source: Source,
    account: str,
    order_ids: Collection[str],
    now: float,
    *,
    followed_only: bool = False,
) -> bool:
    """`note`'s statement for each order, inside the caller's transaction; return whether any
    was remembered."""
    kept = False
    for order_id in order_ids:
        key = (source, account, order_id)
        args: tuple[object, ...]
        if followed_only:
            sql, args = _UPSERT.format(followed=_FOLLOWED), (*key, now, now, *key)
        else:
            # `WHERE true`: SQLite reads an upsert's SELECT only with a WHERE clause.
            sql, args = _UPSERT.format(followed="true"), (*key, now, now)
        cursor = await store.conn.execute(sql, args)
        kept = kept or cursor.rowcount > 0
    return kept


async def pending(
    store: Store, source: Source, account: str, *, due_by: float | None = None
) -> list[str]:
    """Return the notified orders not answered yet, first noted first; with `due_by`, only those
    due to be asked again by then."""
    sql = "SELECT order_id FROM notified_orders WHERE source = ? AND account = ?"
    args: tuple[object, ...] = (source, account)
    if due_by is not None:
        sql, args = sql + " AND next_at <= ?", (*args, due_by)
    rows = await store.conn.execute_fetchall(sql + " ORDER BY notified_at, order_id", args)
    return [str(r[0]) for r in rows]


async def settle(
    store: Store,
    source: Source,
    account: str,
    *,
    answered: Collection[tuple[str, float | None]],
    failed: Collection[str],
    now: float,
    gap_s: tuple[float, float],
) -> None:
    """Forget the notifications of orders whose check answered (order id, when it was asked:
    a notification that came after the question still stands); ask the failed ones again, the
    gap growing with the notification's age within `gap_s` (least, most): an order CCV keeps
    failing is not asked every poll interval for ever, nor left to its own backoff."""
    if not answered and not failed:
        return
    least, most = gap_s
    async with store.transaction():
        await store.conn.executemany(
            "DELETE FROM notified_orders WHERE source = ? AND account = ? AND order_id = ? "
            "AND notified_at <= ?",
            [
                (source, account, order_id, float("inf") if asked is None else asked)
                for order_id, asked in answered
            ],
        )
        await store.conn.executemany(
            "UPDATE notified_orders SET next_at = ? + MIN(?, MAX(?, ? - notified_at)) "
            "WHERE source = ? AND account = ? AND order_id = ?",
            [(now, most, least, now, source, account, order_id) for order_id in failed],
        )
