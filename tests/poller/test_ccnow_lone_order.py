"""Brief n72 (probe 39): one order CCNow cannot answer, due alone at its failure's backoff,
failed the whole account (its post of one order got an empty answer, or a 500), and the next
check of another recovered it: `source.failed` / `source.recovered` every few seconds, for
ever; a 500 to any post naming it failed its whole batch every pass, the healthy orders in it
never read. Now a 5xx batch is halved down to the order, and a post of one order alone that
fails asks the probe (a query of another order) before failing the account (DESIGN invariant
7); a real outage still fails it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.sources.test_ccnow_missing_lines import StopsSilently

IDS = [f"100-00-{n:04d}" for n in range(1, 17)]  # one batch of 16
BAD = IDS[5]
POLL_S = 3.0
STEP_S = 1.0


class StopsAtBad(StopsSilently):
    """StopsSilently whose pending list is CCNow's as usual (`message no_pending_orders`)."""

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        return super()._lines(ids, form) if ids else FakeCCNow._lines(self, ids, form)


def posts_of(fake: FakeCCNow, order_id: str) -> int:
    return sum(order_id in r.form.values() for r in fake.requests)


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeCCNow]:
    """`silent`: CCNow stops silently at BAD (none of its lines or after, an empty 200 when it
    is asked alone); `500`: it answers 500 to any post naming BAD."""
    if request.param == "silent":
        made: FakeCCNow = StopsAtBad({BAD})
    else:
        made = FakeCCNow()
        made.replies_for = {BAD: Reply(500, "Internal Server Error")}
    async with made:
        made.orders = dict.fromkeys(IDS, "processing")
        yield made


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake, POLL_S) as made:
        coordinator = made[0]
        await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in IDS], 0)
        yield made


async def run(coordinator: CCNowCoordinator, clock: Clock, seconds: float) -> None:
    """The daemon's ticks over `seconds`: a due tick every step, a list poll every poll."""
    for step in range(1, int(seconds / STEP_S) + 1):
        clock.now += STEP_S
        if step % int(POLL_S / STEP_S) == 0:
            await coordinator.tick_pending_list()
        await coordinator.tick_due()


async def source_events(coordinator: CCNowCoordinator) -> list[str]:
    return [e.type for e in await coordinator.store.events.history() if e.order_id is None]


@pytest.mark.parametrize("fake", ["silent", "500"], indirect=True)
async def test_one_order_ccnow_cannot_answer_fails_alone_pass_after_pass(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await coordinator.full_pass(via="catch-up")
    fake.orders[IDS[2]] = "completed"  # a healthy order's change, in BAD's batch
    # Ten minutes, not the probe's half hour: BAD is asked alone 7 times in them (17 in 30),
    # where the flap came every 6-10 s; a third of the ticks.
    await run(coordinator, clock, 600.0)
    # Was: source.failed / source.recovered pairs, pass after pass (every 6-10 s in the probe);
    # with a 500, IDS[2]'s change never seen (its batch failed whole every pass).
    assert await source_events(coordinator) == []
    assert posts_of(fake, BAD) > 4  # asked alone again and again, at its failure's backoff
    keys = [OrderKey("ccnow", "default", i) for i in IDS]
    states = await coordinator.store.orders.load(keys)
    assert {k.order_id: s.status for k, s in states.items()} == {
        **dict.fromkeys(IDS, "processing"),
        IDS[2]: "completed",
        BAD: None,
    }
    state = await coordinator.store.sources.state("ccnow", "default")
    assert not state.failing


@pytest.mark.parametrize("fake", ["500"], indirect=True)
async def test_a_lone_post_fails_the_account_when_the_probe_fails_too(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await coordinator.full_pass(via="catch-up")
    assert await source_events(coordinator) == []
    fake.queries = Reply(500, "Internal Server Error")  # every query now: an outage
    # It fails 121 s into the outage. 300 s of it, not 600 s: the probe's backoff grows
    # through it (the account answering was found 287 s after 600 s of outage, 10 s after
    # 300 s), and then 600 s, not 1200 s, for no second failure.
    await run(coordinator, clock, 300.0)
    state = await coordinator.store.sources.state("ccnow", "default")
    assert await source_events(coordinator) == ["source.failed"]
    assert state.failing and state.last_error == "http 500"
    fake.queries = None
    await run(coordinator, clock, 600.0)
    assert await source_events(coordinator) == ["source.failed", "source.recovered"]


@pytest.mark.parametrize("fake", ["500"], indirect=True)
@pytest.mark.parametrize("outage", [False, True])
async def test_a_catch_up_of_one_open_order_ccnow_answers_500_for_asks_the_pending_list(
    tmp_path: Path, fake: FakeCCNow, monkeypatch: pytest.MonkeyPatch, outage: bool
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    if outage:
        fake.always = Reply(500, "Internal Server Error")  # the pending list too
    async with ccnow_coordinator(tmp_path, fake, POLL_S) as (coordinator, _):
        await coordinator.store.orders.track("ccnow", "default", [(BAD, None)], 0)
        report = await coordinator.full_pass(via="catch-up")
        state = await coordinator.store.sources.state("ccnow", "default")
        events = await source_events(coordinator)
    assert report.failed == 1
    # No other order to ask: the pending list answering is the probe's answer. Was: the
    # account failed (`http 500`), an error event and exit 75 at every catch-up.
    assert (events, state.failing) == ((["source.failed"], True) if outage else ([], False))
