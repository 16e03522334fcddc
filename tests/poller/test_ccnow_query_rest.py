"""While CCNow's queries fail and its pending list answers, the list's polls send no query: the
probe asks once per backoff period, and when a query answers again the account recovers once and
the orders that left the list meanwhile are queried (README, "Isolation")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.schedule import source_backoff_s
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")
LISTED, LEFT = "801-00-0001", ("801-00-0002", "801-00-0003")
POLL_S = 2.0
STEP_S = 0.5  # the clock's step: the due tick runs every step, the list poll every 5 steps


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (poll_interval 2s) over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    path = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra=f'poll_interval = "{POLL_S:.0f}s"')
    config = load_config(path)
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            yield Coordinators.build(config, writer, session, Gates()).ccnow["default"], clock
    finally:
        await store.close()


def queried(fake: FakeCCNow) -> list[list[str]]:
    """Return the order ids of every post that queried orders (not the pending list)."""
    posts = [r.form for r in fake.requests if "x_orderid_1" in r.form]
    return [[v for k, v in form.items() if k.startswith("x_orderid_")] for form in posts]


async def source_kinds(coordinator: CCNowCoordinator) -> list[str]:
    return [e.type for e in await coordinator.store.events.history() if e.order_id is None]


async def left_the_list_in_maintenance(
    coordinator: CCNowCoordinator, clock: Clock, fake: FakeCCNow
) -> None:
    """Every order stored `pending`, then the LEFT orders leave the list while every query
    fails, and the first poll's query of them fails the account."""
    fake.orders = {i: "pending" for i in (LISTED, *LEFT)}
    await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in fake.orders], 0)
    await coordinator.full_pass(via="catch-up")
    fake.orders.update({i: "mark_shipped" for i in LEFT})
    fake.queries = MAINTENANCE
    clock.now += POLL_S
    await coordinator.tick_pending_list()
    assert sorted(queried(fake)[-1]) == list(LEFT)
    assert await source_kinds(coordinator) == ["source.failed"]


