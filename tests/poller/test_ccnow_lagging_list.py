"""CCNow's pending list may lag behind its queries and actions' answers: a list line `pending`
for an order whose snapshot holds a status past pending (a query's, a ship's answer) is no newer
news by itself. The order is queried, in the same pass, and that answer decides; where it says
pending after a ship that succeeded, the snapshot follows it and one `order.action_unconfirmed`
(warning) says the ship did not take. Against a fake CCNow on 127.0.0.1, passes of the daemon's
coordinator over a real store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.runtime import Runtime
from reconciler.writes.ccnow_actions import build
from tests.fake_providers import FakeCCNow
from tests.writes.test_ccnow_overlapping_reads import ORDER, history, parts, snapshot_status
from tests.writes.test_stale_answers import queries

SHIPPED = [
    ("order.status_changed", "pending", "mark_shipped", "action"),
    ("order.action_succeeded", "pending", "mark_shipped", "action"),
]


async def passes(rt: Runtime, rounds: int = 3) -> None:
    """Polls of the pending list and catch-ups, in turn, each answered."""
    coordinator = rt.coordinators.ccnow["default"]
    for _ in range(rounds):
        [poll] = await coordinator.tick_pending_list()
        assert poll.report.ok, poll.report.summary()
        assert (await coordinator.full_pass(via="catch-up")).ok


async def due_now(rt: Runtime, key: OrderKey) -> None:
    """Make the order's planned check due, as the time it was planned for coming would."""
    async with rt.store.transaction():
        # Asked at any time: the window of answers that keep it from coming due is empty.
        await rt.store.orders.bring_due(
            key.source, key.account, [key.order_id], time.time(), unless_asked_within=(1.0, 0.0)
        )


def queried(fake: FakeCCNow) -> int:
    """How many posts asked ORDER's status."""
    return sum(1 for s in fake.requests if queries(ORDER, s))


async def test_a_list_lagging_behind_a_ship_flips_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CCNow ran the ship and answers its queries `mark_shipped`, but its pending list still
    # names the order `pending`. The list's line was taken for newer news: `mark_shipped ->
    # pending` at the next catch-up, and the snapshot stayed `pending` (catch-ups query no order
    # on the list); a daemon polling every second flipped it back and forth.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert (row.state, fake_ccnow.orders[ORDER]) == ("succeeded", "mark_shipped")
        fake_ccnow.list_lags = {ORDER: "pending"}
        before = queried(fake_ccnow)
        await passes(rt)
        assert await snapshot_status(rt) == "mark_shipped"
        assert await history(rt) == SHIPPED
        # Each catch-up asked it (they ask every open order), and its answer decided; the polls
        # did not: its own check is not due yet.
        assert queried(fake_ccnow) - before == 3


