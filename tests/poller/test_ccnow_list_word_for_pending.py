"""A CCNow pending list's line naming another word (`completed`) for an order held `pending` is
no news by itself, as a line contradicting any other held status: the order's query decides,
one event if it says the new word, none if it says `pending`. The line was taken as the order's
status at once (`pending -> completed`, `via: poll`, no query sent), with its next check a day
away and ships refused meanwhile, and its later query flipped it back (`completed -> pending`):
two false events for a change CCNow's queries never showed. When the query cannot decide, the
order stays as held. A word later in CCNow's lifecycle (`completed` for `pending`) is asked
at most min_interval after the order's last check; an earlier or unrelated one (a lagging list)
waits for its check, and so does a later one whose query fails. Against a fake CCNow on
127.0.0.1, passes of the daemon's coordinator over a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.poller.conftest import history

ORDER, OTHER = "396-10-1142", "397-10-1159"
KEY = OrderKey("ccnow", "default", ORDER)
POLL_S = 2.0
FOUND = [
    ("order.discovered", None, "pending", "poll"),
    ("order.discovered", None, "pending", "poll"),
]


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
    return sum(1 for r in fake.requests if ORDER in r.form.values())


async def found(coordinator: CCNowCoordinator, fake: FakeCCNow) -> None:
    """Both orders pending, found so by a poll of the list."""
    fake.orders = {ORDER: "pending", OTHER: "pending"}
    [poll] = await coordinator.tick_pending_list()
    assert poll.report.ok, poll.report.summary()
    assert await history(coordinator) == FOUND


async def poll(
    coordinator: CCNowCoordinator, clock: Clock, *, due: bool = True, ok: bool = True
) -> None:
    clock.now += POLL_S
    [report] = await coordinator.tick_pending_list()
    assert report.report.ok or not ok, report.report.summary()
    if due:
        await coordinator.tick_due()


@pytest.mark.parametrize("word", ["completed", "canceled", "mark_shipped", "shipped_ok"])
async def test_one_poll_naming_another_word_changes_nothing(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, word: str
) -> None:
    # The probe's case: one list says `396-10-1142 completed`, every list after names both
    # `pending`, and its query answers `pending` throughout (past max_interval: no flip back).
    coordinator, clock = ccnow
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: word}
    await poll(coordinator, clock, due=False)
    fake_ccnow.list_lags = {}
    assert await status(coordinator) == "pending"
    assert await history(coordinator) == FOUND
    for _ in range(3):
        await poll(coordinator, clock)
    clock.now += coordinator.config.schedule.max_interval_s
    for _ in range(3):
        await poll(coordinator, clock)
    assert await status(coordinator) == "pending"
    assert await history(coordinator) == FOUND


async def test_a_poll_takes_the_word_only_once_its_query_says_it(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: "completed"}  # the list says it; its query does not yet
    before = queries(fake_ccnow)
    await poll(coordinator, clock, due=False)
    assert queries(fake_ccnow) == before
    assert await history(coordinator) == FOUND
    assert await status(coordinator) == "pending"
    # Its query says `completed` now: the poll that asks it (the order's check, or the doubt's
    # bound) raises the change, once.
    fake_ccnow.orders[ORDER] = "completed"
    for _ in range(40):
        await poll(coordinator, clock)
        if queries(fake_ccnow) == before:
            assert await history(coordinator) == FOUND
    clock.now += coordinator.config.schedule.max_interval_s
    for _ in range(3):
        await poll(coordinator, clock)
    assert queries(fake_ccnow) > before
    assert await status(coordinator) == "completed"
    assert await history(coordinator) == [
        *FOUND,
        ("order.status_changed", "pending", "completed", "poll"),
    ]


@pytest.mark.parametrize("answer", ["pending", "completed"])
async def test_a_catch_up_asks_it_and_its_query_decides(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, answer: str
) -> None:
    coordinator, clock = ccnow
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: "completed"}
    fake_ccnow.orders[ORDER] = answer
    before = queries(fake_ccnow)
    clock.now += POLL_S
    assert (await coordinator.full_pass(via="catch-up")).ok
    assert queries(fake_ccnow) - before == 1
    change = [("order.status_changed", "pending", "completed", "catch-up")]
    assert await history(coordinator) == FOUND + (change if answer == "completed" else [])
    # The next catch-up's list names it `pending` again (the probe's second case): nothing
    # flips back while the query says `pending`.
    fake_ccnow.list_lags = {}
    clock.now += POLL_S
    assert (await coordinator.full_pass(via="catch-up")).ok
    assert await history(coordinator) == FOUND + (change if answer == "completed" else [])


@pytest.mark.parametrize("how", ["error_line", "no_line"])
async def test_when_its_query_cannot_decide_it_stays_as_held(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, how: str
) -> None:
    coordinator, clock = ccnow
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: "completed"}
    if how == "error_line":
        fake_ccnow.order_errors = {ORDER}
    else:
        fake_ccnow.omit = {ORDER}
    clock.now += POLL_S
    await coordinator.full_pass(via="catch-up")  # its query asked, a failed check
    for _ in range(3):
        await poll(coordinator, clock, ok=False)
    clock.now += coordinator.config.schedule.max_interval_s
    for _ in range(3):
        await poll(coordinator, clock, ok=False)
    assert await status(coordinator) == "pending"
    assert await history(coordinator) == FOUND


async def test_an_order_before_pending_the_list_names_completed_stays_as_held(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # `processing` takes the list's `pending` as its next step when its query cannot decide
    # (tests/poller/test_ccnow_doubted_query_fails.py), but another word is no step it is
    # likely to take: it stays as held, as a `pending` order does.
    coordinator, clock = ccnow
    await found(coordinator, fake_ccnow)
    fake_ccnow.orders[ORDER] = "processing"
    assert (await coordinator.check([ORDER], via="poll")).events == 1
    fake_ccnow.list_lags = {ORDER: "completed"}
    fake_ccnow.order_errors = {ORDER}
    clock.now += POLL_S
    await coordinator.full_pass(via="catch-up")
    for _ in range(3):
        await poll(coordinator, clock, ok=False)
    assert await status(coordinator) == "processing"
    assert await history(coordinator) == [
        *FOUND,
        ("order.status_changed", "pending", "processing", "poll"),
    ]


# A pending order's own check an hour away, the doubt's soon bound 10 s.
SOON = 'min_interval = "10s"\nstatus_intervals = { pending = "1h" }'


@pytest.fixture
async def soon(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake_ccnow, POLL_S, SOON) as made:
        yield made


async def test_a_word_that_may_be_its_next_step_is_asked_within_min_interval(
    soon: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # A real change the list shows (`completed`, later than `pending` in CCNow's lifecycle) is
    # seen at most min_interval after the order's last check, not at its check an hour away.
    coordinator, clock = soon
    await found(coordinator, fake_ccnow)
    last = clock.now
    fake_ccnow.orders[ORDER] = "completed"
    fake_ccnow.list_lags = {ORDER: "completed"}
    while clock.now + POLL_S <= last + coordinator.config.schedule.min_interval_s:
        await poll(coordinator, clock)
    assert await history(coordinator) == [
        *FOUND,
        ("order.status_changed", "pending", "completed", "poll"),
    ]
    assert await status(coordinator) == "completed"


@pytest.mark.parametrize("word", ["processing", "test", "shipped_ok"])
async def test_an_earlier_or_unrelated_word_keeps_the_slow_schedule(
    soon: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, word: str
) -> None:
    # A list lagging (or naming a word that is no later step) costs one query per check
    # interval, not one per poll nor per min_interval.
    coordinator, clock = soon
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: word}
    before = queries(fake_ccnow)
    for _ in range(30):
        await poll(coordinator, clock)
    assert queries(fake_ccnow) == before
    assert await history(coordinator) == FOUND


async def test_a_later_word_whose_query_fails_waits_as_any_failed_check(
    soon: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # Held as it is while its query fails, it is asked at its failed check's backoff (10 s,
    # 20 s, 40 s), not every min_interval for as long as the list names it.
    coordinator, clock = soon
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: "completed"}
    fake_ccnow.order_errors = {ORDER}
    before = queries(fake_ccnow)
    for _ in range(40):
        await poll(coordinator, clock, ok=False)
    assert 1 <= queries(fake_ccnow) - before <= 4
    assert await status(coordinator) == "pending"
    assert await history(coordinator) == FOUND


async def test_a_later_word_its_query_denies_is_asked_ever_less_often(
    soon: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # A list that goes on naming a later word its query denies (CCNow's queries say `pending`)
    # is asked once min_interval after the order's last check, then at ever longer gaps, each
    # at least the time the doubt has lasted: 300 polls (600 s, min_interval 10 s) cost a
    # handful of queries a doubling gap apart (10, 20, 40 ... s: 6 or 7), not one per
    # min_interval (60), per poll, nor at a fixed gap of a few min_intervals (20 at 30 s).
    coordinator, clock = soon
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: "completed"}
    before = queries(fake_ccnow)
    for _ in range(300):
        await poll(coordinator, clock)
    assert 3 <= queries(fake_ccnow) - before <= 8
    assert await status(coordinator) == "pending"
    assert await history(coordinator) == FOUND


async def test_a_lag_that_turns_into_a_later_word_is_asked_within_min_interval(
    soon: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # The list lags (`processing` for a `pending` order: the slow schedule, its doubt asked by
    # a catch-up), then names `completed`, which is real: seen at most min_interval after the
    # order's last check, however long the lag's doubt lasted before.
    coordinator, clock = soon
    await found(coordinator, fake_ccnow)
    fake_ccnow.list_lags = {ORDER: "processing"}
    for _ in range(100):
        await poll(coordinator, clock)
    clock.now += POLL_S
    assert (await coordinator.full_pass(via="catch-up")).ok
    last = clock.now
    assert await history(coordinator) == FOUND
    fake_ccnow.orders[ORDER] = "completed"
    fake_ccnow.list_lags = {ORDER: "completed"}
    limit = max(clock.now, last + coordinator.config.schedule.min_interval_s)
    while clock.now + POLL_S <= limit + coordinator.config.schedule.min_interval_s:
        await poll(coordinator, clock)
    assert await history(coordinator) == [
        *FOUND,
        ("order.status_changed", "pending", "completed", "poll"),
    ]
