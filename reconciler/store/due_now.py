"""Orders made due now: a hint whose check got no answer (a CCNow notification met by the
account's outage) is kept as its order being due, in the store, so that the first due checks
once the provider answers again ask it, and a restart too. Never later than it was planned."""

from __future__ import annotations

from collections.abc import Sequence

from ..model import Source
from .db import Store


async def make_due(
    store: Store, source: Source, account: str, ids: Sequence[str], now: float
) -> None:
    """Bring the next check of these orders, open ones only, to `now` at the latest."""
    if not ids:
        return
    async with store.transaction(urgent=True):  # a hint's record: before a pass's batches
        await store.conn.executemany(
            "UPDATE orders SET next_check_at = min(next_check_at, ?) "
            "WHERE source = ? AND account = ? AND order_id = ? AND end_state = 0",
            [(now, source, account, order_id) for order_id in ids],
        )
        # A pass holding a page of these rows would write their old next checks back.
        store.orders.drop_pages()