async def test_a_list_lagging_for_many_polls_asks_the_order_only_when_it_is_due(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A list lagging for hours behind a ship: each poll (every few seconds) queried the order
    # again. Now a poll asks it only once its own check is due, which its answer then plans
    # further out, as any unchanged check's.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))
        fake_ccnow.list_lags = {ORDER: "pending"}
        coordinator = rt.coordinators.ccnow["default"]
        key = OrderKey("ccnow", "default", ORDER)
        planned = (await rt.store.orders.load([key]))[key].next_check_at
        before = queried(fake_ccnow)
        for _ in range(10):
            [poll] = await coordinator.tick_pending_list()
            assert poll.report.ok, poll.report.summary()
        assert queried(fake_ccnow) == before
        assert (await rt.store.orders.load([key]))[key].next_check_at == planned
        # Its check comes due (the time it was planned for has come): the next poll asks it,
        # once, and its answer plans the next check; the polls after it ask nothing.
        await due_now(rt, key)
        for _ in range(5):
            [poll] = await coordinator.tick_pending_list()
            assert poll.report.ok, poll.report.summary()
        assert queried(fake_ccnow) - before == 1
        state = (await rt.store.orders.load([key]))[key]
        assert state.status == "mark_shipped" and state.next_check_at > time.time()
        assert await history(rt) == SHIPPED


async def test_a_list_lagging_behind_a_query_flips_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shipped in CCNow's backroom: a query (a due check) reads `mark_shipped`, the list lags.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, _):
        fake_ccnow.orders[ORDER] = "mark_shipped"
        fake_ccnow.list_lags = {ORDER: "pending"}
        coordinator = rt.coordinators.ccnow["default"]
        assert (await coordinator.check([ORDER], via="poll")).events == 1
        await passes(rt)
        assert await snapshot_status(rt) == "mark_shipped"
        assert await history(rt) == [("order.status_changed", "pending", "mark_shipped", "poll")]
        # The list catches up: the query finds the order completed, raised once.
        fake_ccnow.list_lags = {}
        fake_ccnow.orders[ORDER] = "completed"
        await passes(rt, rounds=2)
        assert (await history(rt))[1:] == [
            ("order.status_changed", "mark_shipped", "completed", "poll")
        ]


async def test_a_ship_that_did_not_take_is_followed_and_said_once(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CCNow answered the ship `mark_shipped` but did not apply it: its list and its queries
    # say `pending`. The command stayed `succeeded`, and the only trace was an info-level
    # `mark_shipped -> pending`. The snapshot follows CCNow, and a warning names the ship.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert row.state == "succeeded"
        fake_ccnow.orders[ORDER] = "pending"
        await passes(rt)
        assert await snapshot_status(rt) == "pending"
        # Read by the first catch-up's query (the polls ask it once its check is due).
        assert await history(rt) == [
            *SHIPPED,
            ("order.status_changed", "mark_shipped", "pending", "catch-up"),
            ("order.action_unconfirmed", "mark_shipped", "pending", "catch-up"),
        ]
        [event] = [e for e in await rt.store.events.history() if "unconfirmed" in e.type]
        assert event.severity == "warning" and event.order_id == ORDER
        data = json.loads(event.body)["data"]
        assert (data["command_id"], data["action"], data["answer"], data["severity"]) == (
            row.id,
            "ship",
            "mark_shipped",
            "warning",
        )
        # Shipped again, and it takes this time: nothing more about the first ship.
        [again] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER], key="2"))).rows
        assert again.id != row.id and again.state == "succeeded"
        fake_ccnow.list_lags = {ORDER: "pending"}
        await passes(rt, rounds=2)
        assert [h[0] for h in await history(rt)][4:] == [t for t, *_ in SHIPPED]


async def test_a_lagging_line_leaves_the_orders_check_as_planned(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A list line written with no query after it (a pass whose queries rest while they fail):
    # the snapshot keeps `mark_shipped`, and the order's query comes when it was planned (made
    # due at once, every poll of a list lagging for hours asked it again).
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))
        key = OrderKey("ccnow", "default", ORDER)
        planned = (await rt.store.orders.load([key]))[key].next_check_at
        now = time.time()
        assert planned > now
        line = Observation(key, Outcome.OK, status="pending", asked=now, listed=True)
        assert await rt.reconciler.apply([line], via="poll", discover=True) == 0
        state = (await rt.store.orders.load([key]))[key]
        assert state.status == "mark_shipped"
        assert state.next_check_at == planned
        assert await history(rt) == SHIPPED


async def test_a_notification_for_an_order_whose_line_lags_asks_it(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CCNow's notification names the order while its list line lags: the line is no answer
    # about it, so the order is queried for the notification, due or not.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))
        fake_ccnow.list_lags = {ORDER: "pending"}
        fake_ccnow.orders[ORDER] = "completed"
        before = queried(fake_ccnow)
        report = await rt.coordinators.ccnow["default"].notified([ORDER])
        assert report.ok, report.summary()
        assert queried(fake_ccnow) - before == 1
        assert await snapshot_status(rt) == "completed"
        assert (await history(rt))[2:] == [
            ("order.status_changed", "mark_shipped", "completed", "notification")
        ]
