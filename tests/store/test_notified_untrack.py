"""A CCV notification kept for an order (notified_orders.py) goes with the order: untracked
(`reconciler untrack`, the API's DELETE) or pruned. It stayed in the store for ever, and a
`track` of the order again, days later, made that old call due at once, asked first by the
next catch-up, as if CCV had just called."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from reconciler.store import Store, notified_orders

LAST_WITHOUT = 27  # the last schema version that left them


async def pending(store: Store, account: str = "default") -> list[str]:
    return await notified_orders.pending(store, "ccv", account)


async def test_untrack_takes_the_order_s_notification_and_a_track_again_finds_none(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "r.db")
    try:
        ids = [("N-1", None), ("N-2", None)]
        await store.orders.track("ccv", "default", ids, 1.0)
        await store.orders.track("ccv", "eu", [("N-1", None)], 1.0)
        for account in ("default", "eu"):
            for order_id in ("N-1", "N-2"):
                await notified_orders.note(store, "ccv", account, order_id, 10.0)
        assert await pending(store) == ["N-1", "N-2"]
        assert await store.orders.untrack("ccv", "default", ["N-1"]) == 1
        assert await pending(store) == ["N-2"]
        assert await pending(store, "eu") == ["N-1", "N-2"]  # another account's order stays
        await store.orders.track("ccv", "default", ids, 2.0)
        assert await pending(store) == ["N-2"]
        assert await pending(store, "eu") == ["N-1", "N-2"]
    finally:
        await store.close()


async def test_the_upgrade_drops_the_notifications_of_orders_no_longer_followed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "r.db"
    store = await Store.open(db)
    try:
        await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    finally:
        await store.close()
    # As the previous schema left it: untracked orders' notifications stood.
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS notified_orders_delete")
        conn.execute("DROP TABLE gone_sinks")  # migration 29
        conn.execute("ALTER TABLE commands DROP COLUMN withdraw_asked")  # migration 30
        conn.execute("ALTER TABLE sources DROP COLUMN rest_until")  # migration 31
        conn.execute("ALTER TABLE commands DROP COLUMN turned_away")  # migration 32
        conn.execute("ALTER TABLE commands DROP COLUMN hidden_at")  # migration 33
        conn.execute(f"PRAGMA user_version = {LAST_WITHOUT}")
        conn.executemany(
            "INSERT INTO notified_orders VALUES ('ccv', 'default', ?, 10.0, 10.0)",
            [("N-1",), ("N-gone",)],
        )
    conn.close()
    store = await Store.open(db)
    try:
        assert await pending(store) == ["N-1"]
    finally:
        await store.close()
