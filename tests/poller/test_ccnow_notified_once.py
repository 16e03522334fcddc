"""A CCNow server notification asks each of its orders once: an order the notification's own
poll of the pending list already answered (on the list, or queried because it left it) is not
queried again, so its change counts once and its next check comes min_interval later, as after
any change (a second, unchanged look doubled the interval)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.model import OrderKey, OrderState
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow

ORDER, OTHER = "801-00-0001", "801-00-0002"
MIN_S = 120.0


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (min_interval 2m) over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    extra = 'min_interval = "2m"\nmax_interval = "6h"'
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra=extra))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            yield Coordinators.build(config, writer, session, Gates()).ccnow["default"], clock
    finally:
        await store.close()


def asked_about(fake: FakeCCNow, order_id: str) -> int:
    """Return how many query posts named the order (the pending list names none)."""
    return sum(order_id in r.form.values() for r in fake.requests if "x_orderid_1" in r.form)


async def state(coordinator: CCNowCoordinator, order_id: str) -> OrderState:
    key = OrderKey("ccnow", "default", order_id)
    return (await coordinator.store.orders.load([key]))[key]


@pytest.mark.parametrize(
    ("before", "after"),
    [("pending", "mark_shipped"), ("processing", "pending")],
    ids=["left-the-list", "joined-the-list"],
)
async def test_a_notified_order_the_poll_answered_is_not_asked_again(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, before: str, after: str
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {ORDER: before, OTHER: "processing"}
    await coordinator.store.orders.track("ccnow", "default", [(ORDER, None)], clock.now)
    await coordinator.full_pass(via="catch-up")
    clock.now += 600.0  # unchanged since: its interval is min_interval
    await coordinator.tick_pending_list()
    fake_ccnow.orders[ORDER] = after
    asked = asked_about(fake_ccnow, ORDER)

    clock.now += 30.0
    report = await coordinator.notified([ORDER, OTHER])

    changed = await state(coordinator, ORDER)
    assert changed.status == after and changed.last_changed == clock.now
    assert changed.interval_s == MIN_S
    assert MIN_S <= changed.next_check_at - clock.now <= MIN_S * 1.1
    # Asked once: the query of an order that left the list, or of one the list names
    # `pending` while its last query said `processing` (the line is no answer by itself).
    assert asked_about(fake_ccnow, ORDER) - asked == 1
    # The notification's other order, which the poll did not answer, is queried and followed.
    assert asked_about(fake_ccnow, OTHER) == 1
    assert (await state(coordinator, OTHER)).status == "processing"
    assert report.failed == 0
