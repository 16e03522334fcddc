"""CCNow polling over time (probe 12): a failing account's backoff doubles per failed probe, not
per failed request (4), its period counted from the failed probe, not from a later failure
within it (a notification's poll); its `source.recovered` names the failure it ends, as its
`source.failed` did, though the error changed on the way (6); an order untracked while on the
pending list is followed again by the next poll, as README says (3)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.schedule import source_backoff_s
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")
A = "812-00-0001"
POLL_S = 2.0


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (poll_interval 2s) over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake_ccnow, POLL_S) as made:
        yield made


async def health_events(coordinator: CCNowCoordinator) -> list[tuple[str, dict[str, Any]]]:
    events = await coordinator.store.events.history()
    return [(e.type, json.loads(e.body)["data"]) for e in events if e.order_id is None]


async def test_failures_within_one_backoff_period_double_it_once(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {A: "pending"}
    await coordinator.store.orders.track("ccnow", "default", [(A, None)], 0)
    fake_ccnow.always = MAINTENANCE
    await coordinator.full_pass(via="catch-up")  # a start-up pass in the outage
    clock.now += 0.05
    await coordinator.full_pass(via="catch-up")  # a restart at once: its start-up pass
    await coordinator.notified([])  # and a notification's poll, in the same second
    state = await coordinator.store.sources.state("ccnow", "default")
    # Three failed requests, one backoff period: the next probe is one poll interval away
    # (was: streak 3, a probe 8 s away, and every restart or notification doubled it again).
    assert state.failure_streak == 1
    assert source_backoff_s(state.failure_streak, POLL_S) == POLL_S
    clock.now += POLL_S
    assert (await coordinator.tick_pending_list()) != []  # its backoff ran out: probed
    assert (await coordinator.store.sources.state("ccnow", "default")).failure_streak == 2
    clock.now += 1.0
    assert await coordinator.tick_pending_list() == []  # resting: 4 s now
    clock.now += 3.0
    await coordinator.tick_pending_list()
    assert (await coordinator.store.sources.state("ccnow", "default")).failure_streak == 3


async def test_a_failure_within_the_backoff_period_does_not_put_the_probe_off(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {A: "pending"}
    await coordinator.store.orders.track("ccnow", "default", [(A, None)], 0)
    fake_ccnow.always = MAINTENANCE
    await coordinator.full_pass(via="catch-up")  # failed: left alone for one poll interval
    for streak in (2, 3, 4):
        rest = source_backoff_s(streak - 1, POLL_S)
        clock.now += 0.75 * rest
        await coordinator.notified([])  # fails within the period: no probe, counts once
        state = await coordinator.store.sources.state("ccnow", "default")
        assert state.failure_streak == streak - 1
        clock.now += 0.25 * rest
        # Was []: the period ran from the notification's failure, and notifications every
        # 3/4 of it held the probe off for good, the backoff at its first length.
        assert (await coordinator.tick_pending_list()) != []
        assert (await coordinator.store.sources.state("ccnow", "default")).failure_streak == streak


async def test_recovered_names_the_failure_it_ends_though_the_error_changed(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {A: "pending"}
    await coordinator.store.orders.track("ccnow", "default", [(A, None)], 0)
    fake_ccnow.always = MAINTENANCE
    await coordinator.full_pass(via="catch-up")
    fake_ccnow.always = Reply(500, "oops")
    clock.now += POLL_S
    await coordinator.tick_pending_list()
    assert (await coordinator.store.sources.state("ccnow", "default")).last_error == "http 500"
    fake_ccnow.always = None
    clock.now += 2 * POLL_S
    await coordinator.tick_pending_list()
    [(failed, failed_data), (recovered, data)] = await health_events(coordinator)
    assert (failed, recovered) == ("source.failed", "source.recovered")
    assert failed_data["reason"] == "error_message: system down for maintenance"
    # Was "http 500": a recovery from an outage nobody was told of.
    assert data["reason"] == failed_data["reason"]
    assert data["last_reason"] == "http 500"


async def test_an_order_untracked_while_on_the_pending_list_is_followed_again(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {A: "pending"}
    await coordinator.full_pass(via="catch-up")
    assert await coordinator.store.orders.untrack("ccnow", "default", [A]) == 1
    clock.now += POLL_S
    await coordinator.tick_pending_list()
    events = await coordinator.store.events.history()
    assert [(e.type, e.order_id) for e in events] == [("order.discovered", A)] * 2
