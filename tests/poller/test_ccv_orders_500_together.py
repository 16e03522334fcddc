"""A CCV account some of whose orders answer 500 for ever, while the others answer: the failing
orders come due together at their failure's backoff, and a due pass of them alone had no
answer and two outage failures or more, so it failed the account unprobed; the next check of
another order recovered it (source.failed / source.recovered every few seconds, probe p2). Such
a pass now asks one more order, one whose last check answered a status: when it answers, the
failures are the orders' own; when it fails too, or no order answered before, the account
fails as before, once, and recovers once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.ccv import PROBE_ORDER_ID
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.account_ticks import STEP_S, account_events, run_daemon
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

IDS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 21)]
BROKEN = IDS[0:20:5]  # 4 of 20: their own 500 for ever
HTTP_500 = Reply(500, '{"error": "server"}', "application/json")
GATEWAY_502 = Reply(502, "<html>Bad Gateway</html>", "text/html")


@pytest.fixture
async def ccv(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """A CCV account of 20 open orders that answered New, over the real client and the fake."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    extra = 'poll_interval = "30s"\nmin_interval = "1s"\nmax_interval = "30s"\n'
    config = load_config(write_config(tmp_path, ccv=fake_ccv, ccv_extra=extra, retry_backoff="0s"))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in IDS], clock.now)
            fake_ccv.orders.update(dict.fromkeys(IDS, "New"))
            await coordinator.full_pass(via="catch-up")
            yield coordinator, clock
    finally:
        await store.close()


async def test_orders_answering_500_due_together_fail_alone(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    for order_id in BROKEN:
        fake_ccv.replies[order_id] = HTTP_500
    await run_daemon(coordinator, clock, 300)
    assert await account_events(coordinator) == []
    state = await coordinator.store.sources.state("ccv", "default")
    assert not state.failing
    # The broken orders were asked again and again, each pass of them alone with one more.
    assert all(len(fake_ccv.requests_for(i)) >= 5 for i in BROKEN)
    assert fake_ccv.requests_for(PROBE_ORDER_ID) == []


@pytest.mark.parametrize("reply", [HTTP_500, GATEWAY_502], ids=["probe-answers", "probe-fails"])
async def test_an_outage_of_every_order_fails_the_account_once_and_recovers_once(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV, reply: Reply
) -> None:
    # With the broken orders failing alone, CCV's checks of every order fail (its probe, a
    # made-up order's JSON 404, answering or not): the account fails at the first pass of the
    # outage, however few orders it held, and recovers once when the outage ends.
    coordinator, clock = ccv
    for order_id in BROKEN:
        fake_ccv.replies[order_id] = HTTP_500
    await run_daemon(coordinator, clock, 120)
    assert await account_events(coordinator) == []
    if reply is GATEWAY_502:
        fake_ccv.always = reply
    else:
        fake_ccv.replies.update(dict.fromkeys(IDS, reply))
    began = clock.now
    while not await account_events(coordinator):
        await run_daemon(coordinator, clock, STEP_S)
    assert clock.now - began <= 30  # the first due pass of the outage
    await run_daemon(coordinator, clock, 150)
    assert await account_events(coordinator) == ["source.failed"]
    fake_ccv.always = None
    fake_ccv.replies = {order_id: HTTP_500 for order_id in BROKEN}
    await run_daemon(coordinator, clock, 300)
    assert await account_events(coordinator) == ["source.failed", "source.recovered"]


async def test_a_pass_of_failing_orders_asks_past_a_first_order_that_broke_since(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    # The orders that answered are read in storage order: the first of them may have broken
    # since its last check (not due yet); alone, it failed the account with the pass's orders.
    coordinator, clock = ccv
    failing = [IDS[5], IDS[10]]
    for order_id in [IDS[0], *failing]:
        fake_ccv.replies[order_id] = HTTP_500
    clock.now += 60
    report = await coordinator.check(failing, via="poll")
    assert report.checked == 4 and report.failed == 3
    assert await account_events(coordinator) == []
    assert len(fake_ccv.requests_for(IDS[0])) == 1 + 2  # the catch-up's, then with its retry
    assert len(fake_ccv.requests_for(IDS[1])) == 2
