"""Many odd orders in one batch (CCNow answers the line of each and, after it, a line no
order's can be read from, `total 4`), wherever they sit in it: a batch of 25 with 20 or all 25
of them failed the account (`source.failed`) though every answer was a 200 in CCNow's words
naming the orders asked. The batch is now asked again level by level (its halves, then the
halves of each half still odd, ...), the parts that read applied at once; each odd order fails
its own check, and the orders the catch-up's posts did not reach are asked again within it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.sources.ccnow_batches import FOUND_ORDERS, Split
from reconciler.sources.ccnow_carry import CARRY_POLLS
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD
from tests.poller.test_ccnow_lone_order import POLL_S, run, source_events
from tests.poller.test_ccnow_many_odd import OddLines

IDS = [f"100-00-{n:04d}" for n in range(1, 26)]  # one batch of 25
# The positions of the odd orders in the batch.
PLACES = {
    "20 first": range(20),
    "all 25": range(25),
    "13 last": range(12, 25),
    "spread": range(0, 25, 2),
}


@pytest.fixture
async def fake() -> AsyncIterator[OddLines]:
    async with OddLines() as made:
        made.orders = dict.fromkeys(IDS, "on_hold")  # not on the pending list: queried
        yield made


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake: OddLines, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake, POLL_S) as made:
        coordinator = made[0]
        await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in IDS], 0)
        yield made


def checks_failed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.fields["order_id"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.msg == "order.check_failed"
    ]


@pytest.mark.parametrize("places", list(PLACES))
async def test_odd_orders_fail_their_own_checks_and_the_others_changes_are_seen(
    ccnow: tuple[CCNowCoordinator, Clock],
    fake: OddLines,
    caplog: pytest.LogCaptureFixture,
    places: str,
) -> None:
    coordinator, clock = ccnow
    odd = {IDS[p] for p in PLACES[places]}
    good = [i for i in IDS if i not in odd]
    fake.odd = frozenset(odd)
    with caplog.at_level(logging.WARNING):
        first = len(fake.requests)
        await coordinator.full_pass(via="catch-up")
        catch_up_posts = len(fake.requests) - first
        alone = {
            r.form["x_orderid_1"]
            for r in fake.requests[first:]
            if "x_orderid_1" in r.form and "x_orderid_2" not in r.form
        }
        # The checks the catch-up failed are odd orders asked alone; the orders its posts did
        # not reach are not failed (was: failed `protocol`, parts not asked) but asked again
        # within it.
        assert set(checks_failed(caplog)) <= alone & odd
        # The daemon's ticks.
        await run(coordinator, clock, 60.0)
        fake.orders.update(dict.fromkeys(good, "completed"))
        clock.now += 600
        await coordinator.full_pass(via="catch-up")
        await run(coordinator, clock, 60.0)
    # Was (20 first, all 25): source.failed at the catch-up, no order read.
    assert await source_events(coordinator) == []
    assert not (await coordinator.store.sources.state("ccnow", "default")).failing
    # Within the bound of a batch asked in parts, its post and FOUND_ORDERS shares of posts,
    # at each of the catch-up's rounds (the orders it carried asked again within it).
    assert catch_up_posts <= 1 + CARRY_POLLS * (1 + FOUND_ORDERS * Split.posts(len(IDS)))
    # Each odd order's check failed, its own, one line each (past the pass's first
    # STARTED_FAILING_LINES, counted in one line); no good order's did.
    more = sum(r.fields["more"] for r in caplog.records if r.msg == "orders.check_failed")  # type: ignore[attr-defined]
    assert set(checks_failed(caplog)) <= odd
    assert len(set(checks_failed(caplog))) + more == len(odd)
    keys = {OrderKey("ccnow", "default", i): i for i in IDS}
    states = {keys[k]: s for k, s in (await coordinator.store.orders.load(list(keys))).items()}
    assert all(states[i].failure_streak > 0 and states[i].status is None for i in odd)
    assert {i: states[i].status for i in good} == dict.fromkeys(good, "completed")
    # Every good order's change was an event a consumer sees.
    changed = [
        json.loads(e.body)["data"]
        for e in await coordinator.store.events.history()
        if e.type == "order.status_changed"
    ]
    assert sorted((c["order_id"], c["previous_status"], c["status"]) for c in changed) == [
        (i, "on_hold", "completed") for i in good
    ]
