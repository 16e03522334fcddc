"""Orders a CCNow notification's failed check makes due (store/due_now.py), on a real SQLite file:
the open ones given, but those CCNow answered after the notification came; and only the pages
of their account go stale (a CCV catch-up running meanwhile keeps reading its own page)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.store import Store
from reconciler.store.due_now import make_due

PLANNED, NOW = 5000.0, 1000.0
CAME = (900.0, 1100.0)  # from when the notification came to now, on the wall clock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db")
    try:
        await opened.orders.track("ccv", "a", [("A-1", None), ("A-2", None)], 1.0)
        await opened.orders.track("ccnow", "default", [("N-1", None), ("N-2", None)], 1.0)
        await opened.orders.track("ccnow", "other", [("O-1", None)], 1.0)
        async with opened.transaction():
            await opened.conn.execute("UPDATE orders SET next_check_at = ?", (PLANNED,))
        yield opened
    finally:
        await opened.close()


async def next_checks(store: Store, account: str, *ids: str) -> list[float]:
    keys = [OrderKey("ccnow", account, i) for i in ids]
    loaded = await store.orders.load(keys)
    return [loaded[k].next_check_at for k in keys]


async def test_an_order_answered_since_the_notification_came_keeps_its_plan(
    store: Store,
) -> None:
    asked = {"N-1": None, "N-2": 1000.0, "O-1": 1000.0}  # never answered; answered since
    async with store.transaction():
        await store.conn.executemany(
            "UPDATE orders SET asked_at = ? WHERE order_id = ?", [(v, k) for k, v in asked.items()]
        )
    made = await make_due(store, "ccnow", "default", ["N-1", "N-2"], NOW, unless_asked_within=CAME)
    assert made == 1
    assert await next_checks(store, "default", "N-1", "N-2") == [NOW, PLANNED]

    # Asked before it came, or at a time after now (the clock was put back since): due.
    for at in (CAME[0] - 1.0, CAME[1] + 1.0):
        async with store.transaction():
            await store.conn.execute("UPDATE orders SET asked_at = ? WHERE order_id = 'O-1'", (at,))
            await store.conn.execute("UPDATE orders SET next_check_at = ?", (PLANNED,))
        assert await make_due(store, "ccnow", "other", ["O-1"], NOW, unless_asked_within=CAME)
        assert await next_checks(store, "other", "O-1") == [NOW]


async def test_only_the_pages_of_the_orders_account_go_stale(store: Store) -> None:
    ccv = await store.orders.page("ccv", "a")
    other = await store.orders.page("ccnow", "other")
    own = await store.orders.page("ccnow", "default")
    assert ccv.rows and other.rows and own.rows

    await make_due(store, "ccnow", "default", ["N-1"], NOW, unless_asked_within=CAME)
    assert not own.rows  # it held N-1's old next check: read again
    assert ccv.rows and other.rows  # they hold no row of that account
    state = (await store.orders.load([OrderKey("ccnow", "default", "N-1")], own)).popitem()[1]
    assert state.next_check_at == NOW
