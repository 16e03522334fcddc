"""A CCV outage that fails order by order (no 401, no breaker) rests the account's due checks
as a whole: one probe per backoff period, doubling, not every due order on its own rhythm plus a
probe per due tick (README, "Bounded")."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.poller.witnesses import WITNESSES
from reconciler.reconcile import Reconciler
from reconciler.sources.ccv import PROBE_ORDER_ID
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV, Reply, html_page

ORDERS = [f"ORD-{n:03d}" for n in range(20)]
POLL_S = 10.0
STEP_S = 2.5  # the due tick's period (min_interval / 2)


@pytest.fixture
async def ccv(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """The CCV account of the probe (poll_interval 10s, min 5s, max 20s, one retry) over the
    real client and the loopback fake, 20 orders followed and answering."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    extra = f'poll_interval = "{POLL_S:.0f}s"\nmin_interval = "5s"\nmax_interval = "20s"'
    config = load_config(write_config(tmp_path, ccv=fake_ccv, ccv_extra=extra))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    fake_ccv.orders = dict.fromkeys(ORDERS, "Processing")
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in ORDERS], clock.now)
            await coordinator.full_pass(via="catch-up")
            yield coordinator, clock
    finally:
        await store.close()


async def run(coordinator: CCVCoordinator, clock: Clock, seconds: float) -> None:
    """Tick as the scheduler does: the due tick every STEP_S, the heartbeat every poll."""
    for step in range(1, int(seconds / STEP_S) + 1):
        clock.now += STEP_S
        await coordinator.tick_due()
        if step % int(POLL_S / STEP_S) == 0:
            await coordinator.heartbeat()


async def kinds(coordinator: CCVCoordinator) -> list[str]:
    return [e.type for e in await coordinator.store.events.history() if e.order_id is None]


MAINTENANCE = Reply(200, json.dumps({"message": "maintenance"}), "application/json")


@pytest.mark.parametrize(
    ("outage", "tries"),
    [(MAINTENANCE, 1), (html_page(), 1), (Reply(500, "oops"), 2)],
    ids=["maintenance-json", "html", "http-500"],
)
async def test_an_outage_order_by_order_gets_one_probe_per_backoff_period(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV, outage: Reply, tries: int
) -> None:
    coordinator, clock = ccv
    await run(coordinator, clock, 40.0)  # the orders' rhythm: due ones every few ticks

    fake_ccv.always = outage
    sent: dict[float, list[str | None]] = {}  # what each due tick or heartbeat asked, by time
    for step in range(1, int(160 / STEP_S) + 1):
        clock.now += STEP_S
        asked = len(fake_ccv.requests)
        await coordinator.tick_due()
        if step % int(POLL_S / STEP_S) == 0:
            await coordinator.heartbeat()
        if len(fake_ccv.requests) > asked:
            sent[clock.now] = [r.order_id for r in fake_ccv.requests[asked:]]
    assert await kinds(coordinator) == ["source.failed"]
    # The first tick's due orders found the outage; then the account rests: one probe per
    # backoff period (10 s, doubling), each two orders (poller/ccv.py `_probe_due`: the
    # rotation's and one answering when the outage began) and at most the client's probe
    # request (two 500s say the outage without it).
    first = min(sent)
    assert [round(t - first, 1) for t in sent] == [0, 10, 30, 70, 150]
    for t in sorted(sent)[1:]:
        orders = [i for i in sent[t] if i != PROBE_ORDER_ID]
        assert len(orders) == 2 * tries
        assert len(set(orders)) == 2
        assert len(sent[t]) <= 3 * tries
    asked_orders = {i for t in sorted(sent)[1:] for i in sent[t]} - {PROBE_ORDER_ID}
    assert len(asked_orders) >= 4  # the rotation's: another order each time
    # A pass the breaker stopped is judged by the witness rule too: two witnesses more, and
    # two of the orders that answered last when both fail.
    assert len(sent[first]) <= (len(ORDERS) + 1 + 2 * WITNESSES) * tries

    fake_ccv.always = None
    clock.now += 3600.0
    asked = len(fake_ccv.requests)
    await coordinator.tick_due()  # the probe's order answers: the account recovers, once
    assert await kinds(coordinator) == ["source.failed", "source.recovered"]
    await run(coordinator, clock, 10.0)  # and every order is checked again
    assert {r.order_id for r in fake_ccv.requests[asked:]} >= set(ORDERS)
