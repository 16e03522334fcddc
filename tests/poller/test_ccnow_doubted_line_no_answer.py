"""A doubted order's pending list line that applies because its query cannot decide
(tests/poller/test_ccnow_doubted_query_fails.py) is the list's word, not a query's answer:
- while every query of the account fails, it does not say the queries answer again (no false
  `source.recovered`, then `source.failed` again at the next tick and the backoff restarting);
- an order whose query keeps failing is asked again a while after that failed query, not at
  every poll because its last answer (an end state's, never checked again) is weeks old.
Against a fake CCNow on 127.0.0.1, passes of the daemon's coordinator over a real store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.poller.test_ccnow_doubted_query_fails import (
    POLL_S,
    fail_query,
    queried_as,
    queries,
    status,
)

IDS = ["600-00-0002", "600-00-0003", "600-00-0004", "600-00-0005"]
MONTH_S = 30 * 86400.0


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (poll_interval 2s) over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake_ccnow, POLL_S) as made:
        yield made


async def health_events(coordinator: CCNowCoordinator) -> list[str]:
    out = []
    for e in await coordinator.store.events.history():
        if e.type.startswith("source."):
            out.append(f"{e.type} {json.loads(e.body)['data'].get('reason')}")
    return out


async def test_a_line_taken_while_every_query_fails_recovers_nothing(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {i: "pending" for i in IDS}
    await coordinator.tick_pending_list()
    for i in IDS:  # they leave the list: queried, held `processing`
        fake_ccnow.orders[i] = "processing"
    clock.now += 60
    await coordinator.tick_pending_list()
    fake_ccnow.queries = Reply(500, "oops")
    for _ in range(3):
        clock.now += coordinator.config.schedule.max_interval_s
        await coordinator.tick_due()
    assert await health_events(coordinator) == ["source.failed http 500"]
    # CCNow lists one `pending` again; its query is not asked (the queries rest), its line
    # applies as its next step, and says nothing of the queries, which still answer 500.
    fake_ccnow.orders[IDS[0]] = "pending"
    for _ in range(3):
        clock.now += 60
        await coordinator.tick_pending_list()
    key = OrderKey("ccnow", "default", IDS[0])
    assert (await coordinator.store.orders.load([key]))[key].status == "pending"
    state = await coordinator.store.sources.state("ccnow", "default")
    assert (state.failing, sorted(state.failing_parts)) == (True, ["checks"])
    # Before: `source.recovered` at the list's poll, and `source.failed` again at the next tick.
    for _ in range(2):
        clock.now += coordinator.config.schedule.max_interval_s
        await coordinator.tick_due()
    assert await health_events(coordinator) == ["source.failed http 500"]


@pytest.mark.parametrize("how", ["error_line", "no_line"])
async def test_a_query_failing_a_month_after_the_last_answer_is_not_asked_at_every_poll(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, how: str
) -> None:
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "declined")
    fail_query(fake_ccnow, how)
    clock.now += MONTH_S  # declined a month ago, never checked since; listed `pending` now
    before = queries(fake_ccnow)
    for _ in range(30):
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
        clock.now += 60
    # Before: 30 queries, one per poll (its bound counted from the answer a month back).
    assert queries(fake_ccnow) - before == 1
    assert await status(coordinator) == "declined"


async def test_after_a_catch_up_asked_it_the_polls_do_not(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # No line for it (an error line alone fails a catch-up's every check: the queries rest).
    coordinator, clock = ccnow
    await queried_as(coordinator, fake_ccnow, "declined")
    fail_query(fake_ccnow, "no_line")
    clock.now += MONTH_S
    before = queries(fake_ccnow)
    await coordinator.full_pass(via="catch-up")  # as the daemon's start: it asks every doubt
    assert queries(fake_ccnow) - before == 1
    for _ in range(30):
        clock.now += 60
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
    assert queries(fake_ccnow) - before == 1
    assert await status(coordinator) == "declined"
