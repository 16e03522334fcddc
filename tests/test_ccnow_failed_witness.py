"""A CCNow witness that fails (poller/witnesses.py) is remembered, as a CCV one is: its query
is written nowhere, so storage still named it answered, and it was asked again at each turn of
the rotation while its own check was not due; two such asked together failed the account. It
is a witness again once a check of its own answers."""

from __future__ import annotations

from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.witnesses import ROTATION
from tests.account_ticks import account_events
from tests.conftest import Clock
from tests.fake_providers import FakeCCNow, Reply
from tests.test_witnesses_take_turns import CCNOW_IDS, ccnow, posts_naming  # noqa: F401

HTTP_500 = Reply(500, "Internal Server Error")


async def test_ccnow_a_witness_that_failed_waits_for_its_own_check_to_answer(
    ccnow: tuple[CCNowCoordinator, Clock, FakeCCNow],  # noqa: F811
) -> None:
    coordinator, clock, fake = ccnow
    broken, due = CCNOW_IDS[0], CCNOW_IDS[5]
    fake.replies_for = {i: HTTP_500 for i in (broken, due)}
    for _ in range(ROTATION + 5):  # past a whole turn of the rotation
        clock.now += 60
        await coordinator.check([due], via="poll")
    assert await account_events(coordinator) == []
    # The catch-up's post, then once as a witness (its post and the retry), not at every turn.
    assert posts_naming(fake, broken) == 1 + 2
    fake.replies_for = {due: HTTP_500}
    clock.now += 60
    await coordinator.check([broken], via="poll")  # its own check answers
    for _ in range(ROTATION + 1):
        clock.now += 60
        await coordinator.check([due], via="poll")
    assert posts_naming(fake, broken) > 1 + 2 + 1  # a witness again, in its turn
    assert await account_events(coordinator) == []
