"""A CCV due tick while its account's catch-up runs (the daemon's start-up pass) leaves the
orders that catch-up asks to it: it read them as due before the catch-up's answers were written
and asked each again (bench/idle.py: 603 requests in a daemon's idle minute, the tail of a due
tick begun during the start-up pass, after every order had its answer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.store import Store
from tests.fake_providers import CCV_KEY, FakeCCV
from tests.poller.test_notification_health import account

ORDERS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 5)]  # fewer than `concurrency`
HELD = ORDERS[1:]  # the first goes alone (the client's slow start) and is answered at once
LATE = "5a1e0000-0000-4000-8000-000000000099"


@pytest.fixture
async def ccv(tmp_path: Path, fake_ccv: FakeCCV) -> AsyncIterator[CCVCoordinator]:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{fake_ccv.base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
        'concurrency = 8\ntimeout = "120s"\n'  # a held answer is no timeout
    )
    config = load_config(path)
    store = await Store.open(config.store_path, sinks=("log",))
    try:
        async with aiohttp.ClientSession() as session:
            yield account(config, store, session, time.time)
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
