"""`order.action_unconfirmed` names a ship or cancel that a read of CCNow contradicts: the
latest one CCNow answered as taken, and only when no read recorded after it closed confirmed
it and the read that moves the order back was sent after that answer (or, recorded before the
close, left the order `pending`: the close names it). A ship that took (a query read
`mark_shipped` after it) is not blamed when CCNow's backroom puts the order back to `pending`
later. Against a fake CCNow on 127.0.0.1, over a real store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.store.commands import Command
from reconciler.writes.ccnow_actions import ActionSender, build
from tests.fake_providers import FakeCCNow
from tests.poller.test_ccnow_lagging_list import SHIPPED
from tests.writes.test_ccnow_overlapping_reads import ORDER, history, parts, snapshot_status

KEY = OrderKey("ccnow", "default", ORDER)
UNSHIPPED = ("order.status_changed", "mark_shipped", "pending", "poll")
UNCONFIRMED = ("order.action_unconfirmed", "mark_shipped", "pending", "poll")


class ReadFirst(ActionSender):
    """An action sender whose close waits for a status read of its order to commit first, as
    a query sent after CCNow's answer came can while the close waits for the writer."""

    read: Any = None  # the read, set by the test

    async def _commit(self, *args: Any, **kwargs: Any) -> list[Command]:
        if self.read is not None:
            await self.read()
        return await super()._commit(*args, **kwargs)


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
            UNCONFIRMED,
        ]
        [event] = [e for e in await rt.store.events.history() if "unconfirmed" in e.type]
        assert json.loads(event.body)["data"]["command_id"] == second.id


async def test_a_read_sent_before_the_ships_answer_came_names_no_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read sent before the ship's answer came says `pending`: it may be from before CCNow
    # ran the ship, and is older news than the answer the order's row holds (skipped).
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        held = (await rt.store.orders.load([KEY]))[KEY].asked_at
        assert row.state == "succeeded" and held is not None
        line = Observation(KEY, Outcome.OK, status="pending", asked=held - 1)
        assert await rt.reconciler.apply([line], via="poll", discover=True) == 0
        assert await history(rt) == SHIPPED


async def test_a_read_sent_after_the_answer_came_but_before_the_close_names_the_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ship's answer came (the order's row dated by it), then its command closed: a query
    # sent between the two came after CCNow ran the ship, and its `pending` contradicts it. So
    # does one a wall clock put back after the close dates before it.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        held = (await rt.store.orders.load([KEY]))[KEY].asked_at
        assert row.closed_at is not None and held is not None and held < row.closed_at
        line = Observation(KEY, Outcome.OK, status="pending", asked=(held + row.closed_at) / 2)
        await rt.reconciler.apply([line], via="poll", discover=True)
        assert await history(rt) == [*SHIPPED, UNSHIPPED, UNCONFIRMED]


async def test_a_not_found_since_the_answer_does_not_confirm_the_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "not found" not confirmed yet keeps the order `mark_shipped` and dates its row later
    # than the answer: it says nothing of whether the ship took, and a `pending` read after it
    # contradicts the ship.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert row.closed_at is not None
        missing = Observation(KEY, Outcome.NOT_FOUND, asked=row.closed_at + 1)
        await rt.reconciler.apply([missing], via="poll", discover=True)
        state = (await rt.store.orders.load([KEY]))[KEY]
        assert state.status == "mark_shipped" and state.missing_since is not None
        line = Observation(KEY, Outcome.OK, status="pending", asked=row.closed_at + 2)
        await rt.reconciler.apply([line], via="poll", discover=True)
        assert await history(rt) == [*SHIPPED, UNSHIPPED, UNCONFIRMED]


async def test_a_read_committed_before_the_ship_closed_names_the_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CCNow answered `mark_shipped`, but the ship did not take: a query sent after the answer
    # came reads `pending`, and commits before the ship's close (which then finds its own line
    # older news). The order never left `pending` in the snapshot, so no later read moves it
    # back: the close itself names the ship.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch, sender_type=ReadFirst) as (rt, sender):
        coordinator = rt.coordinators.ccnow["default"]

        async def read() -> None:
            fake_ccnow.orders[ORDER] = "pending"
            assert (await coordinator.check([ORDER], via="poll")).failed == 0

        assert isinstance(sender, ReadFirst)
        sender.read = read
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        sender.read = None
        assert row.state == "succeeded"
        for _ in range(2):
            assert (await coordinator.check([ORDER], via="poll")).failed == 0
        assert await snapshot_status(rt) == "pending"
        assert await history(rt) == [
            ("order.action_succeeded", "pending", "pending", "action"),
            ("order.action_unconfirmed", "pending", "pending", "action"),
        ]
        [event] = [e for e in await rt.store.events.history() if "unconfirmed" in e.type]
        assert json.loads(event.body)["data"]["command_id"] == row.id


async def test_the_ships_own_answer_confirms_nothing_when_the_clock_went_back(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wall clock put back 10 s between the ship's answer and its close: the commands'
    # clock is 10 s behind the one the answer's line is dated by. The ship's own line is no
    # read after it, and a `pending` read then names the ship.
    fake_ccnow.orders = {ORDER: "pending"}
    behind = parts(tmp_path, fake_ccnow, monkeypatch, clock=lambda: time.time() - 10)
    async with behind as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert row.state == "succeeded"
        fake_ccnow.orders[ORDER] = "pending"  # the ship did not take
        assert (await rt.coordinators.ccnow["default"].check([ORDER], via="poll")).failed == 0
        assert await history(rt) == [*SHIPPED, UNSHIPPED, UNCONFIRMED]


async def test_a_not_found_after_a_confirming_read_does_not_blame_the_ship_again(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A query read `mark_shipped` after the close: the ship took. A "not found" not confirmed
    # yet, then `pending` (CCNow's backroom): no action to name.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert row.closed_at is not None
        at = row.closed_at
        for outcome, status, later in [
            (Outcome.OK, "mark_shipped", 1),
            (Outcome.NOT_FOUND, None, 2),
            (Outcome.OK, "pending", 3),
        ]:
            read = Observation(KEY, outcome, status=status, asked=at + later)
            await rt.reconciler.apply([read], via="poll", discover=True)
        assert await history(rt) == [*SHIPPED, UNSHIPPED]
