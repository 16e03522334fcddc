"""A CCNow pending list's line that contradicts what the order's last query said (the list names
it `pending`, its query says `declined`, `test`, a word CCNow does not document, or `processing`)
is no news by itself: the snapshot keeps the query's status, and the order's query decides, in a
catch-up at once, in a poll once its check is due, or at the latest `max_interval` after its last
answered check (an end state is never due). The line was taken for newer news: every poll
flipped the order back to `pending` and its query forward again (an `error` event each time for
`declined`), and a catch-up raised `test -> pending` and then `pending -> test`. Against a fake
CCNow on 127.0.0.1, passes of the daemon's coordinator over a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.poller.conftest import history

ORDER = "600-00-0002"
POLL_S = 2.0
# End states (`declined` an error), a word CCNow does not document, a status before pending.
WORDS = ["declined", "test", "shipped_ok", "processing"]


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (poll_interval 2s) over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake_ccnow, POLL_S) as made:
        yield made


async def status(coordinator: CCNowCoordinator) -> str | None:
    key = OrderKey("ccnow", "default", ORDER)
    return (await coordinator.store.orders.load([key]))[key].status


def queries(fake: FakeCCNow) -> int:
    """How many posts asked ORDER's status (not the pending list)."""
    return sum(1 for r in fake.requests if r.form.get("x_orderid_1") == ORDER)


async def queried_as(coordinator: CCNowCoordinator, fake: FakeCCNow, word: str) -> None:
    """The list names ORDER `pending` (found so), and its query says `word`, as does every
    query after it while the list goes on naming it `pending`."""
    fake.orders = {ORDER: "pending"}
    [poll] = await coordinator.tick_pending_list()
    assert poll.report.ok, poll.report.summary()
    fake.orders[ORDER] = word
    fake.list_lags = {ORDER: "pending"}
    assert (await coordinator.check([ORDER], via="poll")).events == 1
    assert await history(coordinator) == [
        ("order.discovered", None, "pending", "poll"),
        ("order.status_changed", "pending", word, "poll"),
    ]


@pytest.mark.parametrize("word", WORDS)
async def test_polls_of_a_list_contradicting_the_query_flip_nothing(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, word: str
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, word)
    found = await history(coordinator)
    for _ in range(6):
        clock.now += POLL_S
        [poll] = await coordinator.tick_pending_list()
        assert poll.report.ok, poll.report.summary()
    assert await status(coordinator) == word
    assert await history(coordinator) == found

    # The list goes on contradicting it: its query comes `max_interval` after its last answer
    # at the latest (an end state is never due), once, and a real change is seen.
    fake_ccnow.orders[ORDER] = "pending"
    before = queries(fake_ccnow)
    clock.now += coordinator.config.schedule.max_interval_s
    for _ in range(3):
        [poll] = await coordinator.tick_pending_list()
        assert poll.report.ok, poll.report.summary()
        clock.now += POLL_S
    assert queries(fake_ccnow) - before == 1
    assert await status(coordinator) == "pending"
    assert await history(coordinator) == [
        *found,
        ("order.status_changed", word, "pending", "poll"),
    ]


@pytest.mark.parametrize("word", ["declined", "test"])
async def test_an_end_state_the_list_contradicts_is_asked_again_only_after_max_interval(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, word: str
) -> None:
    # Its query still says the end state: nothing changes, and the next query waits for
    # another `max_interval`, not for every poll.
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, word)
    found = await history(coordinator)
    max_interval = coordinator.config.schedule.max_interval_s
    before = queries(fake_ccnow)
    for _ in range(3):
        clock.now += max_interval
        for _ in range(3):
            [poll] = await coordinator.tick_pending_list()
            assert poll.report.ok, poll.report.summary()
            clock.now += POLL_S
    assert queries(fake_ccnow) - before == 3
    assert await status(coordinator) == word
    assert await history(coordinator) == found


@pytest.mark.parametrize("word", WORDS)
async def test_catch_ups_of_a_list_contradicting_the_query_flip_nothing(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, word: str
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, word)
    found = await history(coordinator)
    before = queries(fake_ccnow)
    for _ in range(3):
        clock.now += POLL_S
        assert (await coordinator.full_pass(via="catch-up")).ok
    # Each catch-up asked it (the list's line is no answer), and its query decided.
    assert queries(fake_ccnow) - before == 3
    assert await status(coordinator) == word
    assert await history(coordinator) == found

    # A real change: seen by the next catch-up, once.
    fake_ccnow.orders[ORDER] = "pending"
    for _ in range(2):
        clock.now += POLL_S
        assert (await coordinator.full_pass(via="catch-up")).ok
    assert await status(coordinator) == "pending"
    assert await history(coordinator) == [
        *found,
        ("order.status_changed", word, "pending", "catch-up"),
    ]


async def test_an_order_before_pending_the_list_names_pending_is_asked_within_min_interval(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # `pending` is a `processing` order's likely next step: its query comes `min_interval`
    # after its last answer at the latest, not once its interval has grown to hours.
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "processing")
    key = OrderKey("ccnow", "default", ORDER)
    async with coordinator.store.transaction():
        # Its interval grown long, as unchanged checks make it.
        await coordinator.store.orders.postpone("ccnow", "default", [(ORDER, clock.now + 6 * 3600)])
    min_interval = coordinator.config.schedule.min_interval_s
    before = queries(fake_ccnow)
    clock.now += min_interval - POLL_S
    [poll] = await coordinator.tick_pending_list()
    assert poll.report.ok, poll.report.summary()
    assert queries(fake_ccnow) == before
    fake_ccnow.orders[ORDER] = "pending"
    clock.now += POLL_S
    for _ in range(3):
        [poll] = await coordinator.tick_pending_list()
        assert poll.report.ok, poll.report.summary()
        clock.now += POLL_S
    assert queries(fake_ccnow) - before == 1
    assert (await coordinator.store.orders.load([key]))[key].status == "pending"
    assert (await history(coordinator))[2:] == [
        ("order.status_changed", "processing", "pending", "poll")
    ]
