"""When most of a CCV account's orders break at once (16 of 20), each still looks answered in
storage: a pass of broken orders asked two witnesses in storage order, both broken too, and the
account failed at that pass though 4 orders answered, its next probe recovering it (a false
`source.failed` / `source.recovered` pair). Both witnesses failing while the account answers,
up to two of the orders this daemon saw answer last are asked too; a real outage still fails the
account at that pass, at a cost of two checks more, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import groupby
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.account_ticks import account_events
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

IDS = [f"0e5e0000-0000-4000-8000-{n:012d}" for n in range(1, 21)]
BROKEN = [order_id for n, order_id in enumerate(IDS) if n % 5 != 4]  # 16 of 20
HEALTHY = [order_id for order_id in IDS if order_id not in BROKEN]
HTTP_500 = Reply(500, '{"error": "server"}', "application/json")
PASS = IDS[5:7]  # broken; the first witnesses in storage order, IDS[0] and IDS[1], too


@pytest.fixture
async def ccv(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """A CCV account of 20 open orders that answered New at a catch-up, one at a time."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    path = write_config(tmp_path, ccv=fake_ccv)
    text = path.read_text().replace("concurrency = 8\n", "concurrency = 1\n")
    path.write_text(text.replace('retry_backoff = "10ms"', 'retry_backoff = "1ms"'))
    config = load_config(path)
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


def asked(fake: FakeCCV) -> list[str]:
    """The checks since the catch-up, in order: an order's retries are one."""
    after = fake.requests[len(IDS) :]
    return [order_id for order_id, _ in groupby(r.order_id for r in after if r.order_id in IDS)]


async def test_most_orders_breaking_at_once_ask_an_order_that_answered_since(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    for order_id in BROKEN:
        fake_ccv.replies[order_id] = HTTP_500
    clock.now += 10
    await coordinator.check([HEALTHY[-1]], via="poll")  # answers after they broke
    clock.now += 3
    report = await coordinator.check(PASS, via="poll")
    assert await account_events(coordinator) == []
    assert not (await coordinator.store.sources.state("ccv", "default")).failing
    # The pass's two, its two witnesses (broken), then the order that answered last.
    assert asked(fake_ccv) == [HEALTHY[-1], *PASS, IDS[0], IDS[1], HEALTHY[-1]]
    assert report.checked == 5


async def test_an_order_answering_last_but_followed_no_more_is_no_witness(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    # An order this daemon saw answer last, then followed no more, is not asked: the next is.
    coordinator, clock = ccv
    for order_id in BROKEN:
        fake_ccv.replies[order_id] = HTTP_500
    clock.now += 10
    await coordinator.check(HEALTHY[-2:], via="poll")
    await coordinator.store.orders.untrack("ccv", "default", HEALTHY[-1:])
    clock.now += 3
    await coordinator.check(PASS, via="poll")
    assert await account_events(coordinator) == []
    assert asked(fake_ccv)[-1] == HEALTHY[-2]


async def test_an_outage_still_fails_the_account_at_its_first_pass_two_checks_more(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    clock.now += 10
    await coordinator.check(HEALTHY, via="poll")
    fake_ccv.always = HTTP_500
    clock.now += 3
    report = await coordinator.check(PASS, via="poll")
    assert await account_events(coordinator) == ["source.failed"]
    # The pass's two, two witnesses, two of the orders that answered last: no more.
    assert report.checked == 6
    assert asked(fake_ccv)[len(HEALTHY) :] == [*PASS, IDS[0], IDS[1], HEALTHY[-1], HEALTHY[-2]]
    # Failing, the account asks no witness: its due checks are its probe.
    clock.now += 1
    await coordinator.check(IDS[10:12], via="poll")
    assert asked(fake_ccv)[len(HEALTHY) + 6 :] == IDS[10:12]
    assert await account_events(coordinator) == ["source.failed"]
