"""Invariant 7 for CCNow's answer lines: a per-order error is not "not found" unless it says
so, extra columns after a documented status word are not a new status, and a maintenance text
naming the login server is no refused credential."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import Config, load_config
from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.ccnow_answer import OrderLine, parse_answer
from reconciler.sources.errors import AuthenticationFailed, SourceError, SourceUnavailable
from reconciler.store import Store
from tests.conftest import call_cli, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")
LISTED, QUERIED = "801-00-0001", "801-00-0002"
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


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
            yield Coordinators.build(config, writer, session).ccnow["default"], clock
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
