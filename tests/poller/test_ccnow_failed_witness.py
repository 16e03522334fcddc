"""A CCNow witness that fails (poller/witnesses.py) is remembered, as a CCV one is: its query
is written nowhere, so storage still named it answered, and it was asked again at each turn of
the rotation while its own check was not due; two such asked together failed the account. It
is a witness again once a query of its own answers, not a line of the pending list."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.model import OrderKey, OrderState
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.witnesses import MAX_FAILED, ROTATION, Witnesses
from tests.account_ticks import account_events
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.poller.test_witnesses_take_turns import CCNOW_IDS, ccnow, posts_naming  # noqa: F401

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


async def test_ccnow_a_failed_witness_on_the_pending_list_waits_for_its_own_query(
    ccnow: tuple[CCNowCoordinator, Clock, FakeCCNow],  # noqa: F811
) -> None:
    # Each poll writes the list's lines as checks (last_checked now): judged by storage, the
    # broken order's failure was forgotten at the next poll, and it was asked at each turn.
    coordinator, clock, fake = ccnow
    fake.pending_statuses = {"processing"}
    broken, due = CCNOW_IDS[0], CCNOW_IDS[5]
    fake.replies_for = {i: HTTP_500 for i in (broken, due)}
    for _ in range(60):
        clock.now += 60
        await coordinator.pending_list_pass(via="poll")
        await coordinator.check([due], via="poll")
    assert await account_events(coordinator) == []
    assert posts_naming(fake, broken) == 1 + 2  # the catch-up's post, then once as a witness


async def test_ccnow_witnesses_that_all_failed_are_asked_again_not_the_pending_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With every witness remembered as failed, none was asked: a query of one order alone read
    # the pending list, which answers while every query fails, and the outage failed no account.
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    first, second, due = ids = CCNOW_IDS[:3]
    async with FakeCCNow() as fake:
        fake.orders = dict.fromkeys(ids, "processing")
        async with ccnow_coordinator(tmp_path, fake, 30.0) as (coordinator, clock):
            await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in ids], 0)
            await coordinator.full_pass(via="catch-up")
            fake.pending_statuses = {"processing"}
            outage = {i: HTTP_500 for i in ids}  # every query; the pending list answers
            fake.replies_for = outage
            clock.now += 60
            await coordinator.check([due], via="poll")  # both witnesses fail: so does the account
            assert await account_events(coordinator) == ["source.failed"]
            fake.replies_for = {}
            clock.now += 60
            await coordinator.check([due], via="notification")  # it answers: recovered
            assert await account_events(coordinator) == ["source.failed", "source.recovered"]
            for _ in range(3):  # polls write the list's lines; the witnesses' queries not asked
                clock.now += 60
                await coordinator.pending_list_pass(via="poll")
            fake.replies_for = outage
            clock.now += 60
            await coordinator.check([due], via="poll")
            events = await account_events(coordinator)
            assert events == ["source.failed", "source.recovered", "source.failed"]
            assert posts_naming(fake, first) == posts_naming(fake, second) == 1 + 2 + 2


async def test_witnesses_remembered_as_failed_are_forgotten_oldest_first() -> None:
    # Bounded as the witnesses that answered last, not cleared all at once at the bound: then
    # every broken order on the pending list was a witness again, asked at each turn.
    ids = [f"{n:03d}-00-0000" for n in range(MAX_FAILED + 3)]
    states = [OrderState(OrderKey("ccnow", "default", i), "processing") for i in ids]

    async def answered(limit: int) -> list[OrderState]:
        return states[:limit]

    witnesses = Witnesses(answered)
    for order_id in ids[: MAX_FAILED + 1]:
        witnesses.failed(order_id)
    # The oldest is forgotten; the others wait for a query of their own.
    assert await witnesses.choose(()) == [ids[0], ids[-2]]
    witnesses.asked(ids[0])
    witnesses.asked(ids[-2])
    witnesses.query_answered(ids[1])
    assert await witnesses.choose(()) == [ids[1], ids[-1]]
