"""A partial pass whose every check failed asks the account's witnesses (poller/witnesses.py:
open orders whose last check answered a status) whether the account answers, on CCV and on
CCNow alike: one at a time, a second when the first fails (it may have broken since its last
check, its check not due yet), and in turn, not always the first in storage order (those were
asked on every such pass: 137 times in 5 minutes against 13 for the other orders)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.witnesses import ROTATION
from tests.account_ticks import account_events
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, FakeCCV, Reply
from tests.poller.test_ccv_orders_500_together import HTTP_500, IDS, ccv  # noqa: F401

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


async def test_ccnow_an_order_failing_alone_asks_past_a_first_witness_that_broke_since(
    ccnow: tuple[CCNowCoordinator, Clock, FakeCCNow],
) -> None:
    # The first order in storage order broke too, its check not due yet: asked alone, it
    # failed the account with the order due (one source.failed, recovered 90 s later).
    coordinator, clock, fake = ccnow
    first, due = CCNOW_IDS[0], CCNOW_IDS[5]
    fake.replies_for = {i: Reply(500, "Internal Server Error") for i in (first, due)}
    clock.now += 60
    report = await coordinator.check([due], via="poll")
    assert report.failed == 1
    assert await account_events(coordinator) == []
    assert not (await coordinator.store.sources.state("ccnow", "default")).failing
    assert posts_naming(fake, first) > 1 and posts_naming(fake, CCNOW_IDS[1]) == 2


async def test_ccnow_witnesses_take_turns(
    ccnow: tuple[CCNowCoordinator, Clock, FakeCCNow],
) -> None:
    coordinator, clock, fake = ccnow
    due = CCNOW_IDS[5]
    fake.replies_for = {due: Reply(500, "Internal Server Error")}
    for _ in range(6):
        clock.now += 60
        await coordinator.check([due], via="poll")
    assert await account_events(coordinator) == []
    # Six passes, six different witnesses, each asked once beside the catch-up's post.
    witnesses = [i for i in CCNOW_IDS if i != due and posts_naming(fake, i) > 1]
    assert len(witnesses) == 6
    assert all(posts_naming(fake, i) == 2 for i in witnesses)


async def test_ccv_witnesses_take_turns_one_at_a_time(
    ccv: tuple[CCVCoordinator, Clock],  # noqa: F811
    fake_ccv: FakeCCV,
) -> None:
    coordinator, clock = ccv
    failing = [IDS[5], IDS[10]]
    for order_id in failing:
        fake_ccv.replies[order_id] = HTTP_500
    passes = ROTATION + 3
    for _ in range(passes):
        clock.now += 60
        report = await coordinator.check(failing, via="poll")
        assert report.checked == 3  # the witness answered: the second is not asked
    assert await account_events(coordinator) == []
    asked = {i: len(fake_ccv.requests_for(i)) - 1 for i in IDS if i not in failing}
    # Each of the 18 others in turn, then again from the first: no order asked every pass.
    assert sum(asked.values()) == passes
    assert max(asked.values()) == 2 and min(asked.values()) == 1
