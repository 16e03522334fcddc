"""Reads of an order recorded between a ship's answer and its close that say nothing about it:
no warning that the ship did not take, and the snapshot reaches where the ship left it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.commands.ccnow_actions import _finish as finish
from reconciler.schedule import NOT_FOUND_CONFIRM_S
from reconciler.writes.ccnow_actions import build
from tests.fake_providers import FakeCCNow
from tests.poller.test_ccnow_unconfirmed_blame import ReadFirst
from tests.writes.test_ccnow_overlapping_reads import ORDER, history, parts, snapshot_status

SHIPPED = [
    ("order.status_changed", "pending", "mark_shipped", "action"),
    ("order.action_succeeded", "pending", "mark_shipped", "action"),
]


async def test_a_lagging_pending_list_while_the_ship_is_out_is_no_news(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch, sender_type=ReadFirst) as (rt, sender):
        assert isinstance(sender, ReadFirst)
        coordinator = rt.coordinators.ccnow["default"]
        doubted: list[str] = []

        async def read() -> None:
            # CCNow ran the ship (a query says mark_shipped); its list names it pending still,
            # as it may for hours. The poll, sent after the answer came, commits first.
            fake_ccnow.list_lags = {ORDER: "pending"}
            [poll] = await coordinator.tick_pending_list()
            doubted.extend(poll.report.doubted)

        sender.read = read
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        sender.read = None
        assert row.state == "succeeded"
        # Before: action_succeeded pending -> pending, then action_unconfirmed ("ship again").
        assert await history(rt) == SHIPPED
        assert doubted == [ORDER]  # the order's query decides, not the line
        for _ in range(3):
            await coordinator.tick_pending_list()
        assert await snapshot_status(rt) == "mark_shipped"
        assert await history(rt) == SHIPPED


async def test_an_unconfirmed_not_found_before_the_close_names_no_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch, sender_type=ReadFirst) as (rt, sender):
        assert isinstance(sender, ReadFirst)
        coordinator = rt.coordinators.ccnow["default"]

        async def read() -> None:
            # Sent after the answer came, CCNow answers "not found" once, committed first.
            shipped, fake_ccnow.orders = fake_ccnow.orders, {}
            assert (await coordinator.check([ORDER], via="poll")).failed == 1
            fake_ccnow.orders = shipped

        sender.read = read
        [row] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        sender.read = None
        assert row.state == "succeeded"
        # A "not found" alone confirms nothing: before, action_unconfirmed pending -> pending.
        assert await history(rt) == [("order.action_succeeded", "pending", "pending", "action")]
        # The order is checked again within minutes, not at its pending interval, and that
        # check reads where the ship left it.
        [state] = [s for s in await rt.store.orders.snapshot("ccnow") if s.key.order_id == ORDER]
        assert state.missing_since is not None
        assert state.next_check_at is not None
        assert state.next_check_at <= time.time() + NOT_FOUND_CONFIRM_S * 1.1
        assert (await coordinator.check([ORDER], via="poll")).failed == 0
        assert await snapshot_status(rt) == "mark_shipped"
        assert await history(rt) == [
            ("order.action_succeeded", "pending", "pending", "action"),
            ("order.status_changed", "pending", "mark_shipped", "poll"),
        ]


async def test_the_reply_to_a_ship_its_close_warns_of_says_so(
    tmp_path: Path,
    fake_ccnow: FakeCCNow,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch, sender_type=ReadFirst) as (rt, sender):
        assert isinstance(sender, ReadFirst)
        coordinator = rt.coordinators.ccnow["default"]

        async def read() -> None:
            # A query sent after the answer came, committed first, says it did not take.
            fake_ccnow.orders[ORDER] = "pending"
            assert (await coordinator.check([ORDER], via="poll")).failed == 0

        sender.read = read
        taken = await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))
        sender.read = None
        assert ("order.action_unconfirmed", "pending", "pending", "action") in await history(rt)
        # The API's body (and the command line's, through it or not) says it: before, only
        # `succeeded`, the warning left to the events.
        [command] = taken.to_json()
        assert command["outcome"] == "succeeded"
        assert command["unconfirmed"] is True
        finish(rt.config.ccnow[0].name, "ship", taken.to_json(), taken.sent)
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"{ORDER} ship succeeded: mark_shipped (command {command['id']})"
        assert lines[1].startswith(f"{ORDER} ship unconfirmed: a query since reads the order")
        # The same request again (its key: as a command line's 75 advises) says it too, and so
        # does the command as the API's GET shows it: before, `false` once the reply was gone.
        repeat = await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))
        assert [(c["id"], c["unconfirmed"]) for c in repeat.to_json()] == [(command["id"], True)]
        assert await sender.unconfirmed(repeat.rows) == {command["id"]}
        # A second ship, which takes, is not said unconfirmed.
        again = await sender.take(build(rt.config.ccnow[0], "ship", [ORDER], key="again"))
        assert [c["unconfirmed"] for c in again.to_json()] == [False]


async def test_a_ship_a_later_read_moves_back_is_said_unconfirmed_when_asked_again(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        coordinator = rt.coordinators.ccnow["default"]
        [done] = (await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))).rows
        assert done.state == "succeeded"
        assert await sender.unconfirmed([done]) == set()
        # CCNow's backroom un-ships it: the next query reads it pending.
        fake_ccnow.orders[ORDER] = "pending"
        assert (await coordinator.check([ORDER], via="poll")).failed == 0
        assert ("order.action_unconfirmed", "mark_shipped", "pending", "poll") in await history(rt)
        repeat = await sender.take(build(rt.config.ccnow[0], "ship", [ORDER]))
        assert [(c["id"], c["unconfirmed"]) for c in repeat.to_json()] == [(done.id, True)]
