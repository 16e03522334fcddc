"""A page of orders read around a write that drops pages (store/orders.py), on a real SQLite
file: a page read while a submit waits for the writer holds what the submit wrote, and a page
read inside a write's transaction that rolls back keeps none of its rows, whichever write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.store.orders import Orders
from reconciler.store.submitted import succeed
from tests.store.test_orders import config_for, ok

ORDER = OrderKey("ccv", "a", "A-1")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db")
    try:
        # Tracked by `reconciler track` (its id known from elsewhere): never seen by CCV yet.
        await opened.orders.track("ccv", "a", [("A-1", None), ("A-2", None)], 1.0)
        yield opened
    finally:
        await opened.close()


async def test_a_page_read_while_a_submit_waits_for_the_writer_holds_what_it_wrote(
    store: Store, tmp_path: Path
) -> None:
    # A submit's answer names A-1 while a pass's batch holds the writer; the pass reads its next
    # page meanwhile. A-1's check then finds CCV does not know it yet: seen in the submit's
    # answer a moment ago, that waits to be confirmed, not `order.not_found` at once.
    now = time.time()
    sub_id = await subs.record(store, "a", "REF-1", now)
    batch_holds_writer, batch_may_end = asyncio.Event(), asyncio.Event()
    submit_waits = asyncio.Event()

    async def batch() -> None:
        async with store.transaction():
            batch_holds_writer.set()
            await batch_may_end.wait()

    async def submit() -> object:
        submit_waits.set()  # woken after the submit's first step: it waits for the writer
        return await succeed(
            store, sub_id, account="a", reference="REF-1", order_id="A-1", http_status=201, now=now
        )

    batch_task = asyncio.ensure_future(batch())
    await batch_holds_writer.wait()
    submit_task = asyncio.ensure_future(submit())
    await submit_waits.wait()
    page = await store.orders.page("ccv", "a")
    assert page.ids == ["A-1", "A-2"]
    batch_may_end.set()
    await batch_task
    assert await submit_task == (None, [])

    state = (await store.orders.load([ORDER], page))[ORDER]
    assert (state.first_seen, state.external_reference) == (now, "REF-1")
    reconciler = Reconciler(config_for(tmp_path), store)
    missing = Observation(ORDER, Outcome.NOT_FOUND)
    assert await reconciler.apply([missing], via="poll", page=page) == 0
    assert [e.type for e in await store.events.history()] == []


class RolledBack(Exception):
    pass


async def rowid(store: Store, order_id: str) -> int:
    key = OrderKey("ccv", "a", order_id)
    return (await store.orders.load([key])).rowids[key]


# Every write of `Orders` that drops pages inside the caller's transaction, each changing rows
# of account a (`track` and `untrack` are their `_within`s in a transaction of their own).
async def track_within(store: Store) -> None:
    # An API request's track, in the transaction of its own statements.
    await store.orders.track_within("ccv", "a", [("A-9", None)], 2.0)


async def untrack_within(store: Store) -> None:
    # As `untrack` of a CCNow order, with its queued actions withdrawn (store/withdraw.py).
    await store.orders.untrack_within("ccv", "a", ["A-2"])


async def forget_failures(store: Store) -> None:
    await store.orders.forget_failures("ccv", "a")


async def postpone(store: Store) -> None:
    # As a circuit breaker's pass leaving A-1 unasked (CCVCoordinator._postpone).
    await store.orders.postpone("ccv", "a", [("A-1", 9000.0)])


async def bring_due(store: Store) -> None:
    # As a CCNow hint's check that got no answer (store/due_now.py).
    await store.orders.bring_due("ccv", "a", ["A-1"], 3.0, unless_asked_within=(1.0, 0.0))


async def plan_checks(store: Store) -> None:
    # As a clock step's new plan (store/order_steps.py).
    await store.orders.plan_checks("ccv", "a", [(9000.0, await rowid(store, "A-1"))])


async def shift_checks_back(store: Store) -> None:
    # As the clock stepped back under a running daemon (store/order_steps.py).
    await store.orders.shift_checks_back("ccv", "a", time.time(), 10.0)


async def delete_ended(store: Store) -> None:
    # Retention's, of B-1 (another account's, ended): every page is dropped.
    assert await store.orders.delete_ended(time.time() + 60.0, 10) == 1


async def delete_rows(store: Store) -> None:
    await store.orders.delete_rows([await rowid(store, "A-2")])  # retention's


async def unplan(store: Store) -> None:
    await store.orders.unplan([await rowid(store, "A-1")])  # retention's, of one not watched


WRITES: Final[Mapping[str, Callable[[Store], Awaitable[None]]]] = {
    write.__name__: write
    for write in (
        track_within,
        untrack_within,
        forget_failures,
        postpone,
        bring_due,
        plan_checks,
        shift_checks_back,
        delete_ended,
        delete_rows,
        unplan,
    )
}
# The other public members of Orders: reads, writes whose pages are kept or dropped elsewhere
# (`save`: test_page_in_flight.py; `tracking_submitted` drops them after its commit, above), the
# `_within`s' own transactions, and aliases, which no page holds.
ELSEWHERE = {"page", "load", "save", "tracking_submitted", "track", "untrack", "add_aliases"}


def test_every_write_of_orders_is_one_whose_roll_back_is_tried() -> None:
    # A write added to Orders is named here: among WRITES when it drops pages, so that the test
    # below finds a page it forgot to drop when its transaction rolls back.
    public = {name for name in vars(Orders) if not name.startswith("_")}
    assert public == WRITES.keys() | ELSEWHERE


@pytest.mark.parametrize("write", WRITES)
async def test_a_page_read_inside_a_write_that_rolls_back_keeps_none_of_its_rows(
    store: Store, tmp_path: Path, write: str
) -> None:
    # A-1's last check failed; B-1, of account b, ended. A write of account a's rows runs in a
    # transaction; a pass reads its page meanwhile (one connection: it reads the rows as
    # written); the transaction then rolls back. The page must hold the rows as they are, or
    # none: it is stale (store/orders.py).
    reconciler = Reconciler(config_for(tmp_path), store)
    failed = Observation(ORDER, Outcome.FAILED, reason="timeout")
    assert await reconciler.apply([failed], via="poll") == 0
    await store.orders.track("ccv", "b", [("B-1", None)], 1.0)
    assert await reconciler.apply([ok("b", "B-1", "Completed")], via="poll") == 1
    keys = [ORDER, OrderKey("ccv", "a", "A-2"), OrderKey("ccv", "a", "A-9")]
    before = await store.orders.load(keys)
    written, page_read = asyncio.Event(), asyncio.Event()

    async def write_then_roll_back() -> None:
        async with store.transaction():
            await WRITES[write](store)
            written.set()
            await page_read.wait()
            raise RolledBack

    writing = asyncio.ensure_future(write_then_roll_back())
    await written.wait()
    page = await store.orders.page("ccv", "a")
    assert page.rows  # read after the write's own drop: current until the rollback
    page_read.set()
    with pytest.raises(RolledBack):
        await writing

    assert not page.rows
    loaded = await store.orders.load(keys, page)
    assert sorted(key.order_id for key in loaded) == ["A-1", "A-2"]
    assert loaded[ORDER].failure_streak == 1
    assert loaded == before == await store.orders.load(keys)  # as the database holds them
