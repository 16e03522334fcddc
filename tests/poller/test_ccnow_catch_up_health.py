"""A CCNow catch-up and its account's health: a catch-up whose open orders are all on the pending
list still asks one query of an account whose queries fail, so that its exit and `status`
agree; a pending list that says both `message no_pending_orders` and order lines is no list;
batches whose answers name none of the orders asked open the circuit breaker (README "The
circuit breaker", "The catch-up timer")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.model import OrderKey, SourceState
from reconciler.passes.report import PassReport
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store.event_pages import StoredEvent
from tests.conftest import Clock, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

ONE, TWO = "912-00-0001", "912-00-0002"
NOTHING_PENDING = "message no_pending_orders"


@dataclass
class CaughtUp:
    report: PassReport
    state: SourceState
    history: list[StoredEvent]


@contextlib.asynccontextmanager
async def account(
    tmp_path: Path, fake: FakeCCNow, ccnow_extra: str = ""
) -> AsyncIterator[CCNowCoordinator]:
    """A fresh coordinator over the same store, as each `reconciler catch-up` process has."""
    path = write_config(tmp_path, ccnow=fake, ccnow_extra=ccnow_extra, retry_backoff="0s")
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(load_config(path), store, clock=Clock())
            yield Coordinators.build(load_config(path), writer, session, Gates()).ccnow["default"]
    finally:
        await store.close()


async def catch_up(tmp_path: Path, fake: FakeCCNow, ccnow_extra: str = "") -> CaughtUp:
    async with account(tmp_path, fake, ccnow_extra) as coordinator:
        report = await coordinator.full_pass(via="catch-up")
        state = await coordinator.store.sources.state("ccnow", "default")
        history = list(await coordinator.store.events.history())
    return CaughtUp(report, state, history)


def query_posts(fake: FakeCCNow) -> list[list[str]]:
    """The order ids of every post naming orders (not the pending list), a list a post."""
    posts = [r.form for r in fake.requests if "x_orderid_1" in r.form]
    return [[v for k, v in form.items() if k.startswith("x_orderid_")] for form in posts]


def kinds(history: list[StoredEvent]) -> list[str]:
    return [str(e.type) for e in history]


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)


async def fail_the_queries(tmp_path: Path, fake: FakeCCNow) -> None:
    """Two followed orders; then a catch-up whose list is empty and whose queries answer no
    line of theirs: every check failed (missing), one `source.failed`."""
    fake.orders = {ONE: "pending", TWO: "pending"}
    assert not (await catch_up(tmp_path, fake)).report.failed_sources
    fake.orders = {}
    fake.queries = Reply(200, f"{NOTHING_PENDING}\n")
    failed = await catch_up(tmp_path, fake)
    assert failed.state.failing_parts == {"checks"}
    assert "every check failed (missing)" in str(failed.state.last_error)
    assert failed.report.failed_sources
    assert kinds(failed.history).count("source.failed") == 1


async def test_a_catch_up_of_listed_orders_asks_one_query_and_recovers(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    await fail_the_queries(tmp_path, fake_ccnow)
    fake_ccnow.orders = {ONE: "pending", TWO: "pending"}  # both on the list, queries answer
    fake_ccnow.queries = None
    fake_ccnow.requests.clear()
    done = await catch_up(tmp_path, fake_ccnow)
    # The list, and one query of one order: the daemon's probe.
    assert len(fake_ccnow.requests) == 2
    assert [len(post) for post in query_posts(fake_ccnow)] == [1]
    assert not done.state.failing
    assert not done.report.failed_sources
    assert kinds(done.history).count("source.recovered") == 1

    fake_ccnow.requests.clear()
    again = await catch_up(tmp_path, fake_ccnow)  # healthy: the list alone, no probe
    assert query_posts(fake_ccnow) == []
    assert not again.state.failing and not again.report.failed_sources
    assert kinds(again.history).count("source.recovered") == 1


async def test_a_catch_up_of_listed_orders_still_failing_says_so(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    await fail_the_queries(tmp_path, fake_ccnow)
    fake_ccnow.orders = {ONE: "pending", TWO: "pending"}  # the list answers, queries do not
    for _ in range(2):
        fake_ccnow.requests.clear()
        done = await catch_up(tmp_path, fake_ccnow)
        assert [len(post) for post in query_posts(fake_ccnow)] == [1]
        assert done.state.failing_parts == {"checks"}
        # Its exit (75: a failing source) and `status` agree: both say failing.
        assert set(done.report.failed_sources) == {"ccnow/default"}
        assert kinds(done.history).count("source.failed") == 1
        assert "source.recovered" not in kinds(done.history)


@pytest.mark.parametrize("message_first", [True, False])
async def test_a_pending_list_naming_orders_and_no_pending_orders_is_malformed(
    tmp_path: Path, fake_ccnow: FakeCCNow, message_first: bool
) -> None:
    fake_ccnow.orders = {ONE: "pending", TWO: "pending"}
    first = await catch_up(tmp_path, fake_ccnow)
    assert not first.report.failed_sources
    if message_first:  # `message no_pending_orders`, then a line of ONE's
        fake_ccnow.orders = {ONE: "completed", TWO: "completed"}
        fake_ccnow.extra_lines = [f"{ONE} pending"]
    else:  # ONE's line, then the message
        fake_ccnow.orders = {ONE: "pending", TWO: "completed"}
        fake_ccnow.extra_lines = [NOTHING_PENDING]
    fake_ccnow.requests.clear()
    done = await catch_up(tmp_path, fake_ccnow)
    assert query_posts(fake_ccnow) == []  # nothing was taken as having left the list
    assert done.state.failing_parts == {"pending_list"}
    assert "no_pending_orders" in str(done.state.last_error)
    assert "no_pending_orders" in done.report.failed_sources["ccnow/default"]
    assert [e.type for e in done.history[len(first.history) :] if e.order_id] == []
    async with account(tmp_path, fake_ccnow) as coordinator:
        keys = [OrderKey("ccnow", "default", i) for i in (ONE, TWO)]
        states = await coordinator.store.orders.load(keys)
    assert {k.order_id: s.status for k, s in states.items()} == {ONE: "pending", TWO: "pending"}


async def test_batches_answering_no_line_of_their_orders_open_the_breaker(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    ids = [f"913-00-{n:04d}" for n in range(1, 301)]  # 12 batches of 25
    fake_ccnow.orders = dict.fromkeys(ids, "pending")
    one_at_a_time = "concurrency = 1\n"  # the breaker's run: 3 batches
    assert not (await catch_up(tmp_path, fake_ccnow, one_at_a_time)).report.failed_sources
    fake_ccnow.orders = {}  # the list: no_pending_orders; every query: no line of its orders
    fake_ccnow.queries = Reply(200, f"{NOTHING_PENDING}\n")
    fake_ccnow.requests.clear()
    done = await catch_up(tmp_path, fake_ccnow, one_at_a_time)
    posts = query_posts(fake_ccnow)
    whole = [post for post in posts if len(post) == 25]
    # Three batches, each with the posts asking its orders again (its others, the first
    # batch's halves too); the other nine wait for the next pass.
    assert len(whole) == 3, [len(post) for post in posts]
    assert len(posts) <= 3 * 2 + 2
    assert done.state.failing_parts == {"checks"}
    reason = done.report.failed_sources["ccnow/default"]
    assert "3 batches failed in a row" in reason and "missing" in reason, reason
    assert done.report.checked == 300 and done.report.failed == 300
    assert kinds(done.history).count("source.failed") == 1
