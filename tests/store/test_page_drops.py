"""A page of orders read around a write that drops pages (store/orders.py), on a real SQLite
file: a page read while a submit waits for the writer holds what the submit wrote, and a page
read inside a write's transaction that rolls back keeps none of its rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.store.submitted import succeed
from tests.store.test_orders import config_for

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


async def track_one(store: Store) -> None:
    # An API request's track, in the transaction of its own statements.
    await store.orders.track_within("ccv", "a", [("A-9", None)], 2.0)


async def forget_failures(store: Store) -> None:
    await store.orders.forget_failures("ccv", "a")


async def bring_due(store: Store) -> None:
    # As a CCNow hint's check that got no answer (store/due_now.py).
    await store.orders.bring_due("ccv", "a", ["A-1"], 3.0, unless_asked_within=(1.0, 0.0))


async def shift_checks_back(store: Store) -> None:
    # As the clock stepped back under a running daemon (store/order_steps.py).
    await store.orders.shift_checks_back("ccv", "a", time.time(), 10.0)


WRITES: dict[str, Callable[[Store], Awaitable[None]]] = {
    "track_within": track_one,
    "forget_failures": forget_failures,
    "bring_due": bring_due,
    "shift_checks_back": shift_checks_back,
}


@pytest.mark.parametrize("write", WRITES)
async def test_a_page_read_inside_a_write_that_rolls_back_keeps_none_of_its_rows(
    store: Store, tmp_path: Path, write: str
) -> None:
    # A-1's last check failed. A write of account a's rows runs in a transaction; a pass reads
    # its page meanwhile (one connection: it reads the rows as written); the transaction then
    # rolls back. The page must hold the rows as they are, or none.
    reconciler = Reconciler(config_for(tmp_path), store)
    failed = Observation(ORDER, Outcome.FAILED, reason="timeout")
    assert await reconciler.apply([failed], via="poll") == 0
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
    page_read.set()
    with pytest.raises(RolledBack):
        await writing

    keys = [ORDER, OrderKey("ccv", "a", "A-2"), OrderKey("ccv", "a", "A-9")]
    loaded = await store.orders.load(keys, page)
    assert sorted(key.order_id for key in loaded) == ["A-1", "A-2"]
    assert loaded[ORDER].failure_streak == 1
    assert loaded == await store.orders.load(keys)  # as the database holds them