async def test_list_polls_send_no_query_while_the_queries_fail_and_the_probe_backs_off(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await left_the_list_in_maintenance(coordinator, clock, fake_ccnow)
    posts = [clock.now]  # when a query was sent
    lists = len(fake_ccnow.requests) - len(queried(fake_ccnow))

    for step in range(1, int(80 / STEP_S) + 1):  # 80 s: a list poll every 2.5 s, a tick each step
        clock.now += STEP_S
        before = len(queried(fake_ccnow))
        if step % 5 == 0:
            await coordinator.tick_pending_list()
        await coordinator.tick_due()
        if len(queried(fake_ccnow)) > before:
            posts.append(clock.now)

    # The list was read on every poll; queries went out only when the backoff had run out.
    assert len(fake_ccnow.requests) - len(queried(fake_ccnow)) - lists == 32
    # Each one the probe's, a backoff period after the one before: 2 s, doubling per failure.
    assert [at - posts[0] for at in posts] == [0, 2, 6, 14, 30, 62]
    state = await coordinator.store.sources.state("ccnow", "default")
    assert state.failure_streak == 6
    assert source_backoff_s(state.failure_streak, POLL_S) == 64
    assert await source_kinds(coordinator) == ["source.failed"]

    fake_ccnow.queries = None
    clock.now += 3600.0
    asked = len(queried(fake_ccnow))
    await coordinator.tick_due()  # the probe answers: the account recovers, once
    assert len(queried(fake_ccnow)) == asked + 1
    assert await source_kinds(coordinator) == ["source.failed", "source.recovered"]
    clock.now += POLL_S
    await coordinator.tick_pending_list()  # and the next poll asks about the orders that left
    assert set(LEFT) <= {i for post in queried(fake_ccnow)[asked:] for i in post}
    keys = [OrderKey("ccnow", "default", i) for i in LEFT]
    assert {s.status for s in (await coordinator.store.orders.load(keys)).values()} == {
        "mark_shipped"
    }
    assert await source_kinds(coordinator) == ["source.failed", "source.recovered"]


async def test_a_notifications_list_poll_sends_no_query_while_the_queries_rest(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await left_the_list_in_maintenance(coordinator, clock, fake_ccnow)
    asked = len(queried(fake_ccnow))
    report = await coordinator.notified([])
    assert report.checked == 1 and not report.failed_sources
    assert len(queried(fake_ccnow)) == asked


# --- a probe that CCNow answers about the order itself -------------------------------------------

TROUBLED = "999-99-9999"  # the open order due soonest, the one the probe asks first
LISTED_TWO = ("111-11-1111", "222-22-2222")


async def queries_fail_after_a_catch_up(
    coordinator: CCNowCoordinator, clock: Clock, fake: FakeCCNow
) -> None:
    """TROUBLED found `processing` and due soonest, LISTED_TWO on the list; then a catch-up
    whose query gets HTTP 500 fails the account."""
    fake.orders = {i: "pending" for i in LISTED_TWO}
    fake.replies_for = {TROUBLED: Reply(200, f"{TROUBLED} processing\n")}
    await coordinator.store.orders.track("ccnow", "default", [(TROUBLED, None)], clock.now)
    await coordinator.full_pass(via="catch-up")
    clock.now += 130.0  # the list's orders, unchanged, are put off; TROUBLED is due
    await coordinator.tick_pending_list()
    fake.replies_for = {}
    fake.queries = Reply(500, "oops")
    await coordinator.full_pass(via="catch-up")
    assert await source_kinds(coordinator) == ["source.failed"]


@pytest.mark.parametrize(
    "answer",
    [
        "error_message order lookup failed, try again later",  # its own error line
        "error_message unknown order",  # not found, found before: unconfirmed while failing
        None,  # no line for it: says nothing, the backoff holds and the next probe asks another
    ],
)
async def test_a_probe_answered_about_the_order_alone_ends_the_query_outage(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, answer: str | None
) -> None:
    coordinator, clock = ccnow
    await queries_fail_after_a_catch_up(coordinator, clock, fake_ccnow)
    # CCNow answers again: the list is empty, the two that left it are completed, and the
    # troubled order answers its own failure.
    fake_ccnow.queries = None
    fake_ccnow.orders = dict.fromkeys(LISTED_TWO, "completed")
    if answer is None:
        fake_ccnow.omit = {TROUBLED}
    elif "unknown" not in answer:  # else the fake's answer for an order it does not have
        fake_ccnow.orders[TROUBLED] = answer
    asked = len(queried(fake_ccnow))

    for step in range(1, 71):  # 70 s: a list poll every 2 s, a due tick every 5 s
        clock.now += 1.0
        if step % 2 == 0:
            await coordinator.tick_pending_list()
        if step % 5 == 0:
            await coordinator.tick_due()

    assert await source_kinds(coordinator) == ["source.failed", "source.recovered"]
    keys = [OrderKey("ccnow", "default", i) for i in LISTED_TWO]
    assert {s.status for s in (await coordinator.store.orders.load(keys)).values()} == {"completed"}
    posts = queried(fake_ccnow)[asked:]
    # Left out, it is asked again alone in the same pass (brief n53): two posts a check.
    assert sum(TROUBLED in post for post in posts) <= (2 if answer is not None else 4)
    assert not (await coordinator.store.sources.state("ccnow", "default")).failing


ERRORING = ("901-00-0001", "901-00-0002")


async def test_a_probe_answered_by_an_error_line_does_not_end_an_outage_of_error_lines(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = dict.fromkeys(ERRORING, "processing")
    await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in ERRORING], 0)
    assert (await coordinator.full_pass(via="catch-up")).ok
    fake_ccnow.order_errors = set(ERRORING)  # every order answers an error line of its own
    assert not (await coordinator.full_pass(via="catch-up")).ok
    assert await source_kinds(coordinator) == ["source.failed"]

    # The probe's one order answers its error line too: that proves nothing new. Before, the
    # account recovered at the probe and failed again at the next catch-up, over and over.
    asked = len(queried(fake_ccnow))
    for _ in range(120):
        clock.now += 1.0
        await coordinator.tick_due()
    assert len(queried(fake_ccnow)) > asked  # the probe asked
    assert not (await coordinator.full_pass(via="catch-up")).ok
    assert await source_kinds(coordinator) == ["source.failed"]

    fake_ccnow.order_errors = {ERRORING[1]}  # one order answering is the account answering
    await coordinator.full_pass(via="catch-up")
    assert await source_kinds(coordinator) == ["source.failed", "source.recovered"]
