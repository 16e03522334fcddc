"""A CCNow witness whose own answer, in CCNow's words, holds a line no order's can be read from
(an odd order asked alone) says the account answers: CCNow's program answered about it, and
that is the order's trouble alone (DESIGN invariant 7). Its query counted as the account's
failure: two such witnesses failed the account with an order failing on its own."""

from __future__ import annotations

import pytest

from reconciler.poller.ccnow import CCNowCoordinator
from tests.account_ticks import account_events
from tests.conftest import Clock
from tests.fake_providers import FakeCCNow, Reply
from tests.test_witnesses_take_turns import CCNOW_IDS, ccnow, posts_naming  # noqa: F401


@pytest.mark.parametrize("answers", [True, False])
async def test_an_odd_witness_is_that_order_s_failure_not_the_account_s(
    ccnow: tuple[CCNowCoordinator, Clock, FakeCCNow],  # noqa: F811
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
