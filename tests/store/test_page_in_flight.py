"""A page of orders whose read is still in flight when another write of its rows lands
(store/orders.py, store/live_pages.py), on a real SQLite file: the page never brings the rows
it read before that write back, while a write of rows it does not hold (the pass's own earlier
page) leaves it current."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from reconciler.store.live_pages import Page
from tests.store.test_orders import config_for, ok


class HeldPageRead:
    """Holds the answer of the store's next page read (`Orders.page`'s SELECT of open orders)
    until `release`: its rows are read, and arrive late."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read = asyncio.Event()  # the rows were read, their answer is held
        self.released = asyncio.Event()
        real = store.conn.execute_fetchall

        async def execute_fetchall(sql: str, params: Sequence[Any] = ()) -> Iterable[Any]:
            rows = await real(sql, params)
            page_read = "INDEXED BY orders_open" in sql and "ORDER BY id LIMIT" in sql
            if page_read and not self.read.is_set():
                self.read.set()
                await self.released.wait()
            return rows

        monkeypatch.setattr(store.conn, "execute_fetchall", execute_fetchall)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db")
    try:
        await opened.orders.track("ccv", "a", [("A-1", None), ("A-2", None)], 1.0)
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def reconciler(tmp_path: Path, store: Store) -> Reconciler:
    return Reconciler(config_for(tmp_path), store)


def stored(store: Store, order_id: str) -> tuple[object, ...]:
    """The order's row as another process reads it."""
    with sqlite3.connect(store.path) as conn:
        return tuple(
            conn.execute(
                "SELECT status, end_state, version FROM orders WHERE order_id = ?", (order_id,)
            ).fetchone()
        )


async def page_read_across(
    store: Store, monkeypatch: pytest.MonkeyPatch, write: Any, **kwargs: Any
) -> Page:
    """Read a page of account a whose rows are read before `write()` and arrive after it."""
    held = HeldPageRead(store, monkeypatch)
    reading = asyncio.ensure_future(store.orders.page("ccv", "a", **kwargs))
    await held.read.wait()
    await write()
    held.release()
    return await reading


FAILED = Observation(OrderKey("ccv", "a", "A-1"), Outcome.FAILED, reason="timeout")


@pytest.mark.parametrize("answer", ["failed", "unchanged"])
async def test_a_catch_ups_page_read_across_a_notifications_write_does_not_undo_it(
    store: Store, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    # A-1 is Processing. A catch-up reads its page; before the rows it read arrive, a
    # notification's check applies Completed. The catch-up's own check of A-1 then fails (or
    # answers Completed too): its write starts from the row as the notification left it.
    assert await reconciler.apply([ok("a", "A-1", "Processing")], via="poll") == 1

    async def notified() -> None:
        assert await reconciler.apply([ok("a", "A-1", "Completed")], via="notification") == 1

    page = await page_read_across(store, monkeypatch, notified)
    assert page.ids == ["A-1", "A-2"]
    observation = FAILED if answer == "failed" else ok("a", "A-1", "Completed")
    assert await reconciler.apply([observation], via="poll", page=page) == 0

    assert stored(store, "A-1") == ("Completed", 1, 2)
    changes = [json.loads(e.body)["data"]["status"] for e in await store.events.history()]
    assert changes == ["Processing", "Completed"]
    assert [s.status for s in await store.orders.snapshot("ccv")] == ["Completed", None]


async def test_a_write_of_the_passs_earlier_page_leaves_its_next_page_current(
    store: Store, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pass's writer commits the batches of one page while the pass reads the next: rows the
    # next page does not hold, so it stays current (its batches read no row again).
    first = await store.orders.page("ccv", "a", limit=1)

    async def batch_of_the_first_page() -> None:
        await reconciler.apply([ok("a", "A-1", "New")], via="poll", page=first)

    second = await page_read_across(
        store, monkeypatch, batch_of_the_first_page, after=first.after, limit=1
    )
    assert second.ids == ["A-2"] and second.rows


async def test_a_page_read_inside_a_batch_that_rolls_back_is_stale(
    store: Store, reconciler: Reconciler
) -> None:
    # A page read while a batch's transaction is open reads its rows as written (one
    # connection); rolled back, the page must not keep them.
    pages: list[Page] = []

    async def read_then_fail(rows: object, written: float) -> list[object]:
        pages.append(await store.orders.page("ccv", "a"))
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(Exception, match="disk I/O error"):
        await reconciler.apply(
            [ok("a", "A-1", "Processing")],
            via="poll",
            within=read_then_fail,  # type: ignore[arg-type]
        )
    [page] = pages
    key = OrderKey("ccv", "a", "A-1")
    state = (await store.orders.load([key], page))[key]
    assert (state.status, state.version) == (None, 0)
    # Found again, the change is one event, as if the first never was.
    assert await reconciler.apply([ok("a", "A-1", "Processing")], via="poll", page=page) == 1
    assert stored(store, "A-1") == ("Processing", 0, 1)
