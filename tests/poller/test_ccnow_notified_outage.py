"""A CCNow notification that meets an outage is kept as its order being due: a notification for
a followed settled order (`completed`, then a chargeback) answered 202 while CCNow is in
maintenance had its check fail with the account, and the hint was gone: the order kept its next
check a day ahead (`settled_interval`), and the chargeback was seen up to a day late. Now the
first due checks after CCNow answers again ask it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey, OrderState
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")
WITNESS, ORDER, STRANGER = "801-00-0001", "801-00-0002", "801-00-0003"
POLL_S = 60.0
DAY = 86400.0


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake_ccnow, POLL_S) as made:
        yield made


async def state(coordinator: CCNowCoordinator, order_id: str) -> OrderState | None:
    key = OrderKey("ccnow", "default", order_id)
    return (await coordinator.store.orders.load([key])).get(key)


@pytest.mark.parametrize("named", [True, False], ids=["order-field", "mentioned"])
async def test_a_notification_met_by_maintenance_is_checked_once_ccnow_answers(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, named: bool
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {WITNESS: "completed", ORDER: "completed", STRANGER: "completed"}
    # The witness first: a failing account's probe asks it, not the notified order.
    tracked = [(WITNESS, None), (ORDER, None)]
    await coordinator.store.orders.track("ccnow", "default", tracked, clock.now)
    await coordinator.full_pass(via="catch-up")
    settled = await state(coordinator, ORDER)
    assert settled is not None and settled.next_check_at > clock.now + DAY / 2

    fake_ccnow.always = MAINTENANCE
    fake_ccnow.orders[ORDER] = "chargeback"
    clock.now += 600.0
    if named:
        await coordinator.notified([ORDER, STRANGER])
    else:
        await coordinator.notified([], mentioned=[ORDER, STRANGER])
    assert (await coordinator.store.sources.state("ccnow", "default")).failing
    kept = await state(coordinator, ORDER)
    assert kept is not None and kept.status == "completed"
    assert kept.next_check_at <= clock.now  # due: the hint is kept in the store
    assert await state(coordinator, STRANGER) is None  # no answer: not followed from it

    fake_ccnow.always = None
    for _ in range(3):  # a few polls after the maintenance, not a day
        clock.now += POLL_S
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
    assert not (await coordinator.store.sources.state("ccnow", "default")).failing
    found = await state(coordinator, ORDER)
    assert found is not None and found.status == "chargeback"
    history = await coordinator.store.events.history()
    data = [json.loads(e.body)["data"] for e in history if e.order_id == ORDER]
    change = [d["via"] for d in data if d.get("status") == "chargeback"]
    assert change == ["poll"]  # the due check's, as README says
