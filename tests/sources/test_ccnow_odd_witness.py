"""A CCNow witness whose own answer, in CCNow's words, holds a line no order's can be read from
(an odd order asked alone) says the account answers: CCNow's program answered about it, and
that is the order's trouble alone (DESIGN invariant 7). Its query counted as the account's
failure: two such witnesses failed the account with an order failing on its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.poller.ccnow import CCNowCoordinator
from tests.account_ticks import account_events
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

CCNOW_IDS = [f"100-00-{n:04d}" for n in range(1, 21)]


@pytest.fixture
async def ccnow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock, FakeCCNow]]:
    """A CCNow account of 20 open orders that answered `processing` at a catch-up."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with FakeCCNow() as fake:
        fake.orders = dict.fromkeys(CCNOW_IDS, "processing")
        async with ccnow_coordinator(tmp_path, fake, 30.0) as (coordinator, clock):
            await coordinator.store.orders.track(
                "ccnow", "default", [(i, None) for i in CCNOW_IDS], clock.now
            )
            await coordinator.full_pass(via="catch-up")
            yield coordinator, clock, fake


def posts_naming(fake: FakeCCNow, order_id: str) -> int:
    return sum(order_id in r.form.values() for r in fake.requests)


@pytest.mark.parametrize("answers", [True, False])
async def test_an_odd_witness_is_that_order_s_failure_not_the_account_s(
    ccnow: tuple[CCNowCoordinator, Clock, FakeCCNow],
    answers: bool,
) -> None:
    coordinator, clock, fake = ccnow
    first, second, due = CCNOW_IDS[0], CCNOW_IDS[1], CCNOW_IDS[5]
    fake.replies_for = {due: Reply(500, "Internal Server Error")}
    for witness in (first, second):
        # Its own line and a stray one; without its line, no word of CCNow's about it.
        own = f"{witness} processing\n" if answers else ""
        fake.replies_for[witness] = Reply(200, f"{own}total 4\n")
    clock.now += 60
    report = await coordinator.check([due], via="poll")
    assert report.failed == 1
    failing = (await coordinator.store.sources.state("ccnow", "default")).failing
    if answers:
        # The first witness's answer named it: the account answers, the second is not asked.
        assert await account_events(coordinator) == [] and not failing
        assert posts_naming(fake, second) == 1  # the catch-up's post only
    else:
        # No word of CCNow's about either: an outage as before.
        assert await account_events(coordinator) == ["source.failed"] and failing
