"""A CCV catch-up that its account's failure stops (the breaker opening, here in the notified
orders it asks first) counts every open order it did not come to as a failed check, as README's
`catch-up.done` says: it counted only the ones it asked (20 checked, 20 failed, with 2,957 open
orders never asked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

IDS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 41)]
NOTIFIED = IDS[:10]  # more than the breaker's run of 5 (concurrency 1)


@pytest.fixture
async def ccv(tmp_path: Path, fake_ccv: FakeCCV) -> AsyncIterator[CCVCoordinator]:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{fake_ccv.base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
        "concurrency = 1\n"
    )
    config = load_config(path)
    store = await Store.open(config.store_path, sinks=("log",))
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in IDS], clock.now)
            yield coordinator
    finally:
        await store.close()


@pytest.mark.parametrize("page_orders", [1000, 3])
async def test_a_catch_up_stopped_by_the_breaker_counts_the_orders_it_left_unasked(
    ccv: CCVCoordinator, fake_ccv: FakeCCV, page_orders: int
) -> None:
    ccv.page_orders = page_orders  # a breaker opening in a page, or before any
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    for order_id in NOTIFIED:
        assert await ccv.note_notified(order_id)
    fake_ccv.always = Reply(500, "oops")
    report = await ccv.full_pass(via="catch-up")
    assert len(fake_ccv.requests) < len(NOTIFIED), "the breaker did not open in the notified"
    assert (report.checked, report.failed) == (len(IDS), len(IDS))
    assert ccv.name in report.failed_sources


async def test_a_catch_up_stopped_in_its_pages_counts_each_order_once(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    ccv.page_orders = 12  # the breaker opens in the second page
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    fake_ccv.script = [Reply(200, '{"orderStatus": "New"}', "application/json")] * 15
    fake_ccv.always = Reply(500, "oops")
    report = await ccv.full_pass(via="catch-up")
    assert 15 < len(fake_ccv.requests) < 24
    assert (report.checked, report.failed) == (len(IDS), len(IDS) - 15)
