"""`order.action_unconfirmed` names a ship or cancel that a read of CCNow contradicts: the
latest one CCNow answered as taken, and only when nothing read since its answer confirmed it
and the read that moves the order back was sent after that answer. A ship that took (a query
read `mark_shipped` after it) is not blamed when CCNow's backroom puts the order back to
`pending` later. Against a fake CCNow on 127.0.0.1, over a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.writes.ccnow_actions import build
from tests.fake_providers import FakeCCNow
from tests.poller.test_ccnow_lagging_list import SHIPPED
from tests.writes.test_ccnow_overlapping_reads import ORDER, history, parts, snapshot_status

KEY = OrderKey("ccnow", "default", ORDER)
UNSHIPPED = ("order.status_changed", "mark_shipped", "pending", "poll")


async def test_a_ship_a_query_confirmed_is_not_blamed_for_a_later_unship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert row.state == "succeeded"
        coordinator = rt.coordinators.ccnow["default"]
        # A due check reads the order back `mark_shipped`: the ship took.
        assert (await coordinator.check([ORDER], via="poll")).failed == 0
        assert await history(rt) == SHIPPED
        # Later CCNow's backroom puts it back to pending: the snapshot follows, and no
        # warning says the ship did not take (it named the ship, which did).
        fake_ccnow.orders[ORDER] = "pending"
        assert (await coordinator.check([ORDER], via="poll")).failed == 0
        assert await snapshot_status(rt) == "pending"
        assert await history(rt) == [*SHIPPED, UNSHIPPED]


async def test_only_the_latest_ship_is_named(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        config = rt.config.ccnow[0]
        [first] = (await sender.take(build(config, "ship", [ORDER]))).rows
        coordinator = rt.coordinators.ccnow["default"]
        assert (await coordinator.check([ORDER], via="poll")).failed == 0  # it took
        fake_ccnow.orders[ORDER] = "pending"  # unshipped in the backroom
        assert (await coordinator.check([ORDER], via="poll")).failed == 0
        # Shipped again: answered as taken, but it did not take.
        [second] = (await sender.take(build(config, "ship", [ORDER], key="2"))).rows
        assert second.state == "succeeded" and second.id != first.id
        fake_ccnow.orders[ORDER] = "pending"
        assert (await coordinator.check([ORDER], via="poll")).failed == 0
        assert await history(rt) == [
            *SHIPPED,
            UNSHIPPED,
            *SHIPPED,
            UNSHIPPED,
            ("order.action_unconfirmed", "mark_shipped", "pending", "poll"),
        ]
        [event] = [e for e in await rt.store.events.history() if "unconfirmed" in e.type]
        assert json.loads(event.body)["data"]["command_id"] == second.id


async def test_a_read_no_newer_than_the_ships_answer_names_no_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read sent no later than the ship's answer was recorded (as it closed) says `pending`:
    # it may be from before CCNow ran the ship, and says nothing of whether it took.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert row.state == "succeeded" and row.closed_at is not None
        line = Observation(KEY, Outcome.OK, status="pending", asked=row.closed_at)
        assert await rt.reconciler.apply([line], via="poll", discover=True) == 1
        assert await history(rt) == [*SHIPPED, UNSHIPPED]
