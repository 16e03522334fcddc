"""A CCV account whose orders fail alone with a 2xx that names `orderStatus` in words no check
keeps (`{"orderStatus": "A\\nB"}`), while CCV answers the probe's made-up id with a 2xx that
proves nothing (`200 {}`): such an answer is CCV's about that order, so the account answers
(probe 37: source.failed and source.recovered every few seconds, for ever)."""

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
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

GOOD = ["good1"]
BAD = [f"bad{n}" for n in range(1, 21)]
POLL_S = 5.0


@pytest.fixture(params=[GOOD, []], ids=["beside-a-good-order", "alone"])
async def ccv(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fake_ccv: FakeCCV,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """Probe 37's account over the real client and the loopback fake, after its catch-up."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    extra = (
        f'poll_interval = "{POLL_S:.0f}s"\nmin_interval = "1s"\nmax_interval = "3s"\n'
        "status_intervals = {}"
    )
    config = load_config(write_config(tmp_path, ccv=fake_ccv, ccv_extra=extra))
    good: list[str] = request.param
    fake_ccv.orders = dict.fromkeys(good, "Processing")
    for order_id in BAD:
        fake_ccv.replies[order_id] = Reply(200, '{"orderStatus": "A\\nB"}', "application/json")
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(200, "{}", "application/json")
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in good + BAD], clock.now)
            await coordinator.full_pass(via="catch-up")
            yield coordinator, clock
    finally:
        await store.close()


async def test_orders_failing_alone_with_an_unkept_status_fail_no_account(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    # Half a minute of the scheduler's jobs: a due tick every tick_s, the heartbeat every poll.
    ticks_per_poll = round(POLL_S / coordinator.tick_s)
    for step in range(1, 6 * ticks_per_poll + 1):
        clock.now += coordinator.tick_s
        await coordinator.tick_due()
        if step % ticks_per_poll == 0:
            await coordinator.heartbeat()

    history = await coordinator.store.events.history()
    assert [e.type for e in history if e.order_id is None] == []
    state = await coordinator.store.sources.state("ccv", "default")
    assert not state.failing and state.last_success is not None
    # Every pass answered: no probe was needed.
    assert fake_ccv.requests_for(PROBE_ORDER_ID) == []
    # The troubled orders were asked, again and again, and fail alone.
    assert all(len(fake_ccv.requests_for(order_id)) > 5 for order_id in BAD)
    failing = await coordinator.store.orders.failing_counts()
    assert failing == {("ccv", "default"): len(BAD)}
