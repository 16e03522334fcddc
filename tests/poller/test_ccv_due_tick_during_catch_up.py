"""A CCV due tick while its account's catch-up runs (the daemon's start-up pass) leaves the
orders that catch-up asks to it: it read them as due before the catch-up's answers were written
and asked each again (bench/idle.py: 603 requests in a daemon's idle minute, the tail of a due
tick begun during the start-up pass, after every order had its answer)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.model import OrderKey
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import BATCH_ROWS, Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

ORDERS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 5)]  # fewer than `concurrency`
HELD = ORDERS[1:]  # the first goes alone (the client's slow start) and is answered at once
LATE = "5a1e0000-0000-4000-8000-000000000099"


@pytest.fixture
async def ccv(tmp_path: Path, fake_ccv: FakeCCV) -> AsyncIterator[CCVCoordinator]:
    async with coordinator(tmp_path, fake_ccv, BATCH_ROWS) as built:
        yield built


@contextlib.asynccontextmanager
async def coordinator(
    tmp_path: Path, fake_ccv: FakeCCV, batch_rows: int, concurrency: int = 8
) -> AsyncIterator[CCVCoordinator]:
    async with coordinators(tmp_path, fake_ccv, batch_rows, concurrency) as built:
        yield built.ccv["default"]


@contextlib.asynccontextmanager
async def coordinators(
    tmp_path: Path, fake_ccv: FakeCCV, batch_rows: int, concurrency: int = 8
) -> AsyncIterator[Coordinators]:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{fake_ccv.base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
        f'concurrency = {concurrency}\ntimeout = "120s"\n'  # a held answer is no timeout
    )
    config = load_config(path)
    store = await Store.open(config.store_path, sinks=("log",))
    try:
        async with aiohttp.ClientSession() as session:
            reconciler = Reconciler(config, store, clock=time.time, batch_rows=batch_rows)
            yield Coordinators.build(config, reconciler, session, Gates())
    finally:
        await store.close()


async def test_a_due_tick_leaves_the_orders_a_running_catch_up_asks_to_it(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    store = ccv.store
    fake_ccv.orders = dict.fromkeys([*ORDERS, LATE], "New")
    await store.orders.track("ccv", "default", [(i, None) for i in ORDERS], ccv.now())
    fake_ccv.answer_late = lambda seen: seen.order_id in HELD  # the catch-up's, until released
    catch_up = asyncio.ensure_future(ccv.full_pass(via="catch-up"))
    again = asyncio.ensure_future(
        fake_ccv.wait_until(lambda: any(len(fake_ccv.requests_for(i)) > 1 for i in ORDERS))
    )
    try:
        await fake_ccv.wait_until(lambda: len(fake_ccv.requests) == len(ORDERS))
        # Tracked once the catch-up read its orders: not one it asks, so the due tick does.
        await store.orders.track("ccv", "default", [(LATE, None)], ccv.now())
        tick = asyncio.ensure_future(ccv.tick_due())
        await asyncio.wait([tick, again], return_when=asyncio.FIRST_COMPLETED)
        assert not again.done(), "the due tick asked the catch-up's orders again"
        [named] = tick.result()
        assert named.report.checked == 1
        assert [seen.order_id for seen in fake_ccv.requests[len(ORDERS) :]] == [LATE]
    finally:
        again.cancel()
        fake_ccv.release.set()
        report = await catch_up
    assert report.checked == len(ORDERS)
    assert sorted(str(seen.order_id) for seen in fake_ccv.requests) == sorted([*ORDERS, LATE])

    # The catch-up over, an order of it that is due again is the due tick's as before.
    async with store.transaction():
        await store.orders.bring_due(
            "ccv", "default", HELD[:1], ccv.now(), unless_asked_within=(0.0, 0.0)
        )
    [named] = await ccv.tick_due()
    assert named.report.checked == 1
    assert len(fake_ccv.requests_for(HELD[0])) == 2


async def test_a_failed_check_of_a_running_catch_up_is_retried_by_the_due_tick(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    """The catch-up asked it and CCV failed: the pass does not ask it again, so its retry (its
    backoff run out while the pass still waits on others) is the due tick's, not the pass end's."""
    first = ORDERS[0]
    key = OrderKey("ccv", "default", first)
    async with coordinator(tmp_path, fake_ccv, 1) as ccv:  # each answer written at once
        store = ccv.store
        fake_ccv.orders = dict.fromkeys(ORDERS, "New")
        fake_ccv.replies[first] = Reply(500, "boom")
        await store.orders.track("ccv", "default", [(i, None) for i in ORDERS], ccv.now())
        fake_ccv.answer_late = lambda seen: seen.order_id in HELD
        catch_up = asyncio.ensure_future(ccv.full_pass(via="catch-up"))
        try:
            await fake_ccv.wait_until(lambda: len(fake_ccv.requests) == len(ORDERS))
            deadline = time.monotonic() + 30
            while not (await store.orders.load([key]))[key].failure_streak:  # the 500 written
                assert time.monotonic() < deadline, "the failed check was not written"
                await asyncio.sleep(0.02)
            del fake_ccv.replies[first]
            async with store.transaction():  # its backoff run out
                await store.orders.bring_due(
                    "ccv", "default", [first], ccv.now(), unless_asked_within=(0.0, 0.0)
                )
            ticked = await ccv.tick_due()
            assert [t.report.checked for t in ticked] == [1], "its retry waited for the pass"
            assert [str(seen.order_id) for seen in fake_ccv.requests[len(ORDERS) :]] == [first]
        finally:
            fake_ccv.release.set()
            await catch_up
        assert (await store.orders.load([key]))[key].status == "New"


async def test_an_order_tracked_during_a_catch_up_with_more_due_than_a_tick_reads_is_asked(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    """More of the catch-up's orders are due than a tick reads (`concurrency` x 200): the tick
    read those alone, left them all to the pass and asked nothing, and an order tracked since
    (a submit's, its first check due within seconds) waited for the pass's end."""
    many = [f"5a1e0000-0000-4000-8001-{n:012d}" for n in range(450)]  # a tick reads 400
    async with coordinator(tmp_path, fake_ccv, 10_000, concurrency=2) as ccv:  # none written
        store = ccv.store
        assert ccv.due_limit < len(many)
        fake_ccv.orders = dict.fromkeys([*many, LATE], "New")
        await store.orders.track("ccv", "default", [(i, None) for i in many], ccv.now())
        fake_ccv.answer_late = lambda seen: seen.order_id == many[-1]  # one slot of two held
        catch_up = asyncio.ensure_future(ccv.full_pass(via="catch-up"))
        try:
            await fake_ccv.wait_until(lambda: len(fake_ccv.requests) == len(many))
            await store.orders.track("ccv", "default", [(LATE, None)], ccv.now())
            ticked = await ccv.tick_due()
            assert [t.report.checked for t in ticked] == [1], "it waited for the catch-up"
            assert [str(seen.order_id) for seen in fake_ccv.requests[len(many) :]] == [LATE]
        finally:
            fake_ccv.release.set()
            report = await catch_up
        assert report.checked == len(many)
