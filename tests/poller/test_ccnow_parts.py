"""Invariant 7 for CCNow's parts: the pending list and the query batches each answer for
themselves. The list answering does not clear failing queries, one batch failing does not fail
the account, a per-order error is not "not found" unless it says so, extra columns after a
documented status word are not a new status, and a maintenance text naming the login server is
no refused credential."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import Config, load_config
from reconciler.model import OrderKey, Outcome
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_answer import OrderLine, parse_answer
from reconciler.sources.errors import AuthenticationFailed, SourceError, SourceUnavailable
from reconciler.sources.http import Gates, RequestFailed
from reconciler.store import Store
from tests.conftest import Clock, call_cli, cli_env, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply, ccnow_config

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")
LISTED, QUERIED = "801-00-0001", "801-00-0002"
HOUR = 3600.0


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account over the real client and the loopback fake, on a clock of its own."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config: Config = load_config(write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra=""))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            yield Coordinators.build(config, writer, session, Gates()).ccnow["default"], clock
    finally:
        await store.close()


async def source_kinds(coordinator: CCNowCoordinator) -> list[str]:
    history = await coordinator.store.events.history()
    return [e.type for e in history if e.order_id is None]


async def order_kinds(coordinator: CCNowCoordinator) -> list[tuple[str, str | None]]:
    history = await coordinator.store.events.history()
    return [(e.type, e.order_id) for e in history if e.order_id is not None]


async def track(coordinator: CCNowCoordinator, clock: Clock, *ids: str) -> None:
    await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in ids], clock.now)


# --- 1: the pending list answering does not clear failing queries ------------------------------


async def test_queries_in_maintenance_while_the_list_answers_fail_the_account_once(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {LISTED: "pending"}
    fake_ccnow.queries = MAINTENANCE
    await track(coordinator, clock, QUERIED)
    await coordinator.full_pass(via="catch-up")
    assert await source_kinds(coordinator) == ["source.failed"]

    for _ in range(6):  # poll after poll: the list answers, the due query does not
        clock.now += HOUR
        assert not (await coordinator.tick_pending_list())[0][1].failed_sources
        await coordinator.tick_due()
    assert await source_kinds(coordinator) == ["source.failed"]
    assert (await coordinator.store.sources.state("ccnow", "default")).failing

    fake_ccnow.queries = None
    fake_ccnow.orders[QUERIED] = "processing"
    clock.now += HOUR
    await coordinator.tick_pending_list()
    assert await source_kinds(coordinator) == ["source.failed"]  # the list says nothing of it
    await coordinator.tick_due()
    assert await source_kinds(coordinator) == ["source.failed", "source.recovered"]


async def test_failing_queries_are_probed_when_the_list_holds_every_open_order(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    # Each list poll puts the next check of the orders on it off: the probe asks one anyway.
    coordinator, clock = ccnow
    fake_ccnow.orders = {LISTED: "pending"}
    fake_ccnow.queries = MAINTENANCE
    await track(coordinator, clock, LISTED, QUERIED)
    await coordinator.full_pass(via="catch-up")
    await coordinator.store.orders.untrack("ccnow", "default", [QUERIED])
    fake_ccnow.queries = None
    clock.now += HOUR
    await coordinator.tick_pending_list()
    asked = len(fake_ccnow.requests)
    await coordinator.tick_due()
    assert [r.form.get("x_orderid_1") for r in fake_ccnow.requests[asked:]] == [LISTED]
    assert await source_kinds(coordinator) == ["source.failed", "source.recovered"]


# --- 2: a per-order error is "not found" only when it says so ------------------------------------


@pytest.mark.parametrize(
    ("text", "not_found"),
    [
        ("order not found", True),
        ("invalid order id", True),
        ("unknown order", True),
        ("no such order", True),
        ("order 901000001 does not exist", True),
        ("order lookup failed: unknown error, try again later", False),
        ("database busy, try again later", False),
        ("unknown error", False),
        ("invalid order action", False),
        ("order not found in cache, retry later", False),
        ("unknown order state, try again", False),
        ("no such order table", False),
        ("Order ID not found.", True),
        ("unknown order: 901-00-0001", True),
        ("order_not_found", True),
        ("Unknown order - please check", True),
        ("order does not exist - deleted", True),
        ("Order not found for this client", True),
        ("No such order exists", True),
    ],
)
def test_only_an_error_saying_the_order_does_not_exist_is_not_found(
    text: str, not_found: bool
) -> None:
    (line,) = parse_answer(f"901-00-0001 error_message {text}\n").orders
    assert line == OrderLine("901-00-0001", None, f"error_message {text}", not_found=not_found)


async def test_a_temporary_order_error_is_a_failed_check_and_no_event(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    order = "901-00-0001"
    await track(coordinator, clock, order, QUERIED)
    fake_ccnow.orders = {QUERIED: "processing"}
    fake_ccnow.extra_lines = [
        f"{order} error_message order lookup failed: unknown error, try again later"
    ]
    fake_ccnow.omit = {order}
    report = await coordinator.check([order, QUERIED], via="poll")
    assert report.failed == 1 and not report.failed_sources
    assert await order_kinds(coordinator) == [("order.discovered", QUERIED)]
    key = OrderKey("ccnow", "default", order)
    state = (await coordinator.store.orders.load([key]))[key]
    assert not state.not_found and state.failure_streak == 1


# --- 3: columns after a documented status word ---------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("333-33-3333 mark_shipped 2026-11-30", "mark_shipped"),
        ("333-33-3333\tpending\tUSD", "pending"),
        ("333-33-3333 pending 2026-11-30 12.50", "pending"),
        ("333-33-3333 completed 2026-11-30T12:00:00Z", "completed"),
        ("333-33-3333 pending $12.50", "pending"),
        ("333-33-3333 pending 12.50 usd", "pending"),
        ("333-33-3333 mark_shipped UPS 1Z999AA10123456784", "mark_shipped"),
        ("333-33-3333 pending review", "pending review"),  # words: perhaps a new status
        ("333-33-3333 on hold", "on hold"),  # an unknown word keeps the rule: the status whole
        ("333-33-3333 awaiting stock 2026", "awaiting stock 2026"),
        ("333-33-3333 awaiting 12.50", None),  # ... and one that is no word fails that order
    ],
)
def test_a_documented_status_word_is_the_status_whatever_follows(
    line: str, status: str | None
) -> None:
    (order,) = parse_answer(line + "\n").orders
    assert order.status == status


def test_extra_columns_are_said_once_per_answer(caplog: pytest.LogCaptureFixture) -> None:
    body = "333-33-3333 mark_shipped 2026-11-30\n222-22-2222\tpending\tUSD\n444-44-4444 pending\n"
    with caplog.at_level(logging.DEBUG, logger="reconciler.sources.ccnow"):
        parse_answer(body)
    lines = [r for r in caplog.records if r.getMessage() == "ccnow.extra_columns_ignored"]
    assert len(lines) == 1
    assert vars(lines[0])["fields"] == {"count": 2, "order_ids": ["333-33-3333", "222-22-2222"]}


async def test_a_dated_status_changes_nothing_on_the_next_poll(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    shipped, listed = "333-33-3333", "222-22-2222"
    await track(coordinator, clock, shipped)
    fake_ccnow.orders = {shipped: "mark_shipped"}
    await coordinator.full_pass(via="catch-up")
    fake_ccnow.orders = {shipped: "mark_shipped 2026-11-30", listed: "pending\tUSD"}
    fake_ccnow.pending_statuses = {"pending\tUSD"}
    clock.now += HOUR
    await coordinator.full_pass(via="catch-up")
    data = [json.loads(e.body)["data"] for e in await coordinator.store.events.history()]
    assert [(d["order_id"], d["status"]) for d in data] == [
        (shipped, "mark_shipped"),
        (listed, "pending"),
    ]


# --- 4: one batch failing fails its own orders ----------------------------------------------------


def ids(count: int) -> list[str]:
    return [f"500-00-{n:04d}" for n in range(1, count + 1)]


class Collector:
    def __init__(self) -> None:
        self.seen: dict[str, tuple[Outcome, str | None]] = {}

    async def __call__(self, obs: Any) -> None:
        self.seen[obs.key.order_id] = (obs.outcome, obs.status or obs.reason)


@pytest.mark.parametrize(
    ("reply", "reason", "failing"),
    [
        # A 500 to any post naming the order: halved, it fails alone (brief n72).
        (Reply(500, "oops"), "http_500", 1),
        (Reply(503, "down"), "http_503", 2),
        (Reply(429, "slow down", headers={"Retry-After": "0"}), "http_429", 2),
        (Reply(200, "<html><body>Gateway</body></html>\n", "text/html"), "protocol", 2),
    ],
)
async def test_one_failing_batch_fails_its_own_orders_and_the_pass_goes_on(
    fake_ccnow: FakeCCNow, reply: Reply, reason: str, failing: int
) -> None:
    orders = ids(8)
    fake_ccnow.orders = dict.fromkeys(orders, "processing")
    fake_ccnow.replies_for = {orders[4]: reply}  # the third of four batches
    emit = Collector()
    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake_ccnow.url, batch_size=2), session)
        await client.query(orders, emit)
    failed = {i: (Outcome.FAILED, reason) for i in orders[4 : 4 + failing]}
    answered = {i: (Outcome.OK, "processing") for i in orders if i not in failed}
    assert emit.seen == {**answered, **failed}


async def test_every_batch_failing_is_the_accounts_failure_and_fails_no_order(
    fake_ccnow: FakeCCNow,
) -> None:
    fake_ccnow.queries = Reply(500, "oops")
    emit = Collector()
    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake_ccnow.url, batch_size=2), session)
        with pytest.raises(RequestFailed, match="http 500"):
            await client.query(ids(6), emit)
    assert emit.seen == {}


async def test_a_run_of_failing_batches_opens_the_breaker(fake_ccnow: FakeCCNow) -> None:
    orders = ids(40)
    fake_ccnow.orders = dict.fromkeys(orders[:2], "processing")
    fake_ccnow.replies_for = dict.fromkeys(orders[2:], Reply(500, "oops"))
    emit = Collector()
    async with aiohttp.ClientSession() as session:
        config = ccnow_config(fake_ccnow.url, batch_size=2, concurrency=1)
        with pytest.raises(SourceUnavailable, match="3 batches failed in a row"):
            await CCNowClient(config, session).query(orders, emit)
    assert len(fake_ccnow.requests) < 20 * 2  # not every batch with its retries
    # Before the breaker opened, the failed batches were their orders' own failures.
    assert emit.seen[orders[0]] == (Outcome.OK, "processing")
    assert emit.seen[orders[2]] == (Outcome.FAILED, "http_500")


async def test_a_maintenance_answer_to_one_batch_still_fails_the_account(
    fake_ccnow: FakeCCNow,
) -> None:
    orders = ids(4)
    fake_ccnow.orders = dict.fromkeys(orders, "processing")
    fake_ccnow.replies_for = {orders[2]: MAINTENANCE}
    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake_ccnow.url, batch_size=2, concurrency=1), session)
        with pytest.raises(SourceUnavailable, match="maintenance"):
            await client.query(orders, Collector())


def done_line(stderr: str) -> dict[str, Any]:
    (line,) = [line for line in stderr.splitlines() if "catch-up.done" in line]
    done: dict[str, Any] = json.loads(line)
    return done


async def test_a_catch_up_with_one_failing_batch_counts_its_orders_and_fails_no_account(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    orders = ids(8)
    fake_ccnow.orders = dict.fromkeys(orders, "processing")
    fake_ccnow.replies_for = {orders[2]: Reply(503, "down")}  # no 500: it would fail alone
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra="concurrency = 1")
    cfg.write_text(cfg.read_text().replace("batch_size = 25", "batch_size = 2"))
    assert (await call_cli("--config", cfg, "track", "ccnow", *orders)).code == 0
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 75  # a check failed
    assert done_line(result.stderr)["failed"] == 2 and "source.failed" not in result.stderr
    status = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    (account,) = status["accounts"]
    assert account["check_failed"] == 2 and account["health"] == "ok"


async def test_a_catch_up_stopped_by_maintenance_counts_the_orders_left_unanswered(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    orders = ids(10)
    fake_ccnow.queries = MAINTENANCE
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", *orders)).code == 0
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 75
    assert done_line(result.stderr)["failed"] == 10


@pytest.mark.parametrize("failure", ["maintenance", "wrong password"])
async def test_a_catch_up_whose_pending_list_fails_counts_every_open_order(
    tmp_path: Path, fake_ccnow: FakeCCNow, failure: str
) -> None:
    # The open orders were read only once the list had answered: `"checked":0,"failed":0`.
    orders = ids(3)
    env = cli_env()
    if failure == "maintenance":
        fake_ccnow.always = Reply(200, "error_message system down for maintenance\n")
    else:
        env = cli_env(RECONCILER_CCNOW_PASSWORD="wrong-password-123")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", *orders)).code == 0
    result = await call_cli("--config", cfg, "catch-up", env=env)
    assert result.code == 75
    done = done_line(result.stderr)
    assert (done["checked"], done["failed"]) == (3, 3)


# --- 5: a maintenance text naming the login server is no refused credential ----------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("system down for maintenance (login server upgrade)", SourceUnavailable),
        ("login server offline", SourceUnavailable),
        ("invalid login", AuthenticationFailed),
        ("wrong password", AuthenticationFailed),
    ],
)
def test_only_a_credential_message_is_a_refused_login(text: str, error: type[SourceError]) -> None:
    with pytest.raises(SourceError) as caught:
        parse_answer(f"error_message {text}\n")
    assert type(caught.value) is error


async def test_check_online_says_unavailable_for_maintenance_of_the_login_server(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.always = Reply(
        200, "error_message system down for maintenance (login server upgrade)\n"
    )
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await call_cli("--config", cfg, "check", "--online")
    assert result.code == 75, result.stderr
    assert "ccnow/default: unavailable" in result.stderr
