"""A CCNow pending list's line that contradicts an order's last query makes it doubted: its query
decides (tests/poller/test_ccnow_list_contradicts_query.py). When that query cannot decide (a
per-order error line, no line for it, or queries failing whole while the list answers):
- an order held before `pending` (`processing`) takes the list's `pending`, its likely next
  step, at once, as it did before lines were doubted: held `processing`, it stayed so for ever;
- any other is asked again after a growing wait, not at every poll (a failed check does not
  move its last answer: tests/poller/test_ccnow_doubted_line_no_answer.py).
And a catch-up counts a doubted order as one check. Against a fake CCNow on 127.0.0.1, passes of
the daemon's coordinator over a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.poller.conftest import history

ORDER = "600-00-0002"
KEY = OrderKey("ccnow", "default", ORDER)
POLL_S = 2.0
FOUND = [("order.discovered", None, "pending", "poll")]


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (poll_interval 2s) over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake_ccnow, POLL_S) as made:
        yield made


async def status(coordinator: CCNowCoordinator) -> str | None:
    return (await coordinator.store.orders.load([KEY]))[KEY].status


def queries(fake: FakeCCNow) -> int:
    """How many posts asked ORDER's status (not the pending list)."""
    return sum(1 for r in fake.requests if r.form.get("x_orderid_1") == ORDER)


async def queried_as(coordinator: CCNowCoordinator, fake: FakeCCNow, word: str) -> None:
    """The list names ORDER `pending` (found so), its query says `word`; the list goes on
    naming it `pending`."""
    fake.orders = {ORDER: "pending"}
    [poll] = await coordinator.tick_pending_list()
    assert poll.report.ok, poll.report.summary()
    fake.orders[ORDER] = word
    fake.list_lags = {ORDER: "pending"}
    assert (await coordinator.check([ORDER], via="poll")).events == 1


def fail_query(fake: FakeCCNow, how: str) -> None:
    if how == "error_line":
        fake.order_errors = {ORDER}
    else:
        fake.omit = {ORDER}


@pytest.mark.parametrize("how", ["error_line", "no_line"])
async def test_a_poll_whose_query_of_an_order_before_pending_fails_takes_the_list_line(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, how: str
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "processing")
    fail_query(fake_ccnow, how)
    clock.now += coordinator.config.schedule.min_interval_s
    await coordinator.tick_pending_list()
    assert await status(coordinator) == "pending"
    assert (await history(coordinator))[2:] == [
        ("order.status_changed", "processing", "pending", "poll")
    ]


async def test_while_queries_fail_whole_an_order_before_pending_takes_the_list_line(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "processing")
    fake_ccnow.queries = Reply(500, "oops")
    for _ in range(2):
        clock.now += 60
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
    assert await status(coordinator) == "pending"
    assert (await history(coordinator))[2:] == [
        ("order.status_changed", "processing", "pending", "poll")
    ]


async def test_a_catch_up_whose_query_of_an_order_before_pending_fails_takes_the_list_line(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "processing")
    fake_ccnow.order_errors = {ORDER}
    clock.now += POLL_S
    await coordinator.full_pass(via="catch-up")
    assert await status(coordinator) == "pending"
    assert (await history(coordinator))[2:] == [
        ("order.status_changed", "processing", "pending", "catch-up")
    ]


@pytest.mark.parametrize("how", ["error_line", "no_line"])
async def test_a_failing_query_of_a_doubted_end_state_is_not_asked_at_every_poll(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, how: str
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "declined")
    fail_query(fake_ccnow, how)
    clock.now += coordinator.config.schedule.max_interval_s + 1
    before = queries(fake_ccnow)
    for _ in range(30):
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
        clock.now += 60
    assert queries(fake_ccnow) - before == 1
    assert await status(coordinator) == "declined"


async def test_a_catch_up_counts_a_doubted_order_once(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "declined")
    clock.now += POLL_S
    report = await coordinator.full_pass(via="catch-up")
    assert report.ok, report.summary()
    assert report.checked == 1
    assert await status(coordinator) == "declined"


async def test_a_catch_up_whose_queries_fail_counts_a_doubted_order_once(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "declined")
    fake_ccnow.queries = Reply(500, "oops")
    clock.now += POLL_S
    report = await coordinator.full_pass(via="catch-up")
    assert (report.checked, report.failed) == (1, 1), report.summary()
    assert await status(coordinator) == "declined"
